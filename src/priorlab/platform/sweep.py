"""`priorlab sweep STUDY`: a Ray Tune + Optuna sweep of one study, resumable, with a results store.

Layout of an experiment folder (``--runs-dir``/``--name``, default ``runs/<study>-<time>``)::

    study.json          which study, the fixed overrides, seed and budget (read by report)
    results.parquet     one row per finished trial (config/*, metrics, checkpoint_path)
    history.parquet     every report of every trial
    optuna.db           the sweep as an Optuna study (`optuna-dashboard sqlite:///.../optuna.db`)
    wandb/              W&B runs in offline mode (with --wandb and no WANDB_API_KEY)
    report.png, report.csv
    dashboard.html      the ablation dashboard, one self-contained file (`priorlab dashboard`)
    train_runs/train_<trial_id>/checkpoint_*/   Ray Train checkpoints (priorlab format)
    ...                 Tune's own experiment state (used by --resume)

``--resume`` restores Tune's experiment state (trials and the Optuna searcher's state) and
continues unfinished trials from their latest Train checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from priorlab.methods.configuration import config_from_dict, config_to_dict
from priorlab.platform import runtime
from priorlab.platform.report import STUDY_FILE, build_report, read_study_file
from priorlab.platform.results import ResultsStore, trial_row
from priorlab.platform.tracking import export_to_optuna, optuna_storage, wandb_callback
from priorlab.platform.studies import get_study
from priorlab.trainables.common import RunResources


TRIAL_RETRIES = 1
"""Tune-level retries of a trial whose driver failed (Train worker failures are healed inside
by ``RunResources.max_failures``); ``--max-failures 0`` turns both off."""


class SweepError(ValueError):
    pass


@dataclass
class SweepOutcome:
    experiment: Path
    n_trials: int
    report_text: str
    plot_path: Path | None
    interrupted: bool = False
    failed: int = 0
    """Trials that ended in ERROR (after their retries); the CLI exits non-zero if any."""
    dashboard_path: Path | None = None
    """EXPERIMENT/dashboard.html, the sweep's ablation dashboard as one self-contained file."""


def _results_callback(experiment: Path, progress_key: str, on_stored=None):
    """``on_stored()``, if given, runs after each trial's row is written (e.g. the Optuna export)."""
    from ray.tune import Callback

    class ResultsCallback(Callback):
        """Appends every report to history.parquet as it arrives and writes each trial's row to
        results.parquet the moment the trial ends (TERMINATED or ERROR, with its error file)."""

        def __init__(self):
            self.store = ResultsStore(experiment)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            row = trial_row(trial.trial_id, "RUNNING", trial.config, result)
            self.store.append_history([row], key=progress_key)

        def _store(self, trial, status):
            row = trial_row(trial.trial_id, status, trial.config, trial.last_result or {})
            if status == "ERROR":
                row["error_file"] = _error_file(trial)
            self.store.upsert([row])
            if on_stored is not None:
                on_stored()

        def on_trial_recover(self, iteration, trials, trial, **info):
            print(f"[priorlab] trial {trial.trial_id} failed; retrying it from its latest "
                  f"checkpoint (error: {_error_file(trial) or 'see the Tune log'})", flush=True)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._store(trial, "TERMINATED")

        def on_trial_error(self, iteration, trials, trial, **info):
            self._store(trial, "ERROR")

    return ResultsCallback()


def _error_file(trial) -> str | None:
    """Tune's error.txt of a failed trial (its traceback), if it was written."""
    try:
        path = trial.error_file
    except Exception:  # noqa: BLE001 - an attribute of Tune's, best effort
        return None
    return str(path) if path else None


def _status_table(study, space: dict[str, Any]):
    """Tune's compact status table: the searched keys, how far each trial got, the study
    metric (used when Tune's legacy table output is on, as priorlab's quiet console sets)."""
    import os

    if os.environ.get("RAY_AIR_NEW_OUTPUT", "1") != "0":
        return None
    from ray.tune import CLIReporter

    return CLIReporter(
        parameter_columns=sorted(space),
        metric_columns={study.progress_metric: study.progress_metric,
                        study.metric: study.metric.split("/")[-1]},
        max_report_frequency=30, print_intermediate_tables=True,
        # not sorted by the metric: Tune sorts None with floats and crashes when a trial ended
        # without reporting (seen in benchmarks/platform_scale.py)
        sort_by_metric=False, metric=study.metric, mode=study.mode)


def _trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def default_name(study: str) -> str:
    return f"{study}-{time.strftime('%Y%m%d-%H%M%S')}"


def choices_only(space: dict[str, Any]) -> dict[str, list] | None:
    """The categories of a space made of ``tune.choice``s only (``{}`` for an empty space), or
    None when something in it is continuous, a grid or anything else a searcher should handle."""
    from ray.tune.search.sample import Categorical

    if not all(isinstance(v, Categorical) for v in space.values()):
        return None
    return {k: list(v.categories) for k, v in space.items()}


def fixed_seed_repeats(study, fixed: dict[str, Any], samples: int) -> list[int] | None:
    """Seeds of the repeats of a sweep with nothing left to search (every searched key pinned),
    or None when something is still searched or the method has no seed field."""
    seed_field = "seed" in {f.name for f in dataclasses.fields(study.config_cls)}
    if not seed_field:
        return None
    base = int(fixed.get("seed", getattr(study.config_cls(), "seed", 0)))
    return [base + i for i in range(samples)]


def run_sweep(
    study_name: str,
    *,
    overrides: dict[str, Any],
    data_root: Path,
    runs_dir: Path,
    name: str | None = None,
    samples: int | None = None,
    max_iters: int | None = None,
    workers_per_trial: int = 1,
    cpus_per_worker: float | None = None,
    use_gpu: bool = False,
    address: str | None = None,
    resume: bool = False,
    seed: int = 0,
    max_failures: int | None = None,
    verbose: bool = False,
    stream: str | None = None,
    wandb: bool = False,
    wandb_project: str | None = None,
) -> SweepOutcome:
    study = get_study(study_name)
    runs_dir = Path(runs_dir).resolve()
    if resume:
        experiment = _find_resumable(runs_dir, study.name, name)
    else:
        experiment = runs_dir / (name or default_name(study.name))
        if experiment.exists():
            raise SweepError(
                f"{experiment} already exists; continue it with --resume --name {experiment.name}, "
                "or choose another --name (nothing there was touched)"
            )

    fixed = study.resolve({**study.budget, **overrides})
    if max_iters is not None:
        fixed[study.iters_key] = max_iters
    if resume:
        info = read_study_file(experiment)
        if overrides or max_iters is not None:
            raise SweepError("--resume continues the sweep as it was started; drop the overrides")
        fixed, seed, samples = info["fixed"], info["seed"], info["samples"]
        workers_per_trial = info.get("workers_per_trial", workers_per_trial)
        stream = info.get("stream", stream)
    # Fails early, naming any bad key or value; the parsed values (lists, numbers) are kept.
    # The study's train point fills the searched keys (their defaults may not fit the budget).
    parsed = config_to_dict(config_from_dict(study.config_cls, {**study.train_point, **fixed}))
    fixed = {k: parsed[k] for k in fixed}
    if max_failures is not None and max_failures < -1:
        raise SweepError(f"--max-failures {max_failures}: use -1 (retry forever), 0 (never) or a count")

    space = {k: v for k, v in study.space(fixed).items() if k not in fixed}
    if study.prepare_data is not None:
        study.prepare_data(data_root, fixed)  # missing data fails here, before Ray starts

    rt = runtime.start(address, verbose=verbose)
    from ray import tune

    res = RunResources(workers=workers_per_trial, use_gpu=use_gpu,
                       data_root=str(data_root), storage_path=str(experiment / "train_runs"))
    if cpus_per_worker is not None:
        res.cpus_per_worker = cpus_per_worker
    if max_failures is not None:
        res.max_failures = max_failures
    if stream is not None:
        res.stream = stream
    per_trial = res.workers * res.cpus_per_worker + res.data_cpus + 0.01
    concurrent = max(1, math.floor(rt.cpus / per_trial + 1e-9))
    if use_gpu:
        concurrent = max(1, min(concurrent, int(rt.gpus // res.workers) or 1))
    n_samples = samples or study.default_samples
    full_config = {**config_to_dict(config_from_dict(study.config_cls, {**study.train_point, **fixed})),
                   **fixed}
    max_t = study.reports_per_trial(full_config)

    choices = choices_only(space)
    repeats = fixed_seed_repeats(study, fixed, n_samples) if choices is not None else None
    if repeats is not None:
        # Nothing left to search, or only a few choices: Optuna refuses an empty space and would
        # draw the same choice with the same seed again; early stopping would cut replicates
        # short. Run every combination once per seed instead, each trial to the end.
        pinned = "" if "seed" not in fixed else f" (seed pinned to {fixed['seed']}: counting up from it)"
        if choices:
            what = ", ".join(f"{k} in {list(v)}" for k, v in choices.items())
            n_comb = math.prod(len(v) for v in choices.values())
            note = (f"only choices left to search ({what}): running all {n_comb} combinations, "
                    f"each with seeds {repeats}{pinned}, no early stopping")
        else:
            note = (f"nothing left to search (every searched key is fixed): running the fixed "
                    f"config {n_samples} time(s) with seeds {repeats}{pinned}, no early stopping")
        space = {**{k: tune.grid_search(list(v)) for k, v in choices.items()},
                 "seed": tune.grid_search(repeats)}
        searcher = scheduler = None
        num_samples = 1
    else:
        searcher = study.make_searcher(seed, space, storage=optuna_storage(experiment),
                                       study_name=experiment.name)
        scheduler = study.make_scheduler(max_t)
        num_samples = n_samples
        note = None
    grid = math.prod(len(v["grid_search"]) for v in space.values()
                     if isinstance(v, dict) and "grid_search" in v)
    n_trials = num_samples * grid

    trainable = tune.with_resources(study.trainable, {"CPU": 0.01})
    if resume:
        tuner = tune.Tuner.restore(str(experiment), trainable=trainable,
                                   resume_unfinished=True, resume_errored=True)
        n_trials = int(info.get("trials", n_trials))
    else:
        experiment.mkdir(parents=True, exist_ok=True)  # the check above refused an existing one
        (experiment / STUDY_FILE).write_text(json.dumps(
            {"study": study.name, "fixed": fixed, "searched": sorted(space), "seed": seed,
             "samples": n_samples,
             "trials": n_trials, "workers_per_trial": workers_per_trial, "stream": res.stream,
             "data_root": str(data_root), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=2))
        param_space = {**fixed, **space, **{k: v for k, v in vars(res).items()}}
        callbacks = [_results_callback(experiment, study.progress_metric, on_stored=(
            None if searcher is not None else  # an Optuna searcher writes optuna.db itself
            lambda: export_to_optuna(experiment, choices or {}, study.metric, study.mode)))]
        if wandb:
            callbacks.append(wandb_callback(experiment, study.name, wandb_project))
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=num_samples,
                max_concurrent_trials=concurrent,
                trial_dirname_creator=_trial_dirname,
            ),
            run_config=tune.RunConfig(
                name=experiment.name, storage_path=str(runs_dir),
                callbacks=callbacks,
                # A trial whose driver died (e.g. its node was lost) is retried once; lost Train
                # workers are healed inside the trial (RunResources.max_failures).
                failure_config=tune.FailureConfig(
                    max_failures=0 if res.max_failures == 0 else TRIAL_RETRIES),
                progress_reporter=_status_table(study, space),
                verbose=1,
            ),
        )
    if note:
        print(f"[priorlab] {study.name}: {note}", flush=True)
    print(f"[priorlab] {study.name}: {n_trials} trials, {concurrent} at a time, "
          f"experiment {experiment}", flush=True)
    grid = tuner.fit()
    # Rows are written by the ResultsCallback as each trial ends; a trial cut short by Ctrl-C
    # is not finished and gets no row (its checkpoints stay for --resume).
    rows = ResultsStore(experiment).read()
    finished = len(rows)
    failed = int((rows["status"] == "ERROR").sum()) if finished else 0
    interrupted = finished < n_trials
    if interrupted:
        print(f"[priorlab] sweep interrupted: {finished} of {n_trials} trials finished, state "
              f"saved. Continue with: priorlab sweep {study.name} --resume --name {experiment.name}"
              f" --runs-dir {runs_dir}", flush=True)
    report = build_report(experiment)
    from priorlab.platform.dashboard import DashboardError, write_dashboard

    try:
        dashboard = write_dashboard([experiment], experiment / "dashboard.html")
    except DashboardError as err:
        dashboard = None
        print(f"[priorlab] no dashboard.html: {err}", flush=True)
    return SweepOutcome(experiment=experiment, n_trials=len(grid), report_text=report.text,
                        plot_path=report.plot_path, interrupted=interrupted, failed=failed,
                        dashboard_path=dashboard)


def _find_resumable(runs_dir: Path, study: str, name: str | None) -> Path:
    if name:
        experiment = runs_dir / name
        if not (experiment / STUDY_FILE).is_file():
            raise SweepError(f"no experiment to resume at {experiment}")
        return experiment
    candidates = sorted(p.parent for p in runs_dir.glob(f"{study}-*/{STUDY_FILE}"))
    if not candidates:
        raise SweepError(f"no {study} experiment under {runs_dir} to resume; start one without --resume")
    return candidates[-1]


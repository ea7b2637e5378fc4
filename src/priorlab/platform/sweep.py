"""`priorlab sweep STUDY`: a Ray Tune + Optuna sweep of one study, resumable, with a results store.

Layout of an experiment folder (``--runs-dir``/``--name``, default ``runs/<study>-<time>``)::

    study.json          which study, the fixed overrides, seed and budget (read by report)
    results.parquet     one row per finished trial (config/*, metrics, checkpoint_path)
    history.parquet     every report of every trial
    report.png, report.csv
    train_runs/train_<trial_id>/checkpoint_*/   Ray Train checkpoints (priorlab format)
    ...                 Tune's own experiment state (used by --resume)

``--resume`` restores Tune's experiment state (trials and the Optuna searcher's state) and
continues unfinished trials from their latest Train checkpoints.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from priorlab.methods.configuration import config_from_dict, config_to_dict
from priorlab.platform import runtime
from priorlab.platform.report import STUDY_FILE, build_report
from priorlab.platform.results import ResultsStore, trial_row
from priorlab.platform.studies import get_study
from priorlab.trainables.common import RunResources


class SweepError(ValueError):
    pass


@dataclass
class SweepOutcome:
    experiment: Path
    n_trials: int
    report_text: str
    plot_path: Path | None
    interrupted: bool = False


def _results_callback(experiment: Path):
    from ray.tune import Callback

    class ResultsCallback(Callback):
        """Writes each trial's row to results.parquet as soon as the trial ends."""

        def __init__(self):
            self.experiment = str(experiment)
            self.history: dict[str, list[dict]] = {}

        def on_trial_result(self, iteration, trials, trial, result, **info):
            row = trial_row(trial.trial_id, "RUNNING", trial.config, result)
            self.history.setdefault(trial.trial_id, []).append(row)

        def _store(self, trial, status):
            row = trial_row(trial.trial_id, status, trial.config, trial.last_result or {})
            ResultsStore(self.experiment).upsert([row], self.history.get(trial.trial_id))

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._store(trial, "TERMINATED")

        def on_trial_error(self, iteration, trials, trial, **info):
            self._store(trial, "ERROR")

    return ResultsCallback()


def _trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def default_name(study: str) -> str:
    return f"{study}-{time.strftime('%Y%m%d-%H%M%S')}"


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

    fixed = {**study.budget, **overrides}
    if max_iters is not None:
        fixed[study.iters_key] = max_iters
    if resume:
        info = json.loads((experiment / STUDY_FILE).read_text())
        if overrides or max_iters is not None:
            raise SweepError("--resume continues the sweep as it was started; drop the overrides")
        fixed, seed, samples = info["fixed"], info["seed"], info["samples"]
        workers_per_trial = info.get("workers_per_trial", workers_per_trial)
    config_from_dict(study.config_cls, fixed)  # fails early, naming any bad key or value

    space = {k: v for k, v in study.space().items() if k not in fixed}
    if study.prepare_data is not None:
        study.prepare_data(data_root, fixed)  # missing data fails here, before Ray starts

    rt = runtime.start(address)
    from ray import tune

    res = RunResources(workers=workers_per_trial, use_gpu=use_gpu,
                       data_root=str(data_root), storage_path=str(experiment / "train_runs"))
    if cpus_per_worker is not None:
        res.cpus_per_worker = cpus_per_worker
    per_trial = res.workers * res.cpus_per_worker + res.data_cpus + 0.01
    concurrent = max(1, math.floor(rt.cpus / per_trial + 1e-9))
    if use_gpu:
        concurrent = max(1, min(concurrent, int(rt.gpus // res.workers) or 1))
    n_samples = samples or study.default_samples
    full_config = {**config_to_dict(config_from_dict(study.config_cls, fixed)), **fixed}
    max_t = study.reports_per_trial(full_config)
    grid = math.prod(len(v["grid_search"]) for v in space.values()
                     if isinstance(v, dict) and "grid_search" in v)
    n_trials = n_samples * grid

    trainable = tune.with_resources(study.trainable, {"CPU": 0.01})
    if resume:
        tuner = tune.Tuner.restore(str(experiment), trainable=trainable,
                                   resume_unfinished=True, resume_errored=True)
    else:
        experiment.mkdir(parents=True)
        (experiment / STUDY_FILE).write_text(json.dumps(
            {"study": study.name, "fixed": fixed, "seed": seed, "samples": n_samples,
             "workers_per_trial": workers_per_trial, "data_root": str(data_root),
             "created": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=2))
        param_space = {**fixed, **space, **{k: v for k, v in vars(res).items()}}
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                search_alg=study.make_searcher(seed, set(space)),
                scheduler=study.make_scheduler(max_t),
                num_samples=n_samples,
                max_concurrent_trials=concurrent,
                trial_dirname_creator=_trial_dirname,
            ),
            run_config=tune.RunConfig(
                name=experiment.name, storage_path=str(runs_dir),
                callbacks=[_results_callback(experiment)], verbose=1,
            ),
        )
    print(f"[priorlab] {study.name}: {n_trials} trials, {concurrent} at a time, "
          f"experiment {experiment}", flush=True)
    grid = tuner.fit()
    # Rows are written by the ResultsCallback as each trial ends; a trial cut short by Ctrl-C
    # is not finished and gets no row (its checkpoints stay for --resume).
    finished = len(ResultsStore(experiment).read())
    interrupted = finished < n_trials
    if interrupted:
        print(f"[priorlab] sweep interrupted: {finished} of {n_trials} trials finished, state "
              f"saved. Continue with: priorlab sweep {study.name} --resume --name {experiment.name}"
              f" --runs-dir {runs_dir}", flush=True)
    report = build_report(experiment)
    return SweepOutcome(experiment=experiment, n_trials=len(grid), report_text=report.text,
                        plot_path=report.plot_path, interrupted=interrupted)


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


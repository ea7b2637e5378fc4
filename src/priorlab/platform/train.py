"""`priorlab train STUDY [key=value ...] [--name NAME]`: one run of a study's method, no sweep.

The run's config is the method's defaults (the paper's), then the study's laptop budget, then
the study's reference values of the keys it sweeps (``Study.train_point``), then the user's
``key=value`` overrides. The run is a one-trial Ray Tune run of the study's trainable, so it
gets the same failure handling as a sweep (lost workers restart from the latest checkpoint),
a progress bar in the study's own unit (steps, iterations or epochs), and the same files::

    runs/train/<name>/
        run.json                    the study and the config the run was started with
        checkpoints/checkpoint_*/   priorlab checkpoints (`priorlab eval runs/train/<name>`)
        results.parquet, history.parquet
        tune/                       Tune's state and error files of each attempt

Rerun with the same ``--name`` to resume from the latest checkpoint (e.g. after Ctrl-C or a
crash, or with a larger ``--max-iters`` to train longer); every other config value must stay
the same, since the checkpoint was trained with it.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from priorlab.methods.configuration import config_from_dict, config_to_dict
from priorlab.platform import runtime
from priorlab.platform.results import ResultsStore
from priorlab.platform.studies import get_study
from priorlab.trainables.common import RunResources

RUN_FILE = "run.json"
CHECKPOINTS = "checkpoints"


class TrainError(ValueError):
    """A run that cannot start as asked (e.g. resumed with another config)."""


@dataclass
class TrainOutcome:
    run_dir: Path
    metrics: dict[str, Any]
    failed: bool
    error_file: str | None
    resumed_from: float


def _progress_callback(total: int, progress_key: str, metric: str, unit: str):
    from ray.tune import Callback
    from tqdm.auto import tqdm

    class ProgressCallback(Callback):
        """A progress bar in the study's unit, updated at every report (driver side)."""

        def __init__(self):
            self.bar = None

        def on_trial_start(self, iteration, trials, trial, **info):
            if self.bar is None:
                self.bar = tqdm(total=total, unit=unit, desc="training", dynamic_ncols=True,
                                file=sys.stderr)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if self.bar is None:
                self.on_trial_start(iteration, trials, trial)
            starts = [v for k, v in result.items() if k.startswith("train/start_")]
            if starts and starts[0] and self.bar.n == 0:
                self.bar.write(f"[priorlab] resumed from {unit} {int(starts[0])} (latest checkpoint)",
                               file=sys.stderr)
            done = result.get(progress_key)
            if isinstance(done, (int, float)):
                self.bar.n = int(done)
            if isinstance(result.get(metric), (int, float)):
                self.bar.set_postfix({metric.split("/")[-1]: f"{result[metric]:.4f}"}, refresh=False)
            self.bar.refresh()

        def on_trial_recover(self, iteration, trials, trial, **info):
            if self.bar is not None:
                self.bar.write("[priorlab] the run failed; retrying from its latest checkpoint",
                               file=sys.stderr)

        def on_experiment_end(self, trials, **info):
            if self.bar is not None:
                self.bar.close()

    return ProgressCallback()


def _check_same_run(run_dir: Path, study: str, fixed: dict[str, Any], iters_key: str) -> bool:
    """True when ``run_dir`` holds an earlier run to resume; raises if it was another config."""
    path = run_dir / RUN_FILE
    if not path.is_file():
        if run_dir.exists() and any(run_dir.iterdir()):
            raise TrainError(f"{run_dir} exists and is not a priorlab train run (no {RUN_FILE}); "
                             "choose another --name (nothing there was touched)")
        return False
    before = json.loads(path.read_text())
    if before.get("study") != study:
        raise TrainError(f"{run_dir} is a run of {before.get('study')!r}, not {study!r}; choose another --name")
    # A run's length may grow on resume (its iterations, or its time budget); nothing else.
    changed = {k: (before["config"].get(k), v) for k, v in fixed.items()
               if k not in (iters_key, "max_seconds") and before["config"].get(k) != v}
    if changed:
        listed = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(changed.items()))
        raise TrainError(f"run {run_dir.name} was started with another config ({listed}); its "
                         "checkpoints were trained with the old values. Resume with the same values "
                         f"(only {iters_key} and max_seconds may change), or start a new run with another --name")
    return True


def run_train(
    study_name: str,
    *,
    overrides: dict[str, Any],
    data_root: Path,
    runs_dir: Path,
    name: str | None = None,
    max_iters: int | None = None,
    workers: int = 1,
    cpus_per_worker: float | None = None,
    use_gpu: bool = False,
    address: str | None = None,
    max_failures: int | None = None,
    verbose: bool = False,
    stream: str | None = None,
) -> TrainOutcome:
    from priorlab.platform.sweep import _results_callback

    study = get_study(study_name)
    name = name or f"{study.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(runs_dir).resolve() / "train" / name
    fixed = study.resolve({**study.budget, **study.train_point, **overrides})
    if max_iters is not None:
        fixed[study.iters_key] = max_iters
    cfg = config_from_dict(study.config_cls, fixed)  # fails early, naming any bad key or value
    config = config_to_dict(cfg)
    resumed = _check_same_run(run_dir, study.name, config, study.iters_key)
    if study.prepare_data is not None:
        study.prepare_data(data_root, fixed)

    rt = runtime.start(address, verbose=verbose)
    from ray import tune

    res = RunResources(workers=workers, use_gpu=use_gpu, data_root=str(data_root),
                       storage_path=str(run_dir), run_name=CHECKPOINTS)
    if cpus_per_worker is not None:
        res.cpus_per_worker = cpus_per_worker
    if max_failures is not None:
        res.max_failures = max_failures
    if stream is not None:
        res.stream = stream
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RUN_FILE).write_text(json.dumps(
        {"study": study.name, "config": config, "data_root": str(data_root),
         "updated": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=2, default=str))
    total = int(config[study.iters_key])
    print(f"[priorlab] {study.name}: one run, {total} {study.iters_key} "
          f"({'resuming' if resumed else 'new'}), folder {run_dir}"
          + ("" if rt.local else f", cluster {rt.address}"), flush=True)
    tuner = tune.Tuner(
        tune.with_resources(study.trainable, {"CPU": 0.01}),
        param_space={**config, **vars(res)},
        tune_config=tune.TuneConfig(num_samples=1),
        run_config=tune.RunConfig(
            name=f"attempt-{time.strftime('%Y%m%d-%H%M%S')}", storage_path=str(run_dir / "tune"),
            callbacks=[_progress_callback(total, study.progress_metric, study.metric,
                                          study.progress_metric),
                       _results_callback(run_dir, study.progress_metric)],
            failure_config=tune.FailureConfig(max_failures=0 if res.max_failures == 0 else 1),
            verbose=0),
    )
    result = tuner.fit()[0]
    metrics = {k: v for k, v in (result.metrics or {}).items()
               if isinstance(v, (int, float)) and "/" in k or k == study.progress_metric}
    rows = ResultsStore(run_dir).read()
    error_file = None
    if result.error is not None and not rows.empty and "error_file" in rows:
        error_file = rows["error_file"].dropna().iloc[-1] if rows["error_file"].notna().any() else None
    starts = [v for k, v in metrics.items() if k.startswith("train/start_")]
    return TrainOutcome(run_dir=run_dir, metrics=metrics, failed=result.error is not None,
                        error_file=error_file, resumed_from=float(starts[0]) if starts else 0.0)

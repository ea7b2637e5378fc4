"""Experiment tracking beside the results store: Optuna's own storage and Weights & Biases.

* **Optuna storage.** Every sweep keeps an Optuna study in ``EXPERIMENT/optuna.db`` (SQLite),
  named after the experiment folder, so Optuna's own tools open it::

      optuna-dashboard sqlite:///runs/<experiment>/optuna.db

  A study searched by ``OptunaSearch`` writes it as it goes (Ray's searcher is built with this
  storage: :func:`optuna_storage`). A grid study (``tune.choice``s run as every combination x
  seeds) has no Optuna searcher; :func:`export_to_optuna` adds its finished trials to the same
  database after each trial, with the searched keys as categorical parameters and the study
  metric as the value, so the dashboard shows every sweep the same way.
* **Weights & Biases** (``priorlab sweep ... --wandb``): Ray Tune's ``WandbLoggerCallback``, one
  W&B run per trial, grouped by experiment. Without ``WANDB_API_KEY`` in the environment the runs
  are written in offline mode under ``EXPERIMENT/wandb`` (``wandb sync`` uploads them later);
  with a key, online (``WANDB_MODE=offline`` still forces offline). The key is never passed as
  an argument, put in a config or written to a file by priorlab: W&B reads it from the
  environment itself.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

OPTUNA_DB = "optuna.db"
WANDB_DIR = "wandb"


def optuna_url(experiment: Path) -> str:
    return f"sqlite:///{Path(experiment).resolve() / OPTUNA_DB}"


def optuna_storage(experiment: Path):
    """The RDB storage of the experiment's Optuna study (created on first use)."""
    import optuna

    Path(experiment).mkdir(parents=True, exist_ok=True)
    return optuna.storages.RDBStorage(optuna_url(experiment))


def _param(value: Any) -> Any:
    """Optuna's categorical choices must be None, bool, int, float or str."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def export_to_optuna(experiment: Path, choices: dict[str, list], metric: str, mode: str,
                     results: pd.DataFrame | None = None) -> int:
    """Add the finished trials of results.parquet that the experiment's Optuna study does not hold
    yet (matched by the ``trial_id`` user attribute); returns how many were added. ``choices``:
    the sweep's searched keys and all their values (Optuna's categorical distributions must not
    change between trials). Trials without the metric are added as FAIL."""
    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState

    from priorlab.platform.results import ResultsStore

    df = ResultsStore(experiment).read() if results is None else results
    if df.empty:
        return 0
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=optuna_storage(experiment), study_name=Path(experiment).name,
                                direction="maximize" if mode == "max" else "minimize",
                                load_if_exists=True)
    have = {t.user_attrs.get("trial_id") for t in study.get_trials(deepcopy=False)}
    columns = [k for k in choices if f"config/{k}" in df]
    choices = {k: [_param(v) for v in choices[k]] for k in columns}
    added = 0
    for _, row in df.iterrows():
        if row["trial_id"] in have or row.get("status") not in ("TERMINATED", "ERROR"):
            continue
        value = row.get(metric)
        ok = row.get("status") == "TERMINATED" and value is not None and not (
            isinstance(value, float) and math.isnan(value))
        params = {k: _param(row[f"config/{k}"]) for k in columns}
        study.add_trial(optuna.trial.create_trial(
            params=params,
            distributions={k: CategoricalDistribution(choices[k]) for k in columns},
            value=float(value) if ok else None,
            state=TrialState.COMPLETE if ok else TrialState.FAIL,
            user_attrs={"trial_id": str(row["trial_id"]),
                        **({"seed": int(row["config/seed"])} if "config/seed" in row
                           and pd.notna(row["config/seed"]) else {})}))
        added += 1
    return added


def wandb_mode() -> str:
    """``offline`` unless an API key is set (and WANDB_MODE does not say otherwise)."""
    forced = os.environ.get("WANDB_MODE", "").strip().lower()
    if forced in ("offline", "disabled", "dryrun"):
        return "offline" if forced == "dryrun" else forced
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def _keyless_callback_class():
    """Ray's ``WandbLoggerCallback`` with two changes (ray 2.60, pinned):

    * its logging actors get no ``runtime_env`` holding ``WANDB_API_KEY``: Ray writes runtime
      environments to ``runtime_env_agent.log``, which put the key in a file (seen here). The
      actors run on the driver's node and inherit the key from the environment Ray started in;
    * offline mode needs no key (Ray's ``setup`` asks for one unless WANDB_MODE says offline).
    """
    import ray
    from ray.air.integrations.wandb import WandbLoggerCallback
    from ray.air.util.node import _force_on_current_node

    class KeylessWandbLoggerCallback(WandbLoggerCallback):
        def setup(self, *args, **kwargs):
            if self.kwargs.get("mode") != "offline":
                return super().setup(*args, **kwargs)
            saved = os.environ.get("WANDB_MODE")
            os.environ["WANDB_MODE"] = "offline"
            try:
                return super().setup(*args, **kwargs)
            finally:
                if saved is None:
                    os.environ.pop("WANDB_MODE", None)
                else:
                    os.environ["WANDB_MODE"] = saved

        def _start_logging_actor(self, trial, exclude_results, **wandb_init_kwargs):
            if not self._remote_logger_class:
                self._remote_logger_class = ray.remote(
                    num_cpus=0, **_force_on_current_node(), max_restarts=-1,
                    max_task_retries=-1)(self._logger_actor_cls)
            return super()._start_logging_actor(trial, exclude_results, **wandb_init_kwargs)

    return KeylessWandbLoggerCallback


def wandb_callback(experiment: Path, study_name: str, project: str | None = None):
    """Ray Tune's W&B logger for a sweep: one run per trial, grouped by the experiment."""
    out = Path(experiment).resolve() / WANDB_DIR
    out.mkdir(parents=True, exist_ok=True)
    mode = wandb_mode()
    return _keyless_callback_class()(
        project=project or os.environ.get("WANDB_PROJECT", "priorlab"),
        group=Path(experiment).name, job_type=study_name, tags=[study_name],
        mode=mode, dir=str(out),
        # Config keys that are bookkeeping, not hyperparameters.
        excludes=["data_root", "storage_path"],
        log_config=False, upload_checkpoints=False,
    )

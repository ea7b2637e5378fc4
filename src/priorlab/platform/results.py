"""The results store: one row per trial in ``EXPERIMENT/results.parquet``.

Columns: ``trial_id``, ``status``, ``iterations``, the trial's config keys (prefixed
``config/``), every metric it last reported (``eval/acc_1shot``, ``psnr``, ``auroc``... as
the study reports them) and ``checkpoint_path``. A second table,
``EXPERIMENT/history.parquet``, holds every report of every trial (for learning curves).
Rows are written when a trial finishes, so an interrupted sweep loses no finished trial;
writes are atomic (temp file + rename).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

RESULTS = "results.parquet"
HISTORY = "history.parquet"

_SKIP = {"config", "date", "hostname", "node_ip", "pid", "timestamp", "done", "time_this_iter_s",
         "time_since_restore", "iterations_since_restore", "experiment_tag"}


def _scalar(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool)) or value is None


def trial_row(trial_id: str, status: str, config: dict[str, Any], metrics: dict[str, Any]) -> dict:
    row: dict[str, Any] = {"trial_id": trial_id, "status": status}
    for key, value in config.items():
        row[f"config/{key}"] = value if _scalar(value) else repr(value)
    for key, value in metrics.items():
        if key in _SKIP or key.startswith("config/") or not _scalar(value):
            continue
        row[key] = value
    row["iterations"] = int(metrics.get("training_iteration", 0) or 0)
    return row


def _atomic_write(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


class ResultsStore:
    def __init__(self, experiment_dir: str | os.PathLike):
        self.dir = Path(experiment_dir)

    @property
    def results_path(self) -> Path:
        return self.dir / RESULTS

    @property
    def history_path(self) -> Path:
        return self.dir / HISTORY

    def read(self) -> pd.DataFrame:
        if not self.results_path.is_file():
            return pd.DataFrame()
        return pd.read_parquet(self.results_path)

    def read_history(self) -> pd.DataFrame:
        if not self.history_path.is_file():
            return pd.DataFrame()
        return pd.read_parquet(self.history_path)

    def upsert(self, rows: list[dict[str, Any]], history: list[dict[str, Any]] | None = None) -> None:
        """Insert or replace trials by trial_id, keeping every other trial already stored."""
        self.dir.mkdir(parents=True, exist_ok=True)
        old = self.read()
        new = pd.DataFrame(rows)
        if not old.empty and not new.empty:
            old = old[~old["trial_id"].isin(new["trial_id"])]
        merged = pd.concat([old, new], ignore_index=True) if not old.empty else new
        _atomic_write(merged.sort_values("trial_id", kind="stable").reset_index(drop=True),
                      self.results_path)
        if history:
            old_h = self.read_history()
            new_h = pd.DataFrame(history)
            if not old_h.empty:
                old_h = old_h[~old_h["trial_id"].isin(new_h["trial_id"])]
                new_h = pd.concat([old_h, new_h], ignore_index=True)
            _atomic_write(new_h, self.history_path)


def clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value

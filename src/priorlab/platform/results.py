"""The results store: one row per trial in ``EXPERIMENT/results.parquet``.

Columns: ``trial_id``, ``status``, ``iterations``, the trial's config keys (prefixed
``config/``), every metric it last reported (``eval/acc_1shot``, ``psnr``, ``auroc``... as
the study reports them) and ``checkpoint_path`` (and ``error_file`` for a trial that failed). A second table,
``EXPERIMENT/history.parquet``, holds every report of every trial (learning curves, the
report's equal-budget view). Result rows are written when a trial finishes, so an interrupted
sweep loses no finished trial; history rows are appended as each report arrives, so a driver
killed mid-sweep loses no report either (a resumed trial that reports the same step again
replaces its earlier row). Writes are atomic (temp file + rename).
"""

from __future__ import annotations

import math
import os
import tempfile
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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        df.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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
            self.append_history(history)

    def append_history(self, rows: list[dict[str, Any]], key: str | None = None) -> None:
        """Append reports to history.parquet. With ``key`` (the study's progress column, e.g.
        ``step``), a row whose (trial_id, key) is already stored replaces the old one."""
        if not rows:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        new = pd.DataFrame(rows)
        old = self.read_history()
        merged = pd.concat([old, new], ignore_index=True) if not old.empty else new
        subset = ["trial_id", key] if key and key in merged.columns else None
        if subset is not None:
            merged = merged.drop_duplicates(subset=subset, keep="last")
        _atomic_write(merged.reset_index(drop=True), self.history_path)

def clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value

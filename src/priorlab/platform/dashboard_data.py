"""What the ablation dashboard shows, computed from an experiment folder (no HTML here).

An experiment folder is one sweep of one study (``priorlab sweep``): ``study.json`` names the
study, ``results.parquet`` holds one row per finished trial and ``history.parquet`` every
report. Everything here comes from the Study's fields (``metric``, ``mode``, ``group_by``,
``progress_metric``, ``space``, ``chance``) and the parquet columns, so any study's metric
(accuracy, PSNR, AUROC) works without per-study code. A folder whose study is not in the
registry still renders: its metric is the first ``eval/`` column and it is grouped by the
config keys that take a few distinct values.

The ablation numbers reuse the report's equal-budget logic (``report.equal_budget`` and
``report._completed``): every choice is compared at the same progress value; the interval is
``stats.mean_ci95`` (mean ± 95% Student-t half-width over the trials of a choice).

    from priorlab.platform.dashboard_data import load_experiment, ablation_tables
    exp = load_experiment(Path("runs/memory-label-injection-20261127-101500"))
    for table in ablation_tables(exp): print(table.title, [(r.labels, r.interval.text()) for r in table.rows])

Used by ``platform.dashboard`` (``priorlab dashboard``, docs/dashboard.md).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from priorlab.platform.report import STUDY_FILE, _completed, equal_budget
from priorlab.platform.results import HISTORY, RESULTS, ResultsStore
from priorlab.platform.stats import Interval, mean_ci95

ALL = "__all__"
"""The stand-in group key of a study with no ``group_by``: every trial in one row."""
NOT_SEARCHED = {"seed", "run_name", "storage_path", "data_root"}
"""Config keys that vary between trials without being an architecture or search choice."""
PROGRESS_GUESSES = ("step", "iteration", "epoch", "training_iteration")
LOWER_IS_BETTER = ("loss", "error", "mse", "rmse", "mae", "nll", "perplexity")
ERROR_CHARS = 3000
"""How much of an error file the page shows (its end: the traceback's last frames and message)."""


class DashboardError(ValueError):
    """An experiment the dashboard cannot show, with what to do about it."""


@dataclass
class Experiment:
    path: Path
    study_name: str
    description: str
    metric: str | None
    mode: str
    group_by: list[str]
    progress: str | None
    iters_key: str | None
    searched: list[str]
    """Config keys the sweep searched (parallel coordinates, importances)."""
    chance: float | None
    fixed: dict[str, Any]
    results: pd.DataFrame
    history: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    _budget: tuple | None = field(default=None, repr=False)

    @property
    def ok(self) -> pd.DataFrame:
        if self.results.empty:
            return self.results
        return self.results[self.results["status"] != "ERROR"].reset_index(drop=True)

    @property
    def failed(self) -> pd.DataFrame:
        if self.results.empty:
            return self.results
        return self.results[self.results["status"] == "ERROR"].reset_index(drop=True)

    @property
    def running(self) -> list[str]:
        """Trials with reports in history.parquet but no row in results.parquet yet."""
        if self.history.empty or "trial_id" not in self.history.columns:
            return []
        done = set(self.results["trial_id"]) if not self.results.empty else set()
        return sorted(set(self.history["trial_id"]) - done)

    @property
    def higher_is_better(self) -> bool:
        return self.mode != "min"


# ----------------------------------------------------------------------------- finding folders

def _is_experiment(path: Path) -> bool:
    return (path / STUDY_FILE).is_file() or (path / RESULTS).is_file()


def resolve_experiments(names: list[str], runs_dir: str | os.PathLike = "runs") -> list[Path]:
    """Experiment folders from paths or names under ``runs_dir``; no names: every experiment
    under ``runs_dir``. A DashboardError says what is wrong with a name."""
    runs = Path(runs_dir)
    if not names:
        found = sorted(p for p in runs.glob("*") if p.is_dir() and _is_experiment(p)) \
            if runs.is_dir() else []
        if not found:
            raise DashboardError(f"no experiments under {runs}/ (folders with {STUDY_FILE}); run "
                                 "`priorlab sweep STUDY` first, or pass EXPERIMENT folders")
        return found
    out = []
    for name in names:
        path = Path(name)
        if not path.is_dir() and (runs / name).is_dir():
            path = runs / name
        if path.is_file():
            raise DashboardError(f"{path} is a file, not an experiment folder (one with {STUDY_FILE} "
                                 "and results.parquet, as `priorlab sweep` writes)")
        if not path.is_dir():
            raise DashboardError(f"no experiment folder {name} (nor {runs / name}); pass the folder "
                                 "printed by `priorlab sweep`, e.g. runs/memory-label-injection-<date>")
        if not _is_experiment(path):
            inner = sorted(p.parent.name for p in path.glob(f"*/{STUDY_FILE}"))
            hint = (f"; it holds experiments: {', '.join(inner[:5])}"
                    f"{' ...' if len(inner) > 5 else ''} (pass them, or --runs-dir {path})"
                    if inner else "")
            raise DashboardError(f"{path} is not a priorlab experiment (no {STUDY_FILE} or "
                                 f"{RESULTS}){hint}")
        out.append(path)
    return out


# ----------------------------------------------------------------------------- loading

def _numeric(df: pd.DataFrame, col: str) -> pd.Series:
    return pd.to_numeric(df[col], errors="coerce") if col in df.columns else pd.Series(
        np.nan, index=df.index, dtype=float)


def _guess_metric(df: pd.DataFrame) -> str | None:
    """The first ``eval/`` column (not an interval), else the first metric reported with its
    ``_ci95``, else the first other numeric column."""
    skip = ("_ci95", "_lo", "_hi")
    numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c])
               and not pd.api.types.is_bool_dtype(df[c])]
    evals = [c for c in numeric if c.startswith("eval/") and not c.endswith(skip)]
    if evals:
        return evals[0]
    bookkeeping = {"iterations", "training_iteration", "time_total_s", *PROGRESS_GUESSES}
    rest = [c for c in numeric if not c.startswith(("config/", "time/", "train/", "data/"))
            and c not in bookkeeping and not c.endswith(skip)]
    summarised = [c for c in rest if f"{c}_ci95" in df.columns]   # a metric with its interval
    return (summarised or rest or [None])[0]


def _varying_config(df: pd.DataFrame, max_values: int | None = None) -> list[str]:
    keys = []
    for col in df.columns:
        key = col.removeprefix("config/")
        if not col.startswith("config/") or key in NOT_SEARCHED:
            continue
        distinct = df[col].astype(str).nunique()
        if distinct < 2 or (max_values is not None and distinct > max_values):
            continue
        if max_values is not None and pd.api.types.is_float_dtype(df[col]):
            continue     # a group is a choice (category, int, bool), not a sampled float
        keys.append(key)
    return keys


def _study_fields(name: str | None, fixed: dict, notes: list[str]):
    """The registered Study, or None (with a note saying what the page falls back to)."""
    from priorlab.platform.studies import UnknownStudyError, get_study

    if not name:
        notes.append(f"no study named in {STUDY_FILE}: metric and groups are read from the columns")
        return None
    try:
        return get_study(name)
    except UnknownStudyError:
        notes.append(f"study {name!r} is not in this priorlab's registry: the metric is the first "
                      "eval/ column and trials are grouped by the config keys with few values")
    except Exception as err:  # noqa: BLE001 - e.g. a study module whose optional dependency is missing
        notes.append(f"study {name!r} could not be loaded ({type(err).__name__}: {err}): "
                     "metric and groups are read from the columns")
    return None


def load_experiment(path: str | os.PathLike) -> Experiment:
    """Read one experiment folder (live: call again to see new trials)."""
    path = Path(path)
    if not _is_experiment(path):
        raise DashboardError(f"{path} is not a priorlab experiment (no {STUDY_FILE} or {RESULTS})")
    notes: list[str] = []
    info: dict[str, Any] = {}
    if (path / STUDY_FILE).is_file():
        try:
            info = json.loads((path / STUDY_FILE).read_text())
        except (json.JSONDecodeError, OSError) as err:
            notes.append(f"{STUDY_FILE} could not be read ({err}): metric and groups come from the columns")
    fixed = info.get("fixed") or {}
    store = ResultsStore(path)
    try:
        results, history = store.read(), store.read_history()
    except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        raise DashboardError(f"cannot read {path / RESULTS} or {path / HISTORY} ({err}); if a sweep "
                             "is writing it, reload in a moment") from None
    study = _study_fields(info.get("study"), fixed, notes)
    columns = results if not results.empty else history
    if study is not None:
        metric, mode = study.metric, study.mode
        group_by = list(study.group_by)
        progress, iters_key = study.progress_metric, study.iters_key
        description = study.description
        if not columns.empty and metric not in columns.columns:
            guess = _guess_metric(columns)
            notes.append(f"the results have no {metric} column (the study's metric); showing {guess}")
            metric = guess
    else:
        metric = _guess_metric(columns) if not columns.empty else None
        mode = "min" if metric and any(w in metric.lower() for w in LOWER_IS_BETTER) else "max"
        group_by = _varying_config(columns, max_values=12)[:3] if not columns.empty else []
        progress = next((p for p in PROGRESS_GUESSES if p in history.columns), None)
        iters_key = None
        description = "(study not in the registry: read from the columns)"
    missing = [g for g in group_by if not columns.empty and f"config/{g}" not in columns.columns]
    if missing:
        notes.append(f"no config/ column for {missing} (pinned?): not grouped by "
                     f"{'it' if len(missing) == 1 else 'them'}")
        group_by = [g for g in group_by if g not in missing]
    if progress is not None and (history.empty or progress not in history.columns):
        progress = None
    return Experiment(path=path, study_name=info.get("study") or path.name, description=description,
                      metric=metric, mode=mode, group_by=group_by, progress=progress,
                      iters_key=iters_key, searched=_searched(study, fixed, columns, group_by),
                      chance=_chance(study, fixed), fixed=fixed, results=results,
                      history=history, notes=notes)


def _searched(study, fixed: dict, columns: pd.DataFrame, group_by: list[str]) -> list[str]:
    keys: list[str] = []
    if study is not None:
        try:
            keys = [k for k in study.space(fixed) if k not in fixed]
        except Exception:  # noqa: BLE001 - an old study.json the space no longer accepts
            keys = []
    if not keys and not columns.empty:
        keys = _varying_config(columns)
    keys = list(dict.fromkeys([*group_by, *keys]))
    return [k for k in keys if f"config/{k}" in columns.columns
            and (k not in NOT_SEARCHED or k in group_by)]


def _chance(study, fixed: dict) -> float | None:
    if study is None:
        return None
    from priorlab.methods.configuration import config_from_dict, config_to_dict

    try:
        config = config_to_dict(config_from_dict(study.config_cls, fixed))
    except Exception:  # noqa: BLE001 - an old or edited study.json: as the report does
        config = dict(fixed)
    try:
        chance = study.chance(config)
    except Exception:  # noqa: BLE001
        return None
    return None if chance is None else float(chance)


# ----------------------------------------------------------------------------- ablation table

def label(value: Any) -> str:
    """A config value as the page prints it (floats short, lists as stored)."""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:g}"
    if isinstance(value, (np.floating,)):
        return label(float(value))
    return str(value)


def value_key(value: Any):
    """Sort key of config values: numbers in numeric order before the rest in printed order."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        return (0, float(value) if not math.isnan(float(value)) else math.inf, "")
    return (1, 0.0, label(value))


@dataclass
class AblationRow:
    labels: dict[str, str]
    """group_by key -> the choice (printed); a row of one key lacks the others."""
    interval: Interval
    total: int
    """Finished trials with this choice (n counts those at the budget)."""


@dataclass
class AblationTable:
    title: str
    rows: list[AblationRow]
    at: float | None


def _group_rows(frame: pd.DataFrame, totals: pd.DataFrame, keys: list[str], metric: str) -> list[AblationRow]:
    cols = [f"config/{k}" for k in keys]
    values = _numeric(frame, metric)
    rows = []
    for combo, part in totals.groupby(cols, dropna=False, sort=False):
        combo = combo if isinstance(combo, tuple) else (combo,)
        mask = np.ones(len(frame), dtype=bool)
        for col, v in zip(cols, combo):
            mask &= (frame[col].isna() if (isinstance(v, float) and math.isnan(v))
                     else (frame[col] == v)).to_numpy()
        rows.append((tuple(value_key(v) for v in combo), AblationRow(
            labels={k: label(v) for k, v in zip(keys, combo)},
            interval=mean_ci95(values[mask]), total=len(part))))
    return [r for _, r in sorted(rows, key=lambda item: item[0])]


def _rows(frame: pd.DataFrame, totals: pd.DataFrame, group_by: list[str], metric: str) -> list[AblationRow]:
    """Each value of each group_by key, then (two keys or more) each combination."""
    if not group_by:
        frame = frame.assign(**{f"config/{ALL}": "all trials"})
        totals = totals.assign(**{f"config/{ALL}": "all trials"})
        return _group_rows(frame, totals, [ALL], metric)
    rows = [r for key in group_by for r in _group_rows(frame, totals, [key], metric)]
    if len(group_by) > 1:
        rows += _group_rows(frame, totals, group_by, metric)
    return rows


def budget_view(exp: Experiment) -> tuple[pd.DataFrame, float | None]:
    """``report.equal_budget`` of the finished trials: (their rows at the budget, the budget)."""
    if exp._budget is None and exp.ok.empty:
        exp._budget = (exp.ok, None)
    if exp._budget is None:
        ok = exp.ok
        group_by = exp.group_by or [ALL]
        frame = ok.assign(**{f"config/{ALL}": "all trials"}) if not exp.group_by else ok
        history = exp.history if exp.progress else pd.DataFrame()
        view = equal_budget(frame, history, group_by, exp.progress or "")
        exp._budget = (view.rows, view.at)
    return exp._budget


def ablation_tables(exp: Experiment) -> list[AblationTable]:
    """The equal-budget table (the report's main one) and, when some trials stopped early, the
    table of the trials that ran to the end. Empty when no trial finished."""
    ok = exp.ok
    if ok.empty or exp.metric is None:
        return []
    rows, at = budget_view(exp)
    unit = exp.progress
    main = _rows(rows, ok, exp.group_by, exp.metric)
    completed = (_completed(ok, exp.history, unit, exp.iters_key)
                 if unit and exp.iters_key else ok.iloc[0:0])
    if at is None:
        title = "Each trial's last report (no history.parquet progress to compare at equal budget)"
    elif len(completed) == len(ok) == len(rows):
        title = f"Every trial ran its whole budget ({unit} {at:g})"
    else:
        title = (f"Equal budget: every choice at {unit} {at:g}, the highest {unit} every choice "
                 f"reached ({len(rows)} of {len(ok)} finished trials got that far; trials that "
                 "stopped earlier are left out)")
    tables = [AblationTable(title, main, at)]
    same = set(completed["trial_id"]) == set(rows["trial_id"])   # would repeat the table above
    if at is not None and not completed.empty and len(completed) < len(ok) and not same:
        tables.append(AblationTable(
            f"Trials that ran to the end ({len(completed)} of {len(ok)}; their final reports)",
            _rows(completed, ok, exp.group_by, exp.metric), None))
    return tables


# ----------------------------------------------------------------------------- importances

IMPORTANCE_BINS = 4
"""A numeric key with more distinct values than IMPORTANCE_MAX_LEVELS is cut into this many
quantile bins (else every trial would be its own group and explain everything)."""
IMPORTANCE_MAX_LEVELS = 6
IMPORTANCE_METHOD = (
    "Importance = the share of the variance of the finished trials' final {metric} that a key "
    "explains on its own: epsilon-squared of a one-way ANOVA, (SS_between - (k - 1) MS_within) "
    "/ SS_total over the key's k groups, clipped at 0 (eta-squared corrected for the k - 1 "
    "degrees of freedom a grouping fits by chance). Groups: each value of a categorical key, "
    "or of a numeric key with at most {levels} values; a numeric key with more (lr) is cut "
    "into {bins} quantile bins. Keys are scored one at a time, so they need not sum to 1 "
    "(a searcher that moved two keys together lets them share variance).")


@dataclass
class Importance:
    key: str
    value: float
    """epsilon-squared in [0, 1]; nan when the groups leave no degree of freedom."""
    groups: int
    how: str
    """How the key was grouped (its values, or quantile bins)."""


def _groups(col: pd.Series) -> tuple[pd.Series, str]:
    numeric = pd.to_numeric(col, errors="coerce")
    is_num = (pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
              and numeric.notna().all())
    distinct = col.astype(str).nunique()
    if is_num and distinct > IMPORTANCE_MAX_LEVELS:
        bins = pd.qcut(numeric.rank(method="first"), IMPORTANCE_BINS, labels=False)
        return bins, f"{IMPORTANCE_BINS} quantile bins"
    return col.map(label), "values" if not is_num else "numeric values"


def epsilon_squared(values: np.ndarray, groups: np.ndarray) -> float:
    """(SS_between - (k - 1) MS_within) / SS_total, clipped to [0, 1]; nan without a degree of
    freedom within groups or without variance."""
    values = np.asarray(values, dtype=float)
    labels, inverse = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    k, n = len(labels), len(values)
    ss_total = float(((values - values.mean()) ** 2).sum())
    if k < 2 or n - k < 1 or ss_total <= 0:
        return float("nan")
    means = np.bincount(inverse, weights=values) / np.bincount(inverse)
    counts = np.bincount(inverse)
    ss_between = float((counts * (means - values.mean()) ** 2).sum())
    ms_within = (ss_total - ss_between) / (n - k)
    return float(min(1.0, max(0.0, (ss_between - (k - 1) * ms_within) / ss_total)))


def param_importances(exp: Experiment) -> tuple[list[Importance], str]:
    """(importances, most important first; a note saying how they were computed, or why not)."""
    ok = exp.ok
    if exp.metric is None or ok.empty:
        return [], "no finished trials yet"
    values = _numeric(ok, exp.metric)
    keep = np.isfinite(values.to_numpy())
    ok, values = ok[keep], values[keep]
    if len(ok) < 3:
        return [], (f"needs at least 3 finished trials with {exp.metric} (two groups and a "
                    f"degree of freedom within them); there are {len(ok)}")
    if float(np.ptp(values.to_numpy())) == 0.0:
        return [], f"every finished trial has the same {exp.metric}: nothing to explain"
    out, constant = [], []
    for key in exp.searched:
        col = ok[f"config/{key}"]
        if col.astype(str).nunique() < 2:
            constant.append(key)
            continue
        groups, how = _groups(col)
        out.append(Importance(key, epsilon_squared(values.to_numpy(), groups.to_numpy()),
                              int(pd.Series(groups).nunique()), how))
    out.sort(key=lambda imp: -imp.value if np.isfinite(imp.value) else 1.0)
    note = IMPORTANCE_METHOD.format(metric=exp.metric, levels=IMPORTANCE_MAX_LEVELS,
                                    bins=IMPORTANCE_BINS) + f" {len(ok)} finished trials."
    if constant:
        note += f" The same in every finished trial, not scored: {', '.join(constant)}."
    if not out:
        return [], "no searched key varies between the finished trials" + (
            f" (the same in all: {', '.join(constant)})" if constant else "")
    return out, note


# ----------------------------------------------------------------------------- trials

@dataclass
class TrialInfo:
    trial_id: str
    labels: dict[str, str]
    value: float | None
    progress: float | None
    checkpoint: Path | None
    pngs: list[Path]


def _checkpoint_dir(row: pd.Series) -> Path | None:
    raw = row.get("checkpoint_path")
    if not isinstance(raw, str) or not raw:
        return None
    return Path(raw)


def find_pngs(exp: Experiment, trial_id: str, checkpoint: Path | None, limit: int = 6) -> list[Path]:
    """PNG renders of a trial: in its checkpoint folder (and one level below) and its trial folder."""
    found: list[Path] = []
    places = [(checkpoint, ("*.png", "*/*.png"))] if checkpoint else []
    places.append((exp.path / f"trial_{trial_id}", ("*.png",)))
    for folder, patterns in places:
        if not folder.is_dir():
            continue
        for pattern in patterns:
            found += sorted(folder.glob(pattern))
    return list(dict.fromkeys(found))[:limit]


def best_trials(exp: Experiment, k: int = 5) -> list[TrialInfo]:
    """The ``k`` best finished trials by their final metric (the study's mode)."""
    ok = exp.ok
    if ok.empty or exp.metric is None:
        return []
    values = _numeric(ok, exp.metric)
    order = values.dropna().sort_values(ascending=not exp.higher_is_better).index[:k]
    progress = _numeric(ok, exp.progress) if exp.progress else _numeric(ok, "iterations")
    out = []
    for i in order:
        row = ok.loc[i]
        ckpt = _checkpoint_dir(row)
        p = progress.loc[i]
        out.append(TrialInfo(trial_id=str(row["trial_id"]),
                             labels={g: label(row[f"config/{g}"]) for g in exp.group_by},
                             value=float(values.loc[i]),
                             progress=None if not np.isfinite(p) else float(p),
                             checkpoint=ckpt, pngs=find_pngs(exp, str(row["trial_id"]), ckpt)))
    return out


@dataclass
class Failure:
    trial_id: str
    labels: dict[str, str]
    error_file: Path | None
    text: str
    cut: int
    """Bytes of the error file left out (its beginning)."""


def error_path(exp: Experiment, row: pd.Series) -> Path | None:
    """The trial's error file: the ``error_file`` column, else Tune's trial_<id>/error.txt."""
    raw = row.get("error_file")
    if isinstance(raw, str) and raw:
        return Path(raw)
    guess = exp.path / f"trial_{row['trial_id']}" / "error.txt"
    return guess if guess.is_file() else None


def _tail(path: Path, chars: int) -> tuple[str, int]:
    """The last ``chars`` characters of a file and how many bytes before them were left out."""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 4 * chars))
        text = fh.read().decode("utf-8", errors="replace")[-chars:]
    return text, max(0, size - len(text.encode("utf-8", errors="replace")))


def failures(exp: Experiment) -> list[Failure]:
    out = []
    for _, row in exp.failed.iterrows():
        path = error_path(exp, row)
        if path is None:
            text, cut = "(no error file: see the sweep's console output)", 0
        elif not path.is_file():
            text, cut = f"(the error file {path} is gone)", 0
        else:
            text, cut = _tail(path, ERROR_CHARS)
        out.append(Failure(trial_id=str(row["trial_id"]),
                           labels={g: label(row[f"config/{g}"]) for g in exp.group_by
                                   if f"config/{g}" in row.index},
                           error_file=path, text=text, cut=cut))
    return out


def allowed_roots(exp: Experiment) -> list[Path]:
    """Folders and files of an experiment the server may hand out: the experiment folder, each
    trial's checkpoint folder and error file."""
    roots = [exp.path.resolve()]
    if not exp.results.empty:
        for _, row in exp.results.iterrows():
            ckpt = _checkpoint_dir(row)
            if ckpt is not None:
                roots.append(ckpt.resolve())
            if row.get("status") == "ERROR":
                err = error_path(exp, row)
                if err is not None:
                    roots.append(err.resolve())
    return roots

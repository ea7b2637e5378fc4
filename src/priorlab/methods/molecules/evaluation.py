"""Scoring molecular property predictions: AUROC with intervals, floors, run summaries (Sec. 5.4).

Table 5.1 reports test AUROC of the MLP head (0.850 for ChemBERTa, 0.877 with MiDi features
added) without an interval. Here every number comes with one, and a difference between two
feature sets is judged on matched runs:

* :func:`auroc`: mean over tasks of sklearn's ROC AUC, each task on its labelled rows only
  (nan = missing label); tasks with a single class are left out (nan if none is left).
* :func:`bootstrap_auroc`: percentile 95% interval over molecules (rows resampled).
* :func:`random_forest_floor`: what a random forest on the same features (ECFP4 usually) gets.
* :func:`summarise_runs`: mean ± 95% t-interval over (split seed, head seed) runs.
* :func:`paired_difference`: B - A over runs matched by seeds, e.g. whether ``ecfp+midi``
  beats ``ecfp`` by more than its interval.
* :func:`rmse`, :func:`r2`: the same masking for regression tasks.

    point, lo, hi = bootstrap_auroc(Y_te, probs, n_boot=1000, seed=0)
    runs = [{"split_seed": s, "head_seed": h, "test/auroc": a} for ...]
    summarise_runs(runs).text()                      # "0.812 ± 0.021 (n=6)"
    paired_difference(ecfp_runs, midi_runs, a="ecfp", b="ecfp+midi").text()
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from priorlab.platform.stats import Interval, PairedEffect, mean_ci95

DEFAULT_METRIC = "test/auroc"
DEFAULT_MATCH = ("split_seed", "head_seed")


def _as_2d(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    y = y[:, None] if y.ndim == 1 else y
    p = p[:, None] if p.ndim == 1 else p
    if y.ndim != 2 or y.shape != p.shape:
        raise ValueError(f"labels {np.shape(y_true)} and predictions {np.shape(y_pred)} do not "
                         "match; give (n,) or (n, n_tasks) for both, rows in the same order")
    unscored = np.flatnonzero((~np.isnan(y) & ~np.isfinite(p)).any(axis=1))
    if unscored.size:
        raise ValueError(f"predictions are nan/inf for labelled rows {unscored[:10].tolist()} "
                         f"({unscored.size} rows); score every labelled molecule")
    return y, p


def tasks_with_both_classes(y_true: Any) -> np.ndarray:
    """(n_tasks,) bool: tasks whose labelled rows hold both 0 and 1 (AUROC defined)."""
    y = np.asarray(y_true, dtype=float)
    y = y[:, None] if y.ndim == 1 else y
    return np.array([(col == 1).any() and (col == 0).any() for col in y.T], dtype=bool)


def auroc_per_task(y_true: Any, y_score: Any) -> np.ndarray:
    """(n_tasks,) AUROC of each task on its labelled rows; nan where a task has one class."""
    from sklearn.metrics import roc_auc_score

    y, p = _as_2d(y_true, y_score)
    out = np.full(y.shape[1], np.nan)
    for t, ok in enumerate(tasks_with_both_classes(y)):
        if ok:
            lab = ~np.isnan(y[:, t])
            out[t] = roc_auc_score(y[lab, t], p[lab, t])
    return out


def auroc(y_true: Any, y_score: Any) -> float:
    """Mean AUROC over the tasks with both classes among their labelled rows (nan if none)."""
    per_task = auroc_per_task(y_true, y_score)
    defined = per_task[np.isfinite(per_task)]
    return float(defined.mean()) if defined.size else math.nan


def _auroc_resamples(y: np.ndarray, p: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """(B, n_tasks) AUROC of the resamples ``idx`` (B, n) by the rank-sum (Mann-Whitney) form
    with mid-ranks for ties, which equals sklearn's value; nan where a task lost a class."""
    from scipy.stats import rankdata

    out = np.full((idx.shape[0], y.shape[1]), np.nan)
    for t in range(y.shape[1]):
        yt, pt = y[idx, t], p[idx, t]                                          # (B, n)
        lab = ~np.isnan(yt)
        pos = lab & (yt == 1)
        # Unlabelled rows rank above every labelled one, so they do not move labelled ranks.
        ranks = rankdata(np.where(lab, pt, np.inf), axis=1)
        n1 = pos.sum(axis=1)
        n0 = lab.sum(axis=1) - n1
        u = (ranks * pos).sum(axis=1) - n1 * (n1 + 1) / 2.0
        ok = (n1 > 0) & (n0 > 0)
        out[ok, t] = u[ok] / (n1[ok] * n0[ok])
    return out


def bootstrap_auroc(y_true: Any, y_score: Any, *, n_boot: int = 1000,
                    seed: int = 0) -> tuple[float, float, float]:
    """(AUROC, 2.5th, 97.5th percentile) over ``n_boot`` resamples of the rows (molecules).

    A resample in which a task that has both classes in the full data loses one is skipped
    (so every kept resample averages the same tasks). Deterministic per ``seed``.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot={n_boot}: use >= 1 (1000 is usual)")
    y, p = _as_2d(y_true, y_score)
    point = auroc(y, p)
    if math.isnan(point):
        raise ValueError("AUROC is undefined: no task has both classes among its labelled rows")
    defined = tasks_with_both_classes(y)
    y, p = y[:, defined], p[:, defined]
    rng = np.random.default_rng(seed)
    values = []
    chunk = max(1, 2_000_000 // max(len(y), 1))  # bounds the (B, n) working arrays
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, len(y), size=(min(chunk, n_boot - start), len(y)))
        per = _auroc_resamples(y, p, idx)
        keep = np.isfinite(per).all(axis=1)
        values.append(per[keep].mean(axis=1))
    values = np.concatenate(values)
    if values.size < max(1, n_boot // 2):  # more dropped than kept: the interval would be biased
        raise ValueError(f"only {values.size} of {n_boot} resamples kept both classes of every "
                         "task: too few positives or negatives for a bootstrap interval")
    lo, hi = np.percentile(values, [2.5, 97.5])
    return point, float(lo), float(hi)


def random_forest_floor(X_tr: Any, y_tr: Any, X_te: Any, y_te: Any, seed: int = 0,
                        n_estimators: int = 500) -> float:
    """Test AUROC of a random forest per task (sklearn, n_jobs=1) trained on the labelled rows.

    A task whose training rows hold one class gets that class's constant score (AUROC 0.5
    where its test rows have both), the honest floor of a model that saw no contrast.
    """
    from sklearn.ensemble import RandomForestClassifier

    X_tr, X_te = np.asarray(X_tr, dtype=np.float32), np.asarray(X_te, dtype=np.float32)
    for name, X in (("X_tr", X_tr), ("X_te", X_te)):
        bad = np.flatnonzero(~np.isfinite(X).all(axis=1)) if X.ndim == 2 else None
        if bad is None:
            raise ValueError(f"{name} has shape {X.shape}; expected (n_molecules, n_features)")
        if bad.size:
            raise ValueError(f"{name} has nan/inf in rows {bad[:10].tolist()}: drop molecules "
                             "that failed featurisation first")
    y_tr = np.asarray(y_tr, dtype=float)
    y_tr = y_tr[:, None] if y_tr.ndim == 1 else y_tr
    y_te = np.asarray(y_te, dtype=float)
    y_te = y_te[:, None] if y_te.ndim == 1 else y_te
    if len(y_tr) != len(X_tr) or len(y_te) != len(X_te) or y_tr.shape[1] != y_te.shape[1]:
        raise ValueError(f"shapes disagree: X_tr {X_tr.shape}, y_tr {y_tr.shape}, X_te "
                         f"{X_te.shape}, y_te {y_te.shape}")
    scores = np.zeros(y_te.shape, dtype=float)
    for t in range(y_tr.shape[1]):
        lab = ~np.isnan(y_tr[:, t])
        classes = np.unique(y_tr[lab, t])
        if len(classes) < 2:
            scores[:, t] = classes[0] if len(classes) else 0.5
            continue
        forest = RandomForestClassifier(n_estimators=n_estimators, n_jobs=1, random_state=seed)
        forest.fit(X_tr[lab], y_tr[lab, t].astype(int))
        scores[:, t] = forest.predict_proba(X_te)[:, list(forest.classes_).index(1)]
    return auroc(y_te, scores)


# ----------------------------------------------------------------------------- over runs

def _values(rows: Sequence[Any], metric: str) -> list[float]:
    return [float(r[metric]) if isinstance(r, Mapping) else float(r) for r in rows]


def summarise_runs(rows: Sequence[Any], *, metric: str = DEFAULT_METRIC,
                   group: str | None = None) -> Interval:
    """Mean ± 95% t half-width over runs and their number n (``Interval``; ``.text()`` prints it).

    ``rows`` are numbers or mappings holding ``metric``. Runs of several head seeds on one split
    share its test molecules, so the interval over all runs understates split-to-split spread;
    ``group="split_seed"`` averages each split's runs first and takes the interval over splits.
    """
    if group is None:
        return mean_ci95(_values(rows, metric))
    by: dict[Any, list[float]] = {}
    for r in rows:
        if not isinstance(r, Mapping) or group not in r:
            raise ValueError(f"group={group!r} needs rows that are mappings holding {group!r}")
        by.setdefault(r[group], []).append(float(r[metric]))
    return mean_ci95(float(np.nanmean(v)) for v in by.values())


def paired_difference(a_rows: Sequence[Any], b_rows: Sequence[Any], *, a: str = "a",
                      b: str = "b", metric: str = DEFAULT_METRIC,
                      match: Sequence[str] = DEFAULT_MATCH) -> PairedEffect:
    """B minus A over matched runs: ``.interval`` (mean ± 95% t half-width, n), ``.text()``.

    Rows that are mappings are matched on the ``match`` keys (split seed, head seed by
    default); runs without a partner are left out and counted in ``.unmatched``. Plain numbers
    are matched by position (equal lengths required). B is clearly above A when
    ``.interval.low > 0``.
    """
    if all(isinstance(r, Mapping) for r in list(a_rows) + list(b_rows)):
        def keyed(rows: Sequence[Mapping], side: str) -> dict[tuple, float]:
            out: dict[tuple, float] = {}
            for r in rows:
                missing = [k for k in match if k not in r]
                if missing or metric not in r:
                    raise KeyError(f"a run of {side} lacks {missing or [metric]}; rows need "
                                   f"{list(match)} and {metric!r}")
                key = tuple(r[k] for k in match)
                if key in out:
                    raise ValueError(f"two runs of {side} share {dict(zip(match, key))}: pairs "
                                     "are ambiguous; pass match= with the keys that tell them apart")
                out[key] = float(r[metric])
            return out

        ka, kb = keyed(a_rows, a), keyed(b_rows, b)
        common = [k for k in ka if k in kb]
        diffs = [kb[k] - ka[k] for k in common if math.isfinite(kb[k] - ka[k])]
        unmatched = len(ka) + len(kb) - 2 * len(common)
    else:
        va, vb = _values(a_rows, metric), _values(b_rows, metric)
        if len(va) != len(vb):
            raise ValueError(f"{len(va)} runs of {a} and {len(vb)} of {b}: plain numbers are "
                             "paired by position; give mappings with seeds to match on")
        diffs = [y - x for x, y in zip(va, vb) if math.isfinite(y - x)]
        unmatched = 0
    if not diffs:
        raise ValueError(f"no matched runs between {a} and {b} on {list(match)}")
    return PairedEffect(factor="feature_set", a=a, b=b, metric=metric, diffs=tuple(diffs),
                        unmatched=unmatched)


# ----------------------------------------------------------------------------- regression

def _masked_columns(y_true: Any, y_pred: Any):
    y, p = _as_2d(y_true, y_pred)
    for t in range(y.shape[1]):
        lab = ~np.isnan(y[:, t])
        if lab.any():
            yield y[lab, t], p[lab, t]


def rmse(y_true: Any, y_pred: Any) -> float:
    """Root mean squared error per task on its labelled rows, averaged over tasks."""
    vals = [math.sqrt(float(np.mean((yt - pt) ** 2))) for yt, pt in _masked_columns(y_true, y_pred)]
    return float(np.mean(vals)) if vals else math.nan


def r2(y_true: Any, y_pred: Any) -> float:
    """Coefficient of determination per task (1 - SS_res / SS_tot), averaged over tasks with
    a non-constant target."""
    vals = []
    for yt, pt in _masked_columns(y_true, y_pred):
        ss_tot = float(((yt - yt.mean()) ** 2).sum())
        if ss_tot > 0:
            vals.append(1.0 - float(((yt - pt) ** 2).sum()) / ss_tot)
    return float(np.mean(vals)) if vals else math.nan

"""The evaluation protocol of Table 5.1: a feature set -> MLP head -> test AUROC, over scaffold
splits x head seeds, with bootstrap and t intervals (thesis Sec. 5.3.4, 5.4).

For one ``FeaturesConfig``:

1. the MoleculeNet table is loaded (``data.molecules.load_moleculenet``; unparseable rows are
   counted with their row numbers, never dropped silently);
2. every part of the feature set is computed or read from its cache (``featurize``); a molecule
   that any part cannot featurise (no conformer, an element the diffusion model never saw) is
   left out of *every* run of this config and counted (``data/n_excluded``), with its reasons;
3. for each split seed (``seed * n_splits ...``: trials with the same ``seed`` share their splits,
   so feature sets are compared on the same molecules; balanced Bemis-Murcko scaffold split 80/10/10, or random, or the file's
   own split) and head seed, the head is trained on train, early-stopped on valid, scored on test;
4. reported: ``test/auroc`` (mean over runs), ``test/auroc_ci95`` (95% t half-width over runs),
   ``test/auroc_lo``/``_hi`` (95% bootstrap percentile interval of the mean: test molecules
   resampled within every run), ``valid/auroc`` (what a sweep may select on: test is never used
   to choose), the same numbers of a random forest on ECFP4 (``floor/``) on the very same splits,
   and per-run values ``test/auroc_run<i>`` so paired differences between feature sets can be
   taken in the report.

    result = run_protocol(FeaturesConfig(feature_set="ecfp"), data_root)
    result.metrics["test/auroc"]
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from priorlab.methods.molecules.config import FeaturesConfig


@dataclass
class ProtocolResult:
    metrics: dict[str, float]
    scorer: Any
    """The head of the first run (split 0, head seed 0) with its feature extractor: what
    ``priorlab score`` loads."""
    excluded: list[tuple[str, str]] = field(default_factory=list)
    """(SMILES, reason) of molecules without every feature."""
    parse_failures: list = field(default_factory=list)


def head_config(cfg: FeaturesConfig, seed: int):
    from priorlab.methods.molecules.head import HeadConfig

    return HeadConfig(hidden=(cfg.hidden, cfg.hidden), dropout=cfg.dropout, lr=cfg.lr,
                      weight_decay=cfg.weight_decay, epochs=cfg.epochs, patience=cfg.patience,
                      batch_size=cfg.batch_size, seed=seed)


def split_indices(cfg: FeaturesConfig, smiles: list[str], predefined, split_seed: int):
    from priorlab.data.molecules import random_split, scaffold_split

    if cfg.split == "scaffold":
        return scaffold_split(smiles, split_seed)
    if cfg.split == "random":
        return random_split(len(smiles), split_seed)
    if predefined is None:
        raise ValueError(f"split=predefined: {cfg.dataset} has no split column; use split=scaffold")
    predefined = np.asarray(predefined)
    return tuple(np.flatnonzero(predefined == part) for part in ("train", "valid", "test"))


def kept_split(cfg: FeaturesConfig, table, keep: np.ndarray, split_seed: int):
    """(train, valid, test) row indices of ``table`` for ``split_seed``: the split is drawn on the
    whole table, then the rows ``keep`` leaves out (molecules a feature set cannot featurise) leave
    their parts, so every feature set of a seed sees the same splits and their runs pair."""
    parts = split_indices(cfg, table.smiles, table.predefined_split, split_seed)
    return tuple(p[keep[p]] for p in map(np.asarray, parts))


def hierarchical_bootstrap(runs: list[tuple[np.ndarray, np.ndarray]], n_boot: int, seed: int):
    """95% percentile interval of the mean test AUROC over runs, resampling each run's test
    molecules (resamples with a single class are redrawn)."""
    from priorlab.methods.molecules.evaluation import auroc

    rng = np.random.default_rng(seed)
    means = []
    for _ in range(n_boot):
        values = []
        for y, p in runs:
            for _try in range(20):
                idx = rng.integers(0, len(y), len(y))
                value = auroc(y[idx], p[idx])
                if not math.isnan(value):
                    values.append(value)
                    break
        if values:
            means.append(float(np.mean(values)))
    if not means:
        return math.nan, math.nan
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def run_protocol(cfg: FeaturesConfig, data_root, *, progress: bool = True) -> ProtocolResult:
    from priorlab.data.molecules import load_moleculenet
    from priorlab.methods.molecules.evaluation import auroc, random_forest_floor
    from priorlab.methods.molecules.featurize import FeatureSetExtractor
    from priorlab.methods.molecules.fingerprints import ecfp
    from priorlab.methods.molecules.head import predict, train_head
    from priorlab.platform.stats import mean_ci95

    table = load_moleculenet(cfg.dataset, data_root)
    if table.task_type != "classification":
        raise ValueError(f"{cfg.dataset} is a regression set; the AUROC protocol needs a "
                         "classification set (bace, bbbp, clintox, tox21, sider, hiv)")
    extractor = FeatureSetExtractor.from_config(cfg, data_root)
    X, errors = extractor.transform(table.smiles, data_root=data_root, progress=progress)
    keep = np.array([i not in errors for i in range(len(table.smiles))], dtype=bool)
    excluded = [(table.smiles[i], errors[i]) for i in sorted(errors)]
    smiles = [s for s, k in zip(table.smiles, keep) if k]
    X, Y = X[keep], table.labels[keep]
    position = np.cumsum(keep) - 1          # table row -> row of the kept molecules
    fp, fp_errors = ecfp(smiles, radius=2, n_bits=2048)
    if fp_errors:  # the same RDKit parse as above: cannot fail for kept molecules
        raise RuntimeError(f"ECFP failed for kept molecules: {fp_errors}")

    n_splits = 1 if cfg.split == "predefined" else cfg.n_splits
    runs, floor_runs, valid_scores = [], [], []
    metrics: dict[str, float] = {}
    scorer = None
    for split_seed in range(cfg.seed * n_splits, (cfg.seed + 1) * n_splits):
        tr, va, te = (position[p] for p in kept_split(cfg, table, keep, split_seed))
        floor = random_forest_floor(fp[tr], Y[tr], fp[te], Y[te], seed=split_seed)
        floor_runs.append(floor)
        for head_seed in range(cfg.seed * cfg.n_head_seeds, (cfg.seed + 1) * cfg.n_head_seeds):
            head, _history = train_head(X[tr], Y[tr], X[va], Y[va], head_config(cfg, head_seed),
                                        table.task_type)
            p_te, p_va = predict(head, X[te]), predict(head, X[va])
            score = auroc(Y[te], p_te)
            i = len(runs)
            runs.append((Y[te], p_te, score))
            valid_scores.append(auroc(Y[va], p_va))
            metrics[f"test/auroc_run{i}"] = score
            if progress:
                print(f"[priorlab] {cfg.feature_set} split {split_seed} head {head_seed}: test AUROC "
                      f"{score:.3f} (ECFP random forest {floor:.3f})", file=sys.stderr, flush=True)
            if scorer is None:
                scorer = extractor.scorer(head, cfg, table.task_names)
    test = mean_ci95(r[2] for r in runs)
    lo, hi = hierarchical_bootstrap([(r[0], r[1]) for r in runs], cfg.n_boot, cfg.seed)
    fl = mean_ci95(floor_runs)
    metrics.update({
        "test/auroc": test.mean, "test/auroc_ci95": test.half_width if test.n > 1 else math.nan,
        "test/auroc_lo": lo, "test/auroc_hi": hi,
        "valid/auroc": float(np.nanmean(valid_scores)),
        "floor/auroc": fl.mean, "floor/auroc_ci95": fl.half_width if fl.n > 1 else math.nan,
        "data/n_molecules": float(len(table.smiles)), "data/n_excluded": float(len(excluded)),
        "data/n_parse_failures": float(len(table.failures)), "data/feature_dim": float(X.shape[1]),
        "runs": float(len(runs)), "step": float(n_splits),
    })
    return ProtocolResult(metrics=metrics, scorer=scorer, excluded=excluded,
                          parse_failures=list(table.failures))

"""Study `hyper-design`: hypernetwork design choices as one ablation (thesis Tables 3.1-3.5).

A full grid over the sharing scheme (global / stage / unshared, Sec. 3.3), the hypernetwork
bias (Table 3.1), the l2 penalty on generated weights (0 vs 6.25e-5, Table 3.2) and SWA
(Table 3.5): 24 trials. CIFAR is not on the project's machines, so the default budget
classifies Omniglot characters (100 character x rotation classes of the Vinyals train split,
15 drawings to train, 5 to test) with a small HyperWRN-10-1 for a few epochs; on a GPU
machine pass `dataset=cifar10 arch=wrn wrn_depth=28 wrn_widen=4 epochs=200 ...`.

    priorlab sweep hyper-design [key=value ...]
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from ray import tune

from priorlab.methods.configuration import config_from_dict
from priorlab.methods.hyper.config import HyperConfig
from priorlab.platform.report import ReportTable
from priorlab.platform.stats import paired_effect
from priorlab.search_spaces.base import Study, fifo_scheduler, grid_searcher
from priorlab.trainables.hyper import train_driver_fn


def space(fixed: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "sharing": tune.grid_search(["global", "stage", "unshared"]),
        "bias": tune.grid_search([False, True]),
        "lambda_output_l2": tune.grid_search([0.0, 6.25e-5]),
        "swa": tune.grid_search([False, True]),
    }


def prepare_data(data_root, fixed: dict[str, Any]) -> None:
    from priorlab.trainables.hyper import load_arrays

    load_arrays(config_from_dict(HyperConfig, fixed), str(data_root))  # fails fast, warms caches


FACTORS = (  # (column, title, level name)
    ("config/bias", "Hypernetwork bias (cf. Table 3.1)", lambda v: "W Bias" if bool(v) else "W/O Bias"),
    ("config/lambda_output_l2", "l2 on generated weights (cf. Table 3.2)", lambda v: f"l2 = {v:g}"),
    ("config/swa", "SWA (cf. Table 3.5)", lambda v: "SWA" if bool(v) else "no SWA"),
)
PAIRED = ("mean of paired differences between trials equal in every other setting and the seed, "
          "± 95% t-interval over the pairs (n - 1 dof)")


def _levels(df: pd.DataFrame, column: str) -> list:
    return sorted(df[column].dropna().unique(), key=lambda v: (str(type(v)), v))


def _mean_n(values: pd.Series) -> str:
    v = values.dropna()
    return f"{v.mean():.3f} (n={len(v)})" if len(v) else "-"


def tables(df: pd.DataFrame, fixed: dict[str, Any]) -> list[ReportTable]:
    """Tables 3.1 (bias), 3.2 (output l2) and 3.5 (SWA), and the sharing schemes (Tables 3.3/3.4):
    a factor's effect is the paired difference between trials that differ in that factor only
    (same other factors, same seed), per sharing scheme and over all of them."""
    metric = "eval/acc"
    if metric not in df or "config/sharing" not in df:
        return []
    out = []
    schemes = _levels(df, "config/sharing")
    for key, title, name in FACTORS:
        if key not in df or df[key].nunique() != 2:
            continue
        a, b = _levels(df, key)
        na, nb = name(a), name(b)
        cells = {}
        for label, part in [(str(s), df[df["config/sharing"] == s]) for s in schemes] + [("all", df)]:
            effect = paired_effect(part, key, a, b, metric)
            cells[label] = {na: _mean_n(part[part[key] == a][metric]),
                            nb: _mean_n(part[part[key] == b][metric]),
                            f"{nb} - {na}": effect.text(names=(na, nb))}
        out.append(ReportTable(
            title=f"{title}: test accuracy. {na} / {nb}: mean over the trials at that level (n; no ±: "
                  f"the trials differ in the other factors). {nb} - {na}: {PAIRED}",
            frame=pd.DataFrame.from_dict(cells, orient="index").rename_axis("sharing")))
    if len(schemes) > 1:
        rows = {}
        for i, a in enumerate(schemes):
            for b in schemes[i + 1:]:
                rows[f"{b} - {a}"] = paired_effect(df, "config/sharing", a, b, metric).text(names=(a, b))
        means = ", ".join(f"{s} {_mean_n(df[df['config/sharing'] == s][metric])}" for s in schemes)
        out.append(ReportTable(
            title=f"Sharing scheme (cf. Tables 3.3/3.4): test accuracy, {PAIRED}. Means over all "
                  f"trials: {means}",
            frame=pd.DataFrame({"paired difference": list(rows.values())},
                               index=pd.Index(list(rows), name="sharing"))))
    return out


STUDY = Study(
    name="hyper-design",
    description="HyperWRN design ablation: sharing x bias x output-L2 x SWA (Tables 3.1-3.5)",
    method="hyper",
    config_cls=HyperConfig,
    trainable=train_driver_fn,
    budget=dict(dataset="omniglot", num_classes=100, in_channels=1, arch="wrn", wrn_depth=10,
                wrn_widen=1, epochs=4, lr_milestones=[2, 3], batch_size=64, swa_start_epoch=2,
                swa_lr=0.02),
    space=space,
    metric="eval/acc",
    mode="max",
    group_by=("sharing", "bias", "lambda_output_l2", "swa"),
    curve=lambda config: {0.0: "eval/acc"},
    curve_label="(final test accuracy)",
    make_searcher=grid_searcher,
    make_scheduler=fifo_scheduler,
    reports_per_trial=lambda fixed: int(fixed["epochs"]),
    prepare_data=prepare_data,
    default_samples=1,
    iters_key="epochs",
    tables=tables,
    progress_metric="epoch",
    chance=lambda config: 1.0 / int(config.get("num_classes") or HyperConfig().num_classes),
)

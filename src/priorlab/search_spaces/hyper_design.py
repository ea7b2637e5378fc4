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
from priorlab.platform.report import ReportTable, thesis_table
from priorlab.search_spaces.base import Study, fifo_scheduler, grid_searcher
from priorlab.trainables.hyper import train_driver_fn


def space() -> dict[str, Any]:
    return {
        "sharing": tune.grid_search(["global", "stage", "unshared"]),
        "bias": tune.grid_search([False, True]),
        "lambda_output_l2": tune.grid_search([0.0, 6.25e-5]),
        "swa": tune.grid_search([False, True]),
    }


def prepare_data(data_root, fixed: dict[str, Any]) -> None:
    from priorlab.trainables.hyper import load_arrays

    load_arrays(config_from_dict(HyperConfig, fixed), str(data_root))  # fails fast, warms caches


def tables(df: pd.DataFrame, fixed: dict[str, Any]) -> list[ReportTable]:
    """Tables 3.1 (bias), 3.2 (output l2) and 3.5 (SWA): rows = sharing scheme, columns = the
    choice; each cell averages over the other swept factors (n says how many trials)."""
    out = []
    for key, title, names in (
        ("config/bias", "Hypernetwork bias (cf. Table 3.1)", {True: "W Bias", False: "W/O Bias"}),
        ("config/lambda_output_l2", "l2 on generated weights (cf. Table 3.2)",
         None),
        ("config/swa", "SWA (cf. Table 3.5)", {True: "SWA", False: "no SWA"}),
    ):
        if key in df and df[key].nunique() > 1 and "config/sharing" in df:
            out.append(thesis_table(
                df, "config/sharing", key, "eval/acc",
                col_name=(lambda v, names=names: names[bool(v)]) if names else (lambda v: f"l2 = {v:g}"),
                title=f"{title}: test accuracy, mean ± 95% CI over the other factors (n)"))
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
)

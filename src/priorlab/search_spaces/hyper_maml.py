"""Study `hyper-maml`: HyperResNet vs ResNet under MAML, same- and cross-domain (Tables 3.6/3.7).

A grid over the model (hypernetwork-generated or the plain twin), the shot (5-way 1- and
5-shot) and three seeds: 12 trials. Every trial is evaluated on the held-out classes of its
meta-training data set (same domain, Table 3.6's setting) and on another data set (cross
domain, Table 3.7's setting). The default budget is the CPU-scale analogue the project can run
here: pre-train and meta-train a small HyperResNet-12 / ResNet-12 on Omniglot (Vinyals train
split), meta-test on the Omniglot test split and on scikit-learn's handwritten digits. On a GPU
machine the thesis setting is e.g.::

    priorlab sweep hyper-maml meta_train=fc100 cross_domain=miniimagenet image_size=32 \\
        arch=wrn wrn_depth=28 wrn_widen=4 widths=null pretrain_steps=20000 meta_iters=10000 ...

`priorlab report` lays the results out as Tables 3.6 and 3.7 (mean and 95% interval over
seeds) and plots the cross-domain validation curves (Fig. 3.6) and the inner-loop movement of
Fig. 3.5.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from ray import tune

from priorlab.methods.configuration import config_from_dict
from priorlab.methods.hyper.meta import TEST_SPLIT, TRAIN_SPLIT, MetaConfig, load_classes
from priorlab.platform.report import ReportTable, thesis_table
from priorlab.search_spaces.base import Study, fifo_scheduler, grid_searcher
from priorlab.trainables.hyper_maml import train_driver_fn

ARCH_NAMES = {"resnet12": "ResNet-12", "resnet18": "ResNet-18"}


def space() -> dict[str, Any]:
    return {
        "hyper": tune.grid_search([True, False]),
        "k_shot": tune.grid_search([1, 5]),
        "seed": tune.grid_search([0, 1, 2]),
    }


def prepare_data(data_root, fixed: dict[str, Any]) -> None:
    """Fail fast on missing data (and decode caches once, in the driver)."""
    cfg = config_from_dict(MetaConfig, fixed)
    load_classes(data_root, cfg.meta_train, TRAIN_SPLIT[cfg.meta_train], cfg.image_size)
    if cfg.cross_domain:
        load_classes(data_root, cfg.cross_domain, TEST_SPLIT[cfg.cross_domain], cfg.image_size)


def model_name(row: pd.Series) -> str:
    arch = row.get("config/arch", "resnet12")
    if arch == "wrn":
        base = f"WRN-{int(row.get('config/wrn_depth', 16))}-{int(row.get('config/wrn_widen', 4))}"
    else:
        base = ARCH_NAMES.get(arch, arch)
    return ("Hyper" if bool(row.get("config/hyper", True)) else "") + base


def tables(df: pd.DataFrame, fixed: dict[str, Any]) -> list[ReportTable]:
    cfg = config_from_dict(MetaConfig, {k: v for k, v in fixed.items()
                                        if k in MetaConfig.__dataclass_fields__})
    df = df.assign(model=df.apply(model_name, axis=1))
    col = lambda k: f"{int(k)}-shot {cfg.n_way}-way"  # noqa: E731
    out = []
    if "eval/same/acc" in df:
        out.append(thesis_table(
            df, "model", "config/k_shot", "eval/same/acc", col_name=col,
            title=f"Same domain (cf. Table 3.6): meta-train and meta-test on {cfg.meta_train} "
                  f"(test classes); query accuracy, mean ± 95% CI over seeds (n)"))
    if "eval/cross/acc" in df:
        out.append(thesis_table(
            df, "model", "config/k_shot", "eval/cross/acc", col_name=col,
            title=f"Cross domain (cf. Table 3.7): meta-train on {cfg.meta_train}, meta-test on "
                  f"{cfg.cross_domain}; query accuracy, mean ± 95% CI over seeds (n)"))
    moves = [c for c in ("diag/movement_early", "diag/movement_mid", "diag/movement_late") if c in df]
    if moves:
        long = df.melt(id_vars=["model"], value_vars=moves, var_name="depth", value_name="movement")
        long["depth"] = long["depth"].str.replace("diag/movement_", "", regex=False)
        out.append(thesis_table(
            long, "model", "depth", "movement", ci=False,
            col_order=["early", "mid", "late"],
            title="Inner-loop movement (cf. Fig. 3.5): mean |W_adapted - W| per conv weight, "
                  "generated weights for Hyper models, at the last evaluation"))
    return out


STUDY = Study(
    name="hyper-maml",
    description="HyperResNet vs ResNet under MAML, same- and cross-domain (Tables 3.6/3.7)",
    method="hyper-maml",
    config_cls=MetaConfig,
    trainable=train_driver_fn,
    budget=dict(meta_train="omniglot", cross_domain="digits", arch="resnet12",
                widths=[16, 16, 32, 32], pretrain_steps=150, pretrain_classes=200,
                meta_iters=60, eval_every=30, eval_tasks=50),
    space=space,
    metric="eval/cross/acc",
    mode="max",
    group_by=("hyper", "k_shot"),
    curve=lambda config: {0.0: "eval/same/acc", 1.0: "eval/cross/acc"},
    curve_label="evaluation (0 = same domain, 1 = cross domain)",
    make_searcher=grid_searcher,
    make_scheduler=fifo_scheduler,
    reports_per_trial=lambda fixed: 1 + int(fixed["meta_iters"]) // int(fixed["eval_every"])
    + (1 if int(fixed["meta_iters"]) % int(fixed["eval_every"]) else 0),
    prepare_data=prepare_data,
    default_samples=1,
    iters_key="meta_iters",
    tables=tables,
    history_curve=("iteration", "eval/cross/acc"),
)

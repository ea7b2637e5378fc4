"""Study `hyper-maml`: HyperResNet vs ResNet under MAML, same- and cross-domain (Tables 3.6/3.7).

A grid over the model (hypernetwork-generated or the plain twin), the shot (5-way 1- and
5-shot) and three seeds: 12 trials. During training every trial is evaluated on the validation
classes of its meta-training data set: the study metric (``eval/val/acc``) and the learning
curves read these. At the end of training, once, it is evaluated on the held-out test classes
of its meta-training data set (same domain, Table 3.6's setting) and on another data set (cross
domain, Table 3.7's setting); the thesis tables report those. The default budget is the
CPU-scale analogue the project can run here: pre-train and meta-train a small HyperResNet-12 /
ResNet-12 on Omniglot (Vinyals train split), validate on its val split, meta-test on its test
split and on scikit-learn's handwritten digits. On a GPU machine the thesis setting is e.g.::

    priorlab sweep hyper-maml meta_train=fc100 cross_domain=miniimagenet image_size=32 \\
        arch=wrn wrn_depth=28 wrn_widen=4 widths=null pretrain_steps=20000 meta_iters=10000 ...

`priorlab report` lays the results out as Tables 3.6 and 3.7 (mean ± 95% t-interval over
seeds), the paired Hyper - plain differences per seed, the inner-loop movement of Fig. 3.5, and
plots the validation curves (cf. Fig. 3.6, on the meta-train data set's validation classes).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from ray import tune

from priorlab.methods.configuration import config_from_dict
from priorlab.methods.hyper.meta import TEST_SPLIT, TRAIN_SPLIT, VAL_SPLIT, MetaConfig, load_classes
from priorlab.platform.report import ReportTable
from priorlab.platform.stats import interval_table, paired_effect
from priorlab.search_spaces.base import Study, fifo_scheduler, grid_searcher
from priorlab.trainables.hyper_maml import train_driver_fn

ARCH_NAMES = {"resnet12": "ResNet-12", "resnet18": "ResNet-18"}


def space(fixed: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "hyper": tune.grid_search([True, False]),
        "k_shot": tune.grid_search([1, 5]),
        "seed": tune.grid_search([0, 1, 2]),
    }


def prepare_data(data_root, fixed: dict[str, Any]) -> None:
    """Fail fast on missing data (and decode caches once, in the driver)."""
    cfg = config_from_dict(MetaConfig, fixed)
    for split in (TRAIN_SPLIT, VAL_SPLIT) + ((TEST_SPLIT,) if cfg.same_domain else ()):
        load_classes(data_root, cfg.meta_train, split[cfg.meta_train], cfg.image_size)
    if cfg.cross_domain:
        load_classes(data_root, cfg.cross_domain, TEST_SPLIT[cfg.cross_domain], cfg.image_size)


def model_name(row: pd.Series) -> str:
    arch = row.get("config/arch", "resnet12")
    if arch == "wrn":
        base = f"WRN-{int(row.get('config/wrn_depth', 16))}-{int(row.get('config/wrn_widen', 4))}"
    else:
        base = ARCH_NAMES.get(arch, arch)
    return ("Hyper" if bool(row.get("config/hyper", True)) else "") + base


SEEDS_CI = "mean ± 95% t-interval over seeds (n - 1 dof; n = seeds)"
DEPTHS = ("early", "mid", "late")


def tables(df: pd.DataFrame, fixed: dict[str, Any]) -> list[ReportTable]:
    """Tables 3.6 / 3.7 (test accuracy, measured once at the end), the paired Hyper - plain
    differences (test, and the validation accuracy the study selects on), the Fig. 3.5 movement."""
    cfg = config_from_dict(MetaConfig, {k: v for k, v in fixed.items()
                                        if k in MetaConfig.__dataclass_fields__})
    df = df.assign(model=df.apply(model_name, axis=1))
    col = lambda k: f"{int(k)}-shot {cfg.n_way}-way"  # noqa: E731
    out = []
    for key, title in (
        ("eval/same/acc", f"Same domain (cf. Table 3.6): meta-train on {cfg.meta_train}, meta-test on its "
                          "test classes (evaluated once, after training)"),
        ("eval/cross/acc", f"Cross domain (cf. Table 3.7): meta-train on {cfg.meta_train}, meta-test on "
                           f"{cfg.cross_domain} (evaluated once, after training)"),
    ):
        if key in df and "config/k_shot" in df:
            out.append(ReportTable(
                title=f"{title}; query accuracy, {SEEDS_CI}",
                frame=interval_table(df, "model", "config/k_shot", key, col_name=col)))
    if "config/hyper" in df and df["config/hyper"].nunique() == 2:
        out.append(paired_table(df, col))
    moves = [f"diag/movement_{d}" for d in DEPTHS if f"diag/movement_{d}" in df]
    if moves:
        long = df.melt(id_vars=["model"], value_vars=moves, var_name="depth", value_name="movement")
        long["depth"] = long["depth"].str.replace("diag/movement_", "", regex=False)
        out.append(ReportTable(
            title="Inner-loop movement (cf. Fig. 3.5): mean |W_adapted - W| per element of the conv "
                  "weights the inner loop changes (generated weights for Hyper models; plain: every "
                  "conv), validation tasks at the last evaluation; mean ± 95% t-interval over trials "
                  "(n = seeds x shots, n - 1 dof)",
            frame=interval_table(long, "model", "depth", "movement", col_order=list(DEPTHS),
                                 spec=".3g")))
    return out


def paired_table(df: pd.DataFrame, col) -> ReportTable:
    """Hyper - plain per (evaluation, shot): differences between the Hyper and plain trial of the
    same seed and setting, ± a 95% t-interval over those pairs."""
    rows = {}
    metrics = [(f"eval/{r}/acc", f"{r} accuracy", ".3f") for r in ("same", "cross", "val")]
    metrics += [(f"diag/movement_{d}", f"movement {d}", ".3g") for d in DEPTHS]
    for metric, label, spec in metrics:
        if metric not in df:
            continue
        for k in sorted(df["config/k_shot"].dropna().unique()):
            eff = paired_effect(df[df["config/k_shot"] == k], "config/hyper", False, True, metric)
            if eff.n:
                rows[f"{label}, {col(k)}"] = eff.text(spec, names=("plain", "Hyper"))
    frame = pd.DataFrame({"Hyper - plain": list(rows.values())},
                         index=pd.Index(list(rows), name="comparison"))
    return ReportTable(
        title="Paired Hyper - plain: mean of per-seed differences between trials that agree on every "
              "other setting, ± 95% t-interval over the pairs (n - 1 dof); in how many pairs each model is higher",
        frame=frame)


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
    metric="eval/val/acc",
    mode="max",
    group_by=("hyper", "k_shot"),
    curve=lambda config: {0.0: "eval/val/acc", 1.0: "eval/same/acc", 2.0: "eval/cross/acc"},
    curve_label="evaluation (0 = validation, 1 = same-domain test, 2 = cross-domain test)",
    make_searcher=grid_searcher,
    make_scheduler=fifo_scheduler,
    reports_per_trial=lambda fixed: 1 + int(fixed["meta_iters"]) // int(fixed["eval_every"])
    + (1 if int(fixed["meta_iters"]) % int(fixed["eval_every"]) else 0),
    prepare_data=prepare_data,
    default_samples=1,
    iters_key="meta_iters",
    tables=tables,
    history_curve=("iteration", "eval/val/acc"),
    progress_metric="iteration",
    chance=lambda config: 1.0 / int(config.get("n_way") or MetaConfig().n_way),
)

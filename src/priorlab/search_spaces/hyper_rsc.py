"""Study `hyper-rsc`: HyperResNet vs ResNet under RSC fine-tuning on PACS (thesis Sec. 3.5, Table 3.8).

A full grid: ``hyper`` (True / False) x ``target_domain`` (photo, art_painting, cartoon, sketch),
8 trials, each fine-tuned with Representation Self-Challenging on the other three domains and
evaluated on the held-out one every epoch (``eval/acc``), FIFO. A Hyper and a plain model start
from different checkpoints, so both paths are given and each trial picks by ``hyper``:

    priorlab sweep hyper-rsc pretrained_hyper=/abs/hyper_ckpt pretrained_plain=/abs/plain_ckpt

The default budget is the paper's recipe (30 epochs, batch 128, 222-pixel images: a GPU job).
PACS is not on the project's CPU machines; ``prepare_data`` fails before Ray starts when it is
missing or a checkpoint path is wrong. An empty path trains that model from scratch (not the
thesis setup; a note says so).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from ray import tune

from priorlab.data.images import PACS_CLASSES, PACS_DOMAINS, load_pacs
from priorlab.data.root import MissingDataError
from priorlab.methods.configuration import config_from_dict
from priorlab.methods.hyper.rsc import METHOD, RSCConfig, pretrained_model_config
from priorlab.platform.report import ReportTable
from priorlab.platform.stats import interval_table, paired_effect
from priorlab.search_spaces.base import Study, fifo_scheduler, grid_searcher
from priorlab.trainables.rsc import train_driver_fn

TARGETS = ("photo", "art_painting", "cartoon", "sketch")  # Table 3.8's column order


def space(fixed: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "hyper": tune.grid_search([True, False]),
        "target_domain": tune.grid_search(list(TARGETS)),
    }


def prepare_data(data_root, fixed: dict[str, Any]) -> None:
    """PACS present (every domain, with images) and each pretrained path a checkpoint of the right
    kind, before any trial starts."""
    cfg = config_from_dict(RSCConfig, fixed)
    for domain in PACS_DOMAINS:  # the grid holds every domain out once, so all four are needed
        if len(load_pacs(data_root, [domain], image_size=cfg.image_size)) == 0:
            raise MissingDataError("pacs", data_root, [f"{data_root}/pacs/{domain}/<class>/*.jpg"])
    for hyper in ([bool(cfg.hyper)] if "hyper" in fixed else [True, False]):
        one = config_from_dict(RSCConfig, {**fixed, "hyper": hyper})
        pretrained_model_config(one)  # ConfigError naming the field if the path is wrong
        if not one.pretrained_path():
            field = "pretrained_hyper" if hyper else "pretrained_plain"
            print(f"[priorlab] hyper-rsc: {field} is empty: the hyper={hyper} trials train a "
                  f"{one.arch} from scratch (Table 3.8 starts from ImageNet-pretrained checkpoints)",
                  flush=True)


def tables(df: pd.DataFrame, fixed: dict[str, Any]) -> list[ReportTable]:
    """Table 3.8's layout: model x held-out domain (+ the mean over domains, per seed), and the
    paired HyperResNet - ResNet difference per domain (same domain, same seed)."""
    if "config/seed" not in df:  # one sweep = one seed (the grid's trials share it)
        df = df.assign(**{"config/seed": int(fixed.get("seed", RSCConfig.seed))})
    df = df.assign(model=df["config/hyper"].map(lambda h: "HyperResNet-18" if h else "ResNet-18"))
    cols = [t for t in ("photo", "cartoon", "sketch", "art_painting") if t in set(df["config/target_domain"])]
    complete = len(cols) == len(TARGETS)
    means = (df.groupby(["config/hyper", "config/seed"])
             .filter(lambda g: g["config/target_domain"].nunique() == len(TARGETS))
             .groupby(["config/hyper", "config/seed"])["eval/acc"].mean().reset_index()
             .assign(**{"config/target_domain": "mean"}))
    means["model"] = means["config/hyper"].map(lambda h: "HyperResNet-18" if h else "ResNet-18")
    both = pd.concat([df, means], ignore_index=True) if complete and len(means) else df
    order = cols + (["mean"] if complete and len(means) else [])
    out = [ReportTable(
        title="Held-out domain accuracy under RSC (cf. Table 3.8; one row per model, one column per "
              "target domain; mean over the four domains per seed): mean ± 95% t-interval over seeds "
              "(n - 1 dof; n = seeds, no ± where n = 1)",
        frame=interval_table(both, "model", "config/target_domain", "eval/acc", col_order=order))]
    if df["config/hyper"].nunique() == 2:
        paired = {}
        for target in order:
            part = both[both["config/target_domain"] == target]
            eff = paired_effect(part, "config/hyper", False, True, "eval/acc",
                                match=["config/target_domain", "config/seed"])
            paired[target] = eff.text(names=("ResNet-18", "HyperResNet-18"))
        out.append(ReportTable(
            title="Paired HyperResNet-18 - ResNet-18 per target domain: mean of differences between "
                  "the two models' trials with the same target domain and seed, ± 95% t-interval "
                  "over the pairs (n - 1 dof; no ± with one pair)",
            frame=pd.DataFrame({"Hyper - plain": list(paired.values())},
                               index=pd.Index(list(paired), name="target_domain"))))
    return out


STUDY = Study(
    name="hyper-rsc",
    description="HyperResNet-18 vs ResNet-18 under RSC on PACS, leave one domain out (Table 3.8)",
    method=METHOD,
    config_cls=RSCConfig,
    trainable=train_driver_fn,
    budget={},  # the paper's recipe; see docs/rsc.md for a smaller one
    space=space,
    metric="eval/acc",
    mode="max",
    group_by=("hyper", "target_domain"),
    curve=lambda config: {0.0: "eval/acc"},
    curve_label="(held-out domain accuracy)",
    make_searcher=grid_searcher,
    make_scheduler=fifo_scheduler,
    reports_per_trial=lambda fixed: int(fixed["epochs"]),
    prepare_data=prepare_data,
    default_samples=1,
    iters_key="epochs",
    tables=tables,
    progress_metric="epoch",
    chance=lambda config: 1.0 / len(PACS_CLASSES),
)

"""Study `memory-segmentation-injection`: online few-shot segmentation with the CL U-Net, the
previous step's label injected at the first layer vs a late one (thesis Sec. 2.4.4, Table 2.2;
App. A.4).

A grid over ``injection_layer`` in {1, 9} (Table 2.2 names the 9th layer, Fig. A.4 the 10th:
``injection_layer=10`` runs that reading), every seed to the end of the same budget; the same
study with ``model=finetune_cnn`` runs Table 2.2's first row (a U-Net-like CNN pre-trained with
MAML without distractors and fine-tuned online by one SGD step per image), where the injection
layer does not apply. `priorlab report` lays the result out as Table 2.2: segmentation IoU on
the (k+1)-th target image and masked fraction of the (k+1)-th distractor, k = 1 and 6, mean ±
95% interval over seeds, with the thesis' row beside each.

The full FSS-1000 is not on the project's machines, so the default budget runs on Omniglot
characters composited onto textured backgrounds (``source=omniglot``, class-disjoint splits);
``source=fss1000 image_size=56`` reads FSS-1000 from the data root. The laptop budget: 28x28,
base width 8, 600 iterations without distractors then 900 with; the paper's is 56x56, 100k + 100k
iterations (``max_iters=200000 curriculum_steps=100000``).

    priorlab sweep memory-segmentation-injection --samples 2
    priorlab sweep memory-segmentation-injection model=finetune_cnn --samples 2
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from ray import tune

from priorlab.data.segmentation import load_segmentation_source
from priorlab.methods.configuration import config_from_dict
from priorlab.methods.memory.segmentation import SegmentationConfig
from priorlab.platform.report import ReportTable
from priorlab.platform.stats import interval_table
from priorlab.search_spaces.memory_baselines import SEEDS_CI, grid_study
from priorlab.trainables.memory_segmentation import train_driver_fn

LAYERS = (1, 9)
# Table 2.2 (FSS-1000, 56x56, 100k + 100k iterations): segmentation IoU 1/6-shot, masking 1/6-shot.
THESIS_TABLE_2_2 = {"Fine-tuned CNN": (65.3, 64.0, 23.1, 23.6), "CL U-Net, layer 9": (38.7, 45.7, 73.8, 77.8),
                    "CL U-Net, layer 1": (49.2, 56.0, 84.6, 91.7)}
BUDGET = dict(source="omniglot", image_size=28, channels=8, meta_batch=4, max_iters=1500,
              curriculum_steps=600, eval_every=500, eval_episodes=50)


def config_of(fixed: dict[str, Any]) -> SegmentationConfig:
    return config_from_dict(SegmentationConfig, {k: v for k, v in fixed.items()
                                                 if k in SegmentationConfig.__dataclass_fields__})


def space(fixed: dict[str, Any] | None = None) -> dict[str, Any]:
    if (fixed or {}).get("model") == "finetune_cnn":      # no label input: one configuration
        return {"injection_layer": tune.choice([1])}
    return {"injection_layer": tune.choice(list(LAYERS))}


def row_name(model: str, layer: int) -> str:
    return "Fine-tuned CNN" if model == "finetune_cnn" else f"CL U-Net, layer {int(layer)}"


def curve(config: dict[str, Any]) -> dict[float, str]:
    """k-shot segmentation IoU (Table 2.2's left half) against k."""
    return {float(k): f"eval/iou_{k}shot" for k in config_of(config).report_shots}


def prepare_data(data_root, fixed: dict[str, Any]) -> None:
    """Fail fast on missing data (and decode the Omniglot cache once, not in every actor)."""
    cfg = config_of(fixed)
    for split in (cfg.train_split, cfg.eval_split):
        load_segmentation_source(cfg.source, data_root, split, cfg.image_size)


def tables(df: pd.DataFrame, fixed: dict[str, Any]) -> list[ReportTable]:
    cfg = config_of(fixed)
    metrics = [(f"eval/{kind}_{k}shot", f"{label} {k}-shot") for kind, label in
               (("iou", "segmentation"), ("mask", "masking")) for k in cfg.report_shots]
    metrics = [(m, name) for m, name in metrics if m in df]
    if not metrics or "config/injection_layer" not in df:
        return []
    models = df["config/model"] if "config/model" in df else pd.Series(cfg.model, index=df.index)
    df = df.assign(row=[row_name(m, l) for m, l in zip(models, df["config/injection_layer"])])
    long = df.melt(id_vars=["row"], value_vars=[m for m, _ in metrics], var_name="metric", value_name="v")
    names = dict(metrics)
    long["metric"] = long["metric"].map(names)
    frame = interval_table(long, "row", "metric", "v", col_order=[n for _, n in metrics])
    if list(cfg.report_shots) == [1, 6]:
        frame["thesis seg. 1/6, mask 1/6 (FSS-1000)"] = [
            " / ".join(f"{v:.1f}" for v in THESIS_TABLE_2_2[r]) if r in THESIS_TABLE_2_2 else "-"
            for r in frame.index]
    return [ReportTable(
        title=f"Table 2.2 layout: online few-shot segmentation on {cfg.source} {cfg.eval_split} episodes "
              f"({cfg.n_targets} targets + {cfg.n_distractors} distractors, {cfg.image_size}x{cfg.image_size}, "
              f"{cfg.max_iters} iterations, distractors from {cfg.curriculum_steps}); IoU and masked "
              f"fraction in [0, 1] (the thesis' in %); {SEEDS_CI}",
        frame=frame)]


STUDY = grid_study(
    name="memory-segmentation-injection",
    description="Online few-shot segmentation: CL U-Net label injection at layer 1 vs 9 (Table 2.2)",
    method="memory-segmentation",
    config_cls=SegmentationConfig,
    trainable=train_driver_fn,
    budget=dict(BUDGET),
    space=space,
    metric="eval/iou_mean",
    group_by=("injection_layer",),
    curve=curve,
    curve_label="shot (k)",
    prepare_data=prepare_data,
    chance=lambda config: None,
    trial_interval="evaluation episodes",
    reports_per_trial=lambda fixed: math.ceil(int(fixed["max_iters"]) / int(fixed["eval_every"])),
    train_point=dict(injection_layer=1),
    tables=tables,
)

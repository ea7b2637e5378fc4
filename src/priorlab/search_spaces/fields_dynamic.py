"""Study `fields-dynamic`: dynamic vs static conditioning while packing more and more scenes
(thesis Sec. 4.4.6, Fig. 4.9; Sec. 4.5: HyperFields fits over 100 scenes).

A grid of ``dynamic`` (weights from CT and the activations, Eq. 4.5; or from CT alone) x
``pack_size`` (4, 16, 64, 100 scenes of the family with attributes, each with its teacher),
every trial distilled (Algorithm 3) for the same number of steps. The metric is the packed
scenes' PSNR against their exact views (``seen/psnr``; ``seen/psnr_vs_teacher`` beside it), read
at the highest step every trial reached. Needs the teachers of the packed scenes in the store
``teachers`` (``priorlab farm teachers --attributes``); the driver names any that are missing.

    priorlab sweep fields-dynamic teachers=runs/teachers            # 2 x 4 trials
    priorlab sweep fields-dynamic teachers=runs/teachers pack_size=16   # pin the pack
"""

from __future__ import annotations

from typing import Any

from ray import tune

from priorlab.methods.fields.distill import DistillConfig
from priorlab.search_spaces.base import Study, fifo_scheduler, grid_searcher
from priorlab.search_spaces.fields_tables import dynamic_tables
from priorlab.trainables.fields_hyper import resolve_paths, train_driver_fn

PACK_SIZES = [4, 16, 64, 100]


def space(fixed: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"dynamic": tune.grid_search([True, False]), "pack_size": tune.grid_search(PACK_SIZES)}


STUDY = Study(
    name="fields-dynamic",
    description="HyperFields: dynamic vs static conditioning x scenes packed (Fig. 4.9)",
    method="fields-hyper",
    config_cls=DistillConfig,
    trainable=train_driver_fn,
    # a CPU budget: 512 rays of 32 samples per prompt, 3 prompts a step
    budget=dict(split="pack", rays_per_prompt=512, n_samples=32, steps=1000, eval_every=250,
                eval_scenes=16),
    space=space,
    metric="seen/psnr",
    mode="max",
    group_by=("dynamic", "pack_size"),
    curve=lambda config: {0.0: "seen/psnr"},
    curve_label="(packed scenes' PSNR vs exact views, dB)",
    resolve=resolve_paths,          # teachers=runs/teachers is the user's folder, not the trial's
    make_searcher=grid_searcher,
    make_scheduler=fifo_scheduler,
    default_samples=1,
    iters_key="steps",
    tables=dynamic_tables,
    extra_columns=("seen/psnr_vs_teacher", "seen/ssim"),
    train_point=dict(dynamic=True, pack_size=4),
)

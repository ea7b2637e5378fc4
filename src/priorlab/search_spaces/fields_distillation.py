"""Study `fields-distillation`: NeRF distillation vs training on the teachers' objective
directly (thesis Sec. 4.4.6, Fig. 4.10; Sec. 4.3.2, Algorithm 3).

Both choices train the same hypernetwork on the seen prompts of the zero-shot split (45 of the
72 colour x shape scenes, Sec. 4.4.1) for the same number of steps: ``objective=distill``
renders each prompt's teacher (Eq. 4.6), ``objective=direct`` fits the exact views the teachers
were fitted on (the reconstruction teachers' own objective; the thesis' baseline uses SDS, see
docs/fields.md). Metric: PSNR of the packed (seen) scenes against their exact views; the
unseen (zero-shot) PSNR and the seen-unseen gap are reported beside it.

    priorlab sweep fields-distillation teachers=runs/teachers --samples 3   # 2 choices x 3 seeds
"""

from __future__ import annotations

from typing import Any

from ray import tune

from priorlab.methods.fields.distill import DistillConfig
from priorlab.search_spaces.base import Study, fifo_scheduler, grid_searcher
from priorlab.search_spaces.fields_tables import distillation_tables
from priorlab.trainables.fields_hyper import resolve_paths, train_driver_fn


def space(fixed: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"objective": tune.grid_search(["distill", "direct"])}


STUDY = Study(
    name="fields-distillation",
    description="HyperFields: NeRF distillation vs the teachers' objective directly (Fig. 4.10)",
    method="fields-hyper",
    config_cls=DistillConfig,
    trainable=train_driver_fn,
    budget=dict(split="zero-shot", rays_per_prompt=512, n_samples=32, steps=1000,
                eval_every=250, eval_scenes=16),
    space=space,
    metric="seen/psnr",
    mode="max",
    group_by=("objective",),
    curve=lambda config: {0.0: "seen/psnr"},
    curve_label="(seen scenes' PSNR vs exact views, dB)",
    resolve=resolve_paths,          # teachers=runs/teachers is the user's folder, not the trial's
    make_searcher=grid_searcher,
    make_scheduler=fifo_scheduler,
    default_samples=1,
    iters_key="steps",
    tables=distillation_tables,
    extra_columns=("unseen/psnr", "gap/psnr", "seen/ssim", "unseen/ssim"),
    train_point=dict(objective="distill"),
)

"""Study `fields-teacher-recipe`: which teacher recipe gives the best held-out PSNR for the time?
(thesis Ch. 4, Fig. 4.2 Stage 1; App. B.1 hash grid + MLP)

A grid over hash-grid levels x table size x samples per ray x learning rate (the occupancy grid
on, as the farm uses it), each recipe fitted to a few scenes of the procedural family (``scene`` is part of the grid) with the same wall-clock budget per
trial (``max_seconds``; `--max-iters N` sets it, in seconds). The report compares the recipes at
equal time: ``progress_metric`` is ``seconds``, so each trial's held-out PSNR is read at the
highest number of seconds every recipe reached, averaged over the scenes (± = std over them).
The recipe the farm uses (``platform.farm.FARM_RECIPE``) is the one to update from it.
No early stopping (FIFO): every trial gets its whole budget.

    priorlab sweep fields-teacher-recipe            # 2 x 2 x 2 x 2 recipes x 2 scenes, 60 s each
    priorlab sweep fields-teacher-recipe --max-iters 120 lr=0.005 n_levels=16   # pin some keys
"""

from __future__ import annotations

from typing import Any

from ray import tune

from priorlab.methods.fields.teacher import TeacherConfig
from priorlab.search_spaces.base import Study, fifo_scheduler, grid_searcher
from priorlab.trainables.fields_teacher import train_driver_fn

SCENES = ["a pink chair", "a brown table"]   # the thin legs are what the recipes differ on


def space(fixed: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "n_levels": tune.grid_search([8, 16]),
        "log2_hashmap_size": tune.grid_search([14, 17]),
        "n_samples": tune.grid_search([48, 96]),
        "lr": tune.grid_search([3e-3, 1e-2]),
        "scene": tune.grid_search(SCENES),
    }


STUDY = Study(
    name="fields-teacher-recipe",
    description="reconstruction teachers: grid levels x table size x samples per ray x lr, equal time",
    method="fields-teacher",
    config_cls=TeacherConfig,
    trainable=train_driver_fn,
    # 64x64 views as the farm uses, a time budget per trial and a step cap it never reaches.
    # The occupancy grid is on: benchmarks/fields_teacher.py measured it 2-4x cheaper to 25 dB.
    budget=dict(image_size=64, finest_resolution=256, rays_per_step=1024, n_train_views=32,
                n_test_views=4, occupancy_resolution=32, eval_every=25, steps=100_000,
                max_seconds=60.0),
    space=space,
    metric="eval/psnr",
    mode="max",
    group_by=("n_levels", "log2_hashmap_size", "n_samples", "lr"),
    curve=lambda config: {0.0: "eval/psnr"},
    curve_label="(held-out PSNR, dB, at equal seconds)",
    make_searcher=grid_searcher,
    make_scheduler=fifo_scheduler,
    default_samples=1,
    iters_key="max_seconds",
    progress_metric="seconds",
    train_point=dict(n_levels=12, log2_hashmap_size=15, n_samples=96, lr=1e-2, scene="a pink chair"),
)

"""Study `fields-segmentation`: HyperSegmentationFields on novel scenes (thesis Sec. 4.4.8,
Fig. 4.11) with dynamic vs static conditioning, from a handful of posed views.

A grid of ``dynamic`` (Eq. 4.5 vs CT alone, the Fig. 4.9 ablation carried over) x
``context_views`` (2 or 4 posed views of the scene), every trial trained for the same number of
steps on the same part-labelled scenes (``data.part_scenes``: chairs, tables, vases, lamps, mugs
in random colours, patterns and yaw). The metric is the mIoU of part segmentation on novel
scenes from novel cameras (``novel/miou``), with the novel scenes' PSNR, foreground IoU and the
majority-part reference (``novel/miou_majority``: the true mask painted with the scene's most
frequent part) beside it.

    priorlab sweep fields-segmentation                       # 2 x 2 trials
    priorlab train fields-segmentation steps=2000            # one fit (dynamic, 4 views)
    priorlab sweep fields-segmentation source=shapenet shapenet_root=/data/shapenet_part
"""

from __future__ import annotations

from typing import Any

from ray import tune

from priorlab.methods.fields.segfields import SegFieldsConfig
from priorlab.search_spaces.base import Study, fifo_scheduler, grid_searcher
from priorlab.search_spaces.fields_tables import segmentation_tables
from priorlab.trainables.fields_seg import resolve_paths, train_driver_fn


def space(fixed: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"dynamic": tune.grid_search([True, False]), "context_views": tune.grid_search([2, 4])}


STUDY = Study(
    name="fields-segmentation",
    description="HyperSegmentationFields: part mIoU on novel scenes, dynamic vs static x views (Sec. 4.4.8)",
    method="fields-seg",
    config_cls=SegFieldsConfig,
    trainable=train_driver_fn,
    budget=dict(steps=1000, eval_every=250),
    space=space,
    metric="novel/miou",
    mode="max",
    group_by=("dynamic", "context_views"),
    curve=lambda config: {0.0: "novel/miou"},
    curve_label="(part mIoU of novel scenes from novel views)",
    resolve=resolve_paths,
    make_searcher=grid_searcher,
    make_scheduler=fifo_scheduler,
    default_samples=1,
    iters_key="steps",
    tables=segmentation_tables,
    extra_columns=("novel/psnr", "novel/fg_iou", "novel/miou_majority", "seen/miou"),
    train_point=dict(dynamic=True, context_views=4),
)

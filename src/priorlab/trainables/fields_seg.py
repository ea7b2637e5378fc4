"""Ray Train trainable of HyperSegmentationFields (thesis Sec. 4.4.8, Fig. 4.11).

One worker runs ``methods.fields.segfields.SegFieldsFit``: HyperFields conditioned on a handful
of posed views of each scene, generating a NeRF with a feature field, trained over many
part-labelled scenes. Every ``eval_every`` steps and at the end it reports ``novel/miou``,
``novel/psnr``, ``novel/fg_iou``, ``novel/miou_majority`` (scenes never trained on, scored from
novel cameras), the same for ``seen/`` scenes, ``train/loss``, ``seconds`` and ``step``, with a
checkpoint (encoder, hypernetwork, shared grid, classifier, Adam state, step, seconds). The step's
random draws follow from (seed, step), so a resumed fit repeats what an uninterrupted one does.

    from priorlab.trainables.fields_seg import fit
    result = fit({"steps": 2000, "data_root": "/tmp", ...})
"""

from __future__ import annotations

from typing import Any

import ray.train

from priorlab.methods.configuration import ConfigError
from priorlab.methods.fields.segfields import SegFieldsConfig, SegFieldsFit
from priorlab.trainables.common import (build_method_trainer, fit_in_tune, run_stepped_fit,
                                        with_absolute_path, worker_setup)

METHOD = "fields-seg"


def train_fn_per_worker(config: dict[str, Any]) -> None:
    cfg, _res, _world = worker_setup(config, SegFieldsConfig, "n_scenes")
    run_stepped_fit(SegFieldsFit(cfg), cfg, METHOD)


def resolve_paths(config: dict[str, Any]) -> dict[str, Any]:
    """A relative ShapeNet folder becomes absolute in the launching folder (trials chdir)."""
    return with_absolute_path(config, "shapenet_root")


def _check(cfg: SegFieldsConfig, res) -> None:
    if res.workers != 1:
        raise ConfigError(f"workers={res.workers}: the segmentation-fields trainable runs on one "
                          "worker (a step is a few scenes); run more trials in parallel instead")


def build_trainer(config: dict[str, Any], callbacks: list | None = None):
    return build_method_trainer(train_fn_per_worker, SegFieldsConfig, resolve_paths(config),
                                callbacks, check=_check)


def fit(config: dict[str, Any]) -> "ray.train.Result":
    """Run one segmentation-fields fit (outside Tune) and return Ray Train's Result."""
    return build_trainer(config).fit()


def train_driver_fn(config: dict[str, Any]) -> None:
    """The Tune function trainable: builds and fits the trainer of one trial."""
    fit_in_tune(build_trainer, config)

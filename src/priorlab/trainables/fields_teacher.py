"""Ray Train trainable of a reconstruction teacher (thesis Ch. 4, Fig. 4.2 Stage 1).

One worker fits ``TeacherConfig.scene`` with ``methods.fields.teacher.TeacherFit``; every
evaluation (``eval_every`` steps, and the last step) reports ``eval/psnr``, ``train/loss``,
``seconds`` and ``step`` with a checkpoint (weights, Adam state, the ray generator, step and
seconds), so a killed worker or a rerun resumes exactly where the checkpoint was taken, like
every other method (``trainables/common.py``). A fit is one NeRF with no batch to split: more
than one worker is refused.

    from priorlab.trainables.fields_teacher import fit
    result = fit({"scene": "a pink chair", "steps": 400, "data_root": "/tmp", ...})
"""

from __future__ import annotations

from typing import Any

import ray.train

from priorlab.data.scenes import parse_scene
from priorlab.methods.configuration import ConfigError
from priorlab.methods.fields.teacher import TeacherConfig, TeacherFit, run_fit
from priorlab.trainables.common import (
    build_method_trainer, fit_in_tune, fit_saver, report_with_checkpoint, resume_fit, worker_setup,
)

METHOD = "fields-teacher"


def train_fn_per_worker(config: dict[str, Any]) -> None:
    cfg, _res, _world = worker_setup(config, TeacherConfig, "rays_per_step")
    fit = TeacherFit(parse_scene(cfg.scene, seed=cfg.scene_seed), cfg)
    start = resume_fit(fit, METHOD)
    save = fit_saver(METHOD, fit, cfg, fit.field)
    run_fit(fit, on_eval=lambda step, row: report_with_checkpoint(
        {**row, "train/start_step": float(start)}, save, step))


def _check(cfg: TeacherConfig, res) -> None:
    if res.workers != 1:
        raise ConfigError(f"a teacher fit runs on one worker (got workers={res.workers}): it is one "
                          "NeRF with no batch to split; run several teachers with `priorlab farm`")
    parse_scene(cfg.scene, seed=cfg.scene_seed)          # an unknown scene fails in the driver


def build_trainer(config: dict[str, Any], callbacks: list | None = None):
    return build_method_trainer(train_fn_per_worker, TeacherConfig, config, callbacks, check=_check)


def fit(config: dict[str, Any]) -> "ray.train.Result":
    """Run one teacher fit (outside Tune) and return Ray Train's Result."""
    return build_trainer(config).fit()


def train_driver_fn(config: dict[str, Any]) -> None:
    """The Tune function trainable: builds and fits the trainer of one trial."""
    fit_in_tune(build_trainer, config)

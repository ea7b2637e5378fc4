"""Ray Train trainable of HyperFields (thesis Ch. 4, Fig. 4.2 Stage 2; Sec. 4.3.2, Algorithm 3).

Each worker runs ``methods.fields.distill.DistillFit`` on its share of every step's prompts
(``n_prompts`` split across ``workers``; the student wrapped in DistributedDataParallel by
``ray.train.torch.prepare_model`` when there is more than one). Every ``eval_every`` steps and at
the end it reports ``seen/psnr``, ``seen/ssim``, ``unseen/psnr``, ``unseen/ssim`` (zero-shot,
against the analytic ground truth), ``seen/psnr_vs_teacher``, ``train/loss``, ``seconds`` and
``step`` with a checkpoint (hypernetwork, shared hash grid, Adam state, step, seconds). The
step's random draws follow from (seed, step), so a resumed fit repeats exactly what an
uninterrupted one would have done.

    from priorlab.trainables.fields_hyper import fit
    result = fit({"teachers": "/abs/runs/teachers", "steps": 2000, "data_root": "/tmp", ...})
"""

from __future__ import annotations

from typing import Any

import ray.train

from priorlab.methods.configuration import ConfigError
from priorlab.methods.fields.distill import DistillConfig, DistillFit, missing_teachers, packed_scenes
from priorlab.trainables.common import (build_method_trainer, fit_in_tune, run_stepped_fit,
                                        with_absolute_path, worker_setup)

METHOD = "fields-hyper"


def train_fn_per_worker(config: dict[str, Any]) -> None:
    cfg, _res, world = worker_setup(config, DistillConfig, "n_prompts")
    rank = ray.train.get_context().get_world_rank()
    fit = DistillFit(cfg, rank=rank, world=world,
                     wrap=ray.train.torch.prepare_model if world > 1 else None)
    run_stepped_fit(fit, cfg, METHOD)


def resolve_paths(config: dict[str, Any]) -> dict[str, Any]:
    """Trials and workers start in other folders: a local relative teacher store (the default
    included) becomes absolute, relative to the folder the command was started in."""
    return with_absolute_path(config, "teachers", DistillConfig.teachers)


def _check(cfg: DistillConfig, res) -> None:
    if cfg.n_prompts % res.workers:
        raise ConfigError(f"n_prompts={cfg.n_prompts} must be divisible by workers={res.workers} "
                          "(each worker renders its share of a step's prompts)")
    trained, _ = packed_scenes(cfg)
    if cfg.objective == "distill":
        from priorlab.methods.fields.store import TeacherStore

        missing = [s.slug for s in missing_teachers(trained, TeacherStore(cfg.teachers))]
        if missing:       # fail in the driver, before any worker starts
            raise ConfigError(
                f"{len(missing)} of {len(trained)} packed scenes have no teacher in {cfg.teachers}: "
                f"{', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}; fit them with "
                f"`priorlab farm teachers --store {cfg.teachers}` or pass teachers=<store>")


def build_trainer(config: dict[str, Any], callbacks: list | None = None):
    return build_method_trainer(train_fn_per_worker, DistillConfig, resolve_paths(config),
                                callbacks, check=_check)


def fit(config: dict[str, Any]) -> "ray.train.Result":
    """Run one HyperFields fit (outside Tune) and return Ray Train's Result."""
    return build_trainer(config).fit()


def train_driver_fn(config: dict[str, Any]) -> None:
    """The Tune function trainable: builds and fits the trainer of one trial."""
    fit_in_tune(build_trainer, config)

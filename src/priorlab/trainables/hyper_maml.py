"""Ray Train trainable for MAML over (Hyper)ResNets (thesis Sec. 3.3.1-3.3.2, 3.4.3).

``train_fn_per_worker`` runs ``priorlab.methods.hyper.meta.run_meta_training`` on a
``MetaLearner``: the pre-training phase (or a pre-trained checkpoint) with the classifier reset,
then meta-training. Every ``eval_every`` meta-iterations (and right after pre-training, at
iteration 0) it reports ``train/*`` (averaged since the last report), the validation accuracies
``eval/val/acc_{k}shot`` (+ ``_ci95``; the meta-train data set's validation classes) and the
Fig. 3.5 movement diagnostics ``diag/movement_{early,mid,late}`` with a checkpoint; the last
report also carries the test accuracies ``eval/{same,cross}/acc_{k}shot``, the only time the
test classes are touched. It resumes from the latest checkpoint; a resumed run reports the same
``train/loss`` as an uninterrupted one (tasks are functions of (seed, iteration), and the
checkpoint holds the model, Adam, its schedule and the RNG).

Tasks are sampled inside each worker (a task is a pure function of its seed); with several
workers each one takes a share of the meta-batch and gradients are all-reduced (gloo on CPU,
nccl with GPUs) before every outer step.
"""

from __future__ import annotations

from typing import Any

import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from priorlab.methods.hyper.meta import METHOD, MetaConfig, MetaLearner, run_meta_training
from priorlab.trainables.common import (
    build_method_trainer, fit_in_tune, report_with_checkpoint, restore_from_train_checkpoint,
    worker_setup,
)


def all_reduce_grads(module: torch.nn.Module) -> None:
    """Sum every parameter's gradient over the workers (a missing gradient counts as zero)."""
    for p in module.parameters():
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)


def train_fn_per_worker(config: dict[str, Any]) -> None:
    cfg, res, world = worker_setup(config, MetaConfig, "meta_batch")
    rank = ray.train.get_context().get_world_rank()
    learner = MetaLearner(cfg, res.data_root, device=ray.train.torch.get_device(), rank=rank,
                          world=world, sync=all_reduce_grads if world > 1 else None)
    restored = restore_from_train_checkpoint(METHOD)
    if restored is not None:
        learner.restore(restored)
        print(f"[priorlab] resumed at meta-iteration {learner.iteration}")
    every = max(cfg.pretrain_steps // 10, 1)

    def progress(step: int, loss: float) -> None:
        if rank == 0 and (step % every == 0 or step == cfg.pretrain_steps):
            print(f"[priorlab] pre-training {step}/{cfg.pretrain_steps} loss {loss:.3f}")

    run_meta_training(
        learner, lambda metrics: report_with_checkpoint(metrics, learner.save, learner.iteration),
        evaluate=rank == 0, progress=progress)


def build_trainer(config: dict[str, Any], callbacks: list | None = None):
    return build_method_trainer(train_fn_per_worker, MetaConfig, config, callbacks)


def fit(config: dict[str, Any]) -> "ray.train.Result":
    return build_trainer(config).fit()


def train_driver_fn(config: dict[str, Any]) -> None:
    """The Tune function trainable: builds and fits the trainer of one trial."""
    fit_in_tune(build_trainer, config)

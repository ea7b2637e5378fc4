"""Ray Train trainable for online few-shot segmentation (thesis Sec. 2.4.4, Table 2.2, App. A.4).

``train_fn_per_worker`` runs the pure loop of ``priorlab.methods.memory.segmentation_loop``:
episodes sampled inside the worker from ``source`` (FSS-1000, or Omniglot characters composited
onto textured backgrounds: ``priorlab.data.segmentation``), first without distractors, then with
them (``curriculum_steps``); every ``eval_every`` iterations it reports ``train/loss``,
``train/distractors`` and Table 2.2's ``eval/iou_{k}shot`` / ``eval/mask_{k}shot`` (+ ``_ci95``
over episodes, and ``eval/iou_mean`` / ``eval/mask_mean``) on episodes with distractors from
held-out classes, with a checkpoint; it resumes from the latest checkpoint. One worker per run.

    from priorlab.trainables.memory_segmentation import fit
    fit({"source": "omniglot", "image_size": 28, "max_iters": 50, "data_root": "/data", ...})
"""

from __future__ import annotations

from typing import Any

import ray.train
import ray.train.torch

from priorlab.data.episodes import episode_seed
from priorlab.data.segmentation import OnlineSegmentationSampler, load_segmentation_source
from priorlab.methods.memory.segmentation import SegmentationConfig
from priorlab.methods.memory.segmentation_loop import (
    METHOD, SegmentationLearner, curriculum_batches, evaluate_segmentation, train,
)
from priorlab.trainables.common import (
    build_method_trainer, fit_in_tune, one_worker_only, report_with_checkpoint, restore_from_train_checkpoint,
    worker_setup,
)

EVAL_SEED_OFFSET = 1_000_003  # evaluation episodes never coincide with training episodes


def samplers(cfg: SegmentationConfig, data_root: str, split: str):
    """(episodes without distractors, episodes with them) of ``split``."""
    source = load_segmentation_source(cfg.source, data_root, split, cfg.image_size)
    return (OnlineSegmentationSampler(source, cfg.n_targets, 0),
            OnlineSegmentationSampler(source, cfg.n_targets, cfg.n_distractors))


def train_fn_per_worker(config: dict[str, Any]) -> None:
    cfg, res, _ = worker_setup(config, SegmentationConfig, "meta_batch")
    learner = SegmentationLearner(cfg, device=ray.train.torch.get_device())
    restored = restore_from_train_checkpoint(METHOD)
    if restored is not None:
        learner.restore(restored)
        print(f"[priorlab] resumed from step {learner.step}")
    plain, with_distractors = samplers(cfg, res.data_root, cfg.train_split)
    _, eval_sampler = samplers(cfg, res.data_root, cfg.eval_split)
    seeds = [episode_seed(cfg.seed + EVAL_SEED_OFFSET, i) for i in range(cfg.eval_episodes)]
    train(learner, curriculum_batches(plain, with_distractors, cfg),
          evaluate_fn=lambda lrn: evaluate_segmentation(lrn, eval_sampler, seeds, cfg),
          report=lambda metrics, save: report_with_checkpoint(metrics, save, learner.step))


def build_trainer(config: dict[str, Any], callbacks: list | None = None):
    return build_method_trainer(train_fn_per_worker, SegmentationConfig, config, callbacks, check=one_worker_only("segmentation"))


def fit(config: dict[str, Any]) -> "ray.train.Result":
    return build_trainer(config).fit()


def train_driver_fn(config: dict[str, Any]) -> None:
    """The Tune function trainable: builds and fits the trainer of one trial."""
    fit_in_tune(build_trainer, config)

"""Ray Train trainable for online few-shot continual learning (thesis Sec. 2.4.3, App. A.3; and
App. A.2's support/query protocol with ``order=shuffled``).

``train_fn_per_worker`` runs the pure loop of ``priorlab.methods.memory.continual_loop`` on
continual tasks sampled inside the worker (a task is a pure function of (seed, update), so a
resumed run sees the tasks an uninterrupted one would), with App. A.3.1's curriculum. Every
``eval_every`` updates it reports ``train/loss``, ``train/subtasks`` (the curriculum's current
length) and the query accuracies ``eval/acc_len{n}`` (Fig. 2.3) and ``eval/acc_subtask{i}``
(Fig. 2.4) on tasks from the held-out classes, and ``eval/acc`` (= ``eval/acc_len{subtasks}``,
the target length: the study metric), with a checkpoint; it resumes from the latest
checkpoint. One worker per run: the learners (CL+LSTM, OML, ANML) are not data-parallel.

    from priorlab.trainables.memory_continual import fit
    fit({"model": "oml", "subtasks": 5, "max_iters": 50, "data_root": "/data", ...})
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ray.train
import ray.train.torch

from priorlab.data.episodes import episode_seed
from priorlab.data.omniglot import load_omniglot_split
from priorlab.methods.memory.continual import ContinualConfig
from priorlab.methods.memory.continual_loop import (
    METHOD, ContinualBatches, ContinualLearner, evaluate_continual, train,
)
from priorlab.trainables.common import (
    build_method_trainer, fit_in_tune, one_worker_only, report_with_checkpoint, restore_from_train_checkpoint,
    worker_setup,
)

METHOD_KEYS = {f.name for f in dataclasses.fields(ContinualConfig)}
EVAL_SEED_OFFSET = 1_000_003  # evaluation tasks never coincide with training tasks


def eval_seeds(cfg: ContinualConfig) -> list[int]:
    return [episode_seed(cfg.seed + EVAL_SEED_OFFSET, i) for i in range(cfg.eval_episodes)]


def train_fn_per_worker(config: dict[str, Any]) -> None:
    cfg, res, _ = worker_setup(config, ContinualConfig, "meta_batch")
    learner = ContinualLearner(cfg, device=ray.train.torch.get_device())
    restored = restore_from_train_checkpoint(METHOD)
    if restored is not None:
        learner.restore(restored)
        print(f"[priorlab] resumed from step {learner.step}")
    train_classes = load_omniglot_split(res.data_root, cfg.train_split, cfg.image_size, progress=False)
    eval_classes = load_omniglot_split(res.data_root, cfg.eval_split, cfg.image_size, progress=False)
    seeds = eval_seeds(cfg)

    def evaluate_fn(model) -> dict[str, float]:
        metrics = evaluate_continual(model, eval_classes, cfg, seeds)
        # the study metric whatever the target length: accuracy on tasks of `subtasks` subtasks
        metrics["eval/acc"] = metrics[f"eval/acc_len{cfg.subtasks}"]
        metrics["eval/acc_ci95"] = metrics[f"eval/acc_len{cfg.subtasks}_ci95"]
        return metrics

    train(learner, ContinualBatches(train_classes, cfg), evaluate_fn=evaluate_fn,
          report=lambda metrics, save: report_with_checkpoint(metrics, save, learner.step))


def build_trainer(config: dict[str, Any], callbacks: list | None = None):
    return build_method_trainer(train_fn_per_worker, ContinualConfig, config, callbacks, check=one_worker_only("the continual learners"))


def fit(config: dict[str, Any]) -> "ray.train.Result":
    return build_trainer(config).fit()


def train_driver_fn(config: dict[str, Any]) -> None:
    """The Tune function trainable: builds and fits the trainer of one trial."""
    fit_in_tune(build_trainer, config)

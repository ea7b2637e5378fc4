"""Ray Train trainable for layer-distributed memory (thesis Ch. 2, Sec. 2.3.4).

``train_fn_per_worker`` runs the pure loop of ``priorlab.methods.memory.loop`` on episodes
streamed by Ray Data (``get_dataset_shard("train")``), reports ``train/loss`` and
``eval/acc_{k}shot`` with a checkpoint every ``eval_every`` iterations, and resumes from the
latest checkpoint. ``train_driver_fn`` builds the Ray Train trainer; a Tune trial runs it
(Train V2 + Tune: a Trainer is never passed to a Tuner).

    from priorlab.trainables.memory import fit
    result = fit({"channels": 16, "max_iters": 50, "data_root": "/data"}, storage_path=..., run_name=...)
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch
import ray.train
import ray.train.torch

from priorlab.data.episodes import OnlineEpisodeSampler, episode_seed
from priorlab.data.fewshot_sources import load_episode_classes
from priorlab.methods.configuration import config_from_dict
from priorlab.methods.memory.config import MemoryConfig
from priorlab.methods.memory.loop import METHOD, MemoryLearner, evaluate, train
from priorlab.trainables.common import (
    RunResources, fit_in_tune, latest_saved_step, report_with_checkpoint,
    restore_from_train_checkpoint, split_config, start_early, torch_trainer, worker_setup,
)
from priorlab.trainables.streams import episode_dataset, local_batches, shard_batches

METHOD_KEYS = {f.name for f in dataclasses.fields(MemoryConfig)}
EVAL_SEED_OFFSET = 1_000_003  # evaluation episodes never coincide with training episodes


def eval_seeds(cfg: MemoryConfig, n: int | None = None) -> list[int]:
    return [episode_seed(cfg.seed + EVAL_SEED_OFFSET, i) for i in range(n or cfg.eval_episodes)]


def train_fn_per_worker(config: dict[str, Any]) -> None:
    started = time.time()
    cfg, res, world = worker_setup(config, MemoryConfig, "meta_batch")
    restored = restore_from_train_checkpoint(METHOD)
    start_step = restored.step if restored is not None else 0
    # The episode stream starts first, in the background: its first batch (seconds, when a Ray
    # Data pipeline has to start) arrives while the model and the validation episodes are built.
    batches = start_early(_train_batches(cfg, res, world, start_step))

    learner = MemoryLearner(cfg, device=ray.train.torch.get_device(),
                            wrap=ray.train.torch.prepare_model if world > 1 else None)
    if restored is not None:
        learner.restore(restored)
        print(f"[priorlab] resumed from step {learner.step}")

    eval_classes = load_episode_classes(res.data_root, cfg.dataset, cfg.eval_split, cfg.image_size)
    eval_sampler = OnlineEpisodeSampler(eval_classes, cfg.n_way, cfg.n_shot)
    seeds = eval_seeds(cfg)
    # When the worker's function started and when its loop did (unix s): with the report times,
    # the fixed cost of a trial before its first step and after its last report
    # (benchmarks/overhead.py).
    times = {"time/worker_start_unix": started, "time/loop_start_unix": time.time()}
    train(
        learner, _stamp_first(batches, times, "time/first_step_unix"),
        evaluate_fn=lambda model: evaluate(model, eval_sampler, seeds, cfg.report_shots,
                                           device=learner.device),
        report=lambda metrics, save: report_with_checkpoint({**metrics, **times}, save, learner.step),
    )


def _train_batches(cfg: MemoryConfig, res: RunResources, world: int, start_step: int):
    """This worker's share of each training meta-batch from ``start_step`` on."""
    per_worker = cfg.meta_batch // world
    if res.stream == "local":
        train_sampler = OnlineEpisodeSampler(
            load_episode_classes(res.data_root, cfg.dataset, cfg.train_split, cfg.image_size),
            cfg.n_way, cfg.n_shot)
        rank = ray.train.get_context().get_world_rank()
        return ((x[rank * per_worker:(rank + 1) * per_worker], y[rank * per_worker:(rank + 1) * per_worker])
                for x, y in local_batches(train_sampler, base_seed=cfg.seed,
                                          start_step=start_step, meta_batch=cfg.meta_batch))
    return shard_batches(ray.train.get_dataset_shard("train"), per_worker, start_step)


def _stamp_first(batches, times: dict[str, float], key: str):
    """The batches, noting in ``times[key]`` when the first one is handed to the loop."""
    for i, batch in enumerate(batches):
        if i == 0:
            times[key] = time.time()
        yield batch


def build_trainer(config: dict[str, Any], callbacks: list | None = None):
    overrides, res = split_config(config, METHOD_KEYS)
    cfg = config_from_dict(MemoryConfig, overrides)
    if not res.data_root:
        raise ValueError("data_root must be set (the CLI resolves it; pass an absolute path)")
    if res.stream not in ("ray_data", "local"):
        raise ValueError(f"stream={res.stream!r}: choose 'ray_data' or 'local'")
    datasets = {}
    if res.stream == "ray_data":
        start = latest_saved_step(Path(res.storage_path) / res.run_name) if res.run_name else 0
        datasets["train"] = episode_dataset(
            res.data_root, cfg.train_split, dataset=cfg.dataset, n_way=cfg.n_way, n_shot=cfg.n_shot,
            image_size=cfg.image_size, base_seed=cfg.seed, start_step=start,
            n_steps=cfg.max_iters - start, meta_batch=cfg.meta_batch, num_cpus=res.data_cpus,
        )
    return torch_trainer(train_fn_per_worker, config, res, datasets=datasets, callbacks=callbacks)


def fit(config: dict[str, Any]) -> "ray.train.Result":
    """Run one training job (outside Tune) and return Ray Train's Result."""
    return build_trainer(config).fit()


def train_driver_fn(config: dict[str, Any]) -> None:
    """The Tune function trainable: builds and fits the trainer of one trial."""
    fit_in_tune(build_trainer, config)

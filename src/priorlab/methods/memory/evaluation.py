"""Evaluate a trained memory checkpoint on held-out episodes (thesis App. A.1.3, Table 2.1).

The network adapts only through its hidden states, so evaluation is a forward pass over fresh
episodes from classes never seen in training (the Vinyals test split by default). Reports
k-shot accuracy for every k the episode length allows, with 95% intervals over episodes.

    priorlab eval runs/<experiment>/train_runs/<trial>/checkpoint_000000100 --episodes 1000
"""

from __future__ import annotations

from pathlib import Path

import torch

from priorlab.data.episodes import OnlineEpisodeSampler, episode_seed
from priorlab.data.fewshot_sources import load_episode_classes
from priorlab.methods.checkpoint import load_for_eval
from priorlab.methods.memory.cl_lstm import build_model
from priorlab.methods.memory.config import MemoryConfig
from priorlab.methods.memory.loop import METHOD, evaluate

TEST_SEED = 20_250_101  # fixed so that two checkpoints are compared on the same episodes


def load_model(path: str | Path) -> tuple[torch.nn.Module, MemoryConfig, int]:
    return load_for_eval(path, METHOD, MemoryConfig, build_model)


def evaluate_checkpoint(
    path: str | Path, data_root: Path, *, episodes: int = 1000, split: str = "test",
    batch_size: int = 50, seed: int = TEST_SEED, progress: bool = True,
) -> dict[str, float]:
    model, cfg, step = load_model(path)
    classes = load_episode_classes(data_root, cfg.dataset, split, cfg.image_size, progress=progress)
    sampler = OnlineEpisodeSampler(classes, cfg.n_way, cfg.n_shot)
    seeds = [episode_seed(seed, i) for i in range(episodes)]
    shots = list(range(cfg.n_shot))
    metrics = evaluate(model, sampler, seeds, shots, batch_size=batch_size)
    metrics["step"] = float(step)
    return metrics

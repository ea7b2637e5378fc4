"""Training and evaluation loop for layer-distributed memory (thesis Sec. 2.3.4, App. A.1.3).

Training is episodic: a loss at every time step, summed over the episode, back-propagated
through time at the end of it; Adam 1e-3 over meta-batches of 16 episodes. Evaluation runs
the trained network on fresh episodes from held-out classes; adaptation happens only in the
hidden states. k-shot accuracy is measured on the (k+1)-th appearance of each class and
reported with a 95% interval over episodes.

A training step runs eagerly, with its time step compiled, as one captured CUDA graph, in bf16
or NHWC, as ``MemoryConfig`` says (``accel``, ``precision``, ``channels_last``; see
:mod:`priorlab.methods.memory.accel`); evaluation and checkpoints use the plain module either way.

The same :func:`train` drives the bare in-process loop (``benchmarks/``, tests) and the Ray
Train worker (``priorlab.trainables.memory``): only the batch iterator and the report callback
differ.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from priorlab.methods.checkpoint import LoadedCheckpoint, restore_training, save_checkpoint
from priorlab.methods.configuration import config_to_dict
from priorlab.methods.memory.accel import (
    GRAPH_ACCELS, GraphedTrainStep, autocast, check_execution, training_forward,
)
from priorlab.methods.memory.cl_lstm import build_model
from priorlab.methods.memory.config import MemoryConfig
from priorlab.methods.memory.protocol import kshot_counts

METHOD = "memory"


class EpisodeSource(Protocol):
    def sample_batch(self, seeds: Iterable[int]) -> tuple[np.ndarray, np.ndarray]: ...


def to_inputs(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, device: torch.device):
    """uint8 images (B, T, C, H, W) -> float in [0, 1]; labels -> int64, both on ``device``."""
    x = torch.as_tensor(x).to(device)
    if x.dtype == torch.uint8:
        x = x.to(torch.float32).div_(255.0)
    return x.to(torch.float32), torch.as_tensor(y).to(device=device, dtype=torch.int64)


def episode_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sec. 2.3.4: cross-entropy summed over the T steps, averaged over episodes."""
    ce = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
    return ce.view_as(y.to(ce.dtype)).sum(1).mean()


def mean_ci95(values: np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of a normal 95% interval."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return float("nan"), float("nan")
    if values.size == 1:
        return float(values.mean()), float("nan")
    return float(values.mean()), float(1.96 * values.std(ddof=1) / math.sqrt(values.size))


@torch.no_grad()
def evaluate(
    model: nn.Module,
    source: EpisodeSource,
    seeds: list[int],
    shots: list[int],
    *,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """k-shot accuracies over the episodes ``seeds``: ``eval/acc_{k}shot`` and ``..._ci95``."""
    was_training = model.training
    model.eval()
    per_episode: dict[int, list[np.ndarray]] = {k: [] for k in shots}
    device = torch.device(device)
    for start in range(0, len(seeds), batch_size):
        x, y = to_inputs(*source.sample_batch(seeds[start:start + batch_size]), device)
        counts = kshot_counts(model(x, y), y, shots)
        for k, (correct, count) in counts.items():
            keep = count > 0
            per_episode[k].append((correct[keep].float() / count[keep].float()).cpu().numpy())
    model.train(was_training)
    metrics: dict[str, float] = {"eval/episodes": float(len(seeds))}
    for k in shots:
        mean, ci = mean_ci95(np.concatenate(per_episode[k]) if per_episode[k] else np.array([]))
        metrics[f"eval/acc_{k}shot"] = mean
        metrics[f"eval/acc_{k}shot_ci95"] = ci
    return metrics


@dataclass
class MemoryLearner:
    """Model + optimiser + step counter: everything a checkpoint must restore."""

    cfg: MemoryConfig
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    wrap: Callable[[nn.Module], nn.Module] | None = None
    """Optional wrapper (e.g. Ray Train's prepare_model for DDP), applied after building."""

    def __post_init__(self):
        self.device = torch.device(self.device)
        # cfg.accel resolved for this device (auto -> the measured default); errors are raised here.
        self.accel = check_execution(self.cfg, self.device, wrapped=self.wrap is not None)
        torch.manual_seed(self.cfg.seed)
        model = build_model(self.cfg).to(self.device)
        self.model = self.wrap(model) if self.wrap is not None else model
        graphed = self.accel in GRAPH_ACCELS
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr,
                                          capturable=graphed)
        self.step = 0
        self._forward = training_forward(self.model, self.bare_model, self.cfg, self.accel)
        self._graph: GraphedTrainStep | None = None
        self._graphed = graphed

    @property
    def bare_model(self) -> nn.Module:
        return getattr(self.model, "module", self.model)

    def restore(self, ckpt: LoadedCheckpoint) -> None:
        if restore_training(self.bare_model, self.optimizer, ckpt):
            self._graph = None  # new optimiser tensors: the captured graph is stale
        self.step = ckpt.step

    def _run_step(self, x: torch.Tensor, y: torch.Tensor, *, cache_autocast: bool = True) -> torch.Tensor:
        """Forward, backward and the optimiser update; the loss, left on the device."""
        with autocast(self.cfg, self.device, cache_enabled=cache_autocast):
            logits = self._forward(x, y)
        loss = episode_loss(logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        return loss.detach()

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        self.model.train()
        if self._graphed:
            if self._graph is None:  # captured on the first batch: its shapes are the static ones
                self._graph = GraphedTrainStep(
                    lambda a, b: self._run_step(a, b, cache_autocast=False), self.optimizer, x, y)
            loss = self._graph(x, y)
        else:
            loss = self._run_step(x, y)
        self.step += 1
        return float(loss)

    def save(self, directory, metrics: dict[str, Any] | None = None):
        return save_checkpoint(
            directory, method=METHOD, step=self.step, config=config_to_dict(self.cfg),
            model=self.bare_model, optimizer=self.optimizer, metrics=metrics,
        )


Report = Callable[[dict[str, float], "Callable[[str], Any] | None"], None]


def train(
    learner: MemoryLearner,
    batches: Iterator[tuple[Any, Any]],
    *,
    evaluate_fn: Callable[[nn.Module], dict[str, float]] | None,
    report: Report,
    max_iters: int | None = None,
) -> None:
    """Run until ``max_iters`` (default cfg.max_iters), evaluating every ``cfg.eval_every``.

    ``batches`` yields (x, y) meta-batches; ``report(metrics, save)`` is called at every
    evaluation, where ``save(directory)`` writes the checkpoint if the caller wants one.
    """
    cfg = learner.cfg
    max_iters = cfg.max_iters if max_iters is None else max_iters
    losses: list[float] = []
    start_step = learner.step
    t0 = time.perf_counter()
    episodes = 0
    while learner.step < max_iters:
        try:
            x, y = next(batches)
        except StopIteration:
            raise RuntimeError(
                f"the episode stream ended at step {learner.step} before max_iters={max_iters}"
            ) from None
        x, y = to_inputs(x, y, learner.device)
        losses.append(learner.train_step(x, y))
        episodes += x.shape[0]
        if learner.step % cfg.eval_every == 0 or learner.step == max_iters:
            elapsed = time.perf_counter() - t0
            metrics = {
                "train/loss": float(np.mean(losses)),
                "train/episodes_per_s": episodes / max(elapsed, 1e-9),
                "step": float(learner.step),
                "train/start_step": float(start_step),
            }
            if evaluate_fn is not None:
                metrics.update(evaluate_fn(learner.model))
            report(metrics, learner.save)
            losses, episodes, t0 = [], 0, time.perf_counter()

"""Training and evaluation of online few-shot continual learners (thesis Sec. 2.4.3, Fig. 2.3 and
2.4; App. A.3; App. A.2 with ``order=shuffled``).

Training is episodic: each update draws ``meta_batch`` continual tasks of the curriculum's
current length (App. A.3.1, :func:`~priorlab.methods.memory.continual.curriculum_length`), runs
the model over the support streams, and minimises the query cross-entropy (mean over query
samples and tasks) with Adam. Evaluation uses tasks from held-out classes: accuracy on the
query set for each task length in ``eval_lengths`` (Fig. 2.3, ``eval/acc_len{n}`` with a 95%
interval over tasks) and, from the longest, accuracy per subtask position
(Fig. 2.4, ``eval/acc_subtask{i}``, i = 1..n). The study metric is ``eval/acc_len{subtasks}``.

    from priorlab.data.omniglot import load_omniglot_split
    cfg = ContinualConfig(model="oml", subtasks=10, max_iters=2000, eval_every=500)
    learner = ContinualLearner(cfg)
    train_classes = load_omniglot_split(root, cfg.train_split, cfg.image_size)
    eval_classes = load_omniglot_split(root, cfg.eval_split, cfg.image_size)
    seeds = [episode_seed(TEST_SEED, i) for i in range(cfg.eval_episodes)]
    train(learner, ContinualBatches(train_classes, cfg),
          evaluate_fn=lambda m: evaluate_continual(m, eval_classes, cfg, seeds),
          report=lambda metrics, save: print(metrics))

Like :func:`priorlab.methods.memory.loop.train`, the loop knows nothing of Ray: a Ray Train
worker passes its own ``report`` (metrics + ``save(directory)`` for a checkpoint). Batches are
a pure function of (``cfg.seed``, step), so a resumed run sees the same tasks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from priorlab.data.continual import ContinualBatch, ContinualTaskSampler
from priorlab.data.episodes import ClassSource, episode_seed
from priorlab.methods.checkpoint import LoadedCheckpoint, load_for_eval, restore_training, save_checkpoint
from priorlab.methods.configuration import config_to_dict
from priorlab.methods.memory.continual import ContinualConfig, build_continual_model, curriculum_length
from priorlab.methods.memory.loop import mean_ci95

METHOD = "memory-continual"
TEST_SEED = 20_250_102  # evaluation tasks fixed across checkpoints


def _images(x, device: torch.device) -> torch.Tensor:
    x = torch.as_tensor(x).to(device)
    return x.to(torch.float32).div_(255.0) if x.dtype == torch.uint8 else x.to(torch.float32)


def batch_to_tensors(batch: ContinualBatch | Sequence, device: torch.device | str = "cpu"):
    """(sx, sy, qx, qy, q_subtask) numpy or tensors -> float images in [0, 1], int64 labels."""
    device = torch.device(device)
    sx, sy, qx, qy, qs = batch
    as_long = lambda a: torch.as_tensor(a).to(device=device, dtype=torch.int64)  # noqa: E731
    return _images(sx, device), as_long(sy), _images(qx, device), as_long(qy), as_long(qs)


def query_loss(logits: torch.Tensor, query_y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the query set, mean over query samples and tasks (Sec. 2.4.3)."""
    return F.cross_entropy(logits.flatten(0, 1).float(), query_y.flatten())


class ContinualBatches:
    """``batches(step, n_subtasks) -> ContinualBatch``: the meta-batch of update ``step``.

    Task i of update s has seed ``episode_seed(cfg.seed, s * meta_batch + i)``."""

    def __init__(self, classes: ClassSource, cfg: ContinualConfig):
        self.classes, self.cfg = classes, cfg
        self._samplers: dict[int, ContinualTaskSampler] = {}

    def sampler(self, n_subtasks: int) -> ContinualTaskSampler:
        if n_subtasks not in self._samplers:
            c = self.cfg
            self._samplers[n_subtasks] = ContinualTaskSampler(
                self.classes, n_subtasks, c.n_shot, c.n_query, c.n_labels, c.order)
        return self._samplers[n_subtasks]

    def __call__(self, step: int, n_subtasks: int) -> ContinualBatch:
        mb = self.cfg.meta_batch
        return self.sampler(n_subtasks).sample_batch(
            [episode_seed(self.cfg.seed, step * mb + i) for i in range(mb)])


@dataclass
class ContinualLearner:
    """Model + Adam + step counter: everything a checkpoint must restore."""

    cfg: ContinualConfig
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def __post_init__(self):
        self.cfg.validate()
        self.device = torch.device(self.device)
        torch.manual_seed(self.cfg.seed)
        self.model = build_continual_model(self.cfg).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.cfg.resolved_lr())
        self.step = 0

    def train_step(self, batch: ContinualBatch | Sequence) -> dict[str, float]:
        """One outer update on a meta-batch; returns ``loss`` and query ``acc``."""
        sx, sy, qx, qy, _ = batch_to_tensors(batch, self.device)
        self.model.train()
        logits = self.model(sx, sy, qx)                                     # (B, Q, k)
        loss = query_loss(logits, qy)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.step += 1
        acc = (logits.detach().argmax(-1) == qy).float().mean()
        return {"loss": float(loss.detach()), "acc": float(acc)}

    def save(self, directory, metrics: dict[str, Any] | None = None) -> Path:
        return save_checkpoint(directory, method=METHOD, step=self.step,
                               config=config_to_dict(self.cfg), model=self.model,
                               optimizer=self.optimizer, metrics=metrics)

    def restore(self, ckpt: LoadedCheckpoint) -> None:
        restore_training(self.model, self.optimizer, ckpt)
        self.step = ckpt.step


def load_model(path: str | Path) -> tuple[nn.Module, ContinualConfig, int]:
    """A trained continual model (in eval mode), its config and step, from a checkpoint."""
    return load_for_eval(path, METHOD, ContinualConfig, build_continual_model)


def evaluate_checkpoint(path: str | Path, data_root: Path, *, episodes: int = 1000, split: str = "test",
                        batch_size: int = 16, seed: int = TEST_SEED, progress: bool = True) -> dict[str, float]:
    """`priorlab eval` of a continual checkpoint: query accuracy per task length (the config's
    ``eval_lengths`` and ``subtasks``) and per subtask of the longest, on ``episodes`` tasks of
    ``split``'s classes (fixed seeds, so two checkpoints are scored on the same tasks)."""
    from priorlab.data.omniglot import load_omniglot_split

    model, cfg, step = load_model(path)
    classes = load_omniglot_split(data_root, split, cfg.image_size, progress=progress)
    metrics = evaluate_continual(model, classes, cfg, [episode_seed(seed, i) for i in range(episodes)],
                                 batch_size=batch_size)
    metrics["step"] = float(step)
    return metrics


Report = Callable[[dict[str, float], "Callable[[str], Any] | None"], None]


def train(learner: ContinualLearner, batches: Callable[[int, int], ContinualBatch | Sequence], *,
          evaluate_fn: Callable[[nn.Module], dict[str, float]] | None, report: Report,
          max_iters: int | None = None) -> None:
    """Run to ``max_iters`` (default cfg.max_iters); every ``cfg.eval_every`` updates (and at the
    end) call ``report(metrics, learner.save)``. ``batches(step, n_subtasks)`` gives the
    meta-batch of update ``step`` at the curriculum's length (:class:`ContinualBatches`)."""
    cfg = learner.cfg
    max_iters = cfg.max_iters if max_iters is None else max_iters
    losses: list[float] = []
    accs: list[float] = []
    start_step, episodes, t0 = learner.step, 0, time.perf_counter()
    while learner.step < max_iters:
        n = curriculum_length(cfg, learner.step)
        out = learner.train_step(batches(learner.step, n))
        losses.append(out["loss"])
        accs.append(out["acc"])
        episodes += cfg.meta_batch
        if learner.step % cfg.eval_every == 0 or learner.step == max_iters:
            elapsed = time.perf_counter() - t0
            metrics = {
                "train/loss": float(np.mean(losses)),
                "train/query_acc": float(np.mean(accs)),
                "train/subtasks": float(n),
                "train/episodes_per_s": episodes / max(elapsed, 1e-9),
                "step": float(learner.step),
                "train/start_step": float(start_step),
            }
            if evaluate_fn is not None:
                metrics.update(evaluate_fn(learner.model))
            report(metrics, learner.save)
            losses, accs, episodes, t0 = [], [], 0, time.perf_counter()


def evaluate_continual(
    model_or_learner: nn.Module | ContinualLearner, classes: ClassSource, cfg: ContinualConfig,
    seeds: Iterable[int], lengths: Sequence[int] | None = None, *, batch_size: int = 16,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Query accuracy on tasks ``seeds`` for every task length (default: ``cfg.eval_lengths``
    and ``cfg.subtasks``).

    Returns ``eval/acc_len{n}`` and ``eval/acc_len{n}_ci95`` (over tasks) for each n, and
    ``eval/acc_subtask{i}`` for i = 1..max(lengths) from the tasks of the longest length
    (mean over tasks of the accuracy on subtask i's queries), plus ``eval/episodes``.
    The model runs in eval mode (OML/ANML: meta-test adaptation) and is left as it was.
    """
    model = model_or_learner.model if isinstance(model_or_learner, ContinualLearner) else model_or_learner
    if device is None:
        device = next(model.parameters()).device
    seeds = list(seeds)
    if not seeds:
        raise ValueError("evaluate_continual needs at least one seed")
    if lengths is None:                     # the study metric eval/acc_len{subtasks} is always there
        lengths = [*cfg.eval_lengths, cfg.subtasks]
    lengths = sorted({int(n) for n in lengths})
    was_training = model.training
    model.eval()
    metrics: dict[str, float] = {"eval/episodes": float(len(seeds))}
    try:
        for n in lengths:
            sampler = ContinualTaskSampler(classes, n, cfg.n_shot, cfg.n_query, cfg.n_labels, cfg.order)
            per_task, per_subtask = [], []
            for start in range(0, len(seeds), batch_size):
                sx, sy, qx, qy, qs = batch_to_tensors(
                    sampler.sample_batch(seeds[start:start + batch_size]), device)
                with torch.no_grad():
                    correct = (model(sx, sy, qx).argmax(-1) == qy).float()      # (B, Q)
                per_task.append(correct.mean(1).cpu().numpy())
                onehot = F.one_hot(qs, n).float()                               # (B, Q, n)
                per_subtask.append(((correct[..., None] * onehot).sum(1) / onehot.sum(1)).cpu().numpy())
            mean, ci = mean_ci95(np.concatenate(per_task))
            metrics[f"eval/acc_len{n}"], metrics[f"eval/acc_len{n}_ci95"] = mean, ci
        for i, acc in enumerate(np.concatenate(per_subtask).mean(0), start=1):  # the longest length
            metrics[f"eval/acc_subtask{i}"] = float(acc)
    finally:
        model.train(was_training)
    return metrics

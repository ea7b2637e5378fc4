"""What the step-at-a-time HyperFields fits share (``distill.DistillFit``,
``segfields.SegFieldsFit``): per-(seed, step) random draws, the state a checkpoint needs to resume
exactly, and the wall-clock budget.

A subclass sets ``cfg`` (with ``seed`` and ``max_seconds``), ``model``, ``optimizer``, ``step``
and ``seconds``.
"""

from __future__ import annotations

import torch


class StepFit:
    cfg: object
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    step: int = 0
    seconds: float = 0.0

    def _generator(self, *key: int) -> torch.Generator:
        """A generator of (seed, step, *key): every step's draws follow from the step alone, so a
        resumed fit repeats them without carrying generator state, and ranks agree on them."""
        return torch.Generator().manual_seed(hash((self.cfg.seed, self.step, *key)) % (2 ** 63))

    def train_state(self) -> dict:
        return {"step": self.step, "seconds": self.seconds}

    def load_train_state(self, model_state: dict, optimizer_state: dict | None, state: dict) -> None:
        self.model.load_state_dict(model_state)
        if optimizer_state is not None:
            self.optimizer.load_state_dict(optimizer_state)
        self.step = int(state.get("step", 0))
        self.seconds = float(state.get("seconds", 0.0))

    def out_of_time(self) -> bool:
        return self.cfg.max_seconds > 0 and self.seconds >= self.cfg.max_seconds


def interval_metrics(rows: list[dict], keys, prefix: str = "eval/") -> dict[str, float]:
    """``prefix + key`` = the mean of ``key`` over ``rows`` (one per scene) and ``prefix + key +
    "_ci95"`` its 95% t-interval half-width (``platform.stats.mean_ci95``, numpy only; what
    `priorlab eval` prints)."""
    from priorlab.platform.stats import mean_ci95

    out: dict[str, float] = {}
    for key in keys:
        ci = mean_ci95(r[key] for r in rows)
        out[prefix + key] = ci.mean
        if ci.n > 1:
            out[prefix + key + "_ci95"] = ci.half_width
    return out

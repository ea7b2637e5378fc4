"""Checkpoint directories shared by every method (pure PyTorch; Ray wraps them in trainables).

A checkpoint is a directory a person can open and a Serve app can load later::

    meta.json         {"method": "memory", "step": 1200, "config": {...}, "metrics": {...}}
    model.pt          the model's state_dict
    train_state.pt    optimiser state and RNG states (only needed to resume training)

Writes go to a temporary sibling and are renamed into place, so an interrupted save never
leaves a half-written checkpoint and never damages an existing one.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

META = "meta.json"
MODEL = "model.pt"
TRAIN_STATE = "train_state.pt"


class CheckpointError(ValueError):
    """A path that is not a priorlab checkpoint, or one for another method."""


def rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save_checkpoint(
    directory: str | os.PathLike,
    *,
    method: str,
    step: int,
    config: dict[str, Any],
    model: torch.nn.Module | dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    metrics: dict[str, Any] | None = None,
    extra_state: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint into ``directory`` (created; must not already hold a checkpoint).

    ``model`` is a module or its state dict already gathered (e.g. from ZeRO shards)."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        torch.save(model.state_dict() if isinstance(model, torch.nn.Module) else model, tmp / MODEL)
        state = {"rng": rng_state()}
        if optimizer is not None:
            state["optimizer"] = optimizer.state_dict()
        state.update(extra_state or {})
        torch.save(state, tmp / TRAIN_STATE)
        meta = {"method": method, "step": int(step), "config": config, "metrics": metrics or {}}
        (tmp / META).write_text(json.dumps(meta, indent=2, default=float))
        if directory.exists() and any(directory.iterdir()):
            raise CheckpointError(f"{directory} already holds files; refusing to overwrite it")
        if directory.exists():
            directory.rmdir()
        os.replace(tmp, directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return directory


@dataclass
class LoadedCheckpoint:
    path: Path
    method: str
    step: int
    config: dict[str, Any]
    metrics: dict[str, Any]
    model_state: dict[str, torch.Tensor]
    train_state: dict[str, Any] | None


def read_meta(directory: str | os.PathLike) -> dict[str, Any]:
    directory = Path(directory)
    meta_path = directory / META
    if not meta_path.is_file():
        raise CheckpointError(
            f"{directory} is not a priorlab checkpoint (no {META}); pass a checkpoint "
            "directory such as EXPERIMENT/train_runs/train_<trial>/checkpoint_<step> (see `priorlab sweep` output)"
        )
    return json.loads(meta_path.read_text())


def load_checkpoint(
    directory: str | os.PathLike, *, method: str | None = None, with_train_state: bool = True
) -> LoadedCheckpoint:
    directory = Path(directory)
    meta = read_meta(directory)
    if method is not None and meta["method"] != method:
        raise CheckpointError(
            f"{directory} is a {meta['method']!r} checkpoint, expected a {method!r} one"
        )
    model_state = torch.load(directory / MODEL, map_location="cpu", weights_only=True)
    train_state = None
    if with_train_state and (directory / TRAIN_STATE).is_file():
        train_state = torch.load(directory / TRAIN_STATE, map_location="cpu", weights_only=False)
    return LoadedCheckpoint(
        path=directory, method=meta["method"], step=int(meta["step"]), config=meta["config"],
        metrics=meta.get("metrics", {}), model_state=model_state, train_state=train_state,
    )

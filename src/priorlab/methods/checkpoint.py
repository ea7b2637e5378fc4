"""Checkpoint directories shared by every method (pure PyTorch; Ray wraps them in trainables).

A checkpoint is a directory a person can open and a Serve app can load later::

    meta.json         {"method": "memory", "step": 1200, "config": {...}, "metrics": {...}}
    model.pt          the model's state_dict
    train_state.pt    optimiser state and RNG states: torch CPU + CUDA, numpy, Python
                      (only needed to resume training)

Both tensor files are read with ``torch.load(weights_only=True)``: loading a checkpoint never
executes pickled code, so everything saved is tensors, numbers, strings and containers of them.
A missing, truncated or foreign file raises :class:`CheckpointError` naming the file.

Writes go to a temporary sibling and are renamed into place, so an interrupted save never
leaves a half-written checkpoint and never damages an existing one.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

META = "meta.json"
MODEL = "model.pt"
TRAIN_STATE = "train_state.pt"


class CheckpointError(ValueError):
    """A path that is not a priorlab checkpoint, a damaged one, or one for another method."""


def _cuda_rng() -> list[torch.Tensor] | None:
    return torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None


def rng_state() -> dict[str, Any]:
    """Every RNG a training step draws from, in types ``torch.load(weights_only=True)`` accepts:
    torch (CPU and, when initialised, every CUDA device), numpy's global MT19937 and Python's."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next},
    }
    cuda = _cuda_rng()
    if cuda is not None:
        state["cuda"] = cuda
    return state


def restore_training(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     ckpt: "LoadedCheckpoint") -> bool:
    """What every learner's ``restore`` does: the weights, then (when the checkpoint kept them)
    the optimiser and the RNG states. True when the optimiser's state was loaded."""
    model.load_state_dict(ckpt.model_state)
    if ckpt.train_state is None:
        return False
    loaded = "optimizer" in ckpt.train_state
    if loaded:
        optimizer.load_state_dict(ckpt.train_state["optimizer"])
    set_rng_state(ckpt.train_state["rng"])
    return loaded


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved (also the numpy/tuple layout of older checkpoints)."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    if isinstance(np_state, dict):
        keys = np_state["keys"]
        keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
        np_state = (np_state["kind"], keys.astype(np.uint32), np_state["pos"],
                    np_state["has_gauss"], np_state["cached_gaussian"])
    np.random.set_state(np_state)
    py = state["python"]
    if isinstance(py, dict):
        py = (py["version"], tuple(py["internal"]), py["gauss_next"])
    random.setstate(py)
    if state.get("cuda") is not None and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:  # resumed on a machine with another GPU count: restore the devices both have
            for i, s in enumerate(cuda[:torch.cuda.device_count()]):
                torch.cuda.set_rng_state(s, i)


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
    spec: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint into ``directory`` (created; must not already hold a checkpoint).

    ``model`` is a module or its state dict already gathered (e.g. from ZeRO shards). ``spec``: a
    JSON-able description the model is rebuilt from besides its config (e.g. a molecular
    diffusion model's vocabulary and data marginals), kept in meta.json."""
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
        if spec is not None:
            meta["spec"] = spec
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
    spec: dict[str, Any] | None = None


_HOW_TO_FIX = ("use another checkpoint of the same run (the previous checkpoint_* folder), or "
               "move this folder away so that resuming starts from the previous one")


def read_meta(directory: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's ``meta.json``, checked: a JSON object with ``method``, ``step`` and
    ``config``. Anything else raises :class:`CheckpointError` naming the file and the problem."""
    directory = Path(directory)
    meta_path = directory / META
    if not directory.is_dir():
        raise CheckpointError(f"{directory} does not exist or is not a folder; pass a checkpoint "
                              "folder, a trial's run folder or an experiment folder")
    if not meta_path.is_file():
        raise CheckpointError(
            f"{directory} is not a priorlab checkpoint (no {META}); pass a checkpoint "
            "directory such as EXPERIMENT/train_runs/train_<trial>/checkpoint_<step> (see `priorlab sweep` output)"
        )
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{meta_path} is damaged: not readable JSON ({err}); {_HOW_TO_FIX}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{meta_path} is damaged: expected a JSON object, found "
                              f"{type(meta).__name__}; {_HOW_TO_FIX}")
    missing = [k for k in ("method", "step", "config") if k not in meta]
    if missing:
        raise CheckpointError(f"{meta_path} is damaged or not priorlab's: it has no {missing} "
                              f"(keys: {sorted(meta)}); {_HOW_TO_FIX}")
    if not isinstance(meta["config"], dict):
        raise CheckpointError(f"{meta_path}: 'config' should be an object, found "
                              f"{type(meta['config']).__name__}; {_HOW_TO_FIX}")
    try:
        meta["step"] = int(meta["step"])
    except (TypeError, ValueError):
        raise CheckpointError(f"{meta_path}: 'step' should be an integer, found {meta['step']!r}; "
                              f"{_HOW_TO_FIX}") from None
    return meta


def _numpy_globals() -> list:
    """What older checkpoints (numpy RNG state pickled as an array) need to load weights-only."""
    core = getattr(np, "_core", None) or np.core
    out = [core.multiarray._reconstruct, np.ndarray, np.dtype]
    dtype_cls = getattr(getattr(np, "dtypes", None), "UInt32DType", None)
    return out + ([dtype_cls] if dtype_cls is not None else [])


def _load_tensor_file(path: Path, what: str) -> Any:
    """``torch.load(path, weights_only=True)`` (nothing pickled is executed), with every way the
    file can be wrong turned into a CheckpointError that names it."""
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: the checkpoint has no {what}; {_HOW_TO_FIX}")
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            if "numpy" not in str(err):
                raise
            with torch.serialization.safe_globals(_numpy_globals()):
                return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"{path} holds objects a weights-only load refuses (it was not written "
                              f"by priorlab, or by an incompatible version): {str(err).splitlines()[0]}; "
                              f"{_HOW_TO_FIX}") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"{path} is damaged (truncated or not a torch file: "
                              f"{str(err).splitlines()[0] if str(err) else type(err).__name__}); "
                              f"{_HOW_TO_FIX}") from None


def load_checkpoint(
    directory: str | os.PathLike, *, method: str | None = None, with_train_state: bool = True
) -> LoadedCheckpoint:
    """Read a checkpoint folder. Every file is checked: a missing, truncated or foreign file, or a
    checkpoint of another method, raises :class:`CheckpointError` saying which file and what is
    wrong. Tensors are loaded with ``weights_only=True``."""
    directory = Path(directory)
    meta = read_meta(directory)
    if method is not None and meta["method"] != method:
        raise CheckpointError(
            f"{directory} is a {meta['method']!r} checkpoint, expected a {method!r} one"
        )
    model_state = _load_tensor_file(directory / MODEL, "model weights")
    if not isinstance(model_state, dict):
        raise CheckpointError(f"{directory / MODEL} should hold a state dict, found "
                              f"{type(model_state).__name__}; {_HOW_TO_FIX}")
    train_state = None
    if with_train_state and (directory / TRAIN_STATE).exists():
        train_state = _load_tensor_file(directory / TRAIN_STATE, "training state")
        if not isinstance(train_state, dict):
            raise CheckpointError(f"{directory / TRAIN_STATE} should hold a dict, found "
                                  f"{type(train_state).__name__}; {_HOW_TO_FIX}")
    return LoadedCheckpoint(
        path=directory, method=meta["method"], step=int(meta["step"]), config=meta["config"],
        metrics=meta.get("metrics", {}), model_state=model_state, train_state=train_state,
        spec=meta.get("spec"),
    )


def load_for_eval(path: str | os.PathLike, method: str, config_cls: type, build) -> tuple[torch.nn.Module, Any, int]:
    """(model in eval mode, its config, its step) from a ``method`` checkpoint, the model made by
    ``build(config)``: what every family's ``load_model`` does."""
    from priorlab.methods.configuration import config_from_dict

    ckpt = load_checkpoint(path, method=method, with_train_state=False)
    cfg = config_from_dict(config_cls, ckpt.config)
    model = build(cfg)
    model.load_state_dict(ckpt.model_state)
    return model.eval(), cfg, ckpt.step

"""How a CL+LSTM training step runs: eager, torch.compile, a captured CUDA graph, bf16, NHWC.

Thesis Sec. 2.3.4 and App. A.1.4 train the CL+LSTM of Sec. 2.3.3 for 100k meta-batches of 16
episodes of T = 50 steps; Sec. 2.4.3 counts 0.40 GFLOPs per time step. On a GPU that step is
launch-bound, not arithmetic-bound: the recurrence is T x (4 ConvLSTM layers + LSTM) of small
kernels, forward and backward (benchmarks/gpu_check_h200.json: 163 ms per meta-batch on an
H200, ~6 TFLOP/s counting forward + backward as 3x the forward FLOPs, a small fraction of the
card's fp32 rate). The options below (fields of ``MemoryConfig``) attack that
overhead without changing the method:

- ``compile``: torch.compile (inductor) of :meth:`CLLSTM.step`, one time step, so the gate
  arithmetic is fused. One step rather than the unrolled T-step forward: the graph is T times
  smaller and compiles once, whatever T is (the whole-episode graph would be recompiled for
  every episode length). A cold compile of the step still takes 60-100 s on a 2-core CPU.
- ``cuda_graph``: the whole static-shape training step (forward, backward, the Adam update)
  captured once into one CUDA graph and replayed; inputs are copied into static buffers, the
  optimiser is Adam(capturable=True). One launch per meta-batch instead of thousands, and no
  compile time. This is chosen over ``torch.compile(mode="reduce-overhead")``, which records
  graphs per compiled call (2 x (T - 1) calls per step here, each with its guard checks and
  input copies) and leaves the optimiser step outside them; that mode stays available
  (``compile_mode``) so the prepared GPU benchmark measures both.
- ``compile_cuda_graph``: the compiled step's kernels inside the captured whole-step graph.
- ``precision=bf16``: the forward under torch.autocast(bfloat16); loss and Adam in fp32.
- ``channels_last``: NHWC weights, states and inputs (see cl_lstm.py).

``accel=auto`` picks :data:`DEFAULT_ACCEL` for the learner's device. Those defaults come from
``benchmarks/memory_speed.py`` (eager vs every option, same card, one run, with the loss
trajectory checked against eager): on CPU it is whatever was measured faster *and* exact; for
CUDA it is eager until the prepared GPU run has been made, after which one entry is flipped.
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable

import torch
from torch import nn

from priorlab.methods.configuration import ConfigError
from priorlab.methods.memory.config import MemoryConfig

DEFAULT_ACCEL = {
    # memory_speed_cpu.json / _cpu_small.json (2-core CPU): compile was bit-exact but 0.87x
    # (paper size) and 1.04x (small) eager's steps/s, within the noise of a shared machine, and
    # costs 60-100 s of compiling per process: eager stays.
    "cpu": "eager",
    # Pending: run benchmarks/gpu_memory_speed.sh on a GPU, then set the fastest fp32 variant
    # that passes its exactness check (memory_speed_cuda.json, "default_candidate").
    "cuda": "eager",
}
GRAPH_ACCELS = ("cuda_graph", "compile_cuda_graph")
COMPILE_ACCELS = ("compile", "compile_cuda_graph")


def resolve_accel(cfg: MemoryConfig, device: torch.device) -> str:
    """``cfg.accel`` with ``auto`` replaced by this device type's measured default."""
    if cfg.accel != "auto":
        return cfg.accel
    return DEFAULT_ACCEL.get(device.type, "eager")


def check_execution(cfg: MemoryConfig, device: torch.device, *, wrapped: bool = False) -> str:
    """Raise ConfigError for an option this device (or a DDP-wrapped model) cannot run;
    return the resolved ``accel``."""
    accel = resolve_accel(cfg, device)
    if accel in GRAPH_ACCELS and device.type != "cuda":
        raise ConfigError(
            f"accel={accel} captures the training step as a CUDA graph and needs a CUDA device; "
            f"this learner runs on {device.type!r}: use accel=compile or accel=eager here")
    if accel in GRAPH_ACCELS and wrapped:
        raise ConfigError(
            f"accel={accel} captures a single-process training step; with several Train workers "
            "(DDP) use accel=compile or accel=eager, or train on one worker")
    if cfg.compile_mode != "default" and accel not in COMPILE_ACCELS:
        raise ConfigError(
            f"compile_mode={cfg.compile_mode} only applies to accel=compile or compile_cuda_graph "
            f"(accel resolves to {accel!r} on {device.type}): set accel=compile or drop compile_mode")
    if cfg.compile_mode == "reduce-overhead" and device.type != "cuda":
        raise ConfigError(
            "compile_mode=reduce-overhead records CUDA graphs and needs a CUDA device; this "
            f"learner runs on {device.type!r}: use compile_mode=default")
    if cfg.precision == "bf16":
        if device.type not in ("cpu", "cuda"):
            raise ConfigError(f"precision=bf16 runs on cpu or cuda devices, not {device.type!r}")
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError(f"precision=bf16: {torch.cuda.get_device_name(device)} has no bf16 "
                              "support; use precision=fp32")
    return accel


def autocast(cfg: MemoryConfig, device: torch.device, *, cache_enabled: bool = True):
    """The forward's precision context (a no-op for fp32). Graph capture needs the autocast
    weight cache off: cached casts made during capture would be stale at replay."""
    if cfg.precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache_enabled)


def training_forward(model: nn.Module, bare: nn.Module, cfg: MemoryConfig,
                     accel: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """(x, y) -> logits for training: ``model`` itself, or with its time step compiled.

    The module (and so its state dict) is never replaced: the compiled function is kept beside
    it, and evaluation and checkpoints use the plain module."""
    if accel not in COMPILE_ACCELS:
        return model
    mode = None if cfg.compile_mode == "default" else cfg.compile_mode
    if hasattr(bare, "step"):  # CL+LSTM: compile one time step, reused for steps 1..T-1
        step = torch.compile(bare.step, mode=mode, dynamic=False)
        return lambda x, y: model(x, y, step_fn=step)
    return torch.compile(model, mode=mode, dynamic=False)  # LSTM baseline: one fused LSTM


def snapshot(optimizer: torch.optim.Optimizer) -> Callable[[], None]:
    """Remember the parameters and state of an Adam-like optimiser; the returned function puts
    them back *in place* (a captured graph keeps the tensors' addresses). State created after
    the snapshot is zeroed, which is Adam's fresh state (step 0, zero moments)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    saved_params = [p.detach().clone() for p in params]
    saved_state = {p: {k: v.clone() if torch.is_tensor(v) else v
                       for k, v in optimizer.state[p].items()}
                   for p in params if p in optimizer.state}

    @torch.no_grad()
    def undo() -> None:
        for p, saved in zip(params, saved_params):
            p.copy_(saved)
        for p in params:
            old = saved_state.get(p)
            for k, v in optimizer.state.get(p, {}).items():
                if not torch.is_tensor(v):
                    continue
                if old is None:
                    v.zero_()
                else:
                    v.copy_(old[k])

    return undo


class GraphedTrainStep:
    """One static-shape training step (forward, backward, optimiser) captured as a CUDA graph.

    ``run_step(x, y)`` must do the whole step on CUDA tensors and return the loss tensor, with
    no host synchronisation inside. Construction warms up on a side stream (cuDNN algorithm
    choice, compilation, the lazily created Adam state), puts parameters and optimiser state
    back to what they were, and captures; so the first replay is the same update an eager step
    would have made. ``capture_s`` is the wall time all that took.

    The optimiser must be Adam-like: a fresh state is all zeros (Adam, AdamW; capturable=True).
    Loading a new optimiser state dict replaces its tensors, so capture again after that.
    """

    def __init__(self, run_step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                 warmup: int = 3):
        t0 = time.perf_counter()
        self.static_x, self.static_y = x.detach().clone(), y.detach().clone()
        undo = snapshot(optimizer)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                run_step(self.static_x, self.static_y)
        torch.cuda.current_stream().wait_stream(side)
        undo()  # the first replay must make the update an eager step would have made
        optimizer.zero_grad(set_to_none=True)  # backward allocates .grad in the graph's pool
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.static_loss = run_step(self.static_x, self.static_y)
        torch.cuda.synchronize()
        self.capture_s = time.perf_counter() - t0

    def matches(self, x: torch.Tensor, y: torch.Tensor) -> bool:
        return (x.shape == self.static_x.shape and y.shape == self.static_y.shape
                and x.dtype == self.static_x.dtype and y.dtype == self.static_y.dtype)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if not self.matches(x, y):
            raise ConfigError(
                f"accel=cuda_graph captured the step for batches x{tuple(self.static_x.shape)} "
                f"y{tuple(self.static_y.shape)}, got x{tuple(x.shape)} y{tuple(y.shape)}: a CUDA "
                "graph needs static shapes (a fixed meta_batch and episode length); use "
                "accel=compile or accel=eager for varying batches")
        self.static_x.copy_(x)
        self.static_y.copy_(y)
        self.graph.replay()
        return self.static_loss

"""DeepSpeed ZeRO for the supervised (Hyper)ResNet/WRN loop (``HyperConfig.strategy="deepspeed"``).

The learner's model and its plain torch SGD (the same param groups: no weight decay on
embeddings and hypernetworks, Sec. 3.3) are wrapped by ``deepspeed.initialize``; ZeRO stage 1/2/3
partitions optimiser state / gradients / parameters across the data-parallel workers. Nothing
else changes: the LR schedule steps the client optimiser's param groups, which ZeRO keeps as its
own; the loss, output-l2 penalty and SWA are the learner's. Checkpoints stay in the priorlab
format: :func:`full_state` gathers every parameter and SGD momentum buffer from the shards (a
collective: every rank calls it, rank 0 writes), so a DeepSpeed checkpoint restores into a plain
learner and vice versa (:func:`load_full_state`).

DeepSpeed is imported here only, and only when a learner asks for it. On CPU it runs with
``DS_ACCELERATOR=cpu`` over gloo; its shared-memory all-reduce kernel, which it would compile
with a C++ toolchain on first use (~1 min on 2 cores), is switched off: gloo reduces instead.
This is pure PyTorch + DeepSpeed (no Ray): the process group comes from whoever started the
workers (Ray Train's TorchConfig, torchrun), or a single-process one is made here.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from priorlab.methods.configuration import ConfigError

MOMENTUM = "momentum_buffer"  # torch.optim.SGD's state key


def import_deepspeed(device: torch.device):
    """Import deepspeed with the accelerator matching ``device`` (cpu or cuda)."""
    want = device.type
    if want not in ("cpu", "cuda"):
        raise ConfigError(f"strategy=deepspeed runs on cpu or cuda devices, not {want!r}")
    # The accelerator is chosen once per process, when deepspeed first asks for it.
    os.environ.setdefault("DS_ACCELERATOR", want)
    try:
        import deepspeed
        from deepspeed.accelerator import get_accelerator
    except ImportError as err:  # deepspeed is a pinned dependency; an old venv may lack it
        raise ImportError(
            "strategy=deepspeed needs the deepspeed package (pinned in pyproject.toml; "
            f"run scripts/setup.sh): {err}") from err
    have = get_accelerator().device_name()
    if have != want:
        raise ConfigError(
            f"DeepSpeed's accelerator is {have!r} but the learner runs on {want!r}: set "
            f"DS_ACCELERATOR={want} before anything imports deepspeed")
    if want == "cpu":
        import deepspeed.ops

        # The op table is DeepSpeed's own per-process cache; marking the shm kernel incompatible
        # makes its comm backend skip building it and use gloo's all-reduce.
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    return deepspeed


def ensure_process_group() -> None:
    """A process group for DeepSpeed: the existing one, else a single-process gloo group.

    The single-process group uses an in-memory store, so it opens no port."""
    if not dist.is_initialized():
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    # DeepSpeed requires LOCAL_RANK; Ray Train and torchrun set it, a bare single process does not.
    if "LOCAL_RANK" not in os.environ and dist.get_world_size() == 1:
        os.environ["LOCAL_RANK"] = "0"


def ds_config(cfg, micro_batch: int) -> dict[str, Any]:
    """The DeepSpeed config for a HyperConfig: ZeRO stage, no clipping, no fp16/bf16 weights;
    ``precision`` becomes DeepSpeed's torch_autocast section (its own GradScaler for fp16)."""
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": int(micro_batch),
        "gradient_accumulation_steps": 1,
        "gradient_clipping": 0.0,  # the paper recipe does not clip
        "zero_optimization": {"stage": int(cfg.zero_stage)},
        "fp16": {"enabled": False},
        "bf16": {"enabled": False},
        "zero_allow_untested_optimizer": True,  # a plain torch.optim.SGD
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }
    if cfg.zero_stage == 3:
        # Partition every parameter, however small (DeepSpeed keeps tensors < 1e5 elements
        # whole by default, which would hide a sharding bug on small models).
        config["zero_optimization"]["stage3_param_persistence_threshold"] = 0
    if cfg.precision != "fp32":
        config["torch_autocast"] = {
            "enabled": True,
            "dtype": {"bf16": "bfloat16", "fp16": "float16"}[cfg.precision],
            # gradients are reduced in fp32, as in the plain path
            "lower_precision_safe_modules": [],
        }
    return config


def initialize(model: nn.Module, optimizer: torch.optim.Optimizer, cfg, device: torch.device):
    """``deepspeed.initialize`` of ``model`` and its client ``optimizer``: (engine, zero_optimizer).

    The client optimiser's param-group dicts stay the ones ZeRO steps with (only their
    ``params`` are replaced by flat partitions), so LR schedulers built on it keep working."""
    deepspeed = import_deepspeed(device)
    ensure_process_group()
    world = dist.get_world_size()
    if cfg.batch_size % world:
        raise ConfigError(f"batch_size={cfg.batch_size} must be divisible by the {world} workers")
    engine, zero_optimizer, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, config=ds_config(cfg, cfg.batch_size // world))
    return engine, zero_optimizer


def _get(param, key: str | None = None) -> torch.Tensor:
    from deepspeed.utils import safe_get_full_fp32_param, safe_get_full_optimizer_state

    out = safe_get_full_fp32_param(param) if key is None else safe_get_full_optimizer_state(param, key)
    if out is None:
        raise RuntimeError("a parameter is not managed by the DeepSpeed ZeRO optimizer")
    return out.detach().to("cpu", torch.float32).reshape(param.ds_shape if hasattr(param, "ds_shape")
                                                          else param.shape).clone()


def _link_optimizer_state(zero_optimizer) -> None:
    """Point every ZeRO-1/2 parameter fragment at the optimiser state of its flat partition.

    DeepSpeed links them once, right after the first param group's first step, when SGD has
    not yet created momentum for the other groups (they would stay unreadable); relinking once
    every group has state is what its own lazy linking does, done again."""
    if not hasattr(zero_optimizer, "single_partition_of_fp32_groups"):
        return  # ZeRO-3 reads optimiser state by offset, not through fragments
    from deepspeed.utils.mixed_precision_linkage import lazy_init_hp_params_optimizer_state

    for lp_params, flat in zip(zero_optimizer.bit16_groups,
                               zero_optimizer.single_partition_of_fp32_groups):
        lazy_init_hp_params_optimizer_state(lp_params, flat, zero_optimizer.optimizer.state)


def full_state(engine, zero_optimizer, param_lists: list[list[nn.Parameter]],
               client_groups: list[dict]) -> tuple[dict, dict]:
    """(model state_dict, torch SGD state_dict) gathered from the ZeRO shards.

    Collective: every rank must call it, in step. ``param_lists`` are the client optimiser's
    groups as built (ZeRO replaces them by flat partitions), ``client_groups`` its group dicts
    (lr, momentum, weight_decay and the schedulers' keys). The SGD state_dict is what
    ``torch.optim.SGD(groups).state_dict()`` would be, so a plain learner loads it as is."""
    module = engine.module
    stepped = engine.global_steps > 0  # SGD creates momentum at its first step
    if stepped:
        _link_optimizer_state(zero_optimizer)
    model_state = {}
    for key, value in module.state_dict().items():
        model_state[key] = value.detach().to("cpu").clone()
    for name, p in module.named_parameters():
        model_state[name] = _get(p)
    state, groups, index = {}, [], 0
    for params, group in zip(param_lists, client_groups):
        ids = []
        for p in params:
            if stepped:
                state[index] = {MOMENTUM: _get(p, MOMENTUM)}
            ids.append(index)
            index += 1
        groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
    return model_state, {"state": state, "param_groups": groups}


def load_full_state(engine, zero_optimizer, param_lists: list[list[nn.Parameter]],
                    model_state: dict[str, torch.Tensor], optimizer_state: dict | None) -> None:
    """Load a consolidated (priorlab-format) model state and SGD state into a ZeRO engine.

    Collective. Weights go into the module's working copies (gathered under ZeRO-3) and from
    there into ZeRO's fp32 masters (``refresh_fp32_params``, DeepSpeed's own path for loading
    module weights); momentum buffers go into each rank's partition of the optimiser state.
    Hyperparameters in ``optimizer_state`` (lr, initial_lr, ...) replace the current groups', as
    ``torch.optim.Optimizer.load_state_dict`` does."""
    from deepspeed import zero
    from deepspeed.utils import safe_set_full_optimizer_state

    module = engine.module
    params = list(module.parameters())
    stage3 = any(hasattr(p, "ds_id") for p in params)
    missing = sorted(set(n for n, _ in module.named_parameters()) - set(model_state))
    if missing:
        raise KeyError(f"the checkpoint lacks parameters {missing[:5]}")
    with torch.no_grad():
        if stage3:
            with zero.GatheredParameters(params, modifier_rank=0):
                if dist.get_rank() == 0:
                    module.load_state_dict(model_state)
        else:
            module.load_state_dict(model_state)  # copies into ZeRO's flat buffers in place
        for name, b in module.named_buffers():  # replicated, never partitioned
            b.copy_(model_state[name].to(b.device, b.dtype))
    zero_optimizer.refresh_fp32_params()
    if not optimizer_state:
        return
    saved_groups = optimizer_state["param_groups"]
    if [len(g["params"]) for g in saved_groups] != [len(p) for p in param_lists]:
        raise ValueError("the checkpoint's optimiser groups do not match this model's "
                         "(another architecture or hyper setting?)")
    for group, saved in zip(zero_optimizer.param_groups, saved_groups):
        group.update({k: v for k, v in saved.items() if k != "params"})
    saved_state = optimizer_state["state"]
    if not saved_state:
        return
    # SGD creates momentum at its first step; give every ZeRO partition a buffer first (torch's
    # own state layout), link the per-parameter fragments to it, then fill each fragment.
    base = zero_optimizer.optimizer
    if stage3:  # ZeRO-3 swaps its flat fp32 sub-groups into the base optimiser only to step
        flats = list(zero_optimizer.fp32_partitioned_groups_flat)
    else:
        flats = [flat for group in base.param_groups for flat in group["params"]]
    for flat in flats:
        base.state[flat].setdefault(MOMENTUM, torch.zeros_like(flat))
    _link_optimizer_state(zero_optimizer)
    for plist, saved in zip(param_lists, saved_groups):
        for p, i in zip(plist, saved["params"]):
            if MOMENTUM in saved_state.get(i, {}):
                safe_set_full_optimizer_state(p, saved_state[i][MOMENTUM].to(torch.float32), MOMENTUM)


def grad_scale(zero_optimizer) -> float:
    """The loss scale of DeepSpeed's fp16 autocast GradScaler (1.0 when there is none)."""
    scaler = getattr(zero_optimizer, "torch_autocast_gradscaler", None)
    return float(scaler.get_scale()) if scaler is not None else 1.0


def embedding_grad_ratios(module: nn.Module, scale: float = 1.0) -> dict[str, float]:
    """||E|| / ||grad E|| per embedding (Fig. 3.3) from the ZeRO shards; call between
    ``engine.backward`` and ``engine.step`` (collective). ``scale``: the loss scale the
    gradients still carry (:func:`grad_scale`)."""
    from deepspeed.utils import safe_get_full_grad

    from priorlab.methods.hyper.hypernet import hyper_layers

    out = {}
    for name, layer in hyper_layers(module):
        e = _get(layer.embedding)
        g = safe_get_full_grad(layer.embedding)
        gnorm = 0.0 if g is None else float(g.float().norm()) / scale
        out[f"{name}.embedding"] = float(e.norm()) / gnorm if gnorm > 0 else math.inf
    return out

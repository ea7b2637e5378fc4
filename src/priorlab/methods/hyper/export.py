"""Reparameterise a hypernetwork model into its plain twin, and count parameters (thesis Sec. 3.4).

After training, each generated weight H(E) is computed once and copied into an ordinary conv of
a network with the same topology; BN statistics/affines, plain convs and the classifier are
copied as they are. The result has no embedding or hypernetwork parameters and the same logits
("no extra overhead at inference", Tables 3.3-3.5). For SWA (Table 3.5), average the embeddings
and hypernetworks (``torch.optim.swa_utils.AveragedModel``), run ``update_bn``, then export; an
``AveragedModel`` can be passed directly.

``count_params`` follows the "Train Params" / "Test Params" columns of Tables 3.3-3.5.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from priorlab.methods.hyper.hypernet import hyper_layers
from priorlab.methods.hyper.resnets import build_model


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, AveragedModel) else model


def export_plain(model: nn.Module) -> nn.Module:
    """The plain twin of ``model`` with every generated weight materialised (detached).

    Returned in ``model``'s train/eval mode, on its device and dtype. A plain model is copied.
    """
    model = _unwrap(model)
    cfg = getattr(model, "cfg", None)
    if cfg is None:
        raise TypeError(f"export_plain needs a model from build_model (with .cfg), got {type(model).__name__}")
    ref = next(model.parameters())
    with torch.random.fork_rng(devices=[]):  # building the twin must not shift the caller's RNG
        plain = build_model(dataclasses.replace(cfg, hyper=False))
    plain.to(device=ref.device, dtype=ref.dtype)

    source = model.state_dict()
    with torch.no_grad():
        for name, layer in hyper_layers(model):
            source[f"{name}.weight"] = layer.generated_weight().detach().clone()
    # Strict: every plain key must come from the hyper model, so a topology mismatch fails loudly.
    state = {key: source[key] for key in plain.state_dict()}
    plain.load_state_dict(state, strict=True)
    plain.train(model.training)
    return plain


def _n_params(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_params(model: nn.Module) -> dict[str, int]:
    """{"train": trainable params of ``model`` (embeddings + hypernetworks + BN + classifier + plain
    convs, shared hypernetworks once), "test": params of its exported plain twin}.

    With the defaults this reproduces Table 3.4 (ResNet-18/34 unshared: 21.4M / 41.6M train,
    11.1M / 21.3M test) and the test column of Table 3.3. The WRN train column comes out higher
    (unshared WRN-28-4 11.5M vs 10.3M, WRN-40-2 4.4M vs 4.17M): the thesis does not say which
    WRN layers its reference leaves plain or which d it uses there.
    """
    model = _unwrap(model)
    return {"train": _n_params(model), "test": _n_params(export_plain(model), trainable_only=False)}

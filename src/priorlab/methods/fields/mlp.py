"""The NeRF MLP of HyperFields, with weights that a hypernetwork can supply (thesis Sec. 4.3.1,
Eq. 4.2-4.5; Sec. 4.3.3; App. B.1).

``n_layers`` linear layers (6 of width 64 in App. B.1), ReLU between them, a skip connection
every ``skip_every`` layers (layers 2 and 4 of 0..5 by default; never the output layer), no
biases by default (the hypernetwork predicts weight matrices only). The input is the encoded
point (hash-grid features then γ(x)); the output layer gives ``4 + feature_dim`` raw channels:
density, RGB, then the optional feature head. ``split_outputs`` applies the heads (sigmoid RGB);
the density activation (``density_activation``) is applied by the field, which adds the blob.

Skip modes: `concat` (NeRF's) feeds [h, x_encoded] to a skip layer; `add` (the HyperFields
repository's) adds the post-ReLU hidden state of two layers back to the skip layer's output
before its ReLU.

Weights come from the module or from outside. ``weight_shapes(cfg)`` names every parameter
(``layers.{i}.weight`` (out, in), ``layers.{i}.bias`` (out,) when ``bias``) so a hypernetwork
can generate them, and ``mlp_forward(params, x, cfg)`` runs the MLP on them:

    mlp = NeRFMLP(cfg)
    raw = mlp(x)                                        # (N, D) -> (N, 4 + feature_dim)
    raw = mlp_forward(dict(mlp.named_parameters()), x, cfg)             # the same
    raw = mlp_forward(lambda i, a_prev: {"weight": W[i]}, x, cfg)       # dynamic (Eq. 4.5)

``params`` may be a mapping (weights independent of the batch; a weight of shape (B, out, in)
with x of shape (B, N, in) gives every scene of a batch its own MLP) or a callable
``(layer_index, a_prev) -> {"weight": ..., "bias": ...}`` that sees the previous layer's
post-ReLU activations a_{i-1} (N, hidden) (None for the first layer) before it gives W_i: this
is the dynamic hypernetwork of Eq. 4.2-4.5, which averages a_{i-1} over the batch itself.
"""

from __future__ import annotations

from typing import Callable, Mapping, Union

import torch
import torch.nn.functional as F
from torch import nn

from priorlab.methods.fields.config import FieldConfig

LayerFn = Callable[[int, Union[torch.Tensor, None]], Mapping[str, torch.Tensor]]
MLPParams = Union[Mapping[str, torch.Tensor], LayerFn]


def skip_layers(cfg: FieldConfig) -> list[int]:
    """Indices of the layers that receive a skip connection (never the first or output layer)."""
    if cfg.skip_every == 0:
        return []
    return [i for i in range(1, cfg.n_layers - 1) if i % cfg.skip_every == 0]


def weight_shapes(cfg: FieldConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every MLP parameter, in layer order (what a hypernetwork must produce)."""
    skips = set(skip_layers(cfg)) if cfg.skip_mode == "concat" else set()
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(cfg.n_layers):
        fan_in = cfg.encoding_dim if i == 0 else cfg.hidden + (cfg.encoding_dim if i in skips else 0)
        fan_out = cfg.out_dim if i == cfg.n_layers - 1 else cfg.hidden
        shapes[f"layers.{i}.weight"] = (fan_out, fan_in)
        if cfg.bias:
            shapes[f"layers.{i}.bias"] = (fan_out,)
    return shapes


def _layer_params(params: MLPParams, i: int, a_prev: torch.Tensor | None,
                  shapes: dict[str, tuple[int, ...]]) -> tuple[torch.Tensor, torch.Tensor | None]:
    if callable(params):
        got = params(i, a_prev)
        weight, bias = got["weight"], got.get("bias")
    else:
        name = f"layers.{i}.weight"
        if name not in params:
            raise KeyError(f"MLP parameters lack {name!r}; expected the names of weight_shapes(cfg): "
                           f"{list(shapes)}")
        weight, bias = params[name], params.get(f"layers.{i}.bias")
    want = shapes[f"layers.{i}.weight"]
    if tuple(weight.shape[-2:]) != want:
        raise ValueError(f"layer {i}: weight of shape {tuple(weight.shape)}, expected {want} "
                         "(or (B, *that) for one MLP per scene); see weight_shapes(cfg)")
    return weight, bias


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    if weight.dim() == 2:
        return F.linear(x, weight, bias)                     # (..., in) -> (..., out)
    y = torch.bmm(x, weight.transpose(1, 2))                 # (B, N, in) x (B, in, out)
    return y if bias is None else y + bias[:, None, :]


def mlp_forward(params: MLPParams, x: torch.Tensor, cfg: FieldConfig) -> torch.Tensor:
    """Raw MLP outputs (..., 4 + feature_dim) of encoded points x (..., encoding_dim)."""
    shapes = weight_shapes(cfg)
    skips = set(skip_layers(cfg))
    last = cfg.n_layers - 1
    h, a_prev, h_skip = x, None, None
    for i in range(cfg.n_layers):
        weight, bias = _layer_params(params, i, a_prev, shapes)
        inp = torch.cat([h, x], -1) if (i in skips and cfg.skip_mode == "concat") else h
        y = _linear(inp, weight, bias)
        if i in skips and cfg.skip_mode == "add":
            y = y + h_skip
        if i < last:
            y = F.relu(y)
            if cfg.skip_every and i % cfg.skip_every == 0:
                h_skip = y                                   # what the next skip layer adds
        h = a_prev = y
    return h


class _TruncExp(torch.autograd.Function):
    """exp(x) whose gradient uses exp(min(x, 15)): large raw densities cannot blow up training."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return torch.exp(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x.clamp(max=15.0))


def trunc_exp(x: torch.Tensor) -> torch.Tensor:
    return _TruncExp.apply(x)


def density_activation(raw: torch.Tensor, kind: str) -> torch.Tensor:
    """σ >= 0 from raw density: `trunc_exp`, `softplus` or `relu`."""
    if kind == "trunc_exp":
        return trunc_exp(raw)
    if kind == "softplus":
        return F.softplus(raw)
    if kind == "relu":
        return F.relu(raw)
    raise ValueError(f"density_activation={kind!r}: choose trunc_exp, softplus or relu")


def split_outputs(raw: torch.Tensor, cfg: FieldConfig
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(raw density (...,), RGB in (0, 1) (..., 3), features (..., feature_dim) or None)."""
    features = raw[..., 4:] if cfg.feature_dim else None
    return raw[..., 0], torch.sigmoid(raw[..., 1:4]), features


class NeRFMLP(nn.Module):
    """The MLP with its own weights; ``forward(x, params)`` runs supplied weights instead."""

    def __init__(self, cfg: FieldConfig):
        super().__init__()
        self.cfg = cfg
        shapes = weight_shapes(cfg)
        self.layers = nn.ModuleList(
            nn.Linear(*reversed(shapes[f"layers.{i}.weight"]), bias=cfg.bias)
            for i in range(cfg.n_layers))

    def forward(self, x: torch.Tensor, params: MLPParams | None = None) -> torch.Tensor:
        return mlp_forward(dict(self.named_parameters()) if params is None else params, x, self.cfg)

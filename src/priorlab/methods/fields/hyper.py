"""HyperFields' dynamic hypernetwork: text tokens -> the weights of a NeRF MLP (thesis Sec. 4.3.1,
Eq. 4.2-4.5, Fig. 4.3; Sec. 4.3.3; App. B.1).

    z  = BERT tokens of the prompt (``text.TextEncoder``, frozen)             (B, T, D)
    CT = masked mean over tokens of Transformer(Linear(z))                    (B, model_dim)
    W_0 = MLP_0(CT)                                                           (Fig. 4.3: CT only)
    ā_{i-1} = μ(a_{i-1})   per scene, over its N points, stop-gradient        (Eq. 4.4)
    W_i = MLP_i(CT, AdaIN(ā_{i-1}; CT))                                       (Eq. 4.2, 4.5)
    a_i = ReLU(W_i a_{i-1})   (skip connections as in ``mlp.py``)             (Eq. 4.3)

The Transformer has ``n_layers`` pre-norm self-attention blocks of ``n_heads`` heads of
``head_dim`` (6 x 12 x 16, App. B.1) over tokens projected to ``model_dim`` = 256 with a
feed-forward of ``mlp_dim`` = 64 (the HyperFields repository, ANCHORS.md). It has no positional
embedding of its own: BERT's outputs already carry token order. Each MLP_i is a two-layer ReLU
MLP (Sec. 4.3.3) whose output is reshaped to W_i's (out, in).

Readings where the thesis is silent (each is a config switch or a documented choice):

- AdaIN of a mean vector (``adain``). AdaIN(x; s) = γ(s) (x - μ(x)) / σ(x) + β(s) normalises a
  content signal over its own statistics and restyles it from a style signal. Here the content
  is ā_{i-1} (hidden,), normalised over its channels, and the style is the scene: γ, β (hidden,)
  are a linear map of CT, initialised to γ = 1, β = 0. This keeps MLP_i's input at unit scale
  whatever the scale of the generated weights (which drifts in training), and lets each scene
  choose which activation channels steer its weights. ``adain=False`` feeds ā_{i-1} as it is.
- Layer 0 has no previous activation: MLP_0 sees CT alone (Fig. 4.3: "the first hypernetwork
  MLP predicts the weights W_1" from the CT), in both modes.
- ``dynamic=False`` is the static hypernetwork of the ablation in Fig. 4.9: every W_i from CT
  alone, so the NeRF no longer depends on the batch of points.
- ``weight_mode="direct"`` (the thesis): MLP_i's outputs are W_i's entries. ``"modulate"`` (the
  public repository): W_i = row-normalise(B_i ⊙ M_i), a learned base weight B_i times the
  predicted modulation M_i, each row (output unit) scaled to unit L2 norm.
- Initialisation: generated layers start at Kaiming scale (Var W = 2 / fan_in for layers
  followed by a ReLU, 1 / fan_in for the output layer), half of it from the last layer's bias
  (a learned, scene-independent part) and half from the scene-dependent term, so a fresh model
  renders finite values and distinct prompts already give distinct NeRFs. In modulate mode
  M_i starts at 1 ± 0.3 and B_i at Kaiming scale.

Dynamic weights depend on the batch of points (Eq. 4.4): ``forward`` takes B scenes of N points
and averages each scene over its own points only; ``scene_field`` gives one scene as a field for
``renderer.render_rays`` / ``render_image``, whose weights follow from each call's points, so
render an image in one chunk (``chunk`` >= rays) to render it with one NeRF.

    enc = TextEncoder()
    model = HyperFields(HyperFieldsConfig(text_dim=enc.dim), FieldConfig())
    ct = model.condition(*enc.encode(["a red chair", "a blue toaster"]))      # (2, 256)
    out = model(points, ct)                 # points (2, N, 3) -> sigma (2, N), rgb (2, N, 3)
    img = render_image(model.scene_field(ct[0]), c2w, 64, 64, 40.0, fcfg, chunk=64 * 64)
    w = model.generated_weights(ct, points) # {"layers.i.weight": (2, out, in)}: the exported NeRFs
    opt = torch.optim.Adam(model.param_groups(), betas=(0.9, 0.99))

``HyperFieldsConfig`` and ``FieldConfig`` (the generated NeRF's architecture, the teachers' one)
are loaded separately and strictly with ``configuration.apply_overrides``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from priorlab.methods.configuration import ConfigError, check_bounds
from priorlab.methods.fields.config import FieldConfig
from priorlab.methods.fields.field import NeRFField
from priorlab.methods.fields.mlp import MLPParams, mlp_forward, weight_shapes

WEIGHT_MODES = ("direct", "modulate")


@dataclass
class HyperFieldsConfig:
    text_dim: int = 384
    """D, the width of the text encoder's token embeddings (``TextEncoder.dim``: 384 for the
    bundled MiniLM, 768 for the repository's sentence-BERT)."""
    model_dim: int = 256
    """Width of the Transformer and of CT; tokens are projected to it (256, ANCHORS.md)."""
    n_layers: int = 6
    """Self-attention blocks of the Transformer (6, App. B.1)."""
    n_heads: int = 12
    """Attention heads per block (12, App. B.1)."""
    head_dim: int = 16
    """Width of one head (16, App. B.1): attention works in n_heads * head_dim = 192 dimensions,
    projected back to ``model_dim``."""
    mlp_dim: int = 64
    """Hidden width of each block's feed-forward (64, the repository)."""
    hyper_hidden: int = 64
    """Hidden width of each two-layer hypernetwork MLP_i. The thesis gives none; 64 matches the
    NeRF's width and the feed-forward's, and keeps the output layers (hyper_hidden x out x in
    each) at ~2M parameters for the 6 x 64 NeRF; 128 doubles that."""
    dynamic: bool = True
    """MLP_i sees the batch mean of the previous layer's activations (Eq. 4.5). False: the static
    hypernetwork of the Fig. 4.9 ablation, W_i from CT alone."""
    adain: bool = True
    """Adaptive instance normalisation of ā_{i-1} before MLP_i, scale and shift from CT
    (Sec. 4.3.3; see the module docstring). Only used when ``dynamic``."""
    weight_mode: Literal["direct", "modulate"] = "direct"
    """`direct`: MLP_i outputs W_i's entries (the thesis). `modulate`: W_i = row-wise L2
    normalisation of a learned base weight times MLP_i's output (the public repository)."""

    def validate(self) -> None:
        check_bounds(self, at_least_1=("text_dim", "model_dim", "n_layers", "n_heads", "head_dim",
                                       "mlp_dim", "hyper_hidden"))
        if self.weight_mode not in WEIGHT_MODES:
            raise ConfigError(f"weight_mode={self.weight_mode!r}: choose one of {list(WEIGHT_MODES)}")


# --- the Transformer T of Fig. 4.3 -----------------------------------------------------------

class _Block(nn.Module):
    """Pre-norm self-attention + feed-forward, with an explicit head width."""

    def __init__(self, cfg: HyperFieldsConfig):
        super().__init__()
        inner = cfg.n_heads * cfg.head_dim
        self.n_heads, self.head_dim = cfg.n_heads, cfg.head_dim
        self.norm1 = nn.LayerNorm(cfg.model_dim)
        self.qkv = nn.Linear(cfg.model_dim, 3 * inner)
        self.proj = nn.Linear(inner, cfg.model_dim)
        self.norm2 = nn.LayerNorm(cfg.model_dim)
        self.ff = nn.Sequential(nn.Linear(cfg.model_dim, cfg.mlp_dim), nn.GELU(),
                                nn.Linear(cfg.mlp_dim, cfg.model_dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape                                                    # (B, T, C)
        qkv = self.qkv(self.norm1(x)).view(b, t, 3, self.n_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)                                 # each (B, H, T, d)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
        x = x + self.proj(att.transpose(1, 2).reshape(b, t, -1))
        return x + self.ff(self.norm2(x))


class TextTransformer(nn.Module):
    """Token embeddings (B, T, D) and mask (B, T) -> CT (B, model_dim), the masked token mean."""

    def __init__(self, cfg: HyperFieldsConfig):
        super().__init__()
        self.inp = nn.Linear(cfg.text_dim, cfg.model_dim)
        self.blocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(cfg.model_dim)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask.bool()
        if not bool(mask.any(-1).all()):
            raise ValueError("every prompt needs at least one unmasked token (mask row all False)")
        x = self.inp(tokens)                                                 # (B, T, C)
        for block in self.blocks:
            x = block(x, mask)
        x = self.norm(x)
        w = mask[..., None].to(x.dtype)                                      # (B, T, 1)
        return (x * w).sum(1) / w.sum(1)                                     # (B, C)


# --- the hypernetwork MLPs of Eq. 4.2 / 4.5 ----------------------------------------------------

class LayerHyperNet(nn.Module):
    """MLP_i: CT (B, C) [and ā_{i-1} (B, hidden)] -> W_i (B, out, in)."""

    def __init__(self, cfg: HyperFieldsConfig, shape: tuple[int, int], act_dim: int, gain2: float):
        super().__init__()
        out_f, in_f = shape
        self.shape, self.weight_mode = shape, cfg.weight_mode
        self.act_dim = act_dim                                               # 0: sees CT only
        self.adain = nn.Linear(cfg.model_dim, 2 * act_dim) if act_dim and cfg.adain else None
        self.fc1 = nn.Linear(cfg.model_dim + act_dim, cfg.hyper_hidden)
        self.fc2 = nn.Linear(cfg.hyper_hidden, out_f * in_f)
        # fc1 keeps unit-scale inputs at E[relu(.)^2] ~ 1, so fc2's weight std sets the scene term
        nn.init.kaiming_normal_(self.fc1.weight, nonlinearity="relu")
        nn.init.zeros_(self.fc1.bias)
        if self.adain is not None:                                           # γ = 1, β = 0
            nn.init.zeros_(self.adain.weight)
            nn.init.constant_(self.adain.bias[:act_dim], 1.0)
            nn.init.zeros_(self.adain.bias[act_dim:])
        target = gain2 / in_f                                                # Kaiming variance of W_i
        if cfg.weight_mode == "direct":
            nn.init.normal_(self.fc2.weight, std=math.sqrt(0.5 * target / cfg.hyper_hidden))
            nn.init.normal_(self.fc2.bias, std=math.sqrt(0.5 * target))
            self.base = None
        else:
            nn.init.normal_(self.fc2.weight, std=math.sqrt(0.1 / cfg.hyper_hidden))
            nn.init.ones_(self.fc2.bias)
            self.base = nn.Parameter(torch.randn(out_f, in_f) * math.sqrt(target))

    def normalise(self, a_mean: torch.Tensor, ct: torch.Tensor) -> torch.Tensor:
        """AdaIN of ā (B, hidden) over its channels, restyled by CT (or ā itself without AdaIN)."""
        if self.adain is None:
            return a_mean
        gamma, beta = self.adain(ct).chunk(2, -1)                            # (B, hidden) each
        mu = a_mean.mean(-1, keepdim=True)
        var = a_mean.var(-1, unbiased=False, keepdim=True)
        return gamma * (a_mean - mu) / torch.sqrt(var + 1e-5) + beta

    def forward(self, ct: torch.Tensor, a_mean: torch.Tensor | None = None) -> torch.Tensor:
        if self.act_dim:
            if a_mean is None:
                raise ValueError("this dynamic layer needs the previous layer's mean activation")
            ct = torch.cat([ct, self.normalise(a_mean, ct)], -1)             # (B, C + hidden)
        out = self.fc2(F.relu(self.fc1(ct))).view(-1, *self.shape)           # (B, out, in)
        if self.base is None:
            return out
        return F.normalize(self.base * out, dim=-1)                          # unit-norm rows


class _GeneratedMLP(nn.Module):
    """Stands in for ``NeRFField.mlp``: no weights of its own, it always runs supplied ones."""

    def __init__(self, cfg: FieldConfig):
        super().__init__()
        self.cfg = cfg

    def forward(self, x: torch.Tensor, params: MLPParams | None = None) -> torch.Tensor:
        if params is None:
            raise ValueError("a HyperFields NeRF has no weights of its own: pass mlp_params "
                             "(e.g. HyperFields.generated_weights(ct, points))")
        return mlp_forward(params, x, self.cfg)


# --- the model ---------------------------------------------------------------------------------

class HyperFields(nn.Module):
    """Shared hash grid + γ, the Transformer and one MLP_i per NeRF layer (Fig. 4.3)."""

    def __init__(self, cfg: HyperFieldsConfig, field_cfg: FieldConfig):
        super().__init__()
        cfg.validate()
        field_cfg.validate()
        if field_cfg.bias:
            raise ConfigError("HyperFields generates weight matrices only (no biases, as the "
                              "repository's F.linear): use a FieldConfig with bias=False")
        if getattr(field_cfg, "occupancy_resolution", 0):
            raise ConfigError("occupancy_resolution must be 0 for HyperFields: one occupancy grid "
                              "would be shared by every scene the hypernetwork generates")
        self.cfg, self.field_cfg = cfg, field_cfg
        self.field = NeRFField(field_cfg)
        # density blob, activation and bounding sphere stay the field's; weights come from here
        self.field.mlp = _GeneratedMLP(field_cfg)
        self.transformer = TextTransformer(cfg)
        self.shapes = weight_shapes(field_cfg)
        last = field_cfg.n_layers - 1
        self.hyper = nn.ModuleList(
            LayerHyperNet(cfg, self.shapes[f"layers.{i}.weight"],
                          act_dim=field_cfg.hidden if (cfg.dynamic and i > 0) else 0,
                          gain2=1.0 if i == last else 2.0)
            for i in range(field_cfg.n_layers))

    def condition(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """CT (B, model_dim) of token embeddings (B, T, D) with mask (B, T) (True = token)."""
        return self.transformer(tokens, mask)

    def _run(self, points: torch.Tensor, ct: torch.Tensor
             ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        if points.dim() != 3 or points.shape[-1] != 3:
            raise ValueError(f"points of shape {tuple(points.shape)}: expected (B, N, 3)")
        if ct.shape != (points.shape[0], self.cfg.model_dim):
            raise ValueError(f"ct of shape {tuple(ct.shape)}: expected ({points.shape[0]}, "
                             f"{self.cfg.model_dim}), one CT per scene of points")
        weights: dict[str, torch.Tensor] = {}

        def layer(i: int, a_prev: torch.Tensor | None) -> dict[str, torch.Tensor]:
            a_mean = None
            if self.cfg.dynamic and i > 0:
                a_mean = a_prev.detach().mean(-2)        # (B, hidden): Eq. 4.4 per scene, SG
            w = self.hyper[i](ct, a_mean)                # (B, out, in)
            weights[f"layers.{i}.weight"] = w
            return {"weight": w}

        return self.field(points, mlp_params=layer), weights

    def forward(self, points: torch.Tensor, ct: torch.Tensor) -> dict[str, torch.Tensor]:
        """Points (B, N, 3) of B scenes, CT (B, model_dim) -> {"sigma": (B, N), "rgb": (B, N, 3)}.

        Scene b runs its own generated MLP; its batch means are over its own N points.
        """
        return self._run(points, ct)[0]

    def generated_weights(self, ct: torch.Tensor, points: torch.Tensor) -> dict[str, torch.Tensor]:
        """The NeRF weights {"layers.i.weight": (B, out, in)} generated for this batch of points
        (weight_shapes order). ``self.field(points, mlp_params=w)`` reproduces ``forward``; in
        static mode they do not depend on ``points``, so this exports each scene's NeRF."""
        return self._run(points, ct)[1]

    def scene_field(self, ct: torch.Tensor) -> Callable[[torch.Tensor], dict[str, torch.Tensor]]:
        """One scene (CT (model_dim,) or (1, model_dim)) as a field: points (..., 3) -> {"sigma":
        (...,), "rgb": (..., 3)} for ``render_rays`` / ``render_image``. Dynamic weights follow
        from all the points of one call: render an image in one chunk."""
        ct = ct.reshape(1, self.cfg.model_dim)

        def field(points: torch.Tensor) -> dict[str, torch.Tensor]:
            lead = points.shape[:-1]
            out = self.forward(points.reshape(1, -1, 3), ct)
            return {k: v.reshape(*lead, *v.shape[2:]) for k, v in out.items()}

        return field

    def param_groups(self, lr: float = 1e-4, grid_lr: float = 1e-2) -> list[dict]:
        """Adam groups: the hash tables at ``grid_lr`` (Instant-NGP's 1e-2, as the teachers'),
        everything else (Transformer, MLP_i) at ``lr`` (1e-4, App. B.1)."""
        grid = [p for n, p in self.named_parameters() if n.startswith("field.grid.")]
        rest = [p for n, p in self.named_parameters() if not n.startswith("field.grid.")]
        groups = [{"params": grid, "lr": grid_lr, "name": "grid"},
                  {"params": rest, "lr": lr, "name": "hypernetwork"}]
        return [g for g in groups if g["params"]]

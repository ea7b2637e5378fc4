"""The HyperFields NeRF field: hash grid + sinusoidal encoding -> MLP -> density, colour
(thesis Sec. 4.3.3, App. B.1).

    σ(x)   = act(raw_σ + blob(x))      zero outside the bounding sphere |x| > bound
    rgb(x) = sigmoid(raw_rgb)

blob(x) is DreamFusion's initial density bump at the origin (``density_blob``). The field is
view-independent, as the NeRFs of stable-dreamfusion and the HyperFields repository (albedo
only; no shading is modelled here).

    field = NeRFField(FieldConfig())
    out = field(points)                     # (N, 3) -> {"sigma": (N,), "rgb": (N, 3)}
    out = field(points, mlp_params=w)       # the MLP runs weights from a hypernetwork (mlp.py)

With ``feature_dim > 0`` the output also holds ``"features"`` (N, feature_dim).

With ``occupancy_resolution > 0`` the field carries an occupancy grid (buffers ``occupancy`` and
``occupancy_density``, ``occupancy.py``) and gives σ = 0 in cells it marks empty.
"""

from __future__ import annotations

import torch
from torch import nn

from priorlab.methods.fields.config import FieldConfig
from priorlab.methods.fields.encoding import SinusoidalEncoding
from priorlab.methods.fields.hashgrid import build_hash_grid
from priorlab.methods.fields.mlp import MLPParams, NeRFMLP, density_activation, split_outputs
from priorlab.methods.fields.occupancy import occupied, sphere_cells


class NeRFField(nn.Module):
    """Points (..., 3) in world units -> {"sigma": (...,), "rgb": (..., 3)[, "features"]}."""

    def __init__(self, cfg: FieldConfig, dtype: torch.dtype = torch.float32):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.grid = build_hash_grid(cfg, dtype)
        self.frequencies = SinusoidalEncoding(cfg.n_frequencies, cfg.include_input)
        self.mlp = NeRFMLP(cfg).to(dtype)
        if cfg.occupancy_resolution:
            res = (cfg.occupancy_resolution,) * 3
            self.register_buffer("occupancy", sphere_cells(cfg.occupancy_resolution, cfg.bound))
            self.register_buffer("occupancy_density", torch.zeros(res, dtype=dtype))
        else:
            self.occupancy = None

    def encode(self, points: torch.Tensor) -> torch.Tensor:
        """The MLP input (..., encoding_dim): hash-grid features then γ(x / bound)."""
        return torch.cat([self.grid(points), self.frequencies(points / self.cfg.bound)], -1)

    def forward(self, points: torch.Tensor, mlp_params: MLPParams | None = None, *,
                apply_occupancy: bool = True) -> dict[str, torch.Tensor]:
        """``apply_occupancy=False`` gives the density the MLP would give without the grid (what
        an occupancy update measures)."""
        cfg = self.cfg
        # leading dims are kept: (B, N, 3) points go with per-scene (B, out, in) MLP weights
        raw = self.mlp(self.encode(points), mlp_params)                  # (..., 4 + feature_dim)
        sigma_raw, rgb, features = split_outputs(raw, cfg)
        r2 = (points * points).sum(-1)                                   # (...,)
        if cfg.density_blob > 0:
            sigma_raw = sigma_raw + cfg.density_blob * torch.exp(-r2 / (2 * cfg.density_blob_std ** 2))
        sigma = density_activation(sigma_raw, cfg.density_activation)
        inside = r2 <= cfg.bound ** 2
        if self.occupancy is not None and apply_occupancy:
            inside = inside & occupied(points, self.occupancy, cfg.bound)
        sigma = torch.where(inside, sigma, torch.zeros_like(sigma))      # (...,)
        out = {"sigma": sigma, "rgb": rgb}
        if features is not None:
            out["features"] = features
        return out

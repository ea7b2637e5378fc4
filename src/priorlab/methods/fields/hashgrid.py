"""Multiresolution hash encoding of Instant-NGP (Müller et al. 2022), used by HyperFields
(thesis Sec. 4.3.3, App. B.1) under its NeRF MLP.

L levels of grids; level l has resolution N_l = floor(N_min * b^l) with growth factor
b = exp((ln N_max - ln N_min) / (L - 1)). Each level stores F features per vertex in a table of
at most T = 2^log2_hashmap_size entries: a level whose (N_l + 1)^3 vertices fit in T indexes
them densely (one entry per vertex, no collisions); a finer level hashes vertex (i, j, k) to
(i * 1 xor j * 2654435761 xor k * 805459861) mod T. A point's feature at a level is the trilinear
interpolation of its cell's 8 corner entries; the levels' features are concatenated level by
level, (N, L * F). Entries start uniform in [-1e-4, 1e-4] (Instant-NGP). Points are given in
the scene's cube [-bound, bound]^3 and mapped to [0, 1]^3 (outside points are clamped).

Two backends (house style: pure PyTorch everywhere, tiny-cuda-nn where it is importable):

    grid = build_hash_grid(cfg)          # cfg: FieldConfig; backend "auto" | "torch" | "tcnn"
    feats = grid(points)                 # (N, 3) in [-bound, bound] -> (N, L * F)

The thesis names the Instant-NGP hash grid, which is what is built here; the HyperFields
repository instead builds stable-dreamfusion's `tiledgrid` encoder (same levels, tiled rather
than hashed indexing of the fine levels).

``TorchHashGrid`` supports float64 (``dtype=torch.float64``) so that gradcheck can test it.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import nn

from priorlab.methods.fields.config import FieldConfig

log = logging.getLogger(__name__)

PRIMES = (1, 2654435761, 805459861)
"""Instant-NGP's per-axis hash primes (the first is 1 for cache coherence along x)."""

TCNN_INSTALL = ("pip install git+https://github.com/NVlabs/tiny-cuda-nn/#subdirectory=bindings/torch "
                "(a source build: run it on a machine with CUDA and nvcc matching your torch)")


def level_resolutions(n_levels: int, base_resolution: int, finest_resolution: int) -> list[int]:
    """N_l = floor(N_min * b^l) for l = 0..L-1, b the per-level scale."""
    if n_levels == 1:
        return [base_resolution]
    log_b = (math.log(finest_resolution) - math.log(base_resolution)) / (n_levels - 1)
    # the tolerance keeps float rounding from turning N_max into N_max - 1 at the last level
    return [int(math.floor(base_resolution * math.exp(l * log_b) + 1e-6)) for l in range(n_levels)]


class TorchHashGrid(nn.Module):
    """The hash encoding in plain PyTorch: one embedding table holding every level's entries."""

    def __init__(self, n_levels: int = 16, features_per_level: int = 2, log2_hashmap_size: int = 19,
                 base_resolution: int = 16, finest_resolution: int = 2048, bound: float = 1.0,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        self.n_levels = n_levels
        self.features_per_level = features_per_level
        self.table_size = 2 ** log2_hashmap_size
        self.bound = float(bound)
        self.resolutions = level_resolutions(n_levels, base_resolution, finest_resolution)
        self.dense = [(r + 1) ** 3 <= self.table_size for r in self.resolutions]
        self.sizes = [(r + 1) ** 3 if d else self.table_size
                      for r, d in zip(self.resolutions, self.dense)]
        self.offsets = [0]
        for s in self.sizes:
            self.offsets.append(self.offsets[-1] + s)
        self.embeddings = nn.Parameter(
            torch.empty(self.offsets[-1], features_per_level, dtype=dtype).uniform_(-1e-4, 1e-4))
        corners = torch.tensor([[(c >> a) & 1 for a in range(3)] for c in range(8)])
        self.register_buffer("corners", corners, persistent=False)        # (8, 3) in {0, 1}

    @classmethod
    def from_config(cls, cfg: FieldConfig, dtype: torch.dtype = torch.float32) -> "TorchHashGrid":
        return cls(cfg.n_levels, cfg.features_per_level, cfg.log2_hashmap_size,
                   cfg.base_resolution, cfg.finest_resolution, cfg.bound, dtype)

    @property
    def out_dim(self) -> int:
        return self.n_levels * self.features_per_level

    def level_index(self, level: int, vertices: torch.Tensor) -> torch.Tensor:
        """Table rows (within the level, in [0, size)) of integer vertices (..., 3)."""
        if self.dense[level]:
            side = self.resolutions[level] + 1
            return vertices[..., 0] + side * (vertices[..., 1] + side * vertices[..., 2])
        # int64 products stay exact (coords < 2^12, primes < 2^32); T is a power of two, so
        # masking the low bits equals Instant-NGP's uint32 arithmetic followed by mod T
        h = (vertices[..., 0] * PRIMES[0]) ^ (vertices[..., 1] * PRIMES[1]) ^ (vertices[..., 2] * PRIMES[2])
        return h & (self.table_size - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x = x.reshape(-1, 3)                                               # (N, 3)
        unit = ((x + self.bound) / (2 * self.bound)).clamp(0.0, 1.0)       # (N, 3) in [0, 1]
        corners = self.corners.to(x.device)
        cx, cy, cz = corners[:, 0], corners[:, 1], corners[:, 2]           # (8,) each
        outs = []
        for level, res in enumerate(self.resolutions):
            pos = unit * res                                               # (N, 3)
            cell = pos.detach().floor().clamp(max=res - 1)                 # a point on the far face stays in the last cell
            frac = pos - cell                                              # (N, 3) in [0, 1]
            # Per axis first, corners after: the 8 corners' rows and weights are combinations of
            # the two vertices per axis, so nothing of size (N, 8, 3) is built (the same values as
            # level_index and a product over axes; ~20% faster on CPU).
            ends = torch.stack([cell.long(), cell.long() + 1], 1)         # (N, 2, 3)
            if self.dense[level]:
                side = res + 1
                rows = (ends[:, cx, 0] + side * ends[:, cy, 1]) + side * side * ends[:, cz, 2]
            else:
                hx, hy, hz = (ends[..., a] * PRIMES[a] for a in range(3))  # (N, 2) each
                rows = (hx[:, cx] ^ hy[:, cy] ^ hz[:, cz]) & (self.table_size - 1)  # (N, 8)
            w = torch.stack([1.0 - frac, frac], 1)                         # (N, 2, 3)
            weights = w[:, cx, 0] * w[:, cy, 1] * w[:, cz, 2]              # (N, 8)
            feats = self.embeddings[rows + self.offsets[level]]            # (N, 8, F)
            outs.append((weights[..., None] * feats).sum(1))               # (N, F)
        return torch.cat(outs, -1).reshape(*lead, self.out_dim)           # (..., L * F)


# --- tiny-cuda-nn backend -------------------------------------------------------------------

def tcnn_encoding_config(cfg: FieldConfig) -> dict[str, Any]:
    """The tiny-cuda-nn encoding config equivalent to ``cfg``'s hash grid."""
    return {
        "otype": "HashGrid",
        "n_levels": cfg.n_levels,
        "n_features_per_level": cfg.features_per_level,
        "log2_hashmap_size": cfg.log2_hashmap_size,
        "base_resolution": cfg.base_resolution,
        "per_level_scale": cfg.per_level_scale,
    }


def _import_tinycudann():
    """The tinycudann module, or None (a separate function so tests can pretend either way)."""
    try:
        import tinycudann  # noqa: PLC0415 (optional, CUDA-only dependency)
    except ImportError:
        return None
    return tinycudann


def tcnn_unavailable_reason() -> str | None:
    """None if the tcnn backend can run here, else why not (for messages)."""
    if _import_tinycudann() is None:
        return f"tiny-cuda-nn (the `tinycudann` module) is not importable; install it with {TCNN_INSTALL}"
    if not torch.cuda.is_available():
        return "tiny-cuda-nn needs a CUDA GPU and torch.cuda.is_available() is False here"
    return None


class TcnnHashGrid(nn.Module):
    """tiny-cuda-nn's HashGrid behind the same interface: points in [-bound, bound], float32 out."""

    def __init__(self, cfg: FieldConfig):
        super().__init__()
        reason = tcnn_unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"TcnnHashGrid cannot be built: {reason}")
        tcnn = _import_tinycudann()
        self.bound = float(cfg.bound)
        self.out_dim = cfg.grid_dim
        self.encoding = tcnn.Encoding(n_input_dims=3, encoding_config=tcnn_encoding_config(cfg))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        unit = ((x.reshape(-1, 3) + self.bound) / (2 * self.bound)).clamp(0.0, 1.0)
        return self.encoding(unit).float().reshape(*lead, self.out_dim)


def build_hash_grid(cfg: FieldConfig, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The hash grid of ``cfg.backend``: `torch`, `tcnn` (error if it cannot run), or `auto`."""
    if cfg.backend == "torch":
        return TorchHashGrid.from_config(cfg, dtype)
    reason = tcnn_unavailable_reason()
    if reason is None:
        return TcnnHashGrid(cfg)
    if cfg.backend == "tcnn":
        raise RuntimeError(f"backend='tcnn' cannot be used: {reason}. "
                           "Use backend=torch (or auto) to run the pure-PyTorch hash grid instead.")
    # auto: a CPU machine falling back is expected; a GPU machine without tcnn is slower than it could be
    level = logging.WARNING if torch.cuda.is_available() else logging.INFO
    log.log(level, "hash grid backend auto -> torch (%s)", reason)
    return TorchHashGrid.from_config(cfg, dtype)

"""Configuration of the HyperFields NeRF core: hash grid, encodings, MLP, renderer (thesis Ch. 4).

Defaults follow the thesis where it states a value (Sec. 4.3.3, App. B.1: a 6-layer NeRF MLP of
width 64 with skip connections every two layers on top of an Instant-NGP multiresolution hash
grid and sinusoidal encodings γ) and otherwise the public HyperFields code
(threedle/hyperfields, itself built on stable-dreamfusion); see ``/work/shared/reference/ANCHORS.md``.
Where the two differ, the thesis value is the default and the repository's is an option.

Load strictly from a mapping or ``key=value`` overrides:

    from priorlab.methods.configuration import apply_overrides, parse_overrides
    cfg = apply_overrides(FieldConfig(), parse_overrides(["n_levels=8", "n_samples=32"]))
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from priorlab.methods.configuration import ConfigError, check_bounds

BACKENDS = ("torch", "tcnn", "auto")
SKIP_MODES = ("concat", "add")
DENSITY_ACTIVATIONS = ("trunc_exp", "softplus", "relu")


@dataclass
class FieldConfig:
    # --- multiresolution hash grid (Instant-NGP; Sec. 4.3.3, App. B.1) ---
    n_levels: int = 16
    """L, the number of grid levels (Instant-NGP's default)."""
    features_per_level: int = 2
    """F, features stored per grid vertex; the grid outputs L * F features per point."""
    log2_hashmap_size: int = 19
    """log2 of T, the number of table entries per level (2^19 as in Instant-NGP and the repo)."""
    base_resolution: int = 16
    """N_min, the grid resolution of the coarsest level."""
    finest_resolution: int = 2048
    """N_max, the grid resolution of the finest level. The thesis does not state it; the
    HyperFields repository asks its grid encoder (stable-dreamfusion's `tiledgrid` variant)
    for 2048 * bound, and with bound = 1 that is 2048."""
    backend: Literal["torch", "tcnn", "auto"] = "auto"
    """`torch`: the pure-PyTorch grid (runs anywhere, float64 for gradcheck). `tcnn`: the
    tiny-cuda-nn grid (needs tinycudann and CUDA; an error says how to install it otherwise).
    `auto`: tcnn where it is importable and CUDA is available, else torch (logged). The two
    backends place vertices and hash slightly differently: their weights do not transfer."""

    # --- sinusoidal encoding γ (Sec. 4.3.3) ---
    n_frequencies: int = 6
    """K, frequencies 2^0..2^(K-1) (times π) of γ(x) applied to x / bound. The thesis gives no
    number; 6 keeps γ low-frequency beside the grid (0 turns γ off)."""
    include_input: bool = True
    """Prepend x / bound itself to γ(x)."""

    # --- NeRF MLP (App. B.1) ---
    n_layers: int = 6
    """Linear layers of the NeRF MLP, the output layer included (6 in App. B.1)."""
    hidden: int = 64
    """Width of every hidden layer (64 in App. B.1)."""
    skip_every: int = 2
    """A skip connection enters every `skip_every` layers: layers 2, 4, ... (not the output
    layer) receive it (App. B.1, "skip connections every two layers"); 0 turns skips off."""
    skip_mode: Literal["concat", "add"] = "concat"
    """`concat`: the encoded input is concatenated to the hidden state (NeRF's skip).
    `add`: the repository's variant, the hidden state of two layers back is added before the
    ReLU. The thesis does not say which."""
    bias: bool = False
    """Biases in the NeRF layers. The HyperFields hypernetwork predicts weight matrices only
    (F.linear with no bias, ANCHORS.md), so the default is none."""
    feature_dim: int = 0
    """Extra output channels (a feature head) beside density and RGB; 0 = none."""
    density_activation: Literal["trunc_exp", "softplus", "relu"] = "trunc_exp"
    """σ = act(raw + blob). `trunc_exp` (exp whose gradient clamps the exponent at 15) is what
    stable-dreamfusion and the HyperFields repo use; softplus is the gentler alternative."""
    density_blob: float = 5.0
    """Height of DreamFusion's initial Gaussian density bump at the origin, added to the raw
    density: blob * exp(-|x|^2 / (2 * blob_std^2)) (5.0 in the repo; 0 turns it off)."""
    density_blob_std: float = 0.2
    """Width of that bump (0.2 in the repo, in the units of x)."""
    bound: float = 1.0
    """Radius of the origin-centred bounding sphere of the scene. Points outside have zero
    density; the grid covers the cube [-bound, bound]^3 around it; rays are cut by this sphere."""

    # --- volume renderer (NeRF quadrature, Max 1995 / Mildenhall et al. 2020) ---
    n_samples: int = 64
    """Samples per ray between the sphere's entry and exit (64: the repo's --num_steps)."""
    perturb: bool = True
    """Jitter each sample uniformly within its stratum while training (stratified sampling);
    evaluation always uses the stratum midpoints."""
    background: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    """RGB in [0, 1] seen through the unoccupied part of a ray (white by default)."""
    min_near: float = 0.1
    """Closest a sample may lie in front of the camera (the repo's --min_near)."""
    chunk: int = 4096
    """Rays rendered per field call by ``render_image`` (the repo's --max_ray_batch)."""
    occupancy_resolution: int = 0
    """Cells per side of an occupancy grid over the cube [-bound, bound]^3 (Instant-NGP's
    empty-space skipping, the repo's --cuda_ray; ``occupancy.py``); 0 = none. The field gives
    zero density in cells marked empty, so the renderer may skip their samples exactly. The
    fit that trains the field keeps the grid up to date (``TeacherConfig.occupancy_every``)."""

    @property
    def table_size(self) -> int:
        """T, entries per hashed level."""
        return 2 ** self.log2_hashmap_size

    @property
    def per_level_scale(self) -> float:
        """b = exp((ln N_max - ln N_min) / (L - 1)), the growth factor of resolutions."""
        if self.n_levels == 1:
            return 1.0
        return math.exp((math.log(self.finest_resolution) - math.log(self.base_resolution))
                        / (self.n_levels - 1))

    @property
    def grid_dim(self) -> int:
        return self.n_levels * self.features_per_level

    @property
    def frequency_dim(self) -> int:
        return (3 if self.include_input else 0) + 6 * self.n_frequencies

    @property
    def encoding_dim(self) -> int:
        """Width of the MLP input: hash-grid features then γ(x)."""
        return self.grid_dim + self.frequency_dim

    @property
    def out_dim(self) -> int:
        """MLP output channels: raw density, 3 raw colours, then the feature head."""
        return 4 + self.feature_dim

    def validate(self) -> None:
        check_bounds(self, at_least_1=("n_levels", "features_per_level", "base_resolution",
                                       "finest_resolution", "n_layers", "hidden", "n_samples",
                                       "chunk"),
                     non_negative=("n_frequencies", "skip_every", "feature_dim", "density_blob",
                                   "min_near", "occupancy_resolution"),
                     positive=("bound", "density_blob_std"))
        if not 1 <= self.log2_hashmap_size <= 30:
            raise ConfigError(f"log2_hashmap_size={self.log2_hashmap_size} must be in 1..30 "
                              "(19 is Instant-NGP's default; 2^30 entries would not fit memory)")
        if self.finest_resolution < self.base_resolution:
            raise ConfigError(f"finest_resolution={self.finest_resolution} must be >= "
                              f"base_resolution={self.base_resolution}")
        if self.n_layers < 2:
            raise ConfigError(f"n_layers={self.n_layers} must be >= 2 (a hidden and an output layer)")
        choices = (("backend", BACKENDS), ("skip_mode", SKIP_MODES),
                   ("density_activation", DENSITY_ACTIVATIONS))
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}={getattr(self, name)!r}: choose one of {list(allowed)}")
        bg = list(self.background)
        if len(bg) != 3 or not all(0.0 <= float(c) <= 1.0 for c in bg):
            raise ConfigError(f"background={bg} must be three numbers in [0, 1] (an RGB colour)")

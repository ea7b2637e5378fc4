"""Random training views and view-dependent prompts, DreamFusion style (thesis Sec. 4.3.2:
Algorithm 3 draws a camera C_i for every prompt; Eq. 4.1 is an expectation over cameras c).

Cameras look at the origin from a sphere (``cameras.pose_spherical``: elevation above the
horizontal plane, azimuth about +y with 0 = the front view from +z). Elevation, azimuth, radius
and vertical field of view are each drawn uniformly from their ranges.

DreamFusion appends the view to the prompt ("overhead view" above 60° elevation, else front /
side / back by azimuth). The exact regions here, in degrees, azimuth wrapped to (-180, 180]:

    overhead   elevation >=  90 - overhead_angle        (>= 60 by default)
    bottom     elevation <= -(90 - overhead_angle)      (<= -60; unreachable with the default range)
    front      |azimuth| <  front_angle / 2             (< 30)
    back       |azimuth| >  180 - front_angle / 2       (> 150)
    side       otherwise                                (30..150 either way, boundaries included)

These are stable-dreamfusion's symmetric regions with its defaults (and the HyperFields repo's
flags --angle_overhead 30 --angle_front 60); the repo's own copy used an older, one-sided front
region [0°, 60°), which this does not reproduce.

    cams = sample_cameras(8, CameraSamplerConfig(), generator=torch.Generator().manual_seed(0))
    texts = view_prompt("a plaid chair", cams.elevation, cams.azimuth)   # [..., "a plaid chair, side view"]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from priorlab.methods.configuration import ConfigError
from priorlab.methods.fields.cameras import pose_spherical


@dataclass
class CameraSamplerConfig:
    elevation_range: list[float] = field(default_factory=lambda: [-10.0, 45.0])
    """Degrees above the horizontal plane. Mostly from above, as objects are usually seen
    (stable-dreamfusion's pose sampler defaults to polar angles 0..120° from +y, i.e.
    elevation -30..90)."""
    azimuth_range: list[float] = field(default_factory=lambda: [-180.0, 180.0])
    """Degrees about +y, 0 = front. The full circle, so every side is supervised."""
    radius_range: list[float] = field(default_factory=lambda: [2.5, 3.5])
    """Camera distance to the origin. The object fills the bounding sphere of radius
    ``FieldConfig.bound`` = 1, so cameras sit outside it: at radius 3 a 40° field of view spans
    3 sin 20° ≈ 1.03. (The repo's 1.0..1.5 is for its box of half-size 1 holding smaller objects.)"""
    fov_range: list[float] = field(default_factory=lambda: [35.0, 45.0])
    """Vertical field of view in degrees (the repo: 40..70 at its closer radii)."""
    front_angle: float = 60.0
    """Full width of the front region (and of the back region), in degrees of azimuth."""
    overhead_angle: float = 30.0
    """Views within this many degrees of straight up (down) are "overhead" ("bottom")."""

    def validate(self) -> None:
        for name in ("elevation_range", "azimuth_range", "radius_range", "fov_range"):
            lo_hi = list(getattr(self, name))
            if len(lo_hi) != 2 or lo_hi[0] > lo_hi[1]:
                raise ConfigError(f"{name}={lo_hi} must be [low, high] with low <= high")
        if not (-90 <= self.elevation_range[0] and self.elevation_range[1] <= 90):
            raise ConfigError(f"elevation_range={self.elevation_range} must lie in [-90, 90]")
        if self.radius_range[0] <= 0:
            raise ConfigError(f"radius_range={self.radius_range} must be positive")
        if not (0 < self.fov_range[0] and self.fov_range[1] < 180):
            raise ConfigError(f"fov_range={self.fov_range} must lie in (0, 180) degrees")
        if not 0 < self.front_angle < 180:
            raise ConfigError(f"front_angle={self.front_angle} must be in (0, 180) degrees")
        if not 0 <= self.overhead_angle < 90:
            raise ConfigError(f"overhead_angle={self.overhead_angle} must be in [0, 90) degrees")


class Cameras(NamedTuple):
    c2w: torch.Tensor        # (n, 4, 4)
    fov: torch.Tensor        # (n,) vertical, degrees
    elevation: torch.Tensor  # (n,) degrees
    azimuth: torch.Tensor    # (n,) degrees
    radius: torch.Tensor     # (n,)


def _uniform(n: int, lo_hi, generator: torch.Generator | None) -> torch.Tensor:
    lo, hi = float(lo_hi[0]), float(lo_hi[1])
    return lo + (hi - lo) * torch.rand(n, generator=generator)


def sample_cameras(n: int, cfg: CameraSamplerConfig | None = None,
                   generator: torch.Generator | None = None) -> Cameras:
    """``n`` random cameras looking at the origin (seeded by ``generator``)."""
    cfg = cfg or CameraSamplerConfig()
    cfg.validate()
    elevation = _uniform(n, cfg.elevation_range, generator)
    azimuth = _uniform(n, cfg.azimuth_range, generator)
    radius = _uniform(n, cfg.radius_range, generator)
    fov = _uniform(n, cfg.fov_range, generator)
    return Cameras(pose_spherical(elevation, azimuth, radius), fov, elevation, azimuth, radius)


def view_name(elevation: float, azimuth: float, cfg: CameraSamplerConfig | None = None) -> str:
    """`overhead`, `bottom`, `front`, `back` or `side` for one view (degrees; see the module doc)."""
    cfg = cfg or CameraSamplerConfig()
    if elevation >= 90.0 - cfg.overhead_angle:
        return "overhead"
    if elevation <= -(90.0 - cfg.overhead_angle):
        return "bottom"
    az = abs(((float(azimuth) + 180.0) % 360.0) - 180.0)   # |azimuth| wrapped into [0, 180]
    half = cfg.front_angle / 2
    if az < half:
        return "front"
    if az > 180.0 - half:
        return "back"
    return "side"


def view_prompt(prompt: str, elevation, azimuth, cfg: CameraSamplerConfig | None = None):
    """``prompt + ", <view> view"``: a str for one view, a list for tensors/sequences of views."""
    el = torch.as_tensor(elevation, dtype=torch.float64)
    az = torch.as_tensor(azimuth, dtype=torch.float64)
    if el.dim() == 0 and az.dim() == 0:
        return f"{prompt}, {view_name(float(el), float(az), cfg)} view"
    el, az = torch.broadcast_tensors(el, az)
    return [f"{prompt}, {view_name(float(e), float(a), cfg)} view"
            for e, a in zip(el.reshape(-1).tolist(), az.reshape(-1).tolist())]

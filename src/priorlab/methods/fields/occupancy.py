"""An occupancy grid for empty-space skipping (Instant-NGP, Müller et al. 2022, Sec. 4 "occupancy
grids"; the --cuda_ray path of stable-dreamfusion that the HyperFields teachers of thesis
Sec. 4.3.3 / App. B.1 are trained with).

A NeRFField with ``FieldConfig.occupancy_resolution = R > 0`` carries two buffers over the cube
[-bound, bound]^3 cut into R^3 cells:

    occupancy_density  (R, R, R) float   a running max of σ seen in each cell, decayed per update
    occupancy          (R, R, R) bool    cells that may hold density

and gives σ = 0 for points in cells marked empty. That makes the grid part of the field: a
renderer that skips the samples of empty cells (``renderer.render_rays(..., occupancy=...)``)
renders exactly what it would render evaluating every sample, only with fewer field calls, and
a teacher saved with its grid renders the same wherever it is loaded (the buffers are in its
state dict).

The fit keeps the grid current (``update_occupancy``, every ``TeacherConfig.occupancy_every``
steps): σ is evaluated at one uniformly jittered point per cell (the field's own density,
ignoring the grid), ``occupancy_density = max(decay * occupancy_density, σ)``, and a cell is
occupied when its value exceeds ``min(mean over cells, σ_min)``, where σ_min is the density at
which one sample of the renderer's mean spacing δ = 2 bound / n_samples would have opacity
``alpha`` (σ_min = -ln(1 - alpha) / δ), as Instant-NGP thresholds at opacity 0.01 per step.
The occupied set is then dilated by one cell (a 3^3 max-pool) so that thin structures seen by
one jittered point are not cut off at a cell boundary. A fresh grid marks every cell that
reaches into the bounding sphere occupied.

Samples in empty cells receive no gradient, so density that was wrongly culled is not learned
back until an update sees it again (each update re-measures every cell); ``decay`` trades how
fast empty space is culled against that risk.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

UPDATE_CHUNK = 65_536  # points per field call in an update


def cell_index(points: torch.Tensor, resolution: int, bound: float) -> torch.Tensor:
    """Flat index (...,) into an (R, R, R) grid of the cells holding ``points`` (..., 3);
    points outside the cube are clamped to its border cells."""
    ijk = ((points + bound) * (resolution / (2.0 * bound))).floor().long().clamp_(0, resolution - 1)
    return (ijk[..., 0] * resolution + ijk[..., 1]) * resolution + ijk[..., 2]


def occupied(points: torch.Tensor, grid: torch.Tensor, bound: float) -> torch.Tensor:
    """Whether each point (..., 3) lies in an occupied cell of ``grid`` (R, R, R) bool."""
    return grid.reshape(-1)[cell_index(points, grid.shape[0], bound)]


def sphere_cells(resolution: int, bound: float) -> torch.Tensor:
    """(R, R, R) bool: the cells that reach into the bounding sphere |x| <= bound (outside it
    every NeRFField has σ = 0), the grid a fresh field starts from."""
    size = 2.0 * bound / resolution
    lo = torch.arange(resolution, dtype=torch.float64) * size - bound           # cell corners
    nearest = torch.where(lo > 0, lo, torch.where(lo + size < 0, lo + size, torch.zeros_like(lo)))
    d2 = nearest[:, None, None] ** 2 + nearest[None, :, None] ** 2 + nearest[None, None, :] ** 2
    return d2 <= bound ** 2


def sigma_threshold(alpha: float, bound: float, n_samples: int) -> float:
    """Density at which one sample at the renderer's mean spacing has opacity ``alpha``."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha={alpha} must be in (0, 1) (an opacity per sample, e.g. 0.01)")
    delta = 2.0 * bound / n_samples
    return -math.log1p(-alpha) / delta


def cell_points(resolution: int, bound: float, generator: torch.Generator | None = None,
                jitter: bool = True) -> torch.Tensor:
    """One point per cell (R^3, 3) in flat-index order: uniform in the cell, or its centre."""
    r = torch.arange(resolution, dtype=torch.float32)
    ijk = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)   # (R^3, 3)
    offset = torch.rand(ijk.shape, generator=generator) if jitter else torch.full_like(ijk, 0.5)
    return (ijk + offset) * (2.0 * bound / resolution) - bound


@torch.no_grad()
def update_occupancy(field, *, decay: float, alpha: float, n_samples: int,
                     generator: torch.Generator | None = None) -> float:
    """Re-measure ``field``'s occupancy grid in place; returns the occupied fraction of cells.

    ``field`` is a ``NeRFField`` built with ``occupancy_resolution > 0``."""
    cfg = field.cfg
    if not cfg.occupancy_resolution:
        raise ValueError("this field has no occupancy grid: build it with "
                         "FieldConfig(occupancy_resolution=R), e.g. R = 32")
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"decay={decay} must be in [0, 1)")
    res = cfg.occupancy_resolution
    pts = cell_points(res, cfg.bound, generator).to(field.occupancy_density)
    was_training = field.training
    field.eval()
    sigma = torch.cat([field(pts[i:i + UPDATE_CHUNK], apply_occupancy=False)["sigma"]
                       for i in range(0, pts.shape[0], UPDATE_CHUNK)]).reshape(res, res, res)
    field.train(was_training)
    density = torch.maximum(field.occupancy_density * decay, sigma.to(field.occupancy_density))
    field.occupancy_density.copy_(density)
    threshold = min(float(density.mean()), sigma_threshold(alpha, cfg.bound, n_samples))
    grid = (density > threshold).float()[None, None]
    grid = F.max_pool3d(grid, kernel_size=3, stride=1, padding=1)[0, 0] > 0
    field.occupancy.copy_(grid & sphere_cells(res, cfg.bound).to(grid.device))
    return float(grid.float().mean())

"""Volume rendering of a density/colour field along camera rays (the renderer R of thesis
Sec. 4.3.2, Algorithm 3; the images that the SDS gradient of Eq. 4.1 and the distillation loss
of Eq. 4.6 are taken of).

Rays are cut by the scene's bounding sphere (``cameras.sphere_near_far`` with radius ``bound``)
and sampled at ``n_samples`` stratified depths t_i: stratum midpoints, or (training with
``perturb``) a uniform draw inside each stratum. Sample i stands for the interval between the
midpoints to its neighbours (the first starts at near, the last ends at far), of length δ_i,
so the δ_i of a ray sum to its chord. The NeRF quadrature:

    α_i = 1 - exp(-σ_i δ_i),   T_i = exp(-Σ_{j<i} σ_j δ_j),   w_i = T_i α_i
    colour = Σ w_i c_i + (1 - opacity) · background,   opacity = Σ w_i,   depth = Σ w_i t_i

``depth`` is the expected termination distance counting empty space as 0: it is 0 for rays that
hit nothing (missing the sphere, or crossing empty space) and shrinks with opacity; divide by
``opacity`` for the depth of the visible surface where opacity > 0. This is the unnormalised
depth of stable-dreamfusion's renderer, which the repo's optional depth distillation term compares.

    out = render_rays(field, origins, dirs, cfg, training=True, generator=g)   # (R, 3) rays
    img = render_image(field, c2w, 64, 64, fov_deg=40.0, cfg=cfg)             # (B, H, W, ...)

``field`` is any callable from points (..., 3) to {"sigma": (...,), "rgb": (..., 3)} (a
``NeRFField``, ``functools.partial(field, mlp_params=w)`` for hypernetwork weights, or an
analytic test field). ``render_image`` calls it on ``cfg.chunk`` rays at a time; that equals one
call only for fields whose outputs do not depend on the batch, which the dynamic hypernetwork
of Eq. 4.4-4.5 (weights from batch means) is not: render such fields in one chunk.

Empty-space skipping: ``occupancy`` (an (R, R, R) bool grid over [-bound, bound]^3, the
``occupancy`` buffer of a ``NeRFField`` with ``occupancy_resolution > 0``; ``occupancy.py``) makes
``render_rays`` call the field only on the samples in occupied cells and give the others σ = 0.
For a field that itself gives σ = 0 in empty cells (a NeRFField with that grid) the result is
exactly the same as without skipping; ``benchmarks/fields_teacher.py --occupancy`` measures what
it saves. Proposal sampling (Mip-NeRF 360) is not built: the occupancy grid was measured first
and is what the teachers use.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch

from priorlab.methods.fields.cameras import get_rays, sphere_near_far
from priorlab.methods.fields.config import FieldConfig
from priorlab.methods.fields.occupancy import occupied

Field = Callable[[torch.Tensor], Mapping[str, torch.Tensor]]


def stratified_samples(near: torch.Tensor, far: torch.Tensor, n_samples: int, perturb: bool = False,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample depths t (R, S) in [near, far] (R,) and their interval lengths δ (R, S)."""
    span = (far - near)[:, None]                                               # (R, 1)
    offset = (torch.rand(near.shape[0], n_samples, generator=generator, dtype=near.dtype,
                         device=near.device) if perturb else torch.full_like(span, 0.5))
    u = (torch.arange(n_samples, dtype=near.dtype, device=near.device) + offset) / n_samples
    t = near[:, None] + span * u                                               # (R, S)
    mids = 0.5 * (t[:, 1:] + t[:, :-1])                                        # (R, S - 1)
    edges = torch.cat([near[:, None], mids, far[:, None]], -1)                 # (R, S + 1)
    return t, edges[:, 1:] - edges[:, :-1]


def composite(sigma: torch.Tensor, rgb: torch.Tensor, t: torch.Tensor, deltas: torch.Tensor,
              background: torch.Tensor) -> dict[str, torch.Tensor]:
    """Alpha-composite samples (R, S) front to back; ``background`` (3,) or (R, 3)."""
    tau = sigma * deltas                                                       # (R, S) optical depth
    # exclusive cumulative sum: T_i counts the samples before i (a cat, not cumsum - tau, keeps inf finite)
    before = torch.cat([torch.zeros_like(tau[:, :1]), torch.cumsum(tau[:, :-1], -1)], -1)
    weights = torch.exp(-before) * (1.0 - torch.exp(-tau))                     # (R, S)
    opacity = weights.sum(-1)                                                  # (R,)
    colour = (weights[..., None] * rgb).sum(-2) + (1.0 - opacity)[:, None] * background  # (R, 3)
    return {"rgb": colour, "opacity": opacity, "depth": (weights * t).sum(-1), "weights": weights}


def sample_points(origins: torch.Tensor, dirs: torch.Tensor, cfg: FieldConfig, training: bool = False,
                  generator: torch.Generator | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The samples of rays (N, 3) inside the bounding sphere: points (N, S, 3), depths t and
    interval lengths δ (N, S); jittered when ``training`` and ``cfg.perturb``."""
    near, far, _ = sphere_near_far(origins, dirs, radius=cfg.bound, min_near=cfg.min_near)  # (N,)
    t, deltas = stratified_samples(near, far, cfg.n_samples, cfg.perturb and training, generator)
    return origins[:, None, :] + t[..., None] * dirs[:, None, :], t, deltas


def _composite_outputs(out: Mapping[str, torch.Tensor], t: torch.Tensor, deltas: torch.Tensor,
                       cfg: FieldConfig, background: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Composite a field's outputs at the samples (N * S leading elements) of rays t (N, S)."""
    r, s = t.shape
    rgb = out["rgb"].reshape(r, s, 3)
    if background is None:
        background = torch.tensor(cfg.background, dtype=rgb.dtype, device=rgb.device)
    result = composite(out["sigma"].reshape(r, s), rgb, t, deltas, background.to(rgb))
    result["t"] = t
    if "features" in out:
        feats = out["features"].reshape(r, s, -1)
        result["features"] = (result["weights"][..., None] * feats).sum(-2)    # (N, F)
    return result


def render_rays(field: Field, origins: torch.Tensor, dirs: torch.Tensor, cfg: FieldConfig, *,
                training: bool = False, generator: torch.Generator | None = None,
                background: torch.Tensor | None = None,
                occupancy: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Render rays (R, 3) (unit ``dirs``) in one field call.

    Returns "rgb" (R, 3), "opacity" (R,), "depth" (R,), "weights" (R, S), "t" (R, S), and
    "features" (R, F) when the field gives features (composited like colour, no background).
    ``background`` overrides ``cfg.background`` ((3,) or one colour per ray (R, 3)).
    ``occupancy`` (R', R', R') bool: call the field only on samples in occupied cells.
    """
    points, t, deltas = sample_points(origins, dirs, cfg, training, generator)
    points = points.reshape(-1, 3)                                             # (R * S, 3)
    if occupancy is None:
        out = field(points)
    else:
        keep = occupied(points, occupancy, cfg.bound).nonzero().squeeze(-1)      # (K,)
        got = field(points[keep])
        out = {}
        for key, value in got.items():              # σ = 0 (and zeros elsewhere) in empty cells
            full = value.new_zeros((points.shape[0], *value.shape[1:]))
            out[key] = full.index_copy(0, keep, value)
    return _composite_outputs(out, t, deltas, cfg, background)


def render_batch(field: Field, origins: torch.Tensor, dirs: torch.Tensor, cfg: FieldConfig, *,
                 training: bool = False, generator: torch.Generator | None = None,
                 background: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Render B scenes' rays (B, R, 3) in one field call on points (B, R * S, 3).

    For fields that take a batch of scenes, e.g. ``HyperFields.forward`` bound to B conditioning
    tokens (each scene gets its own generated MLP and its own batch means, Eq. 4.4). Outputs
    are ``render_rays``'s with a leading B: "rgb" (B, R, 3), "opacity" (B, R), ...
    """
    b, r = origins.shape[:2]
    points, t, deltas = sample_points(origins.reshape(-1, 3), dirs.reshape(-1, 3), cfg, training,
                                      generator)                               # (B * R, S, 3)
    out = field(points.reshape(b, -1, 3))
    result = _composite_outputs(out, t, deltas, cfg, background)
    return {k: v.reshape(b, r, *v.shape[1:]) for k, v in result.items()}


def render_image(field: Field, c2w: torch.Tensor, height: int, width: int,
                 fov_deg: float | torch.Tensor, cfg: FieldConfig, *, training: bool = False,
                 generator: torch.Generator | None = None, background: torch.Tensor | None = None,
                 chunk: int | None = None, occupancy: torch.Tensor | None = None
                 ) -> dict[str, torch.Tensor]:
    """Render cameras ``c2w`` (B, 4, 4) in chunks of ``chunk`` (default ``cfg.chunk``) rays.

    Every output of ``render_rays`` comes back as (B, H, W, ...), e.g. "rgb" (B, H, W, 3).
    ``background`` is one colour (3,) here (chunks cut per-ray backgrounds apart).
    """
    origins, dirs = get_rays(c2w, height, width, fov_deg)                      # (B, H, W, 3)
    lead = origins.shape[:-1]
    origins, dirs = origins.reshape(-1, 3), dirs.reshape(-1, 3)
    chunk = chunk or cfg.chunk
    parts = [render_rays(field, origins[i:i + chunk], dirs[i:i + chunk], cfg, training=training,
                         generator=generator, background=background, occupancy=occupancy)
             for i in range(0, origins.shape[0], chunk)]
    return {k: torch.cat([p[k] for p in parts]).reshape(*lead, *parts[0][k].shape[1:])
            for k in parts[0]}

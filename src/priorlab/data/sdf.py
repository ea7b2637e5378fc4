"""Signed distance functions of the analytic scene family (thesis Ch. 4, Sec. 4.4.1).

The in-distribution experiment of Sec. 4.4.1 trains on colour x shape prompts (9 shapes x 8
colours in Fig. 4.4). Here every shape is an exact signed distance function (SDF) in PyTorch,
so that any view of it can be rendered exactly (``priorlab.data.scenes.render_scene``) and a
NeRF distilled from those views can be checked against ground truth.

Conventions: world y is up (as in ``priorlab.methods.fields.cameras``); an SDF maps points
(N, 3) to distances (N,), negative inside. Every shape sits in the unit sphere centred at the
origin with a margin (``BOUND_RADIUS`` = 1, every point of every shape within ``SHAPE_RADIUS``).
Primitives are exact SDFs; composites are unions (``min``) of translated / rotated primitives,
which stays exact outside the union and a lower bound inside, so sphere tracing never
oversteps a surface.

    from priorlab.data.sdf import SHAPES, shape_sdf
    d = shape_sdf("chair", torch.rand(1024, 3) * 2 - 1)        # (1024,)
"""

from __future__ import annotations

import math
from typing import Callable

import torch

BOUND_RADIUS = 1.0   # the scene's bounding sphere (what the NeRF and the renderer march in)
SHAPE_RADIUS = 0.92  # every shape lies inside this radius: a margin for the bounding sphere

SDF = Callable[[torch.Tensor], torch.Tensor]


class SceneError(ValueError):
    """A scene, shape, colour or attribute name that the family does not know."""


# ---- exact primitives, centred at the origin, axis y -------------------------------------

def sd_sphere(p: torch.Tensor, radius: float) -> torch.Tensor:
    return p.norm(dim=-1) - radius


def sd_box(p: torch.Tensor, half: tuple[float, float, float]) -> torch.Tensor:
    """Axis-aligned box with half-extents ``half``."""
    q = p.abs() - p.new_tensor(half)                                # (N, 3)
    outside = q.clamp_min(0.0).norm(dim=-1)
    inside = q.max(dim=-1).values.clamp_max(0.0)
    return outside + inside


def sd_torus(p: torch.Tensor, major: float, minor: float) -> torch.Tensor:
    """Torus lying in the xz plane: ring radius ``major``, tube radius ``minor``."""
    ring = p[:, [0, 2]].norm(dim=-1) - major
    return torch.stack([ring, p[:, 1]], -1).norm(dim=-1) - minor


def sd_cylinder(p: torch.Tensor, radius: float, half_height: float) -> torch.Tensor:
    """Capped cylinder along y, ``|y| <= half_height``."""
    d = torch.stack([p[:, [0, 2]].norm(dim=-1) - radius, p[:, 1].abs() - half_height], -1)
    return d.max(dim=-1).values.clamp_max(0.0) + d.clamp_min(0.0).norm(dim=-1)


def sd_capped_cone(p: torch.Tensor, half_height: float, r_bottom: float, r_top: float) -> torch.Tensor:
    """Frustum along y: radius ``r_bottom`` at y = -h, ``r_top`` at y = +h (either may be 0).

    Works in the (radial, y) half-plane: the distance to the solid trapezoid is the smaller of
    the distance to the caps and the distance to the slanted side segment.
    """
    h = half_height
    qx, qy = p[:, [0, 2]].norm(dim=-1), p[:, 1]
    cap_r = torch.where(qy < 0, torch.full_like(qy, r_bottom), torch.full_like(qy, r_top))
    ca_x = qx - torch.minimum(qx, cap_r)
    ca_y = qy.abs() - h
    # side segment from (r_top, h) (t = 0) to (r_bottom, -h) (t = 1)
    k2x, k2y = r_top - r_bottom, 2.0 * h
    t = (((r_top - qx) * k2x + (h - qy) * k2y) / (k2x * k2x + k2y * k2y)).clamp(0.0, 1.0)
    cb_x = qx - r_top + k2x * t
    cb_y = qy - h + k2y * t
    sign = torch.where((cb_x < 0) & (ca_y < 0), -1.0, 1.0)
    return sign * torch.minimum(ca_x ** 2 + ca_y ** 2, cb_x ** 2 + cb_y ** 2).sqrt()


def sd_capsule(p: torch.Tensor, a: tuple[float, float, float], b: tuple[float, float, float],
               radius: float) -> torch.Tensor:
    """Points within ``radius`` of the segment a-b."""
    a_, b_ = p.new_tensor(a), p.new_tensor(b)
    ab = b_ - a_
    t = (((p - a_) @ ab) / (ab @ ab)).clamp(0.0, 1.0)              # (N,)
    return (p - a_ - t[:, None] * ab).norm(dim=-1) - radius


# ---- rigid transforms (they keep an SDF exact) -------------------------------------------

def translated(sdf: SDF, offset: tuple[float, float, float]) -> SDF:
    return lambda p: sdf(p - p.new_tensor(offset))


def rotated_x(sdf: SDF, degrees: float) -> SDF:
    """The shape rotated by ``degrees`` about the x axis (right-handed: y towards z)."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))

    def f(p: torch.Tensor) -> torch.Tensor:               # evaluate at the inverse-rotated point
        y, z = p[:, 1], p[:, 2]
        return sdf(torch.stack([p[:, 0], c * y + s * z, -s * y + c * z], -1))
    return f


def rotated_z(sdf: SDF, degrees: float) -> SDF:
    """The shape rotated by ``degrees`` about the z axis (x towards y)."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))

    def f(p: torch.Tensor) -> torch.Tensor:
        x, y = p[:, 0], p[:, 1]
        return sdf(torch.stack([c * x + s * y, -s * x + c * y, p[:, 2]], -1))
    return f


def union(*parts: SDF) -> SDF:
    def f(p: torch.Tensor) -> torch.Tensor:
        d = parts[0](p)
        for part in parts[1:]:
            d = torch.minimum(d, part(p))
        return d
    return f


# ---- the shapes of the family ------------------------------------------------------------
# Builders return an SDF; sizes are chosen so that every shape fills most of the bounding
# sphere yet stays within SHAPE_RADIUS (checked by tests/data/test_scenes.py).

def _sphere() -> SDF:
    return lambda p: sd_sphere(p, 0.75)


def _cube() -> SDF:
    return lambda p: sd_box(p, (0.5, 0.5, 0.5))                     # corners at 0.866


def _torus() -> SDF:
    # tilted 45 degrees towards the front camera so no common view sees it only edge-on
    return rotated_x(lambda p: sd_torus(p, 0.58, 0.22), 45.0)


def _cylinder() -> SDF:
    return lambda p: sd_cylinder(p, 0.5, 0.6)


def _cone() -> SDF:
    return lambda p: sd_capped_cone(p, 0.6, 0.6, 0.0)


def _capsule() -> SDF:
    return lambda p: sd_capsule(p, (0.0, -0.45, 0.0), (0.0, 0.45, 0.0), 0.35)


def _chair_parts() -> dict[str, list[SDF]]:
    seat = translated(lambda p: sd_box(p, (0.36, 0.05, 0.36)), (0.0, -0.1, 0.0))
    legs = [translated(lambda p: sd_box(p, (0.04, 0.28, 0.04)), (sx * 0.31, -0.43, sz * 0.31))
            for sx in (-1, 1) for sz in (-1, 1)]
    back = translated(lambda p: sd_box(p, (0.36, 0.33, 0.04)), (0.0, 0.28, -0.32))
    return {"seat": [seat], "leg": legs, "back": [back]}


def _table_parts() -> dict[str, list[SDF]]:
    top = translated(lambda p: sd_box(p, (0.65, 0.04, 0.42)), (0.0, 0.25, 0.0))
    legs = [translated(lambda p: sd_cylinder(p, 0.05, 0.37), (sx * 0.56, -0.13, sz * 0.34))
            for sx in (-1, 1) for sz in (-1, 1)]
    return {"top": [top], "leg": legs}


def _vase_parts() -> dict[str, list[SDF]]:
    body = translated(lambda p: sd_sphere(p, 0.48), (0.0, -0.2, 0.0))
    neck = translated(lambda p: sd_capped_cone(p, 0.24, 0.26, 0.15), (0.0, 0.38, 0.0))
    lip = translated(lambda p: sd_torus(p, 0.16, 0.055), (0.0, 0.64, 0.0))
    foot = translated(lambda p: sd_cylinder(p, 0.26, 0.05), (0.0, -0.66, 0.0))
    return {"body": [body], "neck": [neck], "lip": [lip], "foot": [foot]}


def _lamp_parts() -> dict[str, list[SDF]]:
    base = translated(lambda p: sd_cylinder(p, 0.34, 0.04), (0.0, -0.7, 0.0))
    pole = translated(lambda p: sd_cylinder(p, 0.04, 0.45), (0.0, -0.25, 0.0))
    shade = translated(lambda p: sd_capped_cone(p, 0.25, 0.46, 0.22), (0.0, 0.35, 0.0))
    return {"base": [base], "pole": [pole], "shade": [shade]}


def _mug_parts() -> dict[str, list[SDF]]:
    body = lambda p: sd_cylinder(p, 0.42, 0.55)
    # handle: a torus stood up in the xy plane, half of it buried in the body
    handle = translated(rotated_x(lambda p: sd_torus(p, 0.22, 0.06), 90.0), (0.44, 0.0, 0.0))
    return {"body": [body], "handle": [handle]}


# composite shape -> its named parts (each a list of primitives); the shape is their union
COMPOSITE_PARTS: dict[str, Callable[[], dict[str, list[SDF]]]] = {
    "chair": _chair_parts, "table": _table_parts, "vase": _vase_parts, "lamp": _lamp_parts,
    "mug": _mug_parts,
}


def _composite(name: str) -> Callable[[], SDF]:
    return lambda: union(*(sdf for part in COMPOSITE_PARTS[name]().values() for sdf in part))


# name -> builder. Primitives first, then composites of primitives.
SHAPES: dict[str, Callable[[], SDF]] = {
    "sphere": _sphere, "cube": _cube, "torus": _torus, "cylinder": _cylinder, "cone": _cone,
    "capsule": _capsule,
    **{name: _composite(name) for name in COMPOSITE_PARTS},
}
PRIMITIVES = ("sphere", "cube", "torus", "cylinder", "cone", "capsule")


def shape_sdf(shape: str, points: torch.Tensor) -> torch.Tensor:
    """Signed distances (N,) of ``points`` (N, 3) to the named shape."""
    if shape not in SHAPES:
        raise SceneError(f"unknown shape {shape!r}; shapes: {', '.join(SHAPES)}")
    return SHAPES[shape]()(points)


# ---- part labels (HyperSegmentationFields, thesis Sec. 4.4.8) ------------------------------
# One vocabulary over every shape: 0 is the background (a ray that hits nothing), a primitive
# is one part ("body"), a composite has the parts of ``COMPOSITE_PARTS``.
PART_CLASSES = ("background", "body", "seat", "leg", "back", "top", "neck", "lip", "foot",
                "base", "pole", "shade", "handle")


def shape_parts(shape: str) -> tuple[str, ...]:
    """The part names of a shape (("body",) for a primitive)."""
    if shape not in SHAPES:
        raise SceneError(f"unknown shape {shape!r}; shapes: {', '.join(SHAPES)}")
    return tuple(COMPOSITE_PARTS[shape]()) if shape in COMPOSITE_PARTS else ("body",)


def part_labels(shape: str, points: torch.Tensor) -> torch.Tensor:
    """The ``PART_CLASSES`` index (N,) of the part nearest to each of ``points`` (N, 3): the part
    whose SDF is smallest there (meant for surface points, where it is the part hit)."""
    names = shape_parts(shape)
    if shape not in COMPOSITE_PARTS:
        return torch.full(points.shape[:1], PART_CLASSES.index("body"), dtype=torch.long,
                          device=points.device)
    parts = COMPOSITE_PARTS[shape]()
    d = torch.stack([union(*parts[name])(points) for name in names], -1)       # (N, P)
    ids = torch.tensor([PART_CLASSES.index(n) for n in names], device=points.device)
    return ids[d.argmin(-1)]

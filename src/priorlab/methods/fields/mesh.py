"""Mesh export of a NeRF density field: marching cubes -> a coloured triangle mesh -> a PLY file.

The thesis shows its generated scenes (Sec. 4.4, Results) as volume renders; it exports no
meshes. This module adds that output for users of ``priorlab generate ... --mesh``:

    mesh = extract_mesh(field, resolution=128)       # field: NeRFField or any points -> dict
    write_ply(mesh, "scene.ply")                     # binary PLY: vertices, colours, faces
    mesh = read_ply("scene.ply")

The density σ is sampled on a ``resolution``^3 grid whose samples lie on [-bound, bound]^3
(both ends included, spacing h = 2 bound / (resolution - 1)) and the level set σ = ``threshold``
is triangulated by marching cubes (Lorensen & Cline 1987, "Marching cubes: a high resolution 3D
surface construction algorithm", SIGGRAPH), in scikit-image's topologically consistent variant
(Lewiner et al. 2003). Space outside the grid counts as empty, so the surface is always closed.
Faces are wound counter-clockwise seen from outside: their right-hand normals point away from
the dense side. Each vertex carries the field's rgb at that point.

``threshold`` is a density σ (units 1 / world length), not an opacity: the surface separates
σ > threshold (inside) from σ < threshold. A sample of length δ along a ray at density σ has
opacity 1 - exp(-σ δ). The default, ``DEFAULT_THRESHOLD`` = 10, is stable-dreamfusion's
``--density_thresh`` (the code base of the HyperFields repository), which its ``export_mesh``
hands to marching cubes. With this repository's renderer defaults (bound 1, 64 samples per
diameter, δ ≈ 1/32) a sample at σ = 10 has opacity 0.27; ``threshold_for_opacity`` gives the
density for another opacity. Lower it for faint scenes; the error for an empty field says which
densities it saw.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DEFAULT_THRESHOLD = 10.0
"""σ of the exported surface: stable-dreamfusion's ``--density_thresh`` default (see above)."""
MIN_RESOLUTION, MAX_RESOLUTION = 8, 512

FieldFn = Callable[[torch.Tensor], Mapping[str, torch.Tensor]]


class MeshError(ValueError):
    """A mesh cannot be extracted, or a PLY file cannot be read; the message says why."""


@dataclass
class Mesh:
    """A triangle mesh in world units, with one colour per vertex."""

    vertices: np.ndarray
    """(V, 3) float32 positions."""
    faces: np.ndarray
    """(F, 3) int64 vertex indices, counter-clockwise seen from outside."""
    colours: np.ndarray
    """(V, 3) uint8 RGB."""


def threshold_for_opacity(opacity: float, bound: float = 1.0, n_samples: int = 64) -> float:
    """The density at which one sample at the renderer's mean spacing δ = 2 bound / n_samples
    has the given opacity (σ = -ln(1 - opacity) / δ); e.g. 0.5 -> 22.2 with the defaults."""
    if not 0.0 < opacity < 1.0:
        raise MeshError(f"opacity={opacity} must be in (0, 1)")
    return -math.log1p(-opacity) / (2.0 * bound / n_samples)


# ---------------------------------------------------------------------------- extraction

def _field_bound(field: FieldFn) -> float:
    cfg = getattr(field, "cfg", None)
    return float(getattr(cfg, "bound", 1.0))


def _device_dtype(field: FieldFn) -> tuple[torch.device, torch.dtype]:
    """Where and in which precision to make query points: those of the field's parameters."""
    if isinstance(field, torch.nn.Module):
        for t in (*field.parameters(), *field.buffers()):
            if t.is_floating_point():
                return t.device, t.dtype
    return torch.device("cpu"), torch.float32


def _query(field: FieldFn, points: torch.Tensor, key: str) -> torch.Tensor:
    out = field(points)
    if not isinstance(out, Mapping) or key not in out:
        keys = sorted(out) if isinstance(out, Mapping) else type(out).__name__
        raise MeshError(f"the field's output has no {key!r} (it gave {keys}); extract_mesh needs "
                        "a callable points (N, 3) -> {'sigma': (N,), 'rgb': (N, 3)}")
    return out[key]


def _grid_density(field: FieldFn, bound: float, resolution: int, chunk: int) -> np.ndarray:
    """σ (R, R, R) float32 at the grid samples, [i, j, k] at (x_i, y_j, z_k)."""
    device, dtype = _device_dtype(field)
    axis = torch.linspace(-bound, bound, resolution, dtype=torch.float64)
    n = resolution ** 3
    sigma = np.empty(n, dtype=np.float32)
    for start in range(0, n, chunk):
        # points from flat indices: never hold all R^3 coordinates at once
        idx = torch.arange(start, min(start + chunk, n))
        ijk = torch.stack([idx // resolution ** 2, (idx // resolution) % resolution,
                           idx % resolution], -1)                        # (c, 3)
        points = axis[ijk].to(device=device, dtype=dtype)                # (c, 3)
        s = _query(field, points, "sigma")
        if s.numel() != points.shape[0]:
            raise MeshError(f"the field gave sigma of shape {tuple(s.shape)} for "
                            f"{points.shape[0]} points; expected ({points.shape[0]},)")
        sigma[start:start + len(idx)] = s.reshape(-1).float().cpu().numpy()
    return sigma.reshape(resolution, resolution, resolution)


def _vertex_colours(field: FieldFn, vertices: np.ndarray, chunk: int) -> np.ndarray:
    device, dtype = _device_dtype(field)
    colours = np.empty((len(vertices), 3), dtype=np.uint8)
    for start in range(0, len(vertices), chunk):
        points = torch.from_numpy(vertices[start:start + chunk]).to(device=device, dtype=dtype)
        rgb = _query(field, points, "rgb").reshape(-1, 3).float().clamp(0.0, 1.0)
        colours[start:start + len(points)] = (rgb * 255.0).round().to(torch.uint8).cpu().numpy()
    return colours


def extract_mesh(field: FieldFn, bound: float | None = None, resolution: int = 128,
                 threshold: float | None = None, chunk: int = 65536) -> Mesh:
    """The surface σ = ``threshold`` of ``field`` over [-bound, bound]^3, by marching cubes.

    ``field`` maps points (N, 3) to {"sigma": (N,), "rgb": (N, 3)} (a ``NeRFField``, or any
    callable). ``bound`` defaults to ``field.cfg.bound`` where the field has one, else 1.
    ``threshold`` defaults to ``DEFAULT_THRESHOLD``. ``chunk`` points are queried per call, under
    ``torch.no_grad()``. Raises :class:`MeshError` for a bad argument, a field without "sigma"
    or "rgb", or a density that never reaches the threshold.
    """
    from skimage.measure import marching_cubes  # imported here: only mesh export needs it

    bound = _field_bound(field) if bound is None else float(bound)
    threshold = DEFAULT_THRESHOLD if threshold is None else float(threshold)
    if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise MeshError(f"resolution={resolution} must be in {MIN_RESOLUTION}..{MAX_RESOLUTION} "
                        f"(samples per side; {MAX_RESOLUTION}^3 float32 densities take 512 MiB)")
    if not (math.isfinite(bound) and bound > 0):
        raise MeshError(f"bound={bound} must be a positive radius (the field's cfg.bound)")
    if not (math.isfinite(threshold) and threshold > 0):
        raise MeshError(f"threshold={threshold} must be a positive density: densities are >= 0, "
                        f"so at or below 0 all space is inside (default {DEFAULT_THRESHOLD})")
    if chunk < 1:
        raise MeshError(f"chunk={chunk} must be >= 1 (points per field call)")

    with torch.no_grad():
        sigma = _grid_density(field, bound, resolution, chunk)
        if not np.isfinite(sigma).all():
            raise MeshError(f"the field gave {int((~np.isfinite(sigma)).sum())} non-finite "
                            "densities (NaN or inf) on the grid; the field itself is broken")
        lo, hi = float(sigma.min()), float(sigma.max())
        if hi <= threshold:
            fix = (f"pass a threshold below {hi:.4g} (e.g. {hi / 2:.4g}), or a finer resolution "
                   "if the object is thinner than a grid cell" if hi > 0 else
                   "the field is empty everywhere: check that it is the trained one")
            raise MeshError(
                f"no surface at threshold={threshold:g}: the density on the {resolution}^3 grid "
                f"over [-{bound:g}, {bound:g}]^3 ranges {lo:.4g}..{hi:.4g}, never above it; {fix}")
        # a layer of empty space all round closes the surface where the object meets the grid
        padded = np.pad(sigma, 1, mode="constant", constant_values=0.0)
        verts, faces, _, _ = marching_cubes(padded, level=threshold, allow_degenerate=False)
        # skimage's default ("descent": object denser than outside) winds faces by the left-hand
        # rule, so right-hand normals point inwards; swapping two corners turns them outwards
        faces = faces[:, [0, 2, 1]].astype(np.int64)
        h = 2.0 * bound / (resolution - 1)
        vertices = ((verts.astype(np.float64) - 1.0) * h - bound).astype(np.float32)  # pad: -1
        colours = _vertex_colours(field, vertices, chunk)
    return Mesh(vertices=vertices, faces=faces, colours=colours)


# ---------------------------------------------------------------------------- PLY

_VERTEX = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                    ("red", "u1"), ("green", "u1"), ("blue", "u1")])
_FACE = np.dtype([("n", "u1"), ("v", "<i4", (3,))])
_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "<i2",
              "int16": "<i2", "ushort": "<u2", "uint16": "<u2", "int": "<i4", "int32": "<i4",
              "uint": "<u4", "uint32": "<u4", "float": "<f4", "float32": "<f4",
              "double": "<f8", "float64": "<f8"}


def _checked(mesh: Mesh) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    v = np.asarray(mesh.vertices, dtype=np.float32)
    f = np.asarray(mesh.faces)
    c = np.asarray(mesh.colours)
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3 or c.shape != v.shape:
        raise MeshError(f"a mesh needs vertices (V, 3), faces (F, 3) and colours (V, 3); got "
                        f"{v.shape}, {f.shape}, {c.shape}")
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise MeshError(f"face indices span {f.min()}..{f.max()} but there are {len(v)} vertices")
    if c.dtype != np.uint8:
        raise MeshError(f"colours must be uint8 (0..255), got {c.dtype}")
    return v, f.astype(np.int32), c


def _vertex_block(v: np.ndarray, c: np.ndarray) -> bytes:
    rec = np.empty(len(v), dtype=_VERTEX)
    for i, name in enumerate("xyz"):
        rec[name] = v[:, i]
    for i, name in enumerate(("red", "green", "blue")):
        rec[name] = c[:, i]
    return rec.tobytes()


def _face_block(f: np.ndarray) -> bytes:
    rec = np.empty(len(f), dtype=_FACE)
    rec["n"] = 3
    rec["v"] = f
    return rec.tobytes()


def write_ply(mesh: Mesh, path: str | os.PathLike) -> Path:
    """Write ``mesh`` as a binary little-endian PLY (vertex x y z float, red green blue uchar;
    face: list uchar int). Atomic: the file is written beside ``path`` and renamed over it, so
    a failure never leaves ``path`` half-written (an existing file stays as it was)."""
    v, f, c = _checked(mesh)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "\n".join([
        "ply", "format binary_little_endian 1.0", "comment written by priorlab (marching cubes)",
        f"element vertex {len(v)}", "property float x", "property float y", "property float z",
        "property uchar red", "property uchar green", "property uchar blue",
        f"element face {len(f)}", "property list uchar int vertex_indices", "end_header", ""])
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    # os.open with 0o666 lets the umask set the mode, as for any new file (mkstemp gives 0600)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(header.encode("ascii"))
            fh.write(_vertex_block(v, c))
            fh.write(_face_block(f))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _parse_header(fh, path: Path) -> tuple[list[tuple[str, int, list[list[str]]]], str]:
    if fh.readline().strip() != b"ply":
        raise MeshError(f"{path} is not a PLY file (it does not start with 'ply')")
    fmt, elements = "", []
    while True:
        line = fh.readline()
        if not line:
            raise MeshError(f"{path}: the PLY header has no end_header")
        words = line.decode("ascii", errors="replace").split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "end_header":
            return elements, fmt
        if words[0] == "format":
            fmt = words[1]
        elif words[0] == "element":
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property" and elements:
            elements[-1][2].append(words[1:])


def read_ply(path: str | os.PathLike) -> Mesh:
    """Read a binary little-endian triangle PLY with vertex x y z (any numeric type), optional
    red green blue (uchar; white where absent) and face lists of 3 indices (what
    :func:`write_ply` writes). Other layouts raise :class:`MeshError` saying what was found."""
    path = Path(path)
    with open(path, "rb") as fh:
        elements, fmt = _parse_header(fh, path)
        if fmt != "binary_little_endian":
            raise MeshError(f"{path} is PLY format {fmt!r}; read_ply reads binary_little_endian")
        data = {}
        for name, count, props in elements:
            if name == "face":
                if len(props) != 1 or props[0][0] != "list" or props[0][1] not in _PLY_TYPES \
                        or props[0][2] not in _PLY_TYPES:
                    raise MeshError(f"{path}: face element {props} is not one list property")
                dt = np.dtype([("n", _PLY_TYPES[props[0][1]]), ("v", _PLY_TYPES[props[0][2]], (3,))])
            else:
                try:
                    dt = np.dtype([(p[1], _PLY_TYPES[p[0]]) for p in props])
                except (KeyError, IndexError):
                    raise MeshError(f"{path}: element {name!r} has properties {props} that "
                                    "read_ply cannot read (list properties are read for faces "
                                    "only)") from None
            raw = fh.read(dt.itemsize * count)
            if len(raw) != dt.itemsize * count:
                raise MeshError(f"{path} is truncated: element {name!r} needs {count} records "
                                f"of {dt.itemsize} bytes")
            data[name] = np.frombuffer(raw, dtype=dt)
    if "vertex" not in data or not {"x", "y", "z"} <= set(data["vertex"].dtype.names):
        raise MeshError(f"{path} has no vertex element with x, y, z")
    vert = data["vertex"]
    vertices = np.stack([vert[k] for k in "xyz"], -1).astype(np.float32)
    if {"red", "green", "blue"} <= set(vert.dtype.names):
        colours = np.stack([vert[k] for k in ("red", "green", "blue")], -1).astype(np.uint8)
    else:
        colours = np.full((len(vertices), 3), 255, dtype=np.uint8)
    faces = np.zeros((0, 3), dtype=np.int64)
    if "face" in data:
        if (data["face"]["n"] != 3).any():
            raise MeshError(f"{path} has faces that are not triangles")
        faces = data["face"]["v"].astype(np.int64)
    return Mesh(vertices=vertices, faces=faces, colours=colours)

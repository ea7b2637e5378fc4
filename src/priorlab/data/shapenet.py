"""ShapeNet part segmentation (Yi et al. 2016) as renderable scenes with part labels (Sec. 4.4.8.1).

Thesis Sec. 4.4.8.1 ("ShapeNet results") trains HyperSegmentationFields on annotated ShapeNet
objects. This module reads the part-annotated benchmark in the layout PointNet / PointNet++ use
and turns each object into a *scene* that ``priorlab.data.scenes.render_scene`` renders (RGB,
depth, normals and, with ``labels=True``, per-pixel part labels from ``part_labels``).

What it reads: the ``shapenetcore_partanno_segmentation_benchmark_v0_normal`` release of the
ShapeNet part annotation of Yi et al. 2016 ("A scalable active framework for region annotation
in 3D shape collections"), canonically downloaded from ``DOWNLOAD_URL`` (not reachable from the
machines this project is developed on)::

    <root>/synsetoffset2category.txt       lines "Airplane<TAB>02691156" (name, synset id)
    <root>/<synset>/<model_id>.txt         lines "x y z nx ny nz part_label"
    <root>/train_test_split/shuffled_{train,val,test}_file_list.json
                                           JSON lists of "shape_data/<synset>/<model_id>"

Part labels in these files are numbered globally, 0..49 over the 16 categories
(``SEG_CLASSES``: Chair is 12..15). Here they become part indices within the category, 1..K,
0 being kept for background (a ray that hits nothing). A category not in ``SEG_CLASSES`` (a
custom data set in this layout) gets its part ids from a scan of all its files.
The older v0 release (``<synset>/points/<model_id>.pts`` with "x y z" lines and
``<synset>/points_label/<model_id>.seg`` with one part id per line, already 1..K within the
category, no normals; that release is at .../ericyi/shapenetcore_partanno_segmentation_benchmark
_v0.zip) is read too. ``root`` may be the benchmark folder or its parent.

How an object becomes a scene (``PartObject``): the points are centred at their bounding-box
centre and scaled so the farthest is at ``OBJECT_RADIUS`` (0.8), inside the unit bounding
sphere the sphere tracer marches in. The surface is the point cloud thickened to a radius r,
``sdf(x) = min_i |x - p_i| - r``: the exact distance to a union of balls outside it and a
bound inside, so sphere tracing never oversteps. ``r`` defaults to ``RADIUS_FACTOR`` (2) times
the median nearest-neighbour spacing of the object's points (see ``default_radius`` for why 2).
Colour is one albedo per object, or with ``colour_by="part"`` a colour per part from
``PART_PALETTE``; a point's part is that of the nearest annotated point.

This module was tested only on a small synthetic fixture written in the layout above
(``tests/data/test_shapenet.py``), never on the real download.

    from priorlab.data.shapenet import ShapeNetParts
    from priorlab.data.scenes import VIEW_FOV_DEG, render_scene, view_cameras
    chairs = ShapeNetParts("/data/shapenetcore_partanno_segmentation_benchmark_v0_normal",
                           "train", categories=["chair"], colour_by="part")
    obj = chairs[0]                                    # PartObject: obj.slug, obj.prompt
    c2w, _, _ = view_cameras(8, seed=0)
    views = render_scene(obj, c2w, 64, 64, VIEW_FOV_DEG, labels=True)   # + labels (8, 64, 64)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch

from priorlab.data.scenes import COLOURS
from priorlab.data.sdf import BOUND_RADIUS

__all__ = ["BENCHMARK_DIR", "DOWNLOAD_URL", "OBJECT_RADIUS", "PART_PALETTE", "RADIUS_FACTOR",
           "SEG_CLASSES", "SPLITS", "PartEntry", "PartObject", "ShapeNetError", "ShapeNetParts",
           "default_radius", "normalise_points"]

BENCHMARK_DIR = "shapenetcore_partanno_segmentation_benchmark_v0_normal"
V0_DIR = "shapenetcore_partanno_segmentation_benchmark_v0"
DOWNLOAD_URL = f"https://shapenet.cs.stanford.edu/media/{BENCHMARK_DIR}.zip"
CATEGORY_FILE = "synsetoffset2category.txt"
SPLIT_DIR = "train_test_split"
SPLITS = ("train", "val", "test")

# Global part ids of each category in the _normal files (PointNet++'s table; 50 parts in all).
SEG_CLASSES: dict[str, tuple[int, ...]] = {
    "Airplane": (0, 1, 2, 3), "Bag": (4, 5), "Cap": (6, 7), "Car": (8, 9, 10, 11),
    "Chair": (12, 13, 14, 15), "Earphone": (16, 17, 18), "Guitar": (19, 20, 21),
    "Knife": (22, 23), "Lamp": (24, 25, 26, 27), "Laptop": (28, 29),
    "Motorbike": (30, 31, 32, 33, 34, 35), "Mug": (36, 37), "Pistol": (38, 39, 40),
    "Rocket": (41, 42, 43), "Skateboard": (44, 45, 46), "Table": (47, 48, 49),
}

OBJECT_RADIUS = 0.8      # farthest point from the centre: a margin inside BOUND_RADIUS for r
RADIUS_FACTOR = 2.0      # default surface radius in median nearest-neighbour spacings
OBJECT_COLOUR = (0.60, 0.60, 0.62)   # neutral, so "a chair" names all that varies
PART_PALETTE = ("red", "blue", "green", "yellow", "purple", "orange", "pink", "brown")  # part k -> [k-1]
NN_CHUNK = 1 << 22       # entries of one distance matrix block (16 MB in float32)
COLOUR_BY = ("object", "part")


class ShapeNetError(ValueError):
    """The ShapeNet part benchmark is missing, malformed, or asked for something it lacks."""


def _how_to(root: Path) -> str:
    return (f"Download the ShapeNet part annotation of Yi et al. 2016 ({BENCHMARK_DIR}.zip, the "
            f"release PointNet++ uses) from {DOWNLOAD_URL}, unzip it, and pass the unzipped "
            f"folder (or its parent) as root. Expected layout:\n"
            f"  {root}/{CATEGORY_FILE}   lines 'Airplane<TAB>02691156'\n"
            f"  {root}/<synset>/<model_id>.txt   lines 'x y z nx ny nz part_label'\n"
            f"  {root}/{SPLIT_DIR}/shuffled_{{train,val,test}}_file_list.json   "
            f"[\"shape_data/<synset>/<model_id>\", ...]")


# ---- geometry ----------------------------------------------------------------------------

def normalise_points(points: torch.Tensor, radius: float = OBJECT_RADIUS):
    """(points', centre (3,), scale): ``points' = (points - centre) * scale`` with ``centre`` the
    bounding-box centre and the farthest point at ``radius``."""
    centre = 0.5 * (points.min(0).values + points.max(0).values)
    extent = (points - centre).norm(dim=-1).max()
    if not extent > 0:
        raise ShapeNetError("cannot normalise a point cloud whose points all coincide")
    scale = radius / extent
    return (points - centre) * scale, centre, float(scale)


def _nearest(queries: torch.Tensor, cloud: torch.Tensor, chunk: int = NN_CHUNK):
    """(distance (M,), index (M,)) of each query's nearest cloud point, exactly.

    The matrix-product form of cdist loses ~1e-4 near zero distance in float32, the scale of
    the tracer's thresholds (STEP_EPS, HIT_EPS) and normal step, so distances are direct.
    """
    m = queries.shape[0]
    if m == 0:
        return queries.new_zeros(0), torch.zeros(0, dtype=torch.long, device=queries.device)
    rows = max(1, chunk // max(1, cloud.shape[0]))
    dist, idx = [], []
    for s in range(0, m, rows):
        d = torch.cdist(queries[s:s + rows], cloud, compute_mode="donot_use_mm_for_euclid_dist")
        v, i = d.min(dim=1)
        dist.append(v)
        idx.append(i)
    return torch.cat(dist), torch.cat(idx)


def default_radius(points: torch.Tensor, factor: float = RADIUS_FACTOR) -> float:
    """``factor`` times the median distance from a point to its nearest distinct neighbour.

    Why 2: for points scattered uniformly at random over a surface, the share of the surface
    farther than r from every point is exp(-ln 2 * factor^2): 21% at 1.5, 6% at 2, 1% at 2.5,
    and a ray through such a gap sees the far side of the object. In 48 x 48 renders of the
    test fixture's chair (2700 random points, 4 views) against its exact SDF, the share of hit
    pixels more than 3r behind the true surface was 9% at 1.5, 1.6% at 2 and 0 at 2.5, while
    the silhouette IoU fell from 0.87 (1.5) to 0.84 (2) and 0.80 (2.5) as every part grows by
    r. Evenly spread (blue-noise) samples close at about 1.5.
    """
    pts = points.to(torch.float32)
    rows = max(1, NN_CHUNK // max(1, pts.shape[0]))
    nn = []
    for s in range(0, pts.shape[0], rows):
        d = torch.cdist(pts[s:s + rows], pts, compute_mode="donot_use_mm_for_euclid_dist")
        nn.append(d.masked_fill(d <= 0, float("inf")).min(dim=1).values)   # skip self, duplicates
    nn = torch.cat(nn)
    nn = nn[torch.isfinite(nn)]
    if nn.numel() == 0:
        raise ShapeNetError("a point cloud needs at least two distinct points for a surface radius")
    return float(factor * nn.quantile(0.5))        # numpy's median: mean of the middle two


def _colour(value) -> tuple[float, float, float]:
    if isinstance(value, str):
        if value not in COLOURS:
            raise ShapeNetError(f"unknown colour {value!r}; colours: {', '.join(COLOURS)}, "
                                f"or an (r, g, b) in [0, 1]")
        return COLOURS[value]
    rgb = tuple(float(v) for v in value)
    if len(rgb) != 3 or not all(0.0 <= v <= 1.0 for v in rgb):
        raise ShapeNetError(f"a colour is a name ({', '.join(COLOURS)}) or (r, g, b) in [0, 1], "
                            f"got {value!r}")
    return rgb


# ---- one object as a scene ---------------------------------------------------------------

@dataclass(eq=False)
class PartObject:
    """One annotated object, normalised into the scene bound, duck-typing ``scenes.Scene``.

    Build one with ``PartObject.from_cloud`` (which normalises) or get one from
    ``ShapeNetParts``. ``render_scene`` uses ``sdf`` and ``albedo``; ``part_labels`` gives
    the segmentation target.
    """

    category: str
    model_id: str
    points: torch.Tensor = field(repr=False)
    """(N, 3) float32, bounding-box centre at the origin, farthest point at ``OBJECT_RADIUS``."""
    labels: torch.Tensor = field(repr=False)
    """(N,) int64 part indices within the category, 1..K (0 is background)."""
    part_names: tuple[str, ...]
    """K names, index k-1 for part k ("part1".. when the names are not known)."""
    normals: torch.Tensor | None = field(default=None, repr=False)
    """(N, 3) float32 unit normals from the file (None for the v0 layout, which has none)."""
    synset: str = ""
    colour: tuple[float, float, float] = OBJECT_COLOUR
    """Albedo of the whole object with ``colour_by="object"``."""
    colour_by: str = "object"
    """"object": one ``colour``; "part": ``PART_PALETTE[k - 1]`` (cycled) for part k."""
    radius: float | None = None
    """r of ``sdf``: the surface is the union of balls of radius r around the points
    (None: ``default_radius(points)``)."""
    centre: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Bounding-box centre of the points as read, in the file's units."""
    scale: float = 1.0
    """``points = (points_as_read - centre) * scale``."""
    _devices: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        n = self.points.shape[0]
        if self.points.shape != (n, 3) or self.labels.shape != (n,):
            raise ShapeNetError(f"{self.slug}: points must be (N, 3) and labels (N,), got "
                                f"{tuple(self.points.shape)} and {tuple(self.labels.shape)}")
        k = len(self.part_names)
        if n and (int(self.labels.min()) < 1 or int(self.labels.max()) > k):
            raise ShapeNetError(f"{self.slug}: labels must be part indices 1..{k}, got "
                                f"{int(self.labels.min())}..{int(self.labels.max())}")
        if self.colour_by not in COLOUR_BY:
            raise ShapeNetError(f"colour_by must be one of {', '.join(COLOUR_BY)}, got {self.colour_by!r}")
        self.colour = _colour(self.colour)
        if self.radius is None:
            self.radius = default_radius(self.points)
        if not 0 < self.radius < BOUND_RADIUS - OBJECT_RADIUS:
            raise ShapeNetError(f"{self.slug}: surface radius must be in (0, "
                                f"{BOUND_RADIUS - OBJECT_RADIUS:.2f}) to stay inside the unit "
                                f"sphere, got {self.radius:.4f}; pass a smaller radius")

    @classmethod
    def from_cloud(cls, points, labels, category: str, model_id: str, *, part_names=None,
                   normals=None, radius: float | None = None, radius_factor: float = RADIUS_FACTOR,
                   **options) -> "PartObject":
        """Normalise raw ``points`` (N, 3) with part indices ``labels`` (N,) in 1..K.

        ``radius`` is in normalised units; None: ``default_radius(points, radius_factor)``.
        """
        pts, centre, scale = normalise_points(torch.as_tensor(points, dtype=torch.float32))
        labels = torch.as_tensor(labels, dtype=torch.int64)
        if part_names is None:
            part_names = tuple(f"part{k}" for k in range(1, int(labels.max()) + 1))
        if normals is not None:
            normals = torch.as_tensor(normals, dtype=torch.float32)
            normals = normals / normals.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        if radius is None:
            radius = default_radius(pts, radius_factor)
        return cls(category, model_id, pts, labels, tuple(part_names), normals=normals,
                   centre=tuple(float(c) for c in centre), scale=scale, radius=radius, **options)

    @property
    def num_parts(self) -> int:
        return len(self.part_names)

    @property
    def slug(self) -> str:
        return f"shapenet-{self.category.lower()}-{self.model_id}"

    @property
    def prompt(self) -> str:
        name = self.category.lower()
        return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"

    def _cloud(self, like: torch.Tensor):
        key = (like.device, like.dtype)
        if key not in self._devices:
            self._devices[key] = (self.points.to(like.device, like.dtype), self.labels.to(like.device))
        return self._devices[key]

    def sdf(self, points: torch.Tensor) -> torch.Tensor:
        """Distances (M,) of ``points`` (M, 3) to the cloud thickened by ``radius``."""
        cloud, _ = self._cloud(points)
        return _nearest(points, cloud)[0] - self.radius

    def part_labels(self, points: torch.Tensor) -> torch.Tensor:
        """Part index (M,) int64 in 1..K of the annotated point nearest each of ``points``."""
        cloud, labels = self._cloud(points)
        return labels[_nearest(points, cloud)[1]]

    def albedo(self, points: torch.Tensor) -> torch.Tensor:
        """Surface colour (M, 3) in [0, 1] at ``points`` (M, 3)."""
        if self.colour_by == "object":
            return points.new_tensor(self.colour).expand(points.shape[0], 3)
        palette = points.new_tensor([COLOURS[c] for c in PART_PALETTE])
        return palette[(self.part_labels(points) - 1) % len(PART_PALETTE)]


# ---- the benchmark on disk ---------------------------------------------------------------

@dataclass(frozen=True)
class PartEntry:
    """One object of a split: its category name, synset id and model id."""

    category: str
    synset: str
    model_id: str


def _find_root(root: Path) -> Path:
    for candidate in (root, root / BENCHMARK_DIR, root / V0_DIR):
        if (candidate / CATEGORY_FILE).is_file():
            return candidate
    if not root.exists():
        raise ShapeNetError(f"ShapeNet part benchmark not found: {root} does not exist. {_how_to(root)}")
    raise ShapeNetError(f"ShapeNet part benchmark not found: missing {root / CATEGORY_FILE} "
                        f"(also looked in {root / BENCHMARK_DIR} and {root / V0_DIR}). "
                        f"{_how_to(root)}")


def _read_categories(root: Path) -> dict[str, str]:
    """Category name -> synset id, in file order."""
    path = root / CATEGORY_FILE
    out: dict[str, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise ShapeNetError(f"{path}:{n}: expected 'Name<TAB>synset', got {line!r}")
        if fields[0] in out:
            raise ShapeNetError(f"{path}:{n}: category {fields[0]!r} listed twice")
        out[fields[0]] = fields[1]
    if not out:
        raise ShapeNetError(f"{path} lists no categories. {_how_to(root)}")
    return out


def _read_split(root: Path, split: str) -> list[tuple[str, str]]:
    """(synset, model id) of every entry of a split file, in file order."""
    path = root / SPLIT_DIR / f"shuffled_{split}_file_list.json"
    if not path.is_file():
        raise ShapeNetError(f"ShapeNet part benchmark incomplete: missing {path}. {_how_to(root)}")
    try:
        items = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ShapeNetError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(items, list):
        raise ShapeNetError(f"{path}: expected a JSON list of 'shape_data/<synset>/<model_id>'")
    out = []
    for i, item in enumerate(items):
        parts = item.strip("/").split("/") if isinstance(item, str) else []
        if len(parts) < 2 or not all(parts[-2:]):
            raise ShapeNetError(f"{path}: entry {i} is {item!r}, expected "
                                f"'shape_data/<synset>/<model_id>'")
        out.append((parts[-2], parts[-1]))
    return out


def _parse_rows(path: Path, n_fields: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(values (N, n_fields) float64, line numbers (N,)) of a whitespace-separated text file."""
    rows, lines = [], []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            try:
                values = [float(v) for v in fields]
            except ValueError:
                values = None
            if values is None or len(values) != n_fields or not np.all(np.isfinite(values)):
                raise ShapeNetError(f"{path}:{n}: expected {n_fields} numbers '{what}', got "
                                    f"{line.strip()!r}")
            rows.append(values)
            lines.append(n)
    if not rows:
        raise ShapeNetError(f"{path}: no points")
    return np.asarray(rows, dtype=np.float64).reshape(-1, n_fields), np.asarray(lines)


def _integer_labels(values: np.ndarray, lines: np.ndarray, path: Path) -> np.ndarray:
    bad = np.nonzero(values != np.round(values))[0]
    if bad.size:
        raise ShapeNetError(f"{path}:{lines[bad[0]]}: part label {values[bad[0]]} is not an integer")
    return values.astype(np.int64)


class ShapeNetParts:
    """The objects of one split of the ShapeNet part benchmark, as ``PartObject`` scenes.

    ``categories``: names (case-insensitive, e.g. "chair") or synset ids; None for all.
    ``part_names``: optional {category: names of parts 1..K}; the files carry no names.
    ``colour``, ``colour_by``, ``radius``, ``radius_factor``: passed to each ``PartObject``
    (``radius`` in normalised units, the same for every object; None: ``radius_factor``
    times each object's median nearest-neighbour spacing).
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", categories=None, *,
                 part_names: Mapping[str, Sequence[str]] | None = None, colour=OBJECT_COLOUR,
                 colour_by: str = "object", radius: float | None = None,
                 radius_factor: float = RADIUS_FACTOR):
        if split not in SPLITS:
            raise ShapeNetError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
        if colour_by not in COLOUR_BY:
            raise ShapeNetError(f"colour_by must be one of {', '.join(COLOUR_BY)}, got {colour_by!r}")
        self.root = _find_root(Path(root).expanduser())
        self.split = split
        self.synsets = _read_categories(self.root)                     # name -> synset
        names = {s: c for c, s in self.synsets.items()}                # synset -> name
        self.categories = self._select(categories)
        self.options = dict(colour=_colour(colour), colour_by=colour_by)
        self.radius, self.radius_factor = radius, radius_factor
        self._part_ids: dict[str, tuple[int, ...]] = {}
        self._part_names = {self._canonical(c): tuple(v) for c, v in (part_names or {}).items()}
        wanted = {self.synsets[c] for c in self.categories}
        self.entries: list[PartEntry] = []
        split_path = self.root / SPLIT_DIR / f"shuffled_{split}_file_list.json"
        for synset, model in _read_split(self.root, split):
            if synset not in names:
                raise ShapeNetError(f"{split_path}: synset {synset} (model {model}) is not in "
                                    f"{self.root / CATEGORY_FILE}")
            if synset in wanted:
                self.entries.append(PartEntry(names[synset], synset, model))

    def _canonical(self, category: str) -> str:
        by_lower = {c.lower(): c for c in self.synsets}
        by_synset = {s: c for c, s in self.synsets.items()}
        name = by_lower.get(str(category).lower()) or by_synset.get(str(category))
        if name is None:
            raise ShapeNetError(f"unknown ShapeNet category {category!r}; categories in "
                                f"{self.root / CATEGORY_FILE}: {', '.join(self.synsets)}")
        return name

    def _select(self, categories) -> list[str]:
        if categories is None:
            return list(self.synsets)
        if isinstance(categories, str):
            categories = [categories]
        chosen = {self._canonical(c) for c in categories}
        return [c for c in self.synsets if c in chosen]

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[PartObject]:
        return (self[i] for i in range(len(self)))

    def __getitem__(self, index: int) -> PartObject:
        entry = self.entries[index]
        points, normals, labels, k = self.read(entry)
        names = self._part_names.get(entry.category, tuple(f"part{i}" for i in range(1, k + 1)))
        if len(names) != k:
            raise ShapeNetError(f"part_names[{entry.category!r}] has {len(names)} names, the "
                                f"category has {k} parts")
        return PartObject.from_cloud(points, labels, entry.category, entry.model_id,
                                     part_names=names, normals=normals, synset=entry.synset,
                                     radius=self.radius, radius_factor=self.radius_factor,
                                     **self.options)

    def num_parts(self, category: str) -> int:
        """K, the number of parts of ``category`` in the _normal layout (``len(part_ids)``)."""
        return len(self.part_ids(category))

    def part_ids(self, category: str) -> tuple[int, ...]:
        """The global part ids of ``category`` in the _normal files (scanned if not in ``SEG_CLASSES``)."""
        category = self._canonical(category)
        if category in SEG_CLASSES:
            return SEG_CLASSES[category]
        if category not in self._part_ids:                 # a custom category: read all its files
            found: set[int] = set()
            for path in sorted((self.root / self.synsets[category]).glob("*.txt")):
                values, lines = _parse_rows(path, 7, "x y z nx ny nz part_label")
                found.update(_integer_labels(values[:, 6], lines, path).tolist())
            if not found:
                raise ShapeNetError(f"no {self.root / self.synsets[category]}/*.txt files to "
                                    f"find the parts of category {category!r} in")
            self._part_ids[category] = tuple(sorted(found))
        return self._part_ids[category]

    def read(self, entry: PartEntry) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, int]:
        """(points (N, 3), normals (N, 3) or None, part indices (N,) in 1..K, K), not normalised.

        K is the category's number of parts (v0 layout outside ``SEG_CLASSES``: the largest label).
        """
        folder = self.root / entry.synset
        txt = folder / f"{entry.model_id}.txt"
        pts_file = folder / "points" / f"{entry.model_id}.pts"
        if txt.is_file():
            values, lines = _parse_rows(txt, 7, "x y z nx ny nz part_label")
            global_ids = _integer_labels(values[:, 6], lines, txt)
            ids = self.part_ids(entry.category)
            lookup = {g: k for k, g in enumerate(ids, 1)}
            bad = [i for i, g in enumerate(global_ids) if g not in lookup]
            if bad:
                raise ShapeNetError(f"{txt}:{lines[bad[0]]}: part label {global_ids[bad[0]]} is not a "
                                    f"{entry.category} part (its part labels: {list(ids)})")
            labels = np.array([lookup[g] for g in global_ids], dtype=np.int64)
            return values[:, :3], values[:, 3:6], labels, len(ids)
        if pts_file.is_file():                                            # the older v0 layout
            seg = folder / "points_label" / f"{entry.model_id}.seg"
            if not seg.is_file():
                raise ShapeNetError(f"missing {seg} (part labels of {pts_file}). {_how_to(self.root)}")
            points, _ = _parse_rows(pts_file, 3, "x y z")
            values, lines = _parse_rows(seg, 1, "part_label")
            labels = _integer_labels(values[:, 0], lines, seg)
            if len(labels) != len(points):
                raise ShapeNetError(f"{seg} has {len(labels)} labels for the {len(points)} points "
                                    f"of {pts_file}")
            if labels.min() < 1:
                bad = int(np.argmin(labels))
                raise ShapeNetError(f"{seg}:{lines[bad]}: v0 part labels count from 1, got {labels[bad]}")
            known = SEG_CLASSES.get(entry.category)
            return points, None, labels, len(known) if known else int(labels.max())
        raise ShapeNetError(f"missing {txt} ({entry.category} model {entry.model_id}, listed in "
                            f"the {self.split} split; or {pts_file} in the v0 layout). "
                            f"{_how_to(self.root)}")

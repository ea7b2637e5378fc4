"""FSS-1000 for online few-shot segmentation, read from its class-folder layout.

The dataset of the thesis' segmentation experiment (Babu, TTIC 2025, Ch. 2 Sec. 2.4.4,
Table 2.2, Fig. 2.5; App. A.4.1-A.4.2): 1000 object classes of 10 images each, every image
with a binary object mask, resized to 56x56. :class:`Fss1000Classes` is one class split of it;
``priorlab.data.segmentation`` turns any such source into online episodes.

Splits: the thesis reports 700 / 60 / 240 train / val / test classes, but it does not publish
its lists. The lists here are the published ones of the HSNet release (``fss1000/splits/
{trn,val,test}.txt``, read through ``priorlab.data.split_files`` with a packaged fallback):
**520 / 240 / 240** classes, class-disjoint, whose test split is FSS-1000's official 240 test
classes. So the test classes match the thesis, while train has 180 classes fewer and val 180
more than in the thesis.

Expected layout under the data root (see ``priorlab.data.root``), as in the FSS-1000 archive
(the archive linked from the README of github.com/HKUSTCV/FSS-1000; it is not downloaded
automatically)::

    fss1000/<class>/<n>.jpg     RGB image (224x224 in the release)
    fss1000/<class>/<n>.png     its mask, object > 0 (0/255 in the release; 0/1 is accepted)
    fss1000/splits/{trn,val,test}.txt   optional: the packaged lists are used otherwise

A class folder may hold any number of pairs (the release has 10). Images are resized with a
bilinear filter, masks are binarised (any channel at or above half their range) and then
resized with nearest neighbour, so they stay exactly binary. Everything is decoded once, at
construction (the 520 training classes take ~10 s and ~50 MB at 56x56).

Usage::

    from priorlab.data.root import resolve_data_root
    from priorlab.data.fss1000 import Fss1000Classes
    train = Fss1000Classes(resolve_data_root(None), "train")     # 520 classes
    image, mask = train.get(0, 3)         # uint8 (3, 56, 56), uint8 (56, 56) in {0, 1}
"""

from __future__ import annotations

import operator
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from priorlab.data.root import ENV_VAR, MissingDataError
from priorlab.data.split_files import read_fss1000_split

__all__ = ["FSS1000_SPLIT_FILES", "Fss1000MissingError", "Fss1000Classes", "read_pair"]

DATASET = "fss1000"
FSS1000_SPLIT_FILES = {"train": "trn", "trn": "trn", "val": "val", "test": "test"}
"""Accepted split names -> the name of the published split file."""
SOURCE = "the FSS-1000 archive linked from the README of github.com/HKUSTCV/FSS-1000"


class Fss1000MissingError(MissingDataError):
    """Classes of an FSS-1000 split are not in the data root (FSS-1000 has no automatic download)."""

    def __init__(self, data_root: str | os.PathLike, split: str, missing: Sequence[str],
                 n_listed: int):
        self.dataset = DATASET
        self.data_root = Path(data_root)
        self.split = split
        self.missing = [self.data_root / DATASET / c for c in missing]
        self.n_listed = n_listed
        folder = self.data_root / DATASET
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        message = (
            f"{len(missing)} of the {n_listed} classes of the FSS-1000 {split!r} split are missing "
            f"under {folder} ({shown}).\n"
            f"FSS-1000 is not downloaded automatically. To fix this, either:\n"
            f"  * get {SOURCE} and unpack it so that the class folders sit directly in {folder}, "
            f"i.e. {folder}/<class>/<n>.jpg and <n>.png (move them out of the archive's top "
            f"folder), or\n"
            f"  * point priorlab at a data root that holds fss1000/: pass `--data-dir DIR` or set "
            f"{ENV_VAR}=DIR, or\n"
            f"  * pass allow_missing=True to load only the classes that are present."
        )
        FileNotFoundError.__init__(self, message)

    def __reduce__(self):  # picklable (raised inside a Ray worker)
        missing = [p.name for p in self.missing]
        return (type(self), (self.data_root, self.split, missing, self.n_listed))


def _binary_mask(mask: Image.Image) -> np.ndarray:
    """uint8 {0, 1} (H, W): a 0/255 mask is cut at 128, a 0/1 mask at 1; any channel counts."""
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m.max(axis=-1)
    threshold = 128 if m.max() > 1 else 1
    return (m >= threshold).astype(np.uint8)


def read_pair(jpg: str | os.PathLike, png: str | os.PathLike, image_size: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """One FSS-1000 pair at ``image_size``: image uint8 (3, S, S), mask uint8 (S, S) in {0, 1}."""
    size = (image_size, image_size)
    try:
        with Image.open(jpg) as im:
            rgb = im.convert("RGB")
        with Image.open(png) as pm:
            pm.load()
            binary = _binary_mask(pm)
    except OSError as err:
        raise ValueError(f"cannot decode the FSS-1000 pair {jpg} / {png}: {err}") from err
    if rgb.size != (binary.shape[1], binary.shape[0]):
        raise ValueError(f"{jpg} is {rgb.size[0]}x{rgb.size[1]} but its mask {png} is "
                         f"{binary.shape[1]}x{binary.shape[0]}")
    if rgb.size != size:
        rgb = rgb.resize(size, Image.Resampling.BILINEAR)
    image = np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1).copy()
    if binary.shape != size[::-1]:
        binary = np.asarray(Image.fromarray(binary).resize(size, Image.Resampling.NEAREST))
    return image, np.ascontiguousarray(binary, dtype=np.uint8)


def _pair_key(stem: str):
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


def _class_pairs(folder: Path) -> list[tuple[Path, Path]]:
    """The (jpg, png) pairs of a class folder, ordered by number (1, 2, ..., 10)."""
    jpgs = {p.stem: p for p in folder.iterdir()
            if p.suffix.lower() in (".jpg", ".jpeg") and not p.name.startswith(".")}
    pngs = {p.stem: p for p in folder.iterdir()
            if p.suffix.lower() == ".png" and not p.name.startswith(".")}
    unpaired = sorted(set(jpgs) ^ set(pngs))
    if unpaired:
        raise ValueError(f"{folder}: {', '.join(unpaired)} lack(s) a matching .jpg/.png; each "
                         f"image <n>.jpg needs its mask <n>.png")
    return [(jpgs[s], pngs[s]) for s in sorted(jpgs, key=_pair_key)]


_CLASS_NAME = re.compile(r"^[^/\\]+$")


class Fss1000Classes:
    """The classes of one FSS-1000 split, decoded to ``image_size``.

    ``split``: ``train`` (or ``trn``), ``val`` or ``test``. ``classes``: load these class folders
    instead of the split's list (e.g. a fixture whose class is in no split). ``allow_missing``:
    keep the listed classes that are on disk instead of raising :class:`Fss1000MissingError`
    (still an error if none is).
    """

    def __init__(self, data_root: str | os.PathLike, split: str = "train", image_size: int = 56,
                 *, allow_missing: bool = False, classes: Sequence[str] | None = None):
        image_size = operator.index(image_size)
        if image_size < 1:
            raise ValueError(f"image_size must be a positive int, got {image_size}")
        self.data_root = Path(data_root)
        self.image_size = image_size
        if classes is None:
            if split not in FSS1000_SPLIT_FILES:
                raise ValueError(f"unknown FSS-1000 split {split!r}; valid splits: "
                                 f"{', '.join(FSS1000_SPLIT_FILES)}")
            listed = read_fss1000_split(self.data_root, FSS1000_SPLIT_FILES[split])
        else:
            listed = [str(c) for c in classes]
            bad = [c for c in listed if not _CLASS_NAME.match(c) or c in (".", "..")]
            if bad or not listed or len(set(listed)) != len(listed):
                raise ValueError(f"classes must be distinct, non-empty class folder names, "
                                 f"got {listed!r}")
        self.split = split
        folder = self.data_root / DATASET
        present = [c for c in listed if (folder / c).is_dir()]
        missing = [c for c in listed if c not in set(present)]
        if missing and (not allow_missing or not present):
            raise Fss1000MissingError(self.data_root, split if classes is None else "requested",
                                      missing, len(listed))
        self.class_names: list[str] = present
        self.missing_classes: list[str] = missing
        self._images: list[np.ndarray] = []   # per class: uint8 (n, 3, S, S)
        self._masks: list[np.ndarray] = []    # per class: uint8 (n, S, S)
        for name in present:
            pairs = _class_pairs(folder / name)
            if not pairs:
                raise ValueError(f"{folder / name} holds no <n>.jpg / <n>.png pairs")
            decoded = [read_pair(j, p, image_size) for j, p in pairs]
            self._images.append(np.stack([d[0] for d in decoded]))
            self._masks.append(np.stack([d[1] for d in decoded]))

    def __len__(self) -> int:
        return len(self.class_names)

    def class_name(self, class_idx: int) -> str:
        return self.class_names[self._check(class_idx)]

    def n_samples(self, class_idx: int) -> int:
        """Number of image/mask pairs of one class."""
        return int(self._masks[self._check(class_idx)].shape[0])

    @property
    def n_samples_per_class(self) -> int:
        """The smallest per-class count (10 for the released dataset)."""
        return min(m.shape[0] for m in self._masks)

    def _check(self, class_idx: int) -> int:
        c = operator.index(class_idx)
        if not 0 <= c < len(self):
            raise IndexError(f"class index {c} out of range for {len(self)} classes")
        return c

    def get(self, class_idx: int, sample_idx: int, rng: np.random.Generator | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
        """Pair ``sample_idx`` of class ``class_idx``: image uint8 (3, S, S), mask uint8 (S, S).

        ``rng`` is unused (real images need no rendering); it keeps the source interface.
        """
        c = self._check(class_idx)
        s = operator.index(sample_idx)
        if not 0 <= s < self._masks[c].shape[0]:
            raise IndexError(f"sample index {s} out of range for class {self.class_names[c]!r} "
                             f"with {self._masks[c].shape[0]} pairs")
        return self._images[c][s].copy(), self._masks[c][s].copy()

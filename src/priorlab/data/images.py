"""Image-folder datasets in their published layouts: MiniImageNet (Ravi & Larochelle split) and PACS.

Thesis Ch. 3: MiniImageNet meta-learning (Sec. 3.4.3, Tables 3.6/3.7) and PACS domain
generalisation with leave-one-domain-out evaluation (Sec. 3.5, Table 3.8).

Layouts under the data root:

    miniimagenet/images/<filename>.jpg          the 60,000 images named as in the csv files
    splits/miniimagenet/{train,val,test}.csv    "filename,label" (64/16/20 classes x 600)
    pacs/<domain>/<class>/<image>.(jpg|png)     domains art_painting, cartoon, photo, sketch;
                                                7 classes (the official "kfold" folder)

The MiniImageNet split csv files ship with priorlab (``priorlab.data.split_files``, stored
gzip-compressed); the data root's copy is used when present.

Neither image set is on the project's CPU machines; tests write tiny images in these layouts.
Images are decoded on access (RGB, resized to ``image_size``) and returned uint8 CHW.

    mini = MiniImageNetClasses(root, "test")            # an episode ClassSource
    pacs = load_pacs(root, domains=["photo", "cartoon"], image_size=224)
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from priorlab.data.root import MissingDataError
from priorlab.data.split_files import split_text

PACS_DOMAINS = ("art_painting", "cartoon", "photo", "sketch")
PACS_CLASSES = ("dog", "elephant", "giraffe", "guitar", "horse", "house", "person")
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def read_image(path: Path, image_size: int) -> np.ndarray:
    """uint8 (3, size, size) RGB."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.size != (image_size, image_size):
            im = im.resize((image_size, image_size), Image.BILINEAR)
        return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy()


class MiniImageNetClasses:
    """The classes of one MiniImageNet split as an episode source (``data.episodes.ClassSource``).

    The split csv is read from ``<data_root>/splits/miniimagenet/<split>.csv`` when present,
    else from the copy packaged with priorlab; the images must be under the data root.
    """

    def __init__(self, data_root: str | os.PathLike, split: str, image_size: int = 84):
        if split not in ("train", "val", "test"):
            raise ValueError(f"split={split!r}: choose train, val or test")
        root = Path(data_root)
        text, origin = split_text(root, f"splits/miniimagenet/{split}.csv")
        by_class: dict[str, list[str]] = {}
        reader = csv.DictReader(io.StringIO(text))
        if reader.fieldnames is None or not {"filename", "label"} <= set(reader.fieldnames):
            raise ValueError(f"{origin}: expected a 'filename,label' header, got {reader.fieldnames}; "
                             f"replace it with the published split or delete it to use the "
                             f"copy packaged with priorlab")
        for row in reader:
            by_class.setdefault(row["label"], []).append(row["filename"])
        self.image_dir = root / "miniimagenet" / "images"
        missing = [self.image_dir / f for files in by_class.values() for f in files[:1]
                   if not (self.image_dir / f).is_file()]
        if missing:
            raise MissingDataError("miniimagenet", root, missing[:3])
        self.class_names = sorted(by_class)
        self._files = [sorted(by_class[c]) for c in self.class_names]
        self.n_samples_per_class = min(len(f) for f in self._files)
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.class_names)

    def get(self, class_idx: int, sample_idx) -> np.ndarray:
        files = self._files[class_idx]
        idx = np.atleast_1d(sample_idx)
        imgs = np.stack([read_image(self.image_dir / files[int(i)], self.image_size) for i in idx])
        return imgs if np.ndim(sample_idx) else imgs[0]


@dataclass
class PacsSet:
    paths: list[Path]
    labels: np.ndarray
    domains: np.ndarray
    """index into ``PACS_DOMAINS`` per image"""
    image_size: int

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return read_image(self.paths[i], self.image_size), int(self.labels[i])


def load_pacs(data_root: str | os.PathLike, domains: list[str] | tuple[str, ...],
              image_size: int = 224) -> PacsSet:
    """The images of ``domains`` (e.g. all but the held-out one for leave-one-domain-out)."""
    root = Path(data_root) / "pacs"
    bad = [d for d in domains if d not in PACS_DOMAINS]
    if bad:
        raise ValueError(f"unknown PACS domain(s) {bad}; domains: {list(PACS_DOMAINS)}")
    paths, labels, doms = [], [], []
    for d in domains:
        if not (root / d).is_dir():
            raise MissingDataError("pacs", Path(data_root), [root / d])
        for c, cls in enumerate(PACS_CLASSES):
            files = sorted(p for p in (root / d / cls).glob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
            paths += files
            labels += [c] * len(files)
            doms += [PACS_DOMAINS.index(d)] * len(files)
    return PacsSet(paths, np.array(labels, dtype=np.int64), np.array(doms, dtype=np.int64), image_size)


def leave_one_domain_out(held_out: str) -> tuple[list[str], list[str]]:
    """(training domains, [test domain]) for one PACS split (Sec. 3.5)."""
    if held_out not in PACS_DOMAINS:
        raise ValueError(f"unknown PACS domain {held_out!r}; domains: {list(PACS_DOMAINS)}")
    return [d for d in PACS_DOMAINS if d != held_out], [held_out]

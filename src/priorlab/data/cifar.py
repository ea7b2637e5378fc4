"""CIFAR-10/100 from the canonical python tarballs, and the CIFAR-FS / FC100 class splits.

Thesis Ch. 3: CIFAR classification (Sec. 3.4.1, Tables 3.1-3.5) and FewShot-CIFAR-100 /
CIFAR-FS meta-learning (Sec. 3.4.3, Table 3.7); Ch. 2 App. A.1.1 uses CIFAR-FS too.

Files under the data root (as published at https://www.cs.toronto.edu/~kriz/cifar.html):

    cifar/cifar-10-python.tar.gz     (cifar-10-batches-py/data_batch_1..5, test_batch, batches.meta)
    cifar/cifar-100-python.tar.gz    (cifar-100-python/train, test, meta)
    splits/cifar-fs/{train,val,test}.json   [[superclass, class], ...]   (64/16/20 classes)
    splits/fc100/{train,val,test}.json      [superclass, ...]            (12/4/4 superclasses)

The split lists ship with priorlab too (``priorlab.data.split_files``); the data root's copy is
used when present. The tarballs are read directly (no extraction); decoded arrays are cached as
.npz beside the Omniglot cache (see ``root.resolve_cache_dir``), written through a unique
temporary file and renamed into place; an unreadable cache is logged and rebuilt. CIFAR itself
is not on the project's CPU machines: tests use small tarballs written in the same format.

    train = load_cifar(root, "cifar100", "train")          # images (50000, 32, 32, 3) uint8
    classes = fewshot_classes(root, "cifar-fs", "test")     # train + test images of 20 classes
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from priorlab.data.root import MissingDataError, resolve_cache_dir
from priorlab.data.split_files import split_text

log = logging.getLogger(__name__)

CIFAR = {
    "cifar10": dict(archive="cifar/cifar-10-python.tar.gz", folder="cifar-10-batches-py",
                    train=[f"data_batch_{i}" for i in range(1, 6)], test=["test_batch"],
                    meta="batches.meta", label_key=b"labels", names_key=b"label_names"),
    "cifar100": dict(archive="cifar/cifar-100-python.tar.gz", folder="cifar-100-python",
                     train=["train"], test=["test"], meta="meta", label_key=b"fine_labels",
                     names_key=b"fine_label_names"),
}
FEWSHOT_BENCHMARKS = ("cifar-fs", "fc100")
CACHE_VERSION = "v1"


@dataclass
class CifarArrays:
    images: np.ndarray
    """uint8 (N, 32, 32, 3), HWC as usual for CIFAR."""
    labels: np.ndarray
    """int64 (N,): the (fine) label."""
    label_names: list[str]
    coarse_labels: np.ndarray | None = None
    """int64 (N,) superclass labels (CIFAR-100 only)."""
    coarse_names: list[str] = field(default_factory=list)


def _spec(name: str) -> dict:
    if name not in CIFAR:
        raise ValueError(f"unknown CIFAR dataset {name!r}; choose one of {sorted(CIFAR)}")
    return CIFAR[name]


def _unpickle(tar: tarfile.TarFile, member: str) -> dict:
    fh = tar.extractfile(member)
    if fh is None:
        raise ValueError(f"{member} is missing from the CIFAR tarball")
    return pickle.load(fh, encoding="bytes")


def _decode(archive: Path, name: str, split: str) -> CifarArrays:
    spec = _spec(name)
    folder = spec["folder"]
    with tarfile.open(archive, "r:gz") as tar:
        meta = _unpickle(tar, f"{folder}/{spec['meta']}")
        batches = [_unpickle(tar, f"{folder}/{b}") for b in spec[split]]
    images = np.concatenate([np.asarray(b[b"data"], dtype=np.uint8) for b in batches])
    images = images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()   # (N, 32, 32, 3)
    labels = np.concatenate([np.asarray(b[spec["label_key"]], dtype=np.int64) for b in batches])
    out = CifarArrays(images=images, labels=labels,
                      label_names=[n.decode() for n in meta[spec["names_key"]]])
    if name == "cifar100":
        out.coarse_labels = np.concatenate(
            [np.asarray(b[b"coarse_labels"], dtype=np.int64) for b in batches])
        out.coarse_names = [n.decode() for n in meta[b"coarse_label_names"]]
    return out


def _read_cache(cache: Path) -> CifarArrays | None:
    """The cached arrays, or None (with a warning naming the file and the reason) if unreadable."""
    try:
        with np.load(cache, allow_pickle=False) as z:
            return CifarArrays(
                images=z["images"], labels=z["labels"], label_names=[str(n) for n in z["label_names"]],
                coarse_labels=z["coarse_labels"] if "coarse_labels" in z else None,
                coarse_names=[str(n) for n in z["coarse_names"]] if "coarse_names" in z else [])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        log.warning("CIFAR cache %s is unreadable (%s: %s); decoding the tarball again and "
                    "rewriting it", cache, type(err).__name__, err)
        return None


def _write_cache(cache: Path, data: CifarArrays) -> None:
    arrays = dict(images=data.images, labels=data.labels, label_names=np.array(data.label_names))
    if data.coarse_labels is not None:
        arrays.update(coarse_labels=data.coarse_labels, coarse_names=np.array(data.coarse_names))
    # A temp file of our own, renamed into place: concurrent workers never clobber or half-read it.
    fd, tmp = tempfile.mkstemp(prefix=f".{cache.name}.", suffix=".part", dir=cache.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.chmod(tmp, 0o644)
        os.replace(tmp, cache)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_cifar(data_root: str | os.PathLike, name: str, split: str) -> CifarArrays:
    """The train or test set of ``cifar10`` / ``cifar100``, cached after the first decode.

    An unreadable cache is reported (a warning naming the file and the reason) and rebuilt.
    """
    spec = _spec(name)
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r}: CIFAR has 'train' and 'test'")
    data_root = Path(data_root)
    archive = data_root / spec["archive"]
    if not archive.is_file():
        raise MissingDataError(name, data_root, [archive])
    cache = resolve_cache_dir(data_root, name) / f"{name}_{split}_{archive.stat().st_size}_{CACHE_VERSION}.npz"
    if cache.is_file():
        cached = _read_cache(cache)
        if cached is not None:
            return cached
    data = _decode(archive, name, split)
    try:
        _write_cache(cache, data)
    except OSError as err:  # a cache is an optimisation: warn, don't fail the run
        log.warning("could not write the CIFAR cache %s (%s); set PRIORLAB_CACHE_DIR to a writable "
                    "directory to avoid decoding again next time", cache, err)
    return data


def read_fewshot_split(data_root: str | os.PathLike, benchmark: str, split: str) -> list:
    """The CIFAR-FS (``[[superclass, class], ...]``) or FC100 (``[superclass, ...]``) split list.

    Read from ``<data_root>/splits/<benchmark>/<split>.json`` when present, else from the copy
    packaged with priorlab (``priorlab.data.split_files``, checked against the published sha256).
    """
    if benchmark not in FEWSHOT_BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; choose one of {list(FEWSHOT_BENCHMARKS)}")
    if split not in ("train", "val", "test"):
        raise ValueError(f"split={split!r}: choose train, val or test")
    text, origin = split_text(data_root, f"splits/{benchmark}/{split}.json")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{origin} is not valid JSON ({err}); replace it with the published "
                         f"split or delete it to use the copy packaged with priorlab") from err


def fewshot_class_names(data_root: str | os.PathLike, benchmark: str, split: str,
                        label_names: list[str], coarse_of: dict[str, str]) -> list[str]:
    """Fine CIFAR-100 class names of a CIFAR-FS or FC100 split.

    CIFAR-FS lists [superclass, class] pairs; FC100 lists superclasses, whose five fine
    classes all belong to the split (``coarse_of`` maps fine -> superclass name).
    """
    entries = read_fewshot_split(data_root, benchmark, split)
    if benchmark == "cifar-fs":
        names = [cls for _, cls in entries]
    else:
        wanted = set(entries)
        names = [n for n in label_names if coarse_of[n] in wanted]
    unknown = [n for n in names if n not in label_names]
    if unknown:
        raise ValueError(f"{benchmark} {split} names classes not in CIFAR-100: {unknown[:5]}")
    return names


class CifarClasses:
    """A set of CIFAR-100 classes as an episode source (``data.episodes.ClassSource``)."""

    def __init__(self, images: np.ndarray, per_class: list[np.ndarray], class_names: list[str]):
        self._images = images
        self._index = per_class
        self.class_names = class_names
        counts = {len(ix) for ix in per_class}
        self.n_samples_per_class = min(counts)

    def __len__(self) -> int:
        return len(self.class_names)

    def get(self, class_idx: int, sample_idx) -> np.ndarray:
        """uint8 (..., 3, 32, 32): channels first, as the models take them."""
        return np.ascontiguousarray(np.moveaxis(self._images[self._index[class_idx][sample_idx]], -1, -3))


def fewshot_classes(data_root: str | os.PathLike, benchmark: str, split: str) -> CifarClasses:
    """CIFAR-FS / FC100 classes of ``split``, all 600 images of each (train + test sets)."""
    train = load_cifar(data_root, "cifar100", "train")
    test = load_cifar(data_root, "cifar100", "test")
    coarse_of = {train.label_names[f]: train.coarse_names[c]
                 for f, c in zip(train.labels, train.coarse_labels)}
    names = fewshot_class_names(data_root, benchmark, split, train.label_names, coarse_of)
    images = np.concatenate([train.images, test.images])
    labels = np.concatenate([train.labels, test.labels])
    ids = [train.label_names.index(n) for n in names]
    return CifarClasses(images, [np.flatnonzero(labels == i) for i in ids], names)

"""Omniglot, read straight from Lake's original zips, with the Vinyals class split.

This is the dataset of the thesis' online few-shot experiments (Babu, TTIC 2025, Ch. 2
Sec. 2.3.1, Table 2.1) as described in App. A.1.1: 1623 characters from 50 alphabets, 20
drawings each, resized to 28x28, with rotations by multiples of 90 degrees added as extra
classes, and the character split of Vinyals et al. (1028 / 172 / 423 characters for
train / val / test, x4 rotations).

Expected files under the data root (see ``priorlab.data.root``)::

    omniglot/images_background.zip      images_background/<Alphabet>/characterNN/XXXX_YY.png
    omniglot/images_evaluation.zip      images_evaluation/<Alphabet>/characterNN/XXXX_YY.png
    omniglot/splits/vinyals/{train,val,test,trainval}.txt   lines "Alphabet/characterNN/rotXXX"

``priorlab data download omniglot`` fetches them. The split lists also ship with priorlab
(``priorlab.data.split_files``): a data root without them uses the packaged copies. PNGs are decoded directly from the zips (no
extraction): each 105x105 1-bit image is converted to greyscale ("L") first, then resized with
PIL's BOX filter (an exact area average: no ringing, no overshoot), then inverted so that ink is
high (255 = ink, 0 = background). The decoded uint8 array is cached as an ``.npz`` in
``resolve_cache_dir(data_root, "omniglot")``; later loads take well under a second.

Rotation class ``(character, k)`` shows the character rotated counter-clockwise by ``k * 90``
degrees (``np.rot90(image, k)``), the same direction as the ``rotXXX`` suffixes of the split
files (PIL's ``Image.rotate`` is counter-clockwise too). Rotated copies are never stored.

Usage::

    from priorlab.data.root import resolve_data_root
    from priorlab.data.omniglot import load_omniglot_split
    train = load_omniglot_split(resolve_data_root(None), "train")   # 4112 classes
    imgs = train.get(0, np.arange(5))                               # (5, 28, 28) uint8
"""

from __future__ import annotations

import io
import logging
import operator
import os
import re
import tempfile
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from priorlab.data.root import MissingDataError, resolve_cache_dir
from priorlab.data.split_files import split_text

__all__ = [
    "OMNIGLOT_ZIPS",
    "SPLITS",
    "N_DRAWINGS",
    "MissingDataError",
    "OmniglotImages",
    "OmniglotClasses",
    "load_omniglot_images",
    "read_split",
    "load_omniglot_split",
]

log = logging.getLogger(__name__)

DATASET = "omniglot"
OMNIGLOT_ZIPS = ("images_background.zip", "images_evaluation.zip")
SPLITS = ("train", "val", "test", "trainval")
N_DRAWINGS = 20
CACHE_VERSION = "v1"  # bump when the decoding (resize filter, inversion, ...) changes
RESAMPLE = Image.Resampling.BOX

_SPLIT_LINE = re.compile(r"^(?P<name>[^/\s]+/[^/\s]+)/rot(?P<deg>000|090|180|270)$")


@dataclass
class OmniglotImages:
    """All decoded Omniglot characters.

    ``images[i, j]`` is drawing ``j`` (ordered by file name) of character ``names[i]``.
    """

    images: np.ndarray
    """uint8, (n_characters, 20, size, size); 255 = ink, 0 = background."""
    names: list[str]
    """``"Alphabet/characterNN"``, sorted and unique."""
    index: dict[str, int] = field(default_factory=dict)
    """``names[i] -> i``; filled in automatically."""

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"images must be uint8 of shape (n_characters, drawings, size, size), "
                f"got {self.images.dtype} {self.images.shape}"
            )
        if len(self.names) != self.images.shape[0]:
            raise ValueError(f"{len(self.names)} names for {self.images.shape[0]} characters")
        if not self.index:
            self.index = {name: i for i, name in enumerate(self.names)}
        if len(self.index) != len(self.names):
            raise ValueError("character names must be unique")

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def __len__(self) -> int:
        return len(self.names)


def _zip_paths(data_root: Path) -> list[Path]:
    return [data_root / DATASET / z for z in OMNIGLOT_ZIPS]


def _cache_path(data_root: Path, image_size: int) -> Path:
    return resolve_cache_dir(data_root, DATASET) / f"omniglot_{image_size}px_{CACHE_VERSION}.npz"


def _source_sizes(zips: list[Path]) -> np.ndarray:
    return np.array([z.stat().st_size for z in zips], dtype=np.int64)


def _list_characters(zf: zipfile.ZipFile, zip_path: Path) -> dict[str, list[str]]:
    """Map "Alphabet/characterNN" -> sorted PNG entry names inside one zip."""
    top = zip_path.stem + "/"
    chars: dict[str, list[str]] = defaultdict(list)
    for entry in zf.namelist():
        if entry.endswith("/"):
            continue
        parts = entry.split("/")
        if parts[0] == "__MACOSX" or parts[-1].startswith("."):
            continue  # archive-tool debris, not data
        if not entry.lower().endswith(".png"):
            continue
        if parts[0] + "/" != top or len(parts) != 4:
            raise ValueError(
                f"unexpected entry {entry!r} in {zip_path}: Omniglot PNGs must be laid out as "
                f"'{top}<Alphabet>/<characterNN>/<file>.png'. The zip is not the original "
                f"release; re-download it with `priorlab data download omniglot --force`."
            )
        chars[f"{parts[1]}/{parts[2]}"].append(entry)
    if not chars:
        raise ValueError(
            f"{zip_path} contains no PNGs under '{top}'. Re-download it with "
            f"`priorlab data download omniglot --force`."
        )
    return {name: sorted(entries) for name, entries in chars.items()}


def _decode_png(raw: bytes, image_size: int) -> np.ndarray:
    with Image.open(io.BytesIO(raw)) as im:
        grey = im.convert("L")  # 1-bit -> 0/255 first, so the resize averages real intensities
    if grey.size != (image_size, image_size):
        grey = grey.resize((image_size, image_size), RESAMPLE)
    return 255 - np.asarray(grey, dtype=np.uint8)  # ink (black) -> 255


def _decode_all(zips: list[Path], image_size: int, progress: bool) -> OmniglotImages:
    handles = [zipfile.ZipFile(z) for z in zips]
    try:
        where: dict[str, tuple[int, list[str]]] = {}
        for zi, (zf, zp) in enumerate(zip(handles, zips)):
            for name, entries in _list_characters(zf, zp).items():
                if name in where:
                    raise ValueError(
                        f"character {name!r} appears in both {zips[where[name][0]]} and {zp}; "
                        f"the two Omniglot zips must hold disjoint alphabets."
                    )
                if len(entries) != N_DRAWINGS:
                    raise ValueError(
                        f"character {name!r} in {zp} has {len(entries)} drawings, expected "
                        f"{N_DRAWINGS}. The zip is incomplete or modified; re-download it with "
                        f"`priorlab data download omniglot --force`."
                    )
                where[name] = (zi, entries)

        names = sorted(where)
        images = np.empty((len(names), N_DRAWINGS, image_size, image_size), dtype=np.uint8)
        with tqdm(
            total=len(names) * N_DRAWINGS, desc=f"decoding Omniglot to {image_size}px",
            unit="img", disable=not progress,
        ) as bar:
            for i, name in enumerate(names):
                zi, entries = where[name]
                for j, entry in enumerate(entries):
                    try:
                        images[i, j] = _decode_png(handles[zi].read(entry), image_size)
                    except (OSError, ValueError, zipfile.BadZipFile) as err:
                        raise ValueError(
                            f"cannot decode {entry!r} from {zips[zi]}: {err}. The zip looks "
                            f"corrupt; re-download it with `priorlab data download omniglot --force`."
                        ) from err
                    bar.update(1)
        return OmniglotImages(images=images, names=names)
    finally:
        for zf in handles:
            zf.close()


def _read_cache(path: Path, image_size: int, sizes: np.ndarray) -> OmniglotImages | None:
    """The cached images, or None if the cache is absent, unreadable, or stale."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            images = npz["images"]
            names = [str(n) for n in npz["names"]]
            version = str(npz["version"])
            cached_sizes = npz["source_sizes"]
    except Exception as err:  # any unreadable cache is simply rebuilt
        log.warning("Omniglot cache %s is unreadable (%s); rebuilding it", path, err)
        return None
    if (
        version != CACHE_VERSION
        or images.dtype != np.uint8
        or images.shape[1:] != (N_DRAWINGS, image_size, image_size)
        or len(names) != images.shape[0]
        or not np.array_equal(cached_sizes, sizes)
    ):
        log.info("Omniglot cache %s is stale; rebuilding it", path)
        return None
    return OmniglotImages(images=images, names=names)


def _write_cache(path: Path, data: OmniglotImages, sizes: np.ndarray) -> None:
    # Write to a temp file and rename, so concurrent workers never read a half-written cache.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f,
                images=data.images,
                names=np.array(data.names, dtype=str),
                version=np.array(CACHE_VERSION),
                source_sizes=sizes,
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_omniglot_images(
    data_root: str | os.PathLike, image_size: int = 28, *, progress: bool = True
) -> OmniglotImages:
    """Decode (or load from cache) all 1623 Omniglot characters at ``image_size``.

    Raises :class:`MissingDataError` if a zip is missing from ``<data_root>/omniglot/``.
    """
    image_size = operator.index(image_size)
    if image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size}")
    data_root = Path(data_root)
    zips = _zip_paths(data_root)
    missing = [z for z in zips if not z.is_file()]
    if missing:
        raise MissingDataError(DATASET, data_root, missing)

    sizes = _source_sizes(zips)
    cache = _cache_path(data_root, image_size)
    cached = _read_cache(cache, image_size, sizes)
    if cached is not None:
        return cached
    data = _decode_all(zips, image_size, progress)
    try:
        _write_cache(cache, data, sizes)
    except OSError as err:  # a cache is an optimisation: warn, don't fail the run
        log.warning("could not write the Omniglot cache %s (%s); set PRIORLAB_CACHE_DIR to a "
                    "writable directory to avoid decoding again next time", cache, err)
    return data


def split_path(data_root: str | os.PathLike, split: str) -> Path:
    """``<data_root>/omniglot/splits/vinyals/<split>.txt`` (may be absent: see :func:`read_split`)."""
    if split not in SPLITS:
        raise ValueError(f"unknown Omniglot split {split!r}; valid splits: {', '.join(SPLITS)}")
    return Path(data_root) / DATASET / "splits" / "vinyals" / f"{split}.txt"


def read_split(data_root: str | os.PathLike, split: str) -> list[tuple[str, int]]:
    """Read a Vinyals split file as ``[("Alphabet/characterNN", k), ...]``, k in 0..3.

    ``k`` is the number of counter-clockwise quarter turns (rot000/090/180/270). The list is
    read from the data root's copy (:func:`split_path`) when it is present, and from the copy
    packaged with priorlab otherwise (``priorlab.data.split_files``, checked against the
    published file's sha256).
    """
    relpath = split_path(data_root, split).relative_to(Path(data_root)).as_posix()
    text, origin = split_text(data_root, relpath)
    entries = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        m = _SPLIT_LINE.match(line)
        if m is None:
            raise ValueError(
                f"{origin}:{lineno}: expected a line like 'Alphabet/character01/rot090', got "
                f"{line!r}. Re-download the split with `priorlab data download omniglot --force`."
            )
        entries.append((m["name"], int(m["deg"]) // 90))
    return entries


class OmniglotClasses:
    """The classes of one split: each class is a (character, rotation) pair.

    Holds the base character images once and rotates on access. ``get(c, s)`` returns drawing(s)
    ``s`` of class ``c`` as uint8 ``(..., size, size)``.
    """

    def __init__(self, base_images: np.ndarray, char_idx: np.ndarray, rot_k: np.ndarray,
                 class_names: list[str]):
        if not (len(char_idx) == len(rot_k) == len(class_names)):
            raise ValueError("char_idx, rot_k and class_names must have the same length")
        self._images = base_images
        self._char_idx = np.asarray(char_idx, dtype=np.int64)
        self._rot_k = np.asarray(rot_k, dtype=np.int64) % 4
        self.class_names = class_names
        self.n_samples_per_class = int(base_images.shape[1])
        self.image_size = int(base_images.shape[-1])

    @classmethod
    def from_split(cls, images: OmniglotImages, split_entries: Iterable[tuple[str, int]]
                   ) -> "OmniglotClasses":
        char_idx, rot_k, class_names = [], [], []
        for name, k in split_entries:
            if name not in images.index:
                raise ValueError(
                    f"split entry {name!r} is not among the {len(images)} decoded Omniglot "
                    f"characters. The split file and the zips do not match; re-download with "
                    f"`priorlab data download omniglot --force`."
                )
            if k not in (0, 1, 2, 3):
                raise ValueError(f"rotation k must be 0..3 (quarter turns), got {k} for {name!r}")
            char_idx.append(images.index[name])
            rot_k.append(k)
            class_names.append(f"{name}/rot{90 * k:03d}")
        if not class_names:
            raise ValueError("the split is empty")
        return cls(images.images, np.array(char_idx), np.array(rot_k), class_names)

    def __len__(self) -> int:
        return len(self.class_names)

    def character_of(self, class_idx: int) -> int:
        """Index of the class's base character in ``OmniglotImages.names``."""
        return int(self._char_idx[self._check(class_idx)])

    def rotation_of(self, class_idx: int) -> int:
        """Counter-clockwise quarter turns (0..3) of the class."""
        return int(self._rot_k[self._check(class_idx)])

    def _check(self, class_idx: int) -> int:
        c = operator.index(class_idx)
        if not 0 <= c < len(self):
            raise IndexError(f"class index {c} out of range for {len(self)} classes")
        return c

    def get(self, class_idx: int, sample_idx: np.ndarray | int) -> np.ndarray:
        c = self._check(class_idx)
        imgs = self._images[self._char_idx[c]][sample_idx]
        # copy: never hand out a view into the shared base array
        return np.rot90(imgs, int(self._rot_k[c]), axes=(-2, -1)).copy()


def load_omniglot_split(
    data_root: str | os.PathLike, split: str, image_size: int = 28, *, progress: bool = True
) -> OmniglotClasses:
    """``OmniglotClasses`` for one Vinyals split (``train``, ``val``, ``test``, ``trainval``)."""
    entries = read_split(data_root, split)  # first: fail fast on a bad split name
    images = load_omniglot_images(data_root, image_size, progress=progress)
    return OmniglotClasses.from_split(images, entries)

"""The public class-split lists, shipped inside the package, and the one place that reads them.

Every few-shot benchmark of the thesis (Babu, TTIC 2025) fixes which classes are for training,
validation and testing by a small published list: the Vinyals Omniglot character split (Ch. 2
Sec. 2.3.1, App. A.1.1), CIFAR-FS (Ch. 2 App. A.1.1; Ch. 3 Sec. 3.4.3), FC100 and the Ravi &
Larochelle MiniImageNet split (Ch. 3 Sec. 3.4.3, Tables 3.6/3.7) and the FSS-1000 class split
(Ch. 2 Sec. 2.3.2, App. A.4). The lists are a few hundred kilobytes, so a copy of each ships in
``priorlab/data/splits/`` (sources and licences in ``splits/README.md``); a machine that has
no data root yet still knows the splits.

:func:`split_bytes` returns a list from ``<data root>/<relpath>`` when that file exists (a user
may keep their own copy there, and ``priorlab data download`` puts the Omniglot lists there),
and the packaged copy otherwise. A packaged copy is checked against the sha256 of the published
file (``SPLIT_LISTS``) before it is used, so a damaged installation is an error, not a silently
different split. The MiniImageNet csv files are stored gzip-compressed (1.9 MB -> 155 kB); the
digest is that of the uncompressed, published bytes.

    from priorlab.data.split_files import split_text, read_fss1000_split
    text, origin = split_text(root, "splits/cifar-fs/test.json")
    classes = read_fss1000_split(root, "test")            # 240 class names
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

__all__ = ["SPLIT_LISTS", "SplitList", "PackagedSplitError", "packaged_split_bytes",
           "split_bytes", "split_text", "read_fss1000_split", "FSS1000_SPLITS"]

_PACKAGE_DIR = "splits"  # beside this module: priorlab/data/splits/

_PROTONETS = ("https://raw.githubusercontent.com/jakesnell/prototypical-networks/master/"
              "data/omniglot/splits/vinyals/{}.txt")
_TORCHMETA = "github.com/tristandeleu/pytorch-meta: torchmeta/datasets/assets/cifar100/{}/{}.json"
_HSNET = "github.com/juhongm999/hsnet: data/splits/fss/{}.txt"
_RAVI = ("Ravi & Larochelle (ICLR 2017) MiniImageNet split {}.csv, as distributed with "
         "github.com/jakesnell/prototypical-networks")


@dataclass(frozen=True)
class SplitList:
    """One published split list: where it sits in a data root and in the package."""

    relpath: str
    """Path under a data root, e.g. ``splits/cifar-fs/test.json``."""
    packaged: str
    """File under ``priorlab/data/splits/`` (``.gz``: gzip of the published bytes)."""
    sha256: str
    """sha256 of the published (uncompressed) file."""
    source: str
    """Where the published file comes from."""


def _entry(relpath: str, packaged: str, sha256: str, source: str) -> tuple[str, SplitList]:
    return relpath, SplitList(relpath, packaged, sha256, source)


# sha256 of the files as published; identical copies sit in the project's shared data root.
SPLIT_LISTS: dict[str, SplitList] = dict([
    _entry("omniglot/splits/vinyals/train.txt", "omniglot-vinyals/train.txt",
           "984522c194c30fb678ce53304a160a42faf5403ad4f9a67010f32dd3a35738e0", _PROTONETS.format("train")),
    _entry("omniglot/splits/vinyals/val.txt", "omniglot-vinyals/val.txt",
           "11f99e54faee3e26f53d3231c1cceac5bf7b8730e9be31cb6dab256551dc0c1a", _PROTONETS.format("val")),
    _entry("omniglot/splits/vinyals/test.txt", "omniglot-vinyals/test.txt",
           "845264cc5c156180828ccf17915668b17ee21424d0170df6e7d81676aa5d1204", _PROTONETS.format("test")),
    _entry("omniglot/splits/vinyals/trainval.txt", "omniglot-vinyals/trainval.txt",
           "5276ae50c755596d0bff7f2284e85625695549a85ee6e36b6491ad1e5d1cc26a", _PROTONETS.format("trainval")),
    _entry("splits/cifar-fs/train.json", "cifar-fs/train.json",
           "e0feef3aef13fc7320d5deef5ae77d91edd28041d9a173939ec48cea68135ef0", _TORCHMETA.format("cifar-fs", "train")),
    _entry("splits/cifar-fs/val.json", "cifar-fs/val.json",
           "d9d6e267b5dad5c2267ff7dd98ebb18bb016f7929b56839422bb34fb53bcb3ef", _TORCHMETA.format("cifar-fs", "val")),
    _entry("splits/cifar-fs/test.json", "cifar-fs/test.json",
           "e199c74ef4f014ea3f74da1b6cf74795d32747183426c2a7e6ee4308d3bf47e3", _TORCHMETA.format("cifar-fs", "test")),
    _entry("splits/fc100/train.json", "fc100/train.json",
           "a19e219adef452c071eb09d14758a9c45562643b9aafa38826e679ed285e117b", _TORCHMETA.format("fc100", "train")),
    _entry("splits/fc100/val.json", "fc100/val.json",
           "6d228dac7040959f0c2f0385c53c2cd9a5369ba9eefd1b7cdceecb47041598c4", _TORCHMETA.format("fc100", "val")),
    _entry("splits/fc100/test.json", "fc100/test.json",
           "d2cf86db6ec0250993b18cb78ebde10758f06eaaaff1611390e4442ee7c6fc41", _TORCHMETA.format("fc100", "test")),
    _entry("splits/miniimagenet/train.csv", "miniimagenet/train.csv.gz",
           "498519cd8e49ce97ed26a4a3638966698ae41ab35e9c68538319fc9b46ba7d2f", _RAVI.format("train")),
    _entry("splits/miniimagenet/val.csv", "miniimagenet/val.csv.gz",
           "5658a59921ca027ee76af92949869c5d6f41d77592ff3b18db325a9d10c893b9", _RAVI.format("val")),
    _entry("splits/miniimagenet/test.csv", "miniimagenet/test.csv.gz",
           "2b7cfa78342995761a572a8158e539bc4e0a80f9bbd7d00c1e17a460fbbb93fa", _RAVI.format("test")),
    _entry("fss1000/splits/trn.txt", "fss1000/trn.txt",
           "815bce03f2502719ba3bd9c1f79111b74ec8ab63e6111830ff7312de49b1cf17", _HSNET.format("trn")),
    _entry("fss1000/splits/val.txt", "fss1000/val.txt",
           "9cac02c58602f2789b4e6393200e450e3ba1edae6673d6a87ae2063d0c547aee", _HSNET.format("val")),
    _entry("fss1000/splits/test.txt", "fss1000/test.txt",
           "26f1b9e9dd0c4a58c01db306aeb5bccb5de361d544ec1b15f219efc4b74c0bf1", _HSNET.format("test")),
])

FSS1000_SPLITS = ("trn", "val", "test")


class PackagedSplitError(RuntimeError):
    """A split list shipped with priorlab is missing or differs from the published file."""


def _lookup(relpath: str) -> SplitList:
    try:
        return SPLIT_LISTS[relpath]
    except KeyError:
        known = ", ".join(sorted(SPLIT_LISTS))
        raise ValueError(f"{relpath!r} is not a packaged split list; known: {known}") from None


@functools.lru_cache(maxsize=None)
def packaged_split_bytes(relpath: str) -> bytes:
    """The published bytes of a packaged split list, verified against its sha256."""
    entry = _lookup(relpath)
    where = resources.files("priorlab.data").joinpath(_PACKAGE_DIR, *entry.packaged.split("/"))
    fix = (f"Reinstall priorlab (`pip install --force-reinstall priorlab`, or `pip install -e .` "
           f"in a checkout), or put the published file ({entry.source}) at <data root>/{relpath}.")
    try:
        raw = where.read_bytes()
        if entry.packaged.endswith(".gz"):
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise PackagedSplitError(f"the packaged copy of {relpath} ({where}) cannot be read: {err}. {fix}") from err
    got = hashlib.sha256(raw).hexdigest()
    if got != entry.sha256:
        raise PackagedSplitError(
            f"the packaged copy of {relpath} ({where}) has sha256 {got}, but the published file "
            f"has {entry.sha256}: the installation is damaged. {fix}")
    return raw


def split_bytes(data_root: str | os.PathLike, relpath: str) -> tuple[bytes, str]:
    """``(bytes, origin)`` of a split list: ``<data_root>/<relpath>`` if present, else the packaged copy.

    ``origin`` names the file that was read, for error messages.
    """
    entry = _lookup(relpath)
    local = Path(data_root) / entry.relpath
    if local.is_file():
        return local.read_bytes(), str(local)
    return packaged_split_bytes(relpath), f"{entry.relpath} (copy packaged with priorlab)"


def split_text(data_root: str | os.PathLike, relpath: str) -> tuple[str, str]:
    """Like :func:`split_bytes`, decoded as UTF-8 (a leading byte-order mark is dropped)."""
    raw, origin = split_bytes(data_root, relpath)
    try:
        return raw.decode("utf-8-sig"), origin
    except UnicodeDecodeError as err:
        raise ValueError(f"{origin} is not UTF-8 text ({err}); replace it with the published "
                         f"file ({SPLIT_LISTS[relpath].source}) or delete it to use the packaged copy.") from err


def read_fss1000_split(data_root: str | os.PathLike, split: str) -> list[str]:
    """FSS-1000 class names of ``split`` (``trn`` / ``val`` / ``test``: 520 / 240 / 240 classes).

    The lists of the HSNet release, one class folder name a line (``test.txt`` has CRLF endings
    as published). Read from ``<data_root>/fss1000/splits/<split>.txt`` if present, else from
    the packaged copy.
    """
    if split not in FSS1000_SPLITS:
        raise ValueError(f"unknown FSS-1000 split {split!r}; valid splits: {', '.join(FSS1000_SPLITS)}")
    text, origin = split_text(data_root, f"fss1000/splits/{split}.txt")
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(set(names)) != len(names):
        raise ValueError(f"{origin} lists a class twice; it is not the published FSS-1000 split")
    return names

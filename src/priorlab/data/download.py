"""Download datasets from their canonical public addresses into a data root.

A small, dependency-free downloader (``urllib`` + ``tqdm``) plus the registry of what each
dataset needs. The Omniglot entry provides the data of the thesis' online few-shot experiments
(Babu, TTIC 2025, Ch. 2 Sec. 2.3.1; App. A.1.1: Lake's Omniglot zips and the Vinyals split).

Guarantees of :func:`fetch`:

* bytes go to a temporary file next to the destination and are renamed into place only once
  complete and verified, so an interrupted or failed download never leaves a partial file;
* an existing file is never overwritten unless ``force=True``;
* the checksum (md5 or sha256) of what was *downloaded* is verified; on a mismatch the
  temporary file is deleted and :class:`ChecksumError` names the expected and received digests.

Checksums are enforced only on freshly downloaded bytes. A file that is already present is
accepted if it looks right (for a zip: a valid zip whose entries sit under the expected top
folder). This matters because pixel-identical re-zipped copies of the Omniglot zips (such as the
ones in a shared read-only data root) have a different md5 than the canonical release.

Usage::

    from priorlab.data.download import download_dataset
    paths = download_dataset("omniglot", resolve_data_root(None))

or from the shell: ``priorlab data download omniglot [--data-dir DIR]``. Offline, copy the
files listed in ``DATASETS[name]`` to ``<data root>/<relpath>`` by hand instead.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from tqdm.auto import tqdm

log = logging.getLogger(__name__)

_CHUNK = 1 << 16
_TIMEOUT_S = 60


class DownloadError(RuntimeError):
    """A file could not be downloaded (network failure, bad URL, truncated transfer)."""


class ChecksumError(DownloadError):
    """Downloaded bytes do not match the registered checksum; nothing was written."""


class InvalidFileError(RuntimeError):
    """A file already in the data root is not what it should be (e.g. a broken zip)."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: where it comes from and where it goes under the data root."""

    name: str
    """Short human-readable name, used in progress bars and messages."""
    url: str
    """Canonical public address (``https://``; ``file://`` also works)."""
    relpath: str
    """Destination relative to the ``dest_dir`` given to :func:`fetch` (the data root)."""
    md5: str | None = None
    """Expected md5 hex digest of the downloaded bytes (optional)."""
    sha256: str | None = None
    """Expected sha256 hex digest of the downloaded bytes (optional; preferred over md5)."""
    zip_top_folder: str | None = None
    """For zips: every entry must sit under this folder. Used to accept an existing file."""

    def expected_digest(self) -> tuple[str, str] | None:
        if self.sha256:
            return "sha256", self.sha256.lower()
        if self.md5:
            return "md5", self.md5.lower()
        return None


_OMNIGLOT_ZIP_URL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/{}.zip"
_VINYALS_URL = (
    "https://raw.githubusercontent.com/jakesnell/prototypical-networks/master/"
    "data/omniglot/splits/vinyals/{}.txt"
)
# sha256 of the split lists as published (identical copies are in the shared data root).
_VINYALS_SHA256 = {
    "train": "984522c194c30fb678ce53304a160a42faf5403ad4f9a67010f32dd3a35738e0",
    "val": "11f99e54faee3e26f53d3231c1cceac5bf7b8730e9be31cb6dab256551dc0c1a",
    "test": "845264cc5c156180828ccf17915668b17ee21424d0170df6e7d81676aa5d1204",
    "trainval": "5276ae50c755596d0bff7f2284e85625695549a85ee6e36b6491ad1e5d1cc26a",
}

DATASETS: dict[str, list[RemoteFile]] = {
    "omniglot": [
        RemoteFile(
            name="omniglot images_background.zip",
            url=_OMNIGLOT_ZIP_URL.format("images_background"),
            relpath="omniglot/images_background.zip",
            md5="68d2efa1b9178cc56df9314c21c6e718",
            zip_top_folder="images_background",
        ),
        RemoteFile(
            name="omniglot images_evaluation.zip",
            url=_OMNIGLOT_ZIP_URL.format("images_evaluation"),
            relpath="omniglot/images_evaluation.zip",
            md5="6b91aef0f799c5bb55b94e3f2daec811",
            zip_top_folder="images_evaluation",
        ),
        *(
            RemoteFile(
                name=f"omniglot vinyals {split}.txt",
                url=_VINYALS_URL.format(split),
                relpath=f"omniglot/splits/vinyals/{split}.txt",
                sha256=digest,
            )
            for split, digest in _VINYALS_SHA256.items()
        ),
    ],
    # The canonical python tarballs (md5s as published with them); read by data/cifar.py.
    "cifar10": [RemoteFile(name="cifar-10-python.tar.gz",
                           url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                           relpath="cifar/cifar-10-python.tar.gz",
                           md5="c58f30108f718f92721af3b95e74349a")],
    "cifar100": [RemoteFile(name="cifar-100-python.tar.gz",
                            url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                            relpath="cifar/cifar-100-python.tar.gz",
                            md5="eb9058c3a382ffc7106e4002c42a8d85")],
}


def _say(message: str, progress: bool) -> None:
    log.info(message)
    if progress:
        tqdm.write(message, file=sys.stderr)


def _check_existing(path: Path, remote: RemoteFile) -> None:
    """Raise InvalidFileError if an already-present file is clearly not the right thing."""
    if not path.is_file():
        raise InvalidFileError(
            f"{path} exists but is not a regular file. Remove it, or rerun with --force."
        )
    if remote.zip_top_folder is None:
        return
    problem = None
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError) as err:
        problem = f"it is not a readable zip ({err})"
    else:
        top = remote.zip_top_folder.rstrip("/") + "/"
        if not names:
            problem = "the zip is empty"
        elif not all(n.startswith(top) for n in names):
            bad = next(n for n in names if not n.startswith(top))
            problem = f"its entries should all be under '{top}', but it contains '{bad}'"
    if problem:
        raise InvalidFileError(
            f"{path} is present but {problem}. Delete it and run the download again "
            f"(or pass --force to replace it), or copy a good copy of {remote.url} there by hand."
        )


def _download_one(remote: RemoteFile, dest: Path, progress: bool) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    expected = remote.expected_digest()
    hasher = hashlib.new(expected[0]) if expected else None
    try:
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(remote.url, timeout=_TIMEOUT_S) as resp:
                length = resp.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                received = 0
                with tqdm(
                    total=total, unit="B", unit_scale=True, unit_divisor=1024,
                    desc=remote.name, disable=not progress, leave=False,
                ) as bar:
                    while chunk := resp.read(_CHUNK):
                        out.write(chunk)
                        if hasher is not None:
                            hasher.update(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
                if total is not None and received != total:
                    raise DownloadError(
                        f"download of {remote.url} was cut short: got {received} of {total} bytes."
                    )
        except DownloadError:
            raise
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as err:
            raise DownloadError(
                f"could not download {remote.url}\n  to {dest}\n  reason: {err}\n"
                f"Check your network connection and retry. Without internet access you can "
                f"copy the file there by hand instead: put a copy of {Path(remote.relpath).name} "
                f"at {dest}."
            ) from err

        if hasher is not None:
            got = hasher.hexdigest()
            if got != expected[1]:
                raise ChecksumError(
                    f"checksum mismatch for {remote.url}: expected {expected[0]} {expected[1]}, "
                    f"got {got}. The download was discarded and nothing was written to {dest}. "
                    f"Retry; if it persists the upstream file changed, so copy a known-good "
                    f"file to {dest} by hand."
                )
        if dest.exists() and not dest.is_file():
            raise InvalidFileError(f"{dest} exists and is not a regular file; remove it and retry.")
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a data root is often shared
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def fetch(
    files: Iterable[RemoteFile],
    dest_dir: str | os.PathLike,
    *,
    force: bool = False,
    progress: bool = True,
) -> list[Path]:
    """Download each ``RemoteFile`` to ``dest_dir / relpath``; return the destination paths.

    Files already present are kept (after a sanity check, see the module docstring) unless
    ``force`` is true. Raises :class:`DownloadError` (or its subclass :class:`ChecksumError`) if
    a download fails, and :class:`InvalidFileError` if a present file is broken.
    """
    dest_dir = Path(dest_dir).expanduser().resolve()
    paths = []
    for remote in files:
        dest = dest_dir / remote.relpath
        if dest.exists() and not force:
            _check_existing(dest, remote)
            _say(f"present, kept: {dest}", progress)
        else:
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise DownloadError(
                    f"cannot create {dest.parent} to download {remote.url} into: {err}. "
                    f"Choose a writable data root with --data-dir or PRIORLAB_DATA_DIR."
                ) from err
            _say(f"downloading {remote.url} -> {dest}", progress)
            _download_one(remote, dest, progress)
            _say(f"downloaded: {dest}", progress)
        paths.append(dest)
    return paths


def download_dataset(
    name: str,
    data_root: str | os.PathLike,
    force: bool = False,
    *,
    progress: bool = True,
) -> list[Path]:
    """Fetch every file of dataset ``name`` into ``data_root``; return their paths.

    Files already present are kept and reported as present. Unknown names raise ValueError.
    """
    if name not in DATASETS:
        known = ", ".join(sorted(DATASETS))
        raise ValueError(f"unknown dataset {name!r}; known datasets: {known}")
    return fetch(DATASETS[name], data_root, force=force, progress=progress)

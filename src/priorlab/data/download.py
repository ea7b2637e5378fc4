"""Download datasets from their canonical public addresses (or a mirror) into a data root.

A small, dependency-free downloader (``urllib`` + ``tqdm``) plus the registry of what each
dataset needs. The Omniglot entry provides the data of the thesis' online few-shot experiments
(Babu, TTIC 2025, Ch. 2 Sec. 2.3.1; App. A.1.1: Lake's Omniglot zips and the Vinyals split).

Guarantees of :func:`fetch`:

* bytes go to a temporary file next to the destination and are renamed into place only once
  complete and verified, so an interrupted or failed download never leaves a partial file;
* an existing file is never overwritten unless ``force=True`` (and a data root whose files are
  all present is only read, so a read-only shared data root works);
* the checksum of what was *downloaded* is verified against the digests the registry accepts
  for that file (:meth:`RemoteFile.accepted`); on a mismatch the temporary file is deleted and
  :class:`ChecksumError` lists every accepted digest with where it comes from.

Accepted digests. Each file has its canonical digest (md5 or sha256 of the file at its
canonical address). A few files also list ``alternates``: other copies known to hold the same
data, each with a note saying which copy it identifies. The Omniglot zips have one: the
pixel-identical re-zip kept in the project's shared data root (used by CI and as a mirror),
whose md5 differs from the canonical release. Nothing is downloaded unverified.

Checksums are enforced on freshly downloaded bytes. A file that is already present is accepted
if it looks right (for a zip: a valid zip whose entries sit under the expected top folder).

Mirrors. If ``PRIORLAB_DATA_MIRROR`` is set (``file:///srv/priorlab-data`` or
``https://host/priorlab-data``), or ``mirror=`` is passed, every file is fetched from
``<mirror>/<relpath>`` instead of its canonical address: a mirror is laid out like a data root
(the shared data root of these machines is one). Offline clusters and CI download from a local
copy this way; the checksums are verified exactly as for the canonical address.

Usage::

    from priorlab.data.download import download_dataset
    paths = download_dataset("omniglot", resolve_data_root(None))

or from the shell: ``priorlab data download omniglot [--data-dir DIR]``, e.g.
``PRIORLAB_DATA_MIRROR=file:///mnt/datasets priorlab data download omniglot``. Offline, copy
the files listed in ``DATASETS[name]`` to ``<data root>/<relpath>`` by hand instead.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from tqdm.auto import tqdm

from priorlab.data.split_files import SPLIT_LISTS

log = logging.getLogger(__name__)

MIRROR_ENV_VAR = "PRIORLAB_DATA_MIRROR"
MIRROR_HELP = (
    f"Set {MIRROR_ENV_VAR}=file:///path/to/copy (or https://host/path) to download every file "
    f"from <mirror>/<path under the data root> instead of its canonical address, e.g. from a "
    f"local copy on an offline cluster or in CI; checksums are verified all the same."
)

_CHUNK = 1 << 16
_TIMEOUT_S = 60


class DownloadError(RuntimeError):
    """A file could not be downloaded (network failure, bad URL, truncated transfer)."""


class ChecksumError(DownloadError):
    """Downloaded bytes do not match the registered checksum; nothing was written."""


class MirrorError(DownloadError):
    """The mirror setting (``PRIORLAB_DATA_MIRROR``) is not a usable URL."""


class InvalidFileError(RuntimeError):
    """A file already in the data root is not what it should be (e.g. a broken zip)."""


@dataclass(frozen=True)
class Digest:
    """A checksum the registry accepts for a file, and which copy of the file it identifies."""

    algorithm: str
    """``"md5"`` or ``"sha256"``."""
    hexdigest: str
    origin: str
    """Where this digest comes from (which release or copy of the file it is the digest of)."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: where it comes from and where it goes under the data root."""

    name: str
    """Short human-readable name, used in progress bars and messages."""
    url: str
    """Canonical public address (``https://``; ``file://`` also works)."""
    relpath: str
    """Destination relative to the ``dest_dir`` given to :func:`fetch` (the data root); also
    the file's path under a mirror."""
    md5: str | None = None
    """Canonical md5 hex digest: of the file at ``url`` (optional)."""
    sha256: str | None = None
    """Canonical sha256 hex digest (optional; preferred over md5)."""
    zip_top_folder: str | None = None
    """For zips: every entry must sit under this folder. Used to accept an existing file."""
    alternates: tuple[Digest, ...] = ()
    """Digests of other known copies with the same content (each says which copy it is)."""

    def expected_digest(self) -> tuple[str, str] | None:
        """The canonical ``(algorithm, hexdigest)``: sha256 if known, else md5, else None."""
        if self.sha256:
            return "sha256", self.sha256.lower()
        if self.md5:
            return "md5", self.md5.lower()
        return None

    def accepted(self) -> list[Digest]:
        """Every digest a download of this file may match: the canonical one, then alternates."""
        canonical = self.expected_digest()
        found = [Digest(*canonical, origin=f"canonical file at {self.url}")] if canonical else []
        return found + [Digest(d.algorithm, d.hexdigest.lower(), d.origin) for d in self.alternates]


_OMNIGLOT_ZIP_URL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/{}.zip"
_VINYALS_URL = (
    "https://raw.githubusercontent.com/jakesnell/prototypical-networks/master/"
    "data/omniglot/splits/vinyals/{}.txt"
)
# The PNGs of the project's shared data root were taken unpacked from
# AntreasAntoniou/HowToTrainYourMAMLPytorch and re-zipped in the original layout: the same
# images, other zip bytes. Its sha256s (computed from that copy, 2026-11-27) are accepted too.
_SHARED_REZIP = ("pixel-identical re-zip of the Omniglot PNGs (from AntreasAntoniou/"
                 "HowToTrainYourMAMLPytorch) in the priorlab shared data root ../shared/datasets")
_OMNIGLOT_ZIPS = {
    # name: (canonical md5, as published with torchvision.datasets.Omniglot; re-zip sha256)
    "images_background": ("68d2efa1b9178cc56df9314c21c6e718",
                          "f0b84e5344bc0da0be8f887d6f410545e1ce5d34023761a609cda37b74cd9bbc"),
    "images_evaluation": ("6b91aef0f799c5bb55b94e3f2daec811",
                          "47f6305f8546374ad75715bdb3e659c795b3433239816496244e6b294d6164e0"),
}

DATASETS: dict[str, list[RemoteFile]] = {
    "omniglot": [
        *(
            RemoteFile(
                name=f"omniglot {zip_name}.zip",
                url=_OMNIGLOT_ZIP_URL.format(zip_name),
                relpath=f"omniglot/{zip_name}.zip",
                md5=md5,
                zip_top_folder=zip_name,
                alternates=(Digest("sha256", rezip_sha256, _SHARED_REZIP),),
            )
            for zip_name, (md5, rezip_sha256) in _OMNIGLOT_ZIPS.items()
        ),
        *(
            RemoteFile(
                name=f"omniglot vinyals {split}.txt",
                url=_VINYALS_URL.format(split),
                relpath=f"omniglot/splits/vinyals/{split}.txt",
                # the same digest the packaged copy is checked against (data/split_files.py)
                sha256=SPLIT_LISTS[f"omniglot/splits/vinyals/{split}.txt"].sha256,
            )
            for split in ("train", "val", "test", "trainval")
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
    # Molecules (thesis Ch. 5), read by data/molecules.py. MoleculeNet's BACE from DeepChem; its
    # canonical md5 is the one TorchDrug's BACE loader checks. The shared data root's copy names
    # the SMILES column `smiles` where DeepChem's says `mol` (the loader takes either), so its
    # digest is an alternate (sha256 computed from that copy, 2026-11-27).
    "bace": [RemoteFile(
        name="moleculenet bace.csv",
        url="https://deepchemdata.s3-us-west-1.amazonaws.com/datasets/bace.csv",
        relpath="moleculenet/bace.csv", md5="ba7f8fa3fdf463a811fa7edea8c982c2",
        alternates=(Digest("sha256", "f5883a575aa37d3f6a28d5a1ba797c514ef15a57ad613ed4705652f7e9b8b897",
                           "BACE copy in the priorlab shared data root (SMILES column `smiles`)"),))],
    # The other MoleculeNet sets are chemprop's CSVs (first column SMILES, then one column per
    # task), not DeepChem's BBBP.csv / clintox.csv.gz / tox21.csv.gz (other columns, gzip). URLs
    # pin the chemprop commits whose files have the same size and content as the shared data
    # root's copies; the digests were computed from those copies (2026-11-27).
    **{name: [RemoteFile(
        name=f"moleculenet {file}",
        url=f"https://raw.githubusercontent.com/chemprop/chemprop/{commit}/data/{file}",
        relpath=f"moleculenet/{file}", sha256=sha256)]
       for name, file, commit, sha256 in (
           ("bbbp", "bbbp.csv", "a68ade20f227862fe6265c46f021c78217a324ab",
            "a61e17872cbec0743a6147dc802a1f7550acfe8dc1053f881f4c42a3ce2dc597"),
           ("clintox", "clintox.csv", "b83635bcddaddcdb91d453128edec9f2be0d25cf",
            "cc561402d058a0d996a9f5e5d02bc20f6652b7003525b32c3598b8da4b24e9b7"),
           ("tox21", "tox21.csv", "b83635bcddaddcdb91d453128edec9f2be0d25cf",
            "b58cc1f683e78e3c7a1bf7116e9aac0119804018d100f7b8cdb0857941c31aca"),
           ("sider", "sider.csv", "b83635bcddaddcdb91d453128edec9f2be0d25cf",
            "71efc6ac4ca82d6545bc512509863281be0f17234afd7adaf71a71899988302e"),
           ("freesolv", "freesolv.csv", "b83635bcddaddcdb91d453128edec9f2be0d25cf",
            "97d74c86228d4c16c0fbbf063bb8280354d8152db09a85ade8517a2f43bd9824"),
           # gzip bytes not compared with chemprop's (binary): the digest is the shared copy's
           ("hiv", "hiv.csv.gz", "a68ade20f227862fe6265c46f021c78217a324ab",
            "0a4a7390d6f22035c293e8e0d500655d76233b35f0f68ab128f3ceccdd97a297"),
       )},
    # QM9 SMILES. DeepChem's qm9.csv (mol_id, smiles and 18 property columns; the loader reads
    # `smiles`); its sha256 as recorded by a public dataset card (HTTP Content-Length 29,856,825),
    # not checked from here. The shared data root holds a smiles-only copy of the same 133,885
    # rows, accepted as an alternate.
    "qm9": [RemoteFile(
        name="qm9.csv", url="https://deepchemdata.s3-us-west-1.amazonaws.com/datasets/qm9.csv",
        relpath="qm9/qm9.csv",
        sha256="3e668f8c34e4bc392a90d417a50a5eed3b64b842a817a633024bdc054c68ccb4",
        alternates=(Digest("sha256", "80c060e299a44112b89be3fc6d95145dfeda97aa3eab1e2662aafdfbb00f7929",
                           "smiles-only QM9 copy in the priorlab shared data root"),))],
    # MOSES as shipped in the molsets package (molecularsets/moses, column SMILES); digests
    # computed from the shared data root's copies (2026-11-27).
    "moses": [RemoteFile(
        name=f"moses {split}.csv.gz",
        url=f"https://raw.githubusercontent.com/molecularsets/moses/master/moses/dataset/data/{split}.csv.gz",
        relpath=f"moses/{split}.csv.gz", sha256=sha256)
        for split, sha256 in (
            ("train", "786f0313aa6b9ba5514df685f885742a70ea8d86f1a4fa48115f7f80a634265c"),
            ("test", "f896fbf3764f88d94670b9959e5872c600c12152a18233823e820761b7a791b2"),
            ("test_scaffolds", "adffb2192c1bfe31ab0e13154d4af19a37dc18bdbf3cd7b4491e04405128adde"),
        )],
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


def resolve_mirror(mirror: str | None = None) -> str | None:
    """The mirror to download from: ``mirror`` if given, else ``$PRIORLAB_DATA_MIRROR``, else None.

    A mirror is a ``file://``, ``http://`` or ``https://`` URL of a folder laid out like a data
    root. Empty strings count as unset. Anything else raises :class:`MirrorError`.
    """
    given = mirror if mirror is not None else os.environ.get(MIRROR_ENV_VAR, "")
    if not given:
        return None
    source = "the mirror" if mirror is not None else f"${MIRROR_ENV_VAR}"
    parsed = urllib.parse.urlsplit(given)
    if parsed.scheme not in ("file", "http", "https"):
        hint = (f" For a local folder write it as a URL: {Path(given).expanduser().resolve().as_uri()}"
                if not parsed.scheme else "")
        raise MirrorError(
            f"{source}={given!r} is not a usable mirror: it must be a file://, http:// or "
            f"https:// URL of a folder laid out like a data root.{hint}"
        )
    if parsed.scheme == "file" and (parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/")):
        raise MirrorError(
            f"{source}={given!r} is not a usable mirror: a file:// mirror needs an absolute "
            f"path, e.g. file:///srv/priorlab-data (three slashes)."
        )
    return given.rstrip("/")


def mirror_url(mirror: str, remote: RemoteFile) -> str:
    """Where ``remote`` lives under ``mirror``: ``<mirror>/<relpath>`` (path segments quoted)."""
    return f"{mirror.rstrip('/')}/{urllib.parse.quote(remote.relpath)}"


def _download_one(remote: RemoteFile, dest: Path, progress: bool, mirror: str | None) -> None:
    url = mirror_url(mirror, remote) if mirror else remote.url
    accepted = remote.accepted()
    hashers = {d.algorithm: hashlib.new(d.algorithm) for d in accepted}
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=_TIMEOUT_S) as resp:
                length = resp.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                received = 0
                with tqdm(
                    total=total, unit="B", unit_scale=True, unit_divisor=1024,
                    desc=remote.name, disable=not progress, leave=False,
                ) as bar:
                    while chunk := resp.read(_CHUNK):
                        out.write(chunk)
                        for hasher in hashers.values():
                            hasher.update(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
                if total is not None and received != total:
                    raise DownloadError(
                        f"download of {url} was cut short: got {received} of {total} bytes."
                    )
        except DownloadError:
            raise
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as err:
            if mirror:
                fix = (f"Check that the mirror {mirror} holds {remote.relpath} (a mirror is laid "
                       f"out like a data root), or unset {MIRROR_ENV_VAR} to download from the "
                       f"canonical address {remote.url}.")
            else:
                fix = (f"Check your network connection and retry. Without internet access you can "
                       f"copy the file there by hand instead: put a copy of "
                       f"{Path(remote.relpath).name} at {dest}, or download from a local copy "
                       f"with {MIRROR_ENV_VAR}=file:///path/to/a/data/root.")
            raise DownloadError(
                f"could not download {url}\n  to {dest}\n  reason: {err}\n{fix}"
            ) from err

        if accepted:
            got = {algo: h.hexdigest() for algo, h in hashers.items()}
            if not any(got[d.algorithm] == d.hexdigest for d in accepted):
                listed = "\n".join(f"  {d.algorithm} {d.hexdigest}  ({d.origin})" for d in accepted)
                received_digests = ", ".join(f"{algo} {hexd}" for algo, hexd in sorted(got.items()))
                raise ChecksumError(
                    f"checksum mismatch for {url}: got {received_digests}; accepted digests:\n"
                    f"{listed}\nThe download was discarded and nothing was written to {dest}. "
                    f"Retry; if it persists the source file changed, so copy a known-good "
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
    mirror: str | None = None,
) -> list[Path]:
    """Download each ``RemoteFile`` to ``dest_dir / relpath``; return the destination paths.

    Files already present are kept (after a sanity check, see the module docstring) unless
    ``force`` is true; a call that finds every file present writes nothing. With a ``mirror``
    (see :func:`resolve_mirror`; ``None`` reads ``$PRIORLAB_DATA_MIRROR``) each file comes from
    ``<mirror>/<relpath>``. Raises :class:`DownloadError` (or its subclasses
    :class:`ChecksumError`, :class:`MirrorError`) if a download fails, and
    :class:`InvalidFileError` if a present file is broken.
    """
    mirror = resolve_mirror(mirror)
    dest_dir = Path(dest_dir).expanduser().resolve()
    paths = []
    for remote in files:
        dest = dest_dir / remote.relpath
        if dest.exists() and not force:
            _check_existing(dest, remote)
            _say(f"present, kept: {dest}", progress)
        else:
            source = mirror_url(mirror, remote) if mirror else remote.url
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise DownloadError(
                    f"cannot create {dest.parent} to download {source} into: {err}. "
                    f"Choose a writable data root with --data-dir or PRIORLAB_DATA_DIR."
                ) from err
            _say(f"downloading {source} -> {dest}", progress)
            _download_one(remote, dest, progress, mirror)
            _say(f"downloaded: {dest}", progress)
        paths.append(dest)
    return paths


def download_dataset(
    name: str,
    data_root: str | os.PathLike,
    force: bool = False,
    *,
    progress: bool = True,
    mirror: str | None = None,
) -> list[Path]:
    """Fetch every file of dataset ``name`` into ``data_root``; return their paths.

    Files already present are kept and reported as present. ``mirror`` (default:
    ``$PRIORLAB_DATA_MIRROR``) replaces the canonical addresses, see :func:`fetch`. Unknown
    names raise ValueError.
    """
    if name not in DATASETS:
        known = ", ".join(sorted(DATASETS))
        raise ValueError(f"unknown dataset {name!r}; known datasets: {known}")
    return fetch(DATASETS[name], data_root, force=force, progress=progress, mirror=mirror)

"""Where priorlab looks for datasets, and where it keeps decoded caches.

Every dataset used by the thesis experiments (Babu, TTIC 2025) lives under one *data root*
in its canonical on-disk format, e.g. the Omniglot zips behind the online few-shot protocol of
Ch. 2 Sec. 2.3.1 (App. A.1.1) under ``<data root>/omniglot/``. This module only decides paths; it never downloads anything and
creates nothing at import time.

Data root precedence (first that is set wins)::

    1. an explicit value, e.g. ``priorlab ... --data-dir DIR``
    2. the environment variable ``PRIORLAB_DATA_DIR``
    3. ``~/.cache/priorlab``

Relative paths are made absolute against the current working directory at the moment they are
resolved, so the path handed to a Ray worker (which runs in another directory) still points at
the same place.

Decoded caches (e.g. Omniglot resized to 28x28 as one ``.npz``) go to, in order:
``$PRIORLAB_CACHE_DIR/<dataset>``, else ``<data root>/<dataset>/cache`` when that can be
written, else ``~/.cache/priorlab/cache/<dataset>``. A data root may therefore be read-only
(a shared mount, CI).

Usage::

    from priorlab.data.root import resolve_data_root, resolve_cache_dir
    root = resolve_data_root(args.data_dir)          # Path, absolute, not created
    cache = resolve_cache_dir(root, "omniglot")      # Path, created
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Iterable

ENV_VAR = "PRIORLAB_DATA_DIR"
CACHE_ENV_VAR = "PRIORLAB_CACHE_DIR"

DOWNLOAD_COMMAND = "priorlab data download {dataset}"


def default_data_root() -> Path:
    """``~/.cache/priorlab`` (absolute; not created)."""
    return Path.home() / ".cache" / "priorlab"


def _absolute(path: str | os.PathLike) -> Path:
    # resolve() also makes relative paths absolute against the *current* cwd.
    return Path(path).expanduser().resolve()


def resolve_data_root(cli_value: str | os.PathLike | None = None) -> Path:
    """Return the absolute data root: ``cli_value`` > ``$PRIORLAB_DATA_DIR`` > ``~/.cache/priorlab``.

    Empty strings count as unset. The directory is not created and need not exist.
    """
    if cli_value is not None and str(cli_value) != "":
        return _absolute(cli_value)
    env = os.environ.get(ENV_VAR, "")
    if env:
        return _absolute(env)
    return _absolute(default_data_root())


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _usable_dir(path: Path) -> bool:
    """True if ``path`` can be created (if needed) and written to.

    A directory whose permission bits grant write to nobody is treated as read-only even when
    we run as root (root ignores the bits, but the owner of a shared data root set them for a
    reason).
    """
    anchor = _nearest_existing(path)
    try:
        mode = anchor.stat().st_mode
    except OSError:
        return False
    if not stat.S_ISDIR(mode):
        return False
    if not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        return False
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError:
        return False
    return True


def resolve_cache_dir(data_root: str | os.PathLike, dataset: str) -> Path:
    """Return (and create) the directory for decoded caches of ``dataset``.

    ``$PRIORLAB_CACHE_DIR/<dataset>`` if that variable is set; otherwise
    ``<data_root>/<dataset>/cache`` if it can be created and written; otherwise
    ``~/.cache/priorlab/cache/<dataset>``.
    """
    if not dataset or "/" in dataset or "\\" in dataset:
        raise ValueError(f"dataset must be a plain folder name like 'omniglot', got {dataset!r}")
    env = os.environ.get(CACHE_ENV_VAR, "")
    if env:
        cache = _absolute(env) / dataset
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OSError(
                f"cannot create the cache directory {cache} (from ${CACHE_ENV_VAR}={env!r}): "
                f"{err}. Point {CACHE_ENV_VAR} at a writable directory, or unset it to use "
                f"<data root>/{dataset}/cache or ~/.cache/priorlab/cache/{dataset}."
            ) from err
        return cache

    in_root = _absolute(data_root) / dataset / "cache"
    if _usable_dir(in_root):
        return in_root

    fallback = _absolute(default_data_root()) / "cache" / dataset
    try:
        fallback.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OSError(
            f"no writable cache directory for {dataset!r}: {in_root} is read-only and "
            f"{fallback} cannot be created ({err}). Set {CACHE_ENV_VAR} to a writable directory."
        ) from err
    return fallback


class MissingDataError(FileNotFoundError):
    """A dataset's files are not in the data root.

    The message names every missing file, the data root that was searched, and how to fix it
    (``priorlab data download <dataset>``, ``--data-dir`` or ``PRIORLAB_DATA_DIR``).
    """

    def __init__(self, dataset: str, data_root: str | os.PathLike, missing: Iterable[str | os.PathLike]):
        self.dataset = dataset
        self.data_root = Path(data_root)
        self.missing = [Path(p) for p in missing]
        listed = "\n".join(f"  - {p}" for p in self.missing)
        command = DOWNLOAD_COMMAND.format(dataset=dataset)
        from priorlab.data.download import DATASETS  # lazy: download imports this module's package

        if dataset in DATASETS:
            fetch = f"  * download it: `{command}` (add `--data-dir DIR` to put it elsewhere), or\n"
        else:
            fetch = (f"  * fetch it from its publishers (there is no automatic download of {dataset}: "
                     f"see docs/data.md for where it comes from and its layout), or\n")
        message = (
            f"{dataset} data not found in the data root {self.data_root}.\n"
            f"Missing file(s):\n{listed}\n"
            f"To fix this, either:\n"
            f"{fetch}"
            f"  * point priorlab at a data root that already holds it: pass `--data-dir DIR` "
            f"or set {ENV_VAR}=DIR (the data root is the folder that contains '{dataset}/'), or\n"
            f"  * copy the files above into place by hand (offline machines)."
        )
        super().__init__(message)

    def __reduce__(self):  # keep the exception picklable (e.g. raised inside a Ray worker)
        return (type(self), (self.dataset, self.data_root, self.missing))

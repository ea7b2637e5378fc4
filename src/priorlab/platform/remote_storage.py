"""Experiment folders and teacher stores on shared storage (docs/cluster.md, "Shared storage").

On a cluster, the nodes and the person who started the work need one place where results land:
a pyarrow filesystem URI (``s3://bucket/prefix``, ``gs://bucket/prefix``, ``file:///path``) or a
folder every node mounts at the same path. The rule is the teacher store's
(``methods/fields/store.py``): a string with ``://`` is a URI, opened lazily with
``pyarrow.fs.FileSystem.from_uri`` (credentials come from the environment, as pyarrow reads
them); anything else is a local path.

* :func:`mirror` copies a local folder (an experiment being written on the head) to a URI;
* :func:`pull` copies a folder (an experiment, a teacher store) from a URI to local disk.

Both copy one file at a time and publish each file whole: on object stores (S3, GCS, Azure) an
object appears only when its upload completes; elsewhere each file is written to a hidden
``.<name>.<random>.tmp`` beside its destination and renamed into place. A reader of the
destination therefore never sees half a parquet file. Files deeper in the tree go first, so a
row of ``results.parquet`` is published after the checkpoint it names. Unchanged files (same
size, destination not older than the source) are skipped, so calling :func:`mirror` after each
finished trial costs little. Hidden ``*.tmp`` files (another writer's file in flight) are never
copied, and nothing at the destination is deleted.

    from priorlab.platform.remote_storage import mirror, pull
    mirror("runs/memory-label-injection-20261206", "s3://bucket/runs/memory-label-injection-20261206")
    pull("s3://bucket/teachers", "teachers")            # or: priorlab pull s3://bucket/teachers teachers

Pure pyarrow, no Ray.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from dataclasses import dataclass, field
from typing import Callable

import pyarrow as pa
import pyarrow.fs as pafs

CHUNK = 8 << 20
"""Bytes per read/write while copying (8 MiB)."""

_LOOKUPS = 32
"""Up to this many files, the destination is asked about each; beyond, it is listed once."""

_RECOPIES = 3
"""Copies of a file that changed while it was being copied, before giving up on matching it."""

_WHOLE_ON_CLOSE = ("s3", "gcs", "abfs")
"""pyarrow filesystems whose objects appear only when the upload completes."""


class StorageError(ValueError):
    """Shared storage that cannot be opened, read or written; the message names the path."""


@dataclass
class SyncReport:
    """What :func:`mirror` or :func:`pull` did, by path relative to the folder copied."""

    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """unchanged since the last copy"""
    vanished: list[str] = field(default_factory=list)
    """listed, then deleted by their writer before they could be read (e.g. an old checkpoint)"""
    bytes: int = 0


def is_uri(target: str | os.PathLike) -> bool:
    """True for ``scheme://...`` (s3, gs, file, hdfs...); False for a local path."""
    return "://" in os.fspath(target)


def join(target: str | os.PathLike, *parts: str) -> str:
    """``target`` / parts, keeping a URI a URI (``s3://b/runs`` + ``exp`` -> ``s3://b/runs/exp``)."""
    target = os.fspath(target)
    if is_uri(target):
        return posixpath.join(target.rstrip("/"), *parts)
    return os.path.join(target, *parts)


def filesystem_and_path(target: str | os.PathLike,
                        filesystem: pafs.FileSystem | None = None) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem holding ``target`` and the path on it.

    With ``filesystem`` given, ``target`` is already a path on it (no scheme). A local path is
    made absolute (``~`` expanded). A URI is opened with ``FileSystem.from_uri``, which for
    ``s3://`` may look the bucket's region up over the network."""
    target = os.fspath(target)
    if not target:
        raise StorageError("the storage location is empty; pass a folder or a URI such as "
                           "s3://bucket/runs")
    if filesystem is not None:
        return filesystem, target.rstrip("/") or target
    if not is_uri(target):
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(target))
    try:
        fs, path = pafs.FileSystem.from_uri(target)
    except (pa.ArrowException, OSError, ValueError) as err:
        raise StorageError(f"{target}: pyarrow cannot open this URI ({err}); pass a local folder "
                           "or a URI such as s3://bucket/runs, gs://bucket/runs or "
                           "file:///shared/runs, with that filesystem's credentials set in the "
                           "environment") from None
    return fs, path.rstrip("/") or path


def exists(target: str | os.PathLike, filesystem: pafs.FileSystem | None = None) -> bool:
    """Whether anything (a file or a folder) is at ``target``."""
    fs, path = filesystem_and_path(target, filesystem)
    try:
        return fs.get_file_info(path).type != pafs.FileType.NotFound
    except (OSError, pa.ArrowException) as err:
        raise StorageError(f"cannot look at {target}: {err}") from None


def list_folder(target: str | os.PathLike, filesystem: pafs.FileSystem | None = None) -> list[str]:
    """Names of the entries directly in the folder ``target`` (sorted; [] if it does not exist)."""
    fs, path = filesystem_and_path(target, filesystem)
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except (OSError, pa.ArrowException) as err:
        raise StorageError(f"cannot list {target}: {err}") from None
    return sorted(posixpath.basename(i.path.rstrip("/")) for i in infos)


Include = Callable[[str], bool]
"""Which files to copy, by path relative to the folder copied (``/``-separated)."""


def top_level(rel: str) -> bool:
    """An ``include`` for the files directly in the folder (an experiment's study.json,
    results.parquet, history.parquet, optuna.db, report), not its checkpoints."""
    return "/" not in rel


def mirror(local_dir: str | os.PathLike, target: str | os.PathLike, *,
           filesystem: pafs.FileSystem | None = None, only_changed: bool = True,
           include: Include | None = None) -> SyncReport:
    """Copy the local folder ``local_dir`` (the files ``include`` accepts) to ``target`` (a URI,
    a path, or a path on ``filesystem``); see the module docstring for what a reader of
    ``target`` can rely on."""
    src = os.path.abspath(os.path.expanduser(os.fspath(local_dir)))
    if not os.path.isdir(src):
        raise StorageError(f"{local_dir} is not a folder; mirror copies a folder (an experiment)")
    dst_fs, dst = filesystem_and_path(target, filesystem)
    if isinstance(dst_fs, pafs.LocalFileSystem) and _same_or_inside(dst, src):
        raise StorageError(f"cannot mirror {src} into itself ({target})")
    return _sync(pafs.LocalFileSystem(), src, dst_fs, dst, only_changed, include,
                 shown_src=src, shown_dst=os.fspath(target))


def pull(source: str | os.PathLike, local_dir: str | os.PathLike, *,
         filesystem: pafs.FileSystem | None = None, only_changed: bool = True,
         include: Include | None = None) -> SyncReport:
    """Copy ``source`` (a folder or one file: a URI, a path, or a path on ``filesystem``; of a
    folder, the files ``include`` accepts) into the local folder ``local_dir``, created if
    needed; a file lands as ``local_dir/<its name>``."""
    src_fs, src = filesystem_and_path(source, filesystem)
    dst = os.path.abspath(os.path.expanduser(os.fspath(local_dir)))
    if isinstance(src_fs, pafs.LocalFileSystem) and (_same_or_inside(dst, src) or _same_or_inside(src, dst)):
        raise StorageError(f"{source} and {local_dir} overlap; pull into a folder outside the source")
    if os.path.isfile(dst):
        raise StorageError(f"{local_dir} is a file; pass a folder to pull into")
    return _sync(src_fs, src, pafs.LocalFileSystem(), dst, only_changed, include,
                 shown_src=os.fspath(source), shown_dst=dst)


# ---- the copy ----------------------------------------------------------------------------------

def _same_or_inside(path: str, folder: str) -> bool:
    path, folder = os.path.abspath(path), os.path.abspath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _in_flight(name: str) -> bool:
    """A hidden temporary file of an atomic writer (ours, the results and teacher stores')."""
    return name.startswith(".") and name.endswith(".tmp")


def _rel(path: str, root: str) -> str:
    root = root.rstrip("/")
    return path[len(root) + 1:] if root and path.startswith(root + "/") else path.lstrip("/")


def _files(fs: pafs.FileSystem, root: str, shown: str, *,
           must_exist: bool) -> tuple[bool, dict[str, pafs.FileInfo]]:
    """Whether ``root`` is a file, and relative path -> FileInfo of every file under ``root``
    (of ``root`` itself when it is a file), leaving out other writers' files in flight."""
    try:
        top = fs.get_file_info(root)
        if top.type == pafs.FileType.File:
            return True, {posixpath.basename(root.replace(os.sep, "/")): top}
        if top.type == pafs.FileType.NotFound:
            if must_exist:
                raise StorageError(f"{shown} does not exist (nothing to copy); check the path "
                                   "and that your credentials can see it")
            return False, {}
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    except (OSError, pa.ArrowException) as err:
        raise StorageError(f"cannot list {shown}: {err}") from None
    found = {}
    for info in infos:
        rel = _rel(info.path, root)
        if info.type == pafs.FileType.File and not any(_in_flight(p) for p in rel.split("/")):
            found[rel] = info
    return False, found


def _unchanged(src: pafs.FileInfo, dst: pafs.FileInfo | None) -> bool:
    if dst is None or dst.size != src.size or src.mtime is None or dst.mtime is None:
        return False
    return dst.mtime >= src.mtime


def _whole_on_close(fs: pafs.FileSystem) -> bool:
    base = fs.base_fs if isinstance(fs, pafs.SubTreeFileSystem) else fs
    return base.type_name in _WHOLE_ON_CLOSE


def _sync(src_fs, src_root, dst_fs, dst_root, only_changed, include, *, shown_src,
          shown_dst) -> SyncReport:
    src_is_file, sources = _files(src_fs, src_root, shown_src, must_exist=True)
    if include is not None and not src_is_file:
        sources = {rel: info for rel, info in sources.items() if include(rel)}
    join = os.path.join if isinstance(dst_fs, pafs.LocalFileSystem) else posixpath.join
    existing = {}
    if only_changed and len(sources) <= _LOOKUPS:       # a few files: one look-up each
        paths = [join(dst_root, *rel.split("/")) for rel in sources]
        try:
            infos = dst_fs.get_file_info(paths) if paths else []
        except (OSError, pa.ArrowException) as err:
            raise StorageError(f"cannot look at {shown_dst}: {err}") from None
        existing = {rel: i for rel, i in zip(sources, infos) if i.type == pafs.FileType.File}
    elif only_changed:                                  # many: one listing of the destination
        existing = _files(dst_fs, dst_root, shown_dst, must_exist=False)[1]
    report = SyncReport()
    # Deepest first: a summary file at the top (results.parquet) lands after what it points to.
    for rel in sorted(sources, key=lambda r: (-r.count("/"), r)):
        info = sources[rel]
        if only_changed and _unchanged(info, existing.get(rel)):
            report.skipped.append(rel)
            continue
        src = src_root if src_is_file else info.path
        dst = join(dst_root, *rel.split("/"))
        try:
            n = _copy_file(src_fs, src, dst_fs, dst)
            # A source rewritten in place while it was read: copy it again (bounded), or the
            # destination would look newer than a source it does not match.
            for _ in range(_RECOPIES):
                now = src_fs.get_file_info(src)
                if (now.size, now.mtime) == (info.size, info.mtime):
                    break
                info = now
                n = _copy_file(src_fs, src, dst_fs, dst)
        except FileNotFoundError:
            report.vanished.append(rel)
            continue
        except (OSError, pa.ArrowException) as err:
            raise StorageError(f"could not copy {rel} from {shown_src} to {shown_dst}: {err}; check "
                               "that the destination is writable (permissions, credentials, "
                               f"space). {len(report.copied)} file(s) were copied before it") from None
        report.copied.append(rel)
        report.bytes += n
    return report


def _copy_file(src_fs: pafs.FileSystem, src: str, dst_fs: pafs.FileSystem, dst: str) -> int:
    """Copy one file, published whole (see the module docstring); returns the bytes copied.
    FileNotFoundError when ``src`` disappeared since it was listed."""
    split = os.path.split if isinstance(dst_fs, pafs.LocalFileSystem) else posixpath.split
    folder, name = split(dst)
    if folder:
        dst_fs.create_dir(folder, recursive=True)
    direct = _whole_on_close(dst_fs)
    join = os.path.join if isinstance(dst_fs, pafs.LocalFileSystem) else posixpath.join
    tmp = dst if direct else join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
    try:
        source = src_fs.open_input_stream(src)
    except (OSError, pa.ArrowException) as err:
        if src_fs.get_file_info(src).type == pafs.FileType.NotFound:
            raise FileNotFoundError(src) from err
        raise
    total = 0
    try:
        with source, dst_fs.open_output_stream(tmp) as out:
            while chunk := source.read(CHUNK):
                out.write(chunk)
                total += len(chunk)
        if not direct:
            dst_fs.move(tmp, dst)
    except BaseException:
        if not direct:
            try:
                dst_fs.delete_file(tmp)
            except (OSError, pa.ArrowException):
                pass                                # never created, or already moved
        raise
    return total

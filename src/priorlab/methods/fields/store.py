"""The teacher store: finished teacher NeRFs on any pyarrow filesystem (thesis Ch. 4, Fig. 4.2).

Stage 1 of HyperFields fits one teacher NeRF per prompt (Sec. 4.3.3); stage 2 distils them all
into the hypernetwork. The store is where stage 1 leaves its teachers and stage 2 finds them.
Pure I/O (no Ray): a local folder or any URI ``pyarrow.fs.FileSystem.from_uri`` understands
(``s3://bucket/teachers``, ``gs://...``, ``file:///...``)::

    <store>/<slug>/model.safetensors   the NeRFField's state_dict (safetensors: no pickle)
    <store>/<slug>/meta.json           prompt, slug, objective, teacher_config, field_config,
                                       steps, seconds, psnr (held-out, or null), finished (UTC),
                                       model_sha256 (of model.safetensors)
    <store>/teachers.parquet           one row per finished teacher: slug, prompt, objective,
                                       steps, seconds, psnr, path, finished

Each file is written to a uniquely named hidden temporary file in its own folder and moved into
place; ``meta.json`` goes last, so its presence marks a finished teacher and a writer killed
mid-save leaves an unfinished one (ignored, replaced by the next save of that slug). A save
only ever writes inside its own slug's folder. ``teachers.parquet`` is derived from the folders
(``rebuild_index``), so it can always be thrown away and rebuilt.

    store = TeacherStore("s3://bucket/teachers")
    store.check_writable()                          # before spending GPU hours
    store.save(scene.slug, result.field, {"prompt": scene.prompt, "objective": "reconstruction",
               "teacher_config": cfg, "steps": 2000, "seconds": 95.0, "psnr": 31.2})
    field, meta = store.load("red-torus")
    store.rebuild_index()                           # pandas.DataFrame, also teachers.parquet

One writer per slug at a time (the farm's job): two concurrent saves of one slug may pair one's
weights with the other's meta.json, which ``load`` then reports through ``model_sha256``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import posixpath
import re
import uuid
from datetime import datetime, timezone
from typing import Any, Mapping

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from priorlab.methods.configuration import ConfigError, config_from_dict, config_to_dict
from priorlab.methods.fields.config import FieldConfig
from priorlab.methods.fields.field import NeRFField
from priorlab.methods.fields.hashgrid import TorchHashGrid

log = logging.getLogger(__name__)

MODEL = "model.safetensors"
META = "meta.json"
INDEX = "teachers.parquet"
REQUIRED_META = ("prompt", "objective", "teacher_config", "steps", "seconds")
"""Keys the caller's ``meta`` must hold; ``psnr`` defaults to None, other keys are kept."""
INDEX_SCHEMA = pa.schema([("slug", pa.string()), ("prompt", pa.string()),
                          ("objective", pa.string()), ("steps", pa.int64()),
                          ("seconds", pa.float64()), ("psnr", pa.float64()),
                          ("path", pa.string()), ("finished", pa.string())])
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class StoreError(ValueError):
    """A store that cannot be used, or a teacher in it that is missing or damaged."""


class TeacherStore:
    """Finished teachers under ``uri`` (a local path or a pyarrow filesystem URI)."""

    def __init__(self, uri: str | os.PathLike):
        uri = os.fspath(uri)
        if not uri:
            raise StoreError("the teacher store URI is empty; pass a folder or e.g. s3://bucket/teachers")
        self.uri = uri
        self._local = "://" not in uri
        # resolved lazily: from_uri may reach the network (an S3 region look-up)
        self._fs: pafs.FileSystem | None = None
        self._root = os.path.abspath(os.path.expanduser(uri)) if self._local else None

    def __repr__(self) -> str:
        return f"TeacherStore({self.uri!r})"

    def __getstate__(self) -> dict[str, Any]:      # ship the URI to workers, not a live client
        return {**self.__dict__, "_fs": None}

    # ---- paths ---------------------------------------------------------------------------

    @property
    def fs(self) -> pafs.FileSystem:
        if self._fs is None:
            if self._local:
                self._fs = pafs.LocalFileSystem()
            else:
                try:
                    self._fs, root = pafs.FileSystem.from_uri(self.uri)
                except (pa.ArrowException, OSError, ValueError) as err:
                    raise StoreError(f"teacher store {self.uri!r}: pyarrow cannot open this URI "
                                     f"({err}); pass a local folder or a URI such as "
                                     "s3://bucket/teachers, with that filesystem's credentials "
                                     "set in the environment") from None
                self._root = root.rstrip("/") or root
        return self._fs

    @property
    def root(self) -> str:
        """The store's folder as a path on ``fs`` (no scheme)."""
        self.fs  # noqa: B018 - resolves _root for URIs
        return self._root

    def _path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts) if not self._local else os.path.join(self.root, *parts)

    def _display(self, *parts: str) -> str:
        """A path as a user would type it (with the URI's scheme), for messages and the index."""
        if self._local:
            return self._path(*parts)
        return posixpath.join(self.uri.rstrip("/"), *parts)

    def _check_slug(self, slug: str) -> None:
        if not isinstance(slug, str) or not _SLUG.match(slug) or slug == INDEX:
            raise StoreError(f"teacher slug {slug!r} is not a usable folder name: use letters, "
                             "digits, '-', '_' and '.', not starting with '.' or '-' "
                             "(a scene's slug, e.g. 'red-torus')")

    # ---- small I/O helpers ---------------------------------------------------------------

    def _write_atomic(self, path: str, data: bytes) -> None:
        """``data`` to a unique hidden sibling of ``path``, then moved onto ``path``."""
        folder, name = posixpath.split(path) if not self._local else os.path.split(path)
        tmp = self._join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
        try:
            with self.fs.open_output_stream(tmp) as out:
                out.write(data)
            self.fs.move(tmp, path)
        except (OSError, pa.ArrowException) as err:
            try:
                self.fs.delete_file(tmp)
            except (OSError, pa.ArrowException):
                pass                                 # never written, or already moved
            raise StoreError(f"could not write {self._rel_display(path)}: {err}; check that the "
                             f"store {self.uri!r} is writable (TeacherStore.check_writable) and "
                             "has space") from None

    def _join(self, folder: str, name: str) -> str:
        return os.path.join(folder, name) if self._local else posixpath.join(folder, name)

    def _rel_display(self, path: str) -> str:
        if self._local or not path.startswith(self.root):
            return path
        return self.uri.rstrip("/") + path[len(self.root):]

    def _read(self, path: str) -> bytes:
        with self.fs.open_input_stream(path) as src:
            return src.read()

    def _file_type(self, path: str) -> pafs.FileType:
        try:
            return self.fs.get_file_info(path).type
        except (OSError, pa.ArrowException) as err:
            raise StoreError(f"cannot read the teacher store at {self._rel_display(path)}: {err}") from None

    # ---- writing -------------------------------------------------------------------------

    def check_writable(self) -> None:
        """Create the store's folder if needed, write and delete a probe file.

        Raises StoreError naming the URI and the filesystem's reason; on failure nothing is left
        behind (a folder this call created is removed again)."""
        root = self.root
        existed = self._file_type(root)
        if existed == pafs.FileType.File:
            raise StoreError(f"teacher store {self.uri!r} is a file, not a folder; pass a folder "
                             "(it is created if missing)")
        probe = self._path(f".probe-{uuid.uuid4().hex}")
        try:
            self.fs.create_dir(root, recursive=True)
            with self.fs.open_output_stream(probe) as out:
                out.write(b"priorlab teacher store probe\n")
            self.fs.delete_file(probe)
        except (OSError, pa.ArrowException) as err:
            if existed == pafs.FileType.NotFound:
                self._remove_if_empty(root)
            raise StoreError(f"teacher store {self.uri!r} is not writable: {err}; pass a folder "
                             "you can write to (or fix its permissions / credentials)") from None

    def _remove_if_empty(self, folder: str) -> None:
        try:
            if self.fs.get_file_info(folder).type == pafs.FileType.Directory and not \
                    self.fs.get_file_info(pafs.FileSelector(folder, recursive=True)):
                self.fs.delete_dir(folder)
        except (OSError, pa.ArrowException):
            pass                                     # best effort: never mask the real error

    def save(self, slug: str, field: NeRFField, meta: Mapping[str, Any]) -> str:
        """Store a finished teacher under ``slug``; returns its folder (as a URI for remote stores).

        ``meta`` must hold ``REQUIRED_META`` (``teacher_config`` may be the dataclass) and may
        hold ``psnr`` (held-out dB, or None) and further JSON-able keys. ``slug``,
        ``field_config`` (from ``field.cfg``, with the hash-grid backend it actually ran),
        ``finished`` and ``model_sha256`` are filled in here. A previous teacher of the same slug
        is replaced; nothing outside ``<store>/<slug>/`` is written or deleted.
        """
        self._check_slug(slug)
        missing = [k for k in REQUIRED_META if k not in meta]
        if missing:
            raise StoreError(f"meta for teacher {slug!r} lacks {missing} (it has {sorted(meta)}); "
                             f"pass {list(REQUIRED_META)} and optionally 'psnr'")
        state, fcfg = field_parts(field)
        model_bytes = st_save(state, metadata={"format": "priorlab-teacher", "slug": slug})
        record = dict(meta)
        tcfg = record["teacher_config"]
        if dataclasses.is_dataclass(tcfg) and not isinstance(tcfg, type):
            record["teacher_config"] = config_to_dict(tcfg)
        try:
            steps, seconds = int(record["steps"]), float(record["seconds"])
            psnr = None if record.get("psnr") is None else float(record["psnr"])
        except (TypeError, ValueError) as err:
            raise StoreError(f"meta for teacher {slug!r}: steps, seconds and psnr must be numbers "
                             f"(psnr may be None): {err}") from None
        record.update(slug=slug, field_config=fcfg, steps=steps, seconds=seconds,
                      psnr=None if psnr is None or math.isnan(psnr) else psnr,
                      finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                      model_sha256=hashlib.sha256(model_bytes).hexdigest())
        try:
            meta_bytes = json.dumps(record, indent=2, sort_keys=True).encode()
        except (TypeError, ValueError) as err:
            raise StoreError(f"meta for teacher {slug!r} is not JSON-serialisable ({err}); pass "
                             "numbers, strings, lists and dicts (configs as dicts or dataclasses)") from None
        folder = self._path(slug)
        try:
            self.fs.create_dir(folder, recursive=True)
        except (OSError, pa.ArrowException) as err:
            raise StoreError(f"could not create {self._display(slug)}: {err}; check that the "
                             f"store {self.uri!r} is writable (TeacherStore.check_writable)") from None
        meta_path = self._path(slug, META)
        if self._file_type(meta_path) == pafs.FileType.File:
            try:                # unfinished again until the new pair is in place
                self.fs.delete_file(meta_path)
            except (OSError, pa.ArrowException) as err:
                raise StoreError(f"could not replace {self._display(slug, META)}: {err}") from None
        self._write_atomic(self._path(slug, MODEL), model_bytes)
        self._write_atomic(meta_path, meta_bytes)
        return self._display(slug)

    # ---- reading -------------------------------------------------------------------------

    def is_finished(self, slug: str) -> bool:
        self._check_slug(slug)
        return self._file_type(self._path(slug, META)) == pafs.FileType.File

    def finished(self) -> list[str]:
        """Slugs of finished teachers (folders holding meta.json), sorted."""
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True,
                                                            recursive=True))
        except (OSError, pa.ArrowException) as err:
            raise StoreError(f"cannot list the teacher store {self.uri!r}: {err}") from None
        root = self.root.rstrip("/") + "/"
        slugs = []
        for info in infos:
            rel = info.path[len(root):] if info.path.startswith(root) else info.path
            parts = rel.split("/")
            if (len(parts) == 2 and parts[1] == META and info.type == pafs.FileType.File
                    and _SLUG.match(parts[0])):
                slugs.append(parts[0])
        return sorted(slugs)

    def read_meta(self, slug: str) -> dict[str, Any]:
        """A finished teacher's meta.json, checked; StoreError naming the file otherwise."""
        self._check_slug(slug)
        path, shown = self._path(slug, META), self._display(slug, META)
        kind = self._file_type(path)
        if kind != pafs.FileType.File:
            folder = self._file_type(self._path(slug)) == pafs.FileType.Directory
            raise StoreError(f"{shown} is missing: teacher {slug!r} is "
                             f"{'unfinished (killed mid-save?)' if folder else 'not in this store'}; "
                             f"finished teachers: TeacherStore({self.uri!r}).finished()")
        try:
            meta = json.loads(self._read(path))
        except (OSError, pa.ArrowException) as err:
            raise StoreError(f"cannot read {shown}: {err}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise StoreError(f"{shown} is damaged: not JSON ({err}); fit this teacher again "
                             "(its next save replaces the folder's files)") from None
        if not isinstance(meta, dict):
            raise StoreError(f"{shown} is damaged: expected a JSON object, found "
                             f"{type(meta).__name__}; fit this teacher again")
        missing = [k for k in (*REQUIRED_META, "slug", "field_config") if k not in meta]
        if missing:
            raise StoreError(f"{shown} is damaged or not priorlab's: it has no {missing} "
                             f"(keys: {sorted(meta)}); fit this teacher again")
        return meta

    def load(self, slug: str) -> tuple[NeRFField, dict[str, Any]]:
        """The teacher's field (rebuilt from its stored config, weights loaded, eval mode) and meta."""
        meta = self.read_meta(slug)
        shown_meta, shown = self._display(slug, META), self._display(slug, MODEL)
        try:
            fcfg = config_from_dict(FieldConfig, meta["field_config"])
        except (ConfigError, TypeError) as err:
            raise StoreError(f"{shown_meta}: field_config cannot be loaded ({err}); it was written "
                             "by another priorlab version, or damaged") from None
        path = self._path(slug, MODEL)
        if self._file_type(path) != pafs.FileType.File:
            raise StoreError(f"{shown} is missing although meta.json is there; fit this "
                             "teacher again")
        try:
            data = self._read(path)
        except (OSError, pa.ArrowException) as err:
            raise StoreError(f"cannot read {shown}: {err}") from None
        try:
            state = st_load(data)
        except (SafetensorError, ValueError, RuntimeError, OSError) as err:
            raise StoreError(f"{shown} is damaged (truncated or not a safetensors file: {err}); "
                             "fit this teacher again") from None
        digest = meta.get("model_sha256")
        if digest is not None and hashlib.sha256(data).hexdigest() != digest:
            raise StoreError(f"{shown} does not hold the weights {shown_meta} records "
                             "(sha256 differs): damaged, or two saves of this slug ran at once; "
                             "fit this teacher again")
        mlp_dtypes = [v.dtype for k, v in state.items() if k.startswith("mlp.")]
        try:
            field = NeRFField(fcfg, dtype=mlp_dtypes[0] if mlp_dtypes else torch.float32)
        except RuntimeError as err:                  # e.g. a tcnn teacher on a machine without it
            raise StoreError(f"cannot rebuild the field of {shown_meta}: {err}") from None
        try:
            field.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise StoreError(f"{shown} does not match the field_config in {shown_meta}: "
                             f"{' '.join(str(err).split())[:500]}") from None
        return field.eval(), meta

    # ---- the index -----------------------------------------------------------------------

    def rebuild_index(self) -> pd.DataFrame:
        """Scan the finished teachers, write ``teachers.parquet`` atomically, return it."""
        rows = []
        for slug in self.finished():
            meta = self.read_meta(slug)
            psnr = meta.get("psnr")
            rows.append({"slug": slug, "prompt": str(meta["prompt"]),
                         "objective": str(meta["objective"]), "steps": int(meta["steps"]),
                         "seconds": float(meta["seconds"]),
                         "psnr": None if psnr is None else float(psnr),
                         "path": self._display(slug), "finished": str(meta.get("finished", ""))})
        table = pa.Table.from_pylist(rows, schema=INDEX_SCHEMA)
        sink = pa.BufferOutputStream()
        try:
            self.fs.create_dir(self.root, recursive=True)
        except (OSError, pa.ArrowException) as err:
            raise StoreError(f"teacher store {self.uri!r} is not writable: {err}") from None
        pq.write_table(table, sink)
        self._write_atomic(self._path(INDEX), sink.getvalue().to_pybytes())
        return table.to_pandas()

    def index(self) -> pd.DataFrame:
        """``teachers.parquet``, rebuilt first when missing, unreadable, or when its slugs are
        not exactly the finished teachers (a save since the last rebuild)."""
        path = self._path(INDEX)
        if self._file_type(path) == pafs.FileType.File:
            try:
                df = pq.read_table(pa.BufferReader(self._read(path))).to_pandas()
            except (OSError, pa.ArrowException) as err:
                log.warning("%s is unreadable (%s): rebuilding it", self._display(INDEX), err)
            else:
                if list(df.columns) == INDEX_SCHEMA.names and sorted(df["slug"]) == self.finished():
                    return df
        return self.rebuild_index()


# ---- one NeRF as bytes (what the text2nerf Serve app answers) ------------------------------

def field_parts(field: NeRFField) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """What a saved NeRF is made of: its state dict (CPU, contiguous) and its field config, with
    the hash-grid backend it actually ran (teacher store and ``nerf_to_bytes`` alike)."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in field.state_dict().items()}
    fcfg = config_to_dict(field.cfg)
    fcfg["backend"] = "torch" if isinstance(field.grid, TorchHashGrid) else "tcnn"
    return state, fcfg


def nerf_to_bytes(field: NeRFField, **metadata: str) -> bytes:
    """``field`` as one safetensors file: its state dict, with its ``field_config`` (JSON) and
    ``metadata`` in the header, so :func:`nerf_from_bytes` rebuilds it from the bytes alone."""
    state, fcfg = field_parts(field)
    header = {"format": "priorlab-nerf", **{k: str(v) for k, v in metadata.items()},
              "field_config": json.dumps(fcfg, sort_keys=True)}
    return st_save(state, metadata=header)


def nerf_from_bytes(data: bytes) -> NeRFField:
    """The NeRFField :func:`nerf_to_bytes` wrote (safetensors: no pickled code is run)."""
    import struct

    try:
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + n])
        fcfg = json.loads(header["__metadata__"]["field_config"])
        state = st_load(data)
    except (struct.error, KeyError, TypeError, ValueError, SafetensorError) as err:
        raise StoreError(f"these bytes are not a NeRF written by nerf_to_bytes ({err})") from None
    field = NeRFField(config_from_dict(FieldConfig, fcfg))
    field.load_state_dict(state, strict=True)
    return field.eval()

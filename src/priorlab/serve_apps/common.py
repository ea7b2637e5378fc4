"""What both Serve apps share: checked checkpoints, strict request bodies, errors that say what
was wrong, a body-size limit and a per-request time limit.

Every request body is read by :func:`read_body` (at most ``max_body_bytes``, else 413; not JSON,
else 400) and validated by :func:`validate` against a pydantic model that forbids unknown
fields (else 422). Every error answer has the same shape::

    {"error": "views: must be at most 16 (got 40)", "field": "views",
     "errors": [{"field": "views", "message": "must be at most 16 (got 40)"}]}

so a client can show ``error`` and a program can act on ``field``.

Checkpoints are loaded by the methods' own loaders, which read tensors with
``torch.load(weights_only=True)`` or safetensors (no pickled code runs); :func:`checkpoint_sha256`
hashes every file of the folder, the apps report it at ``GET /v1/info``, and an
``expected_sha256`` given to an app builder is checked before anything is loaded.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

T = TypeVar("T", bound=BaseModel)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


class RequestError(Exception):
    """An answer other than 200: ``status`` (4xx/5xx), the offending ``field`` (or None) and a
    message that says what was wrong and how to fix it."""

    def __init__(self, status: int, message: str, field: str | None = None,
                 errors: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field
        self.errors = errors if errors is not None else [{"field": field, "message": message}]

    def body(self) -> dict[str, Any]:
        return {"error": self.message, "field": self.field, "errors": self.errors}


def error_response(err: RequestError):
    from fastapi.responses import JSONResponse

    return JSONResponse(err.body(), status_code=err.status)


class AppArgs(BaseModel):
    """The settings every app takes; each app's args model extends it (and sets its defaults)."""

    model_config = ConfigDict(extra="forbid")

    checkpoint: str = Field(description="the checkpoint folder to serve")
    expected_sha256: str | None = Field(None, description="refuse to start unless the checkpoint "
                                        "folder hashes to this (priorlab serve prints it)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    request_timeout_s: float = Field(60.0, gt=0, description="per request; a 504 after it")
    max_body_bytes: int = Field(16_384, ge=256, description="larger bodies get a 413")
    max_batch_size: int = Field(8, ge=1, description="requests per @serve.batch call (1: none)")
    batch_wait_timeout_s: float = Field(0.01, ge=0, description="longest wait for a batch to fill")

    def described(self, **limits: Any) -> dict[str, Any]:
        """The limits and batching part of ``GET /v1/info`` (``limits``: the app's own ones)."""
        return {"limits": {"max_body_bytes": self.max_body_bytes,
                           "request_timeout_s": self.request_timeout_s, **limits},
                "batching": {"max_batch_size": self.max_batch_size,
                             "batch_wait_timeout_s": self.batch_wait_timeout_s}}


class Autoscaling(BaseModel):
    """Serve's autoscaling bounds for one deployment."""

    model_config = ConfigDict(extra="forbid")

    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    target_ongoing_requests: float = Field(4.0, gt=0)

    def as_config(self) -> dict[str, Any]:
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas={self.max_replicas} is below min_replicas={self.min_replicas}")
        return self.model_dump()


def checkpoint_sha256(folder: str | os.PathLike) -> str:
    """sha256 over every file of a checkpoint folder (relative path and bytes, in sorted order),
    so a changed, added or removed file changes it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint {folder} does not exist or is not a folder")
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def verified_checkpoint(path: str | os.PathLike, expected_sha256: str | None) -> tuple[Path, str]:
    """(absolute folder, its sha256); a ValueError when ``expected_sha256`` is given and differs."""
    folder = Path(path).expanduser().resolve()
    digest = checkpoint_sha256(folder)
    if expected_sha256 and digest != expected_sha256.strip().lower():
        raise ValueError(f"checkpoint {folder} has sha256 {digest}, not the expected "
                         f"{expected_sha256}: it was changed or is another checkpoint; pass the "
                         "right folder, or the new hash as expected_sha256")
    return folder, digest


def checked_app_args(args: "AppArgs | dict", model: type["AppArgs"], method: str, writer: str):
    """The builders' prologue: ``args`` typed as ``model``, the checkpoint's hash checked and its
    kind ``method`` checked (a ValueError naming the command that writes one, ``writer``), so a
    wrong checkpoint fails where the app is built, not in a replica. Returns the args with the
    checkpoint as an absolute path (replicas may start in another working directory)."""
    from priorlab.methods.checkpoint import read_meta

    if isinstance(args, dict):
        args = model.model_validate(args)
    folder, _ = verified_checkpoint(args.checkpoint, args.expected_sha256)
    found = read_meta(folder)["method"]
    if found != method:
        raise ValueError(f"{folder} is a {found!r} checkpoint; this app serves {method!r} "
                         f"checkpoints (written by `{writer}`)")
    return args.model_copy(update={"checkpoint": str(folder)})


async def read_body(request, max_body_bytes: int) -> Any:
    """The request's JSON body: 413 when larger than ``max_body_bytes`` (checked on the declared
    length first, then on what arrives), 400 when it is not JSON."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
        raise RequestError(413, f"the body has {declared} bytes; this server takes at most "
                                f"{max_body_bytes}: send fewer or shorter inputs per request")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body_bytes:
            raise RequestError(413, f"the body is over {max_body_bytes} bytes, the most this server "
                                    "takes: send fewer or shorter inputs per request")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise RequestError(400, "the body is empty: send a JSON object (Content-Type: application/json)")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RequestError(400, f"the body is not valid JSON ({err}); send a JSON object") from None


def _field_name(loc: tuple) -> str | None:
    parts = [str(p) for p in loc if p != "__root__"]
    return ".".join(parts) if parts else None


def validate(model: type[T], data: Any) -> T:
    """``model`` from the parsed body; 422 naming each wrong field and why."""
    if not isinstance(data, dict):
        raise RequestError(422, f"the body must be a JSON object with the fields "
                                f"{sorted(model.model_fields)}, not a JSON {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        errors = []
        for e in err.errors(include_url=False):
            field = _field_name(e.get("loc", ()))
            msg = e.get("msg", "invalid")
            if e.get("type") == "extra_forbidden":
                msg = f"unknown field; the fields are {sorted(_aliases(model))}"
            elif e.get("type") == "missing":
                msg = "required"
            errors.append({"field": field, "message": msg})
        first = errors[0]
        text = "; ".join(f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors)
        raise RequestError(422, text, first["field"], errors) from None


def _aliases(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


async def within(seconds: float, work: Awaitable, what: str):
    """``await work`` or a 504 after ``seconds`` (the request's time limit)."""
    try:
        return await asyncio.wait_for(work, timeout=seconds)
    except asyncio.TimeoutError:
        raise RequestError(504, f"{what} took longer than this server's limit of {seconds:g} s "
                                "per request; ask for less (fewer views, a lower resolution, fewer "
                                "inputs) or raise request_timeout_s") from None


def isolate_failures(run: Callable[[list], list], items: list) -> list:
    """``run(items)`` for a whole batch; if it raises, each item is run alone, so an exception
    that one request's input causes fails that request only (its entry is the exception), and
    the rest of the batch is answered."""
    try:
        return list(run(items))
    except Exception as err:                            # noqa: BLE001 - retried item by item
        if len(items) == 1:
            return [err]
    out: list = []
    for item in items:
        try:
            out.extend(run([item]))
        except Exception as err:                        # noqa: BLE001 - returned to its caller
            out.append(err)
    return out


def internal_error(err: BaseException, what: str) -> RequestError:
    """A 500 for an exception the server did not expect, saying where and what."""
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return RequestError(500, f"{what} failed: {type(err).__name__}: {lines[-1] if lines else ''}"
                             "; the other requests of its batch were answered. Please report it "
                             "with the request body")


class Timer:
    """Seconds since creation, rounded for the ``timing`` part of an answer."""

    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return round(time.perf_counter() - self.start, 6)


def pick_device(name: str) -> str:
    """"auto" -> cuda when this replica has a GPU, else cpu; "cpu"/"cuda" as given."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but this replica sees no GPU; give the "
                         "deployment num_gpus (ray_actor_options) or use device 'auto'")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device {name!r}: choose auto, cpu or cuda")
    return name

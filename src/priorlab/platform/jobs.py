"""Sweeps, trainings and teacher farms submitted to a running Ray cluster as Ray Jobs (docs/cluster.md).

A Ray Job runs its entrypoint as a process on the cluster's head, started and watched by the
cluster itself: the machine that submitted it may disconnect, sleep or exit, and the sweep goes
on. This module is the client side (``priorlab submit``, ``priorlab jobs``; the command line is in
``cli_jobs.py``) and the job's own entrypoint on the head (:func:`main`)::

    priorlab submit --address http://127.0.0.1:8265 --no-wait -- \\
        sweep memory-label-injection --samples 8 --runs-dir /shared/runs
    priorlab jobs logs priorlab-sweep-20261206-101500-3f2a --follow

What runs on the head is ``python -m priorlab.platform.jobs --expect-version V -- sweep ...``:
it fails at once, naming both versions, if the cluster's priorlab is not the version that
submitted it (``ray up cluster.yaml`` syncs and reinstalls it), then runs the priorlab command,
which attaches to the cluster through the ``RAY_ADDRESS`` that Ray gives every job.

Where the Jobs API is: ``--address`` > ``RAY_API_SERVER_ADDRESS`` > ``RAY_ADDRESS``. An
``http(s)://`` URL is used as given (``ray dashboard cluster.yaml`` forwards the head's dashboard
to http://127.0.0.1:8265); ``auto`` or ``host:port`` of a head's GCS is resolved by Ray (on the
head). Unlike Ray's own client, ``--address`` wins over the environment.

Token authentication: Ray 2.60 turns it on for a ``ray start`` cluster when ``RAY_AUTH_MODE=token``
is set there (cluster.yaml does), and a client must then send the cluster's token. It is read
as Ray reads it: ``RAY_AUTH_TOKEN``, else the file named by ``RAY_AUTH_TOKEN_PATH``, else
``~/.ray/auth_token``, and sent as a bearer header even when ``RAY_AUTH_MODE`` is unset here
(Ray's client sends it only when it is set); ``RAY_AUTH_MODE=disabled`` sends none.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import time
import urllib.parse
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, TextIO

SUBMITTABLE = ("sweep", "train", "farm")
"""priorlab commands that run as a job (the ones that put work on the cluster)."""

OUTPUT_OPTION = {"sweep": "--runs-dir", "train": "--runs-dir", "farm": "--store"}
"""Where each command's results go; a job must name it (see check_command)."""

PATH_OPTIONS = {"--runs-dir": "runs_dir", "--store": "store", "--data-dir": "data_dir",
                "--prompts": "prompts", "--sd-model": "sd_model"}
"""Options of the submitted command that name paths, which the job resolves on the head."""

DEFAULT_DASHBOARD = "http://127.0.0.1:8265"
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


class JobsError(ValueError):
    """A job that cannot be submitted or found, or a cluster that cannot be reached."""


def installed_version() -> str:
    """priorlab's installed version (the distribution's metadata, as pip sees it)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("priorlab")
    except PackageNotFoundError:
        raise JobsError("priorlab is not installed as a package here (no distribution metadata); "
                        "install it with `pip install -e .` from the repository") from None


# ---- the submitted command -----------------------------------------------------------------------

def check_command(argv: list[str]) -> list[str]:
    """The priorlab command a job will run (``argv`` without a leading ``--``), checked here so
    that a mistake fails now rather than minutes later on the cluster.

    It must parse as ``priorlab <argv>``, be one of :data:`SUBMITTABLE`, name where its results
    go (:data:`OUTPUT_OPTION`) and give every path option as an absolute path or a URI: the job's
    working directory is the head's, not yours. ``--address`` is refused: the job attaches to the
    cluster it runs on."""
    argv = list(argv[1:] if argv[:1] == ["--"] else argv)
    if not argv or argv[0] not in SUBMITTABLE:
        got = f"`{argv[0]}`" if argv else "nothing"
        raise JobsError(f"submit runs one of {', '.join(SUBMITTABLE)} as a job, got {got}; e.g. "
                        "`priorlab submit -- sweep memory-label-injection --runs-dir /shared/runs`")
    from priorlab.platform.cli import build_parser

    args, extra = build_parser().parse_known_args(argv)      # argparse's usage error: exit 2
    stray = [e for e in extra if e.startswith("-") or "=" not in e]
    if stray:
        raise JobsError(f"`{argv[0]}` does not take {' '.join(stray)} (options of submit itself, "
                        "such as --address, go before the `--`)")
    if getattr(args, "address", None) is not None:
        raise JobsError(f"drop --address from the `{argv[0]}` command: a job attaches to the cluster "
                        "it runs on. Give the Jobs API address to submit instead, before the `--`")
    output = OUTPUT_OPTION[argv[0]]
    if not _given(argv, output):
        raise JobsError(f"say where the {argv[0]} writes on the cluster: add {output} with a URI "
                        f"(s3://bucket/..., gs://...) or an absolute path that every node and you "
                        "can reach (docs/cluster.md, 'Shared storage'); the job runs on the head, "
                        "where the default ./runs is in no folder of yours")
    if output == "--runs-dir" and "://" in str(getattr(args, "runs_dir", "")):
        raise JobsError(f"--runs-dir {args.runs_dir}: sweeps and trainings write to a folder, not "
                        "yet to a URI: give an absolute path every node mounts (e.g. /shared/runs) "
                        "and copy results back with `priorlab pull` (farms take --store URIs)")
    for option, dest in PATH_OPTIONS.items():
        value = getattr(args, dest, None)
        if value and _given(argv, option) and "://" not in value and not os.path.isabs(value):
            raise JobsError(f"{option} {value}: a job resolves paths on the head, not here; give "
                            "an absolute path on the cluster (the same on every node) or a URI "
                            "such as s3://bucket/...")
    return argv


def _given(argv: list[str], option: str) -> bool:
    return any(a == option or a.startswith(option + "=") for a in argv)


def entrypoint(argv: list[str], version: str) -> str:
    """The shell command the head runs for ``priorlab <argv>`` (see :func:`main`)."""
    return shlex.join(["python", "-m", "priorlab.platform.jobs", "--expect-version", version,
                       "--", *argv])


def new_job_id(argv: list[str]) -> str:
    """A readable, unique submission id: ``priorlab-sweep-20261206-101500-3f2a``."""
    return f"priorlab-{argv[0]}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"


def parse_env(pairs: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings (``--env``) as a dict; a JobsError names a malformed one."""
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not key.replace("_", "a").isalnum():
            raise JobsError(f"--env {pair!r}: write KEY=VALUE, e.g. --env PRIORLAB_DATA_DIR=/shared/data")
        env[key] = value
    return env


# ---- the cluster's Jobs API ----------------------------------------------------------------------

def resolve_address(address: str | None = None) -> str:
    """``--address`` > ``RAY_API_SERVER_ADDRESS`` > ``RAY_ADDRESS``; a JobsError if none is set."""
    found = (address or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS")
             or "").strip()
    if not found:
        raise JobsError("no cluster to talk to: pass --address (e.g. "
                        f"{DEFAULT_DASHBOARD} while `ray dashboard cluster.yaml` forwards the "
                        "head's dashboard) or set RAY_ADDRESS")
    return found.rstrip("/")


def auth_headers() -> dict[str, str]:
    """The cluster token as an ``Authorization`` header (see the module docstring), or {}."""
    if os.environ.get("RAY_AUTH_MODE", "").strip().lower() == "disabled":
        return {}
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    path = os.environ.get("RAY_AUTH_TOKEN_PATH", "").strip()
    if not token and path:
        try:
            token = Path(path).expanduser().read_text().strip()
        except OSError as err:
            raise JobsError(f"RAY_AUTH_TOKEN_PATH={path} cannot be read ({err}); point it at the "
                            "cluster's token file or unset it") from None
        if not token:
            raise JobsError(f"RAY_AUTH_TOKEN_PATH={path} is empty; it should hold the cluster's token")
    if not token:
        default = Path.home() / ".ray" / "auth_token"
        if default.is_file():
            token = default.read_text().strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


@contextmanager
def _hidden_env(*names: str) -> Iterator[None]:
    """Ray's client lets these variables override the address it is given; hide them meanwhile."""
    saved = {n: os.environ.pop(n) for n in names if n in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _http_target(url: str) -> tuple[str, int] | None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def _proxy_note(host: str) -> str:
    proxy = urllib.request.getproxies().get("http")
    if proxy and not urllib.request.proxy_bypass(host):
        return (f" HTTP_PROXY is {proxy} and {host} is not in NO_PROXY, so the request went to "
                f"that proxy: add {host} to NO_PROXY.")
    return ""


def connect(address: str | None = None):
    """A ``JobSubmissionClient`` for the cluster at ``address`` (see :func:`resolve_address`),
    sending the cluster token; JobsError with what to do when it cannot be reached."""
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    from priorlab.platform.runtime import _unreachable_reason

    url = resolve_address(address)
    target = _http_target(url)
    if "://" in url and target is None and not url.startswith("ray://"):
        raise JobsError(f"--address {url}: use the head's dashboard URL (http://HOST:8265), "
                        "`auto` on the head, or the head's HOST:6379")
    if target is not None:
        reason = _unreachable_reason(f"{target[0]}:{target[1]}")
        if reason is not None:
            raise JobsError(f"no Ray dashboard answers at {url} ({reason}). Is the cluster up, and "
                            "is its dashboard forwarded here (`ray dashboard cluster.yaml`, kept "
                            "running)?")
    try:
        with _hidden_env("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"):
            return JobSubmissionClient(url, headers=auth_headers())
    except AuthenticationError as err:
        raise JobsError(f"the cluster at {url} refused the request: {str(err).splitlines()[0]} "
                        "Get the cluster's token (`ray get-auth-token` on the head; with "
                        "cluster.yaml it is your own ~/.ray/auth_token) into ~/.ray/auth_token "
                        "here, or set RAY_AUTH_TOKEN") from None
    except ConnectionError as err:
        note = _proxy_note(target[0]) if target else ""
        raise JobsError(f"could not talk to the Ray Jobs API at {url}: {err}.{note}") from None
    except (RuntimeError, ValueError) as err:
        raise JobsError(f"the Ray Jobs API at {url} did not answer as expected: {err}") from None


def _lost(what: str, err: Exception) -> JobsError:
    return JobsError(f"{what}: lost the connection to the Ray Jobs API ({type(err).__name__}); is "
                     "the cluster up and its dashboard still forwarded (`ray dashboard "
                     "cluster.yaml`)?")


def _api_call(what: str, fn, *args, **kwargs):
    """Ray's client raises RuntimeError for any refused request and lets the requests library's
    errors through; say which job and what to do."""
    import requests

    try:
        return fn(*args, **kwargs)
    except (requests.ConnectionError, requests.Timeout) as err:
        raise _lost(what, err) from None
    except RuntimeError as err:
        text = str(err)
        if "404" in text or "does not exist" in text:
            raise JobsError(f"{what}: no such job on this cluster (`priorlab jobs list` shows "
                            "them)") from None
        raise JobsError(f"{what}: {text}") from None


def submit(client, argv: list[str], *, env: dict[str, str] | None = None,
           job_id: str | None = None, agent_wait_s: float = 60.0) -> str:
    """Submit ``priorlab <argv>`` (checked with :func:`check_command`) as a job; its id.

    A head that has just started answers "No available agent" until its job agent is up: that
    is retried for up to ``agent_wait_s`` seconds."""
    argv = check_command(argv)
    version = installed_version()
    job_id = job_id or new_job_id(argv)
    runtime_env = {"env_vars": dict(env)} if env else None
    deadline = time.monotonic() + agent_wait_s
    import requests

    while True:
        try:
            return client.submit_job(
                entrypoint=entrypoint(argv, version), submission_id=job_id,
                runtime_env=runtime_env,
                metadata={"priorlab_version": version, "priorlab_command": argv[0]})
        except (requests.ConnectionError, requests.Timeout) as err:
            raise _lost("submitting", err) from None
        except RuntimeError as err:                     # Ray's client: the API refused it
            if "No available agent" in str(err) and time.monotonic() < deadline:
                time.sleep(1.0)
                continue
            if "already exists" in str(err):
                raise JobsError(f"a job with id {job_id} already exists; choose another --job-id") from None
            raise JobsError(f"the cluster did not accept the job: {err}") from None


def status(client, job_id: str) -> str:
    """The job's status name (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED)."""
    return str(_api_call(f"job {job_id}", client.get_job_status, job_id).value)


def wait(client, job_id: str, *, timeout_s: float | None = None, poll_s: float = 2.0,
         reconnect_s: float = 30.0) -> str:
    """Poll until the job ends (or ``timeout_s`` passes); its last status. A lost connection
    (an SSH tunnel that hiccups) is retried for ``reconnect_s`` seconds before giving up."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    lost_since = None
    while True:
        try:
            now = status(client, job_id)
            lost_since = None
        except JobsError as err:
            if "lost the connection" not in str(err):
                raise
            lost_since = lost_since or time.monotonic()
            if time.monotonic() - lost_since > reconnect_s:
                raise
            now = "UNKNOWN"
        if now in TERMINAL or (deadline is not None and time.monotonic() >= deadline):
            return now
        time.sleep(poll_s)


def follow_logs(client, job_id: str, out: TextIO = sys.stdout) -> str:
    """Print the job's output as it comes until the job ends; its final status."""
    _api_call(f"job {job_id}", client.get_job_info, job_id)      # unknown id: a clear error

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()

    try:
        asyncio.run(tail())
    except Exception as err:  # noqa: BLE001 - the stream broke: polling below reports real errors
        out.write(f"[priorlab] log stream interrupted ({type(err).__name__}: {err}); waiting for "
                  "the job to end\n")
    return wait(client, job_id)


def jobs_table(client) -> list[dict[str, Any]]:
    """One row per job on the cluster, oldest first: id, status, start, end, what it runs."""
    rows = []
    for job in _api_call("listing jobs", client.list_jobs):
        rows.append({"id": job.submission_id or job.job_id, "status": str(job.status.value),
                     "start": _when(job.start_time), "end": _when(job.end_time),
                     "command": _shown_command(job.entrypoint), "message": job.message or "",
                     "start_ms": job.start_time or 0})
    return sorted(rows, key=lambda r: r["start_ms"])


def job_info(client, job_id: str) -> dict[str, Any]:
    info = _api_call(f"job {job_id}", client.get_job_info, job_id)
    return {"id": job_id, "status": str(info.status.value), "start": _when(info.start_time),
            "end": _when(info.end_time), "command": _shown_command(info.entrypoint),
            "message": info.message or "", "metadata": dict(info.metadata or {})}


def logs(client, job_id: str) -> str:
    return _api_call(f"job {job_id}", client.get_job_logs, job_id)


def stop(client, job_id: str) -> bool:
    """Ask the cluster to stop the job (SIGTERM to its process group); False if it had ended."""
    return bool(_api_call(f"job {job_id}", client.stop_job, job_id))


def _when(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) if ms else "-"


def _shown_command(entry: str | None) -> str:
    """``priorlab sweep ...`` for our entrypoints, the raw entrypoint for anyone else's."""
    words = shlex.split(entry or "")
    if words[:3] == ["python", "-m", "priorlab.platform.jobs"] and "--" in words:
        return shlex.join(["priorlab", *words[words.index("--") + 1:]])
    return entry or ""


def follow_hint(job_id: str, address: str) -> str:
    """The commands that watch, stop and collect a submitted job."""
    where = f" --address {address}" if address else ""
    return "\n".join([
        f"job:    {job_id}",
        f"follow: priorlab jobs logs {job_id} --follow{where}",
        f"status: priorlab jobs status {job_id}{where}",
        f"stop:   priorlab jobs stop {job_id}{where}",
        "results: priorlab pull <its --runs-dir or --store URI>/<name> <local folder>",
    ])


# ---- on the head: the job's entrypoint ----------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    """``python -m priorlab.platform.jobs --expect-version V -- <priorlab command>``."""
    parser = argparse.ArgumentParser(prog="python -m priorlab.platform.jobs",
                                     description="run a priorlab command as a submitted Ray Job")
    parser.add_argument("--expect-version", required=True,
                        help="priorlab version of the submitting client; a different one here fails")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    here = installed_version()
    if here != args.expect_version:
        print(f"priorlab: error: this cluster runs priorlab {here}, the job was submitted by "
              f"priorlab {args.expect_version}; sync the cluster (`ray up cluster.yaml`) or submit "
              "from a matching checkout", file=sys.stderr)
        return 2
    from priorlab.platform.cli import main as cli_main

    return cli_main(command)


if __name__ == "__main__":
    sys.exit(main())

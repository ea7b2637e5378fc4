"""Where work runs: an embedded local Ray (the default) or an existing cluster.

``--address auto`` (or ``RAY_ADDRESS``) attaches to a running cluster, e.g. the head started
by ``ray up cluster.yaml``; without it a local Ray is started on this machine's CPUs.

Ray's dashboard probes cloud metadata endpoints at start-up; :data:`OFFLINE_ENV` points those
requests at a closed loopback port so that nothing leaves the machine (see docs/offline.md).
The variables are set only when they are not already set by the user.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import warnings
from dataclasses import dataclass

OFFLINE_ENV = {
    "HTTP_PROXY": "http://127.0.0.1:9",
    "http_proxy": "http://127.0.0.1:9",
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
    "RAY_USAGE_STATS_ENABLED": "0",
}


class RuntimeUnavailable(RuntimeError):
    """Ray could not be reached or started."""


def apply_offline_env() -> None:
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


# Raylet notices that are expected on small machines and say nothing about this run's health:
# Tune's driver functions and Ray Data readers take fractional CPUs, so more Python workers
# start than the raylet's rule of thumb (its startup concurrency = the CPU count) expects.
_EXPECTED_RAYLET_NOTICES = ("worker processes have been started on node",)


LOOPBACK = "127.0.0.1"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def configure_local_ray() -> None:
    """Settings of a local (single-machine) Ray: it listens on 127.0.0.1 only (see
    docs/offline.md), and Ray Train's per-trial costs that buy nothing on one machine are cut.

    Ray has no bind-address setting: each of its servers (GCS, raylet, object manager, every
    worker's gRPC server, the dashboard agent, the runtime-env agent, the metrics exporters)
    listens on loopback when the node IP is 127.0.0.1 and on every interface otherwise. A node
    IP of 127.0.0.1 is silently replaced by the machine's address unless Ray's single-machine
    switch is off; that switch is read when ``ray`` is imported, so it is set both in the
    environment (for the processes Ray starts) and on the imported module. Only for a local
    Ray: a cluster's nodes must reach each other.
    """
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False
    # One machine: nothing to preempt (the watcher is one more actor per trial), and a finished
    # run is noticed within half a second rather than two (seconds of fixed cost per trial).
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    # Random metrics ports: fixed ones collide with another local session and are then skipped.
    os.environ.setdefault("DASHBOARD_METRIC_PORT", "0")
    os.environ.setdefault("AUTOSCALER_METRIC_PORT", "0")
    if sys.platform.startswith("linux"):
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # torch.distributed's gloo pairs


def quiet_console() -> None:
    """Keep Ray's internals off the console (they stay in the session's log files).

    Worker output is not streamed to the driver (``log_to_driver=False`` in :func:`start`),
    Tune prints its compact status table instead of a box per trial event, Ray's and Optuna's
    Python loggers only pass errors, and the raylet's expected worker-count notice is dropped
    (other raylet messages, e.g. a worker killed for memory, still print).
    """
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's status table, not per-trial boxes
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    for name in ("ray", "ray.data", "ray.train", "ray.tune", "ray.serve", "optuna"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
    except ImportError:  # optuna is a dependency; a broken install shows up elsewhere
        pass
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray(\..*)?")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"ray(\..*)?")
    _filter_raylet_notices()


def _filter_raylet_notices() -> None:
    import ray._private.worker as ray_worker  # the driver's printer of raylet messages

    original = ray_worker.print_to_stdstream
    if getattr(original, "_priorlab_filtered", False):
        return

    def printer(data, ignore_prefix: bool):
        if data.get("pid") == "raylet" and all(
                any(n in line for n in _EXPECTED_RAYLET_NOTICES) for line in data.get("lines", [])):
            return
        original(data, ignore_prefix)

    printer._priorlab_filtered = True
    ray_worker.print_to_stdstream = printer


def log_dir() -> str | None:
    """The running Ray session's log folder (where Ray's own output goes), if known."""
    try:
        import ray

        node = ray._private.worker.global_worker.node  # noqa: SLF001 - no public accessor
        return node.get_logs_dir_path() if node is not None else None
    except Exception:  # noqa: BLE001 - informational only
        return None


@dataclass
class Runtime:
    address: str | None
    local: bool
    cpus: float
    gpus: float


def _unreachable_reason(address: str, timeout: float = 3.0) -> str | None:
    """A quick TCP check of host:port addresses: Ray itself retries for minutes before failing."""
    target = address.split("://", 1)[-1]
    if target in ("auto", "local") or ":" not in target:
        return None
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return None
    except (OSError, ValueError) as err:
        return str(err)


def start(address: str | None = None, *, num_cpus: int | None = None,
          verbose: bool = False) -> Runtime:
    """Connect to ``address`` (or RAY_ADDRESS), else start a local Ray. Idempotent.

    Quiet by default: Ray's own output (worker and raylet log lines, Ray Data/Train notices)
    goes to the session's log files only, and the console keeps Tune's progress table and
    priorlab's lines; ``verbose=True`` (``--verbose``) streams Ray's output here as well.
    """
    apply_offline_env()
    if not verbose:
        quiet_console()
    import ray

    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is not None:
        reason = _unreachable_reason(address)
        if reason is not None:
            raise RuntimeUnavailable(
                f"could not reach a Ray cluster at {address!r} ({reason}). Check that the head "
                "is up (`ray status` on it, or `ray up cluster.yaml`), or run locally by leaving "
                "out --address and unsetting RAY_ADDRESS."
            )
    if not ray.is_initialized():
        level = logging.INFO if verbose else logging.ERROR
        common = dict(logging_level=level, log_to_driver=verbose)
        try:
            if address is None:
                configure_local_ray()
                # The dashboard serves the State API, which Ray Train's PlacementGroupCleaner
                # needs: without it, trials that Tune stops early (ASHA) leak their workers'
                # placement groups and later trials wait forever. Bound to loopback. The
                # cleaner finds the API through RAY_API_SERVER_ADDRESS, given to every worker
                # of the job: left to auto-detection it gives up ("multiple active Ray
                # instances") whenever another Ray runs on the same machine.
                port = _free_port()
                # address="local": a new Ray even when a `ray start` head runs on this machine
                # (left as None, ray.init would attach to it through /tmp/ray).
                ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=True,
                         dashboard_host=LOOPBACK, dashboard_port=port, _node_ip_address=LOOPBACK,
                         runtime_env={"env_vars": {
                             "RAY_API_SERVER_ADDRESS": f"http://{LOOPBACK}:{port}"}},
                         **common)
            else:
                ray.init(address=address, **common)
        except (ConnectionError, RuntimeError, TimeoutError) as err:
            if address is None:
                raise RuntimeUnavailable(f"could not start a local Ray: {err}") from err
            raise RuntimeUnavailable(
                f"could not reach a Ray cluster at --address {address!r} ({err}). Check that "
                "the head is up (`ray status` on it, or `ray up cluster.yaml`), or run locally "
                "by leaving out --address and unsetting RAY_ADDRESS."
            ) from err
    resources = ray.cluster_resources()
    return Runtime(address=address, local=address is None, cpus=resources.get("CPU", 0.0),
                   gpus=resources.get("GPU", 0.0))

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


def start(address: str | None = None, *, num_cpus: int | None = None, quiet: bool = True) -> Runtime:
    """Connect to ``address`` (or RAY_ADDRESS), else start a local Ray. Idempotent."""
    apply_offline_env()
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
        level = logging.WARNING if quiet else logging.INFO
        try:
            if address is None:
                # The dashboard serves the State API, which Ray Train's PlacementGroupCleaner
                # needs: without it, trials that Tune stops early (ASHA) leak their workers'
                # placement groups and later trials wait forever. Bound to loopback.
                ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=True,
                         dashboard_host="127.0.0.1", logging_level=level)
            else:
                ray.init(address=address, logging_level=level)
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

"""Integration: the local runtime listens on loopback only and keeps Ray's token auth on.

The processes checked are this test process and everything it started (gcs_server, raylet,
dashboard, agents, workers), found through the process tree, so other Ray sessions on the same
machine never make the test pass or fail. What Ray cannot bind to loopback (torch's TCPStore
inside Ray Train workers) is stated in docs/offline.md.
"""

from __future__ import annotations

import ipaddress
import os
import time

import psutil
import pytest

pytestmark = pytest.mark.integration


def loopback(host: str) -> bool:
    addr = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped  # a dual-stack socket bound to ::ffff:127.0.0.1
    return addr.is_loopback


def listeners(procs) -> dict[str, str]:
    """'proto ip:port' -> 'process[pid]' for every listening TCP / bound UDP socket."""
    found = {}
    for proc in procs:
        try:
            name, conns = proc.name(), proc.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        for c in conns:
            if (c.type == 1 and c.status == psutil.CONN_LISTEN) or (c.type == 2 and not c.raddr):
                found[f"{'tcp' if c.type == 1 else 'udp'} {c.laddr.ip}:{c.laddr.port}"] = f"{name}[{proc.pid}]"
    return found


def test_loopback_helper_reads_mapped_addresses():
    assert loopback("127.0.0.1") and loopback("::1") and loopback("::ffff:127.0.0.1")
    assert not loopback("0.0.0.0") and not loopback("::") and not loopback("192.0.2.2")


def test_local_ray_listens_on_loopback_only(ray_session):
    import ray

    assert ray_session.local
    assert ray._private.worker.global_worker.node.node_ip_address == "127.0.0.1"
    ray.get([ray.remote(lambda: None).remote() for _ in range(2)])  # workers up
    seen: dict[str, str] = {}
    names: set[str] = set()
    deadline = time.monotonic() + 8  # the agents start asynchronously: sample for a while
    while time.monotonic() < deadline:
        me = psutil.Process()
        procs = [me, *me.children(recursive=True)]
        names |= {p.name() for p in procs if p.is_running()}
        seen.update(listeners(procs))
        time.sleep(1)
    assert {"gcs_server", "raylet"} <= names, names  # we looked at our own session
    assert any(owner.startswith("gcs_server") for owner in seen.values()), seen
    exposed = {sock: owner for sock, owner in seen.items() if not loopback(sock.split()[1].rsplit(":", 1)[0])}
    assert not exposed, f"the local Ray listens beyond loopback: {exposed}"


def test_token_authentication_stays_on(ray_session):
    from ray._raylet import AuthenticationMode, get_authentication_mode

    assert os.environ.get("RAY_AUTH_MODE", "token") == "token"
    assert get_authentication_mode() == AuthenticationMode.TOKEN

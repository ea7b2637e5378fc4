"""Offline checks of ``cluster.yaml``, the Ray cluster launcher config (see docs/cluster.md).

The file is run through the same two steps ``ray up`` takes before it first talks to the
cloud (``ray.autoscaler._private.commands._bootstrap_config``):

* ``prepare_config``: merges Ray's AWS ``defaults.yaml`` under our keys, merges the setup
  command lists, checks the Docker section and fills per-type worker bounds;
* ``validate_config``: Ray's JSON schema (``ray/autoscaler/ray-schema.json``) plus its own
  cross-field checks (``head_node_type`` exists, sum of ``min_workers`` <= ``max_workers``).

Both are pure: they read two files shipped inside the ray package and never import the AWS
provider. The provider's own ``bootstrap_config`` (boto3: VPC, IAM, key pairs, AMIs) comes
after them in ``_bootstrap_config`` and is deliberately not called. ``_no_network`` below
makes any socket use fail the test, so this stays true if Ray changes.

These are private Ray APIs, pinned by ``ray==2.60.0`` in pyproject.toml. What this does not
cover: SSH, AWS, the AMI, and whether the setup commands succeed on a real node.

Run: ``python -m pytest tests/test_cluster_yaml.py -q``
"""

from __future__ import annotations

import copy
import json
import re
import socket
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[1]
CLUSTER_YAML = REPO / "cluster.yaml"


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"cluster.yaml validation tried to use the network: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def load_raw() -> dict:
    # `ray up` reads the file with yaml.safe_load too.
    return yaml.safe_load(CLUSTER_YAML.read_text())


def ray_validate(raw: dict) -> dict:
    """Ray's offline preparation + validation; returns the config `ray up` would go on with."""
    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)
    return config


@pytest.fixture
def config() -> dict:  # per test, so that it is built under _no_network
    return ray_validate(load_raw())


def node_types_by_role(config: dict) -> dict[str, tuple[str, dict]]:
    types = config["available_node_types"]
    head = config["head_node_type"]
    workers = {name: t for name, t in types.items() if name != head}
    gpu = [(n, t) for n, t in workers.items() if t["resources"].get("GPU", 0) > 0]
    cpu = [(n, t) for n, t in workers.items() if t["resources"].get("GPU", 0) == 0]
    assert len(gpu) == 1 and len(cpu) == 1, f"expected one CPU and one GPU worker type: {workers}"
    return {"head": (head, types[head]), "cpu": cpu[0], "gpu": gpu[0]}


def pinned(requirement_name: str) -> str:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        m = re.fullmatch(rf"{re.escape(requirement_name)}(\[[^\]]*\])?==(\S+)", dep)
        if m:
            return m.group(2)
    raise AssertionError(f"{requirement_name} is not pinned with == in pyproject.toml: {deps}")


def test_ray_accepts_the_file(config):
    assert config["provider"]["type"] == "aws"
    assert config["provider"]["region"]
    assert "aws_access_key_id" not in json.dumps(config).lower()


def test_head_cpu_and_gpu_node_types_with_sane_bounds(config):
    roles = node_types_by_role(config)
    _, head = roles["head"]
    assert head["max_workers"] == 0, "the head type must not be scaled as a worker"

    for role in ("cpu", "gpu"):
        name, node_type = roles[role]
        assert 0 <= node_type["min_workers"] <= node_type["max_workers"], name
        assert node_type["max_workers"] <= config["max_workers"], name
        assert node_type["resources"]["CPU"] >= 1, name
    assert roles["gpu"][1]["resources"]["GPU"] >= 1
    assert roles["gpu"][1]["node_config"]["InstanceType"].startswith(("g", "p"))

    assert sum(t["min_workers"] for t in config["available_node_types"].values()) <= config[
        "max_workers"
    ]
    assert config["idle_timeout_minutes"] > 0


def test_all_node_types_boot_the_same_image(config):
    images = {t["node_config"].get("ImageId") for t in config["available_node_types"].values()}
    # Without an ImageId Ray would fall back to its Ubuntu 18.04 DLAMI (too old for torch 2.13).
    assert len(images) == 1 and None not in images, images


def _shell_commands(config: dict) -> list[str]:
    cmds = []
    for key in (
        "initialization_commands",
        "setup_commands",
        "head_setup_commands",
        "worker_setup_commands",
        "head_start_ray_commands",
        "worker_start_ray_commands",
    ):
        cmds += config[key]
    for node_type in config["available_node_types"].values():
        cmds += node_type.get("worker_setup_commands", [])
        cmds += node_type.get("initialization_commands", [])
    return cmds


def test_dashboard_stays_on_loopback(config):
    # Checked on the *prepared* config: Ray's AWS defaults start the head with
    # --dashboard-host=0.0.0.0 whenever cluster.yaml leaves head_start_ray_commands out.
    everything = json.dumps(config)
    assert "0.0.0.0" not in everything
    (head_start,) = [c for c in config["head_start_ray_commands"] if "ray start" in c]
    assert "--dashboard-host=127.0.0.1" in head_start


def test_dropping_head_start_commands_would_expose_the_dashboard():
    # Shows the check above can fail, and why head_start_ray_commands must stay in the file.
    raw = load_raw()
    del raw["head_start_ray_commands"]
    assert "0.0.0.0" in " ".join(ray_validate(raw)["head_start_ray_commands"])


@pytest.mark.parametrize("key", ["head_start_ray_commands", "worker_start_ray_commands"])
def test_start_commands_stop_ray_first_and_disable_usage_stats(config, key):
    cmds = config[key]
    assert cmds[0].strip() == "ray stop"
    starts = [c for c in cmds if "ray start" in c]
    assert len(starts) == 1
    before_start = starts[0].split("ray start")[0]
    assert "export RAY_USAGE_STATS_ENABLED=0" in before_start


def _index_of(cmds: list[str], needle: str) -> int:
    hits = [i for i, c in enumerate(cmds) if needle in c]
    assert len(hits) == 1, f"expected exactly one command containing {needle!r}: {cmds}"
    return hits[0]


def test_setup_installs_pinned_torch_first_then_the_project(config):
    torch_pin = f"torch=={pinned('torch')}"
    ray_pin = f"ray[default]=={pinned('ray')}"
    roles = node_types_by_role(config)
    lists = {
        "head": config["head_setup_commands"],
        # cpu_worker has no override, so it gets the merged global list.
        "cpu": roles["cpu"][1].get("worker_setup_commands", config["worker_setup_commands"]),
        "gpu": roles["gpu"][1]["worker_setup_commands"],
    }
    for role, cmds in lists.items():
        torch_at = _index_of(cmds, torch_pin)
        project_at = _index_of(cmds, "pip install -e")
        assert torch_at < project_at, f"{role}: torch must be installed before the project"
        assert ray_pin in cmds[project_at], role
        gets_cpu_build = "download.pytorch.org/whl/cpu" in cmds[torch_at]
        assert gets_cpu_build == (role != "gpu"), f"{role}: {cmds[torch_at]}"
    assert any("boto3" in c for c in config["head_setup_commands"])


def test_file_mounts_carry_an_installable_project(config):
    mounts = config["file_mounts"]
    for remote, local in mounts.items():
        # `ray up` resolves local paths against its working directory: the repo root.
        assert (REPO / local).exists(), f"{remote}: {local} does not exist in the repository"
    remote_of = {Path(local).as_posix(): remote for remote, local in mounts.items()}
    project_dir = str(Path(remote_of["pyproject.toml"]).parent)
    assert str(Path(remote_of["src"]).parent) == project_dir
    install = next(c for c in config["setup_commands"] if "pip install -e" in c)
    assert project_dir.replace("~", "$HOME") in install


@pytest.mark.parametrize(
    "mutate, error",
    [
        (lambda c: c.__setitem__("max_workers", "lots"), jsonschema.ValidationError),
        (lambda c: c.__setitem__("max_worker", 3), jsonschema.ValidationError),
        (
            lambda c: c["available_node_types"]["gpu_worker"]["resources"].__setitem__("GPU", "one"),
            jsonschema.ValidationError,
        ),
        (
            lambda c: c["available_node_types"]["cpu_worker"].__setitem__("min_workers", 11),
            ValueError,
        ),
        (lambda c: c.__setitem__("head_node_type", "no_such_type"), ValueError),
    ],
    ids=["max_workers-not-int", "unknown-top-level-key", "gpu-count-not-int", "min-over-cap", "bad-head"],
)
def test_broken_copies_are_rejected(mutate, error):
    raw = load_raw()
    mutate(raw)
    with pytest.raises(error):
        ray_validate(raw)

"""Offline checks of the Ray cluster launcher configs (see docs/cluster.md): ``cluster.yaml``
(AWS, autoscaling CPU and GPU worker types) and ``cluster-onprem.yaml`` (your own machines, Ray's
local provider).

Each file is run through the same two steps ``ray up`` takes before it first talks to the
cloud or the machines (``ray.autoscaler._private.commands._bootstrap_config``):

* ``prepare_config``: merges the provider's ``defaults.yaml`` under our keys, merges the setup
  command lists, checks the Docker section and fills per-type worker bounds (for the local
  provider, ``prepare_local`` first turns ``head_ip``/``worker_ips`` into its single node type);
* ``validate_config``: Ray's JSON schema (``ray/autoscaler/ray-schema.json``) plus its own
  cross-field checks (``head_node_type`` exists, sum of ``min_workers`` <= ``max_workers``).

Both are pure: they read files shipped inside the ray package and never import a cloud
provider. The provider's own ``bootstrap_config`` (boto3: VPC, IAM, key pairs, AMIs) comes
after them in ``_bootstrap_config`` and is deliberately not called. ``_no_network`` below
makes any socket use in this process fail the test, so this stays true if Ray changes.

These are private Ray APIs, pinned by ``ray==2.60.0`` in pyproject.toml. What this does not
cover: SSH, AWS, the AMI, the machines, and whether the setup commands succeed on a real node
(the one command run here is the version check, with this machine's python).

Run: ``python -m pytest tests/test_cluster_yaml.py -q``
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[1]
CLUSTER_YAML = REPO / "cluster.yaml"
FILES = {"aws": CLUSTER_YAML, "onprem": REPO / "cluster-onprem.yaml"}
TOKEN = "~/.ray/auth_token"


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"cluster config validation tried to use the network: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def load_raw(kind: str = "aws") -> dict:
    # `ray up` reads the file with yaml.safe_load too.
    return yaml.safe_load(FILES[kind].read_text())


def ray_validate(raw: dict) -> dict:
    """Ray's offline preparation + validation; returns the config `ray up` would go on with."""
    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)
    return config


@pytest.fixture
def config() -> dict:  # per test, so that it is built under _no_network
    return ray_validate(load_raw("aws"))


@pytest.fixture(params=sorted(FILES))
def any_config(request) -> tuple[str, dict]:
    return request.param, ray_validate(load_raw(request.param))


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


def project_version() -> str:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def test_ray_accepts_the_aws_file(config):
    assert config["provider"]["type"] == "aws"
    assert config["provider"]["region"]
    assert "aws_access_key_id" not in json.dumps(config).lower()


def test_ray_accepts_the_onprem_file_and_keeps_every_machine():
    raw = load_raw("onprem")
    config = ray_validate(raw)
    assert config["provider"]["type"] == "local"
    assert config["provider"]["head_ip"] and config["provider"]["worker_ips"]
    # the local provider's single node type, bounded by the machines listed
    (node_type,) = config["available_node_types"].values()
    n = len(raw["provider"]["worker_ips"])
    assert node_type["min_workers"] == node_type["max_workers"] == config["max_workers"] == n
    # placeholders a reader must replace, named the same way as cluster.yaml's AMI
    assert "REPLACE-WITH-" in raw["provider"]["head_ip"]
    assert "REPLACE-WITH-" in raw["auth"]["ssh_user"]


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


def test_dashboard_stays_on_loopback(any_config):
    # Checked on the *prepared* config: Ray's AWS defaults start the head with
    # --dashboard-host=0.0.0.0 whenever cluster.yaml leaves head_start_ray_commands out.
    _, config = any_config
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
def test_start_commands_stop_ray_first_with_stats_off_and_token_auth_on(any_config, key):
    _, config = any_config
    cmds = config[key]
    assert cmds[0].strip() == "ray stop"
    starts = [c for c in cmds if "ray start" in c]
    assert len(starts) == 1
    before_start = starts[0].split("ray start")[0]
    exported = re.search(r"export ([^;]*);", before_start)
    assert exported, f"no `export ...;` before ray start: {starts[0]}"
    assert {"RAY_USAGE_STATS_ENABLED=0", "RAY_AUTH_MODE=token"} <= set(exported.group(1).split())


def test_every_node_gets_the_token_and_its_shell_uses_it(any_config):
    kind, config = any_config
    # Ray 2.60 enforces the token only with RAY_AUTH_MODE=token, and each node needs the file.
    assert config["file_mounts"].get(TOKEN) == TOKEN, kind
    bashrc = [c for c in config["setup_commands"] if ".bashrc" in c]
    assert len(bashrc) == 1, bashrc
    line = re.search(r"echo '([^']*)' >> ~/.bashrc", bashrc[0]).group(1)
    assert "RAY_AUTH_MODE=token" in line and "priorlab-venv/bin/activate" in line
    # the guard greps for the whole line, so a node set up by an older file gets the new one
    assert f"grep -q '{line.removeprefix('source ~/')}' ~/.bashrc" in bashrc[0]


def _index_of(cmds: list[str], needle: str) -> int:
    hits = [i for i, c in enumerate(cmds) if needle in c]
    assert len(hits) == 1, f"expected exactly one command containing {needle!r}: {cmds}"
    return hits[0]


def _setup_lists(kind: str, config: dict) -> dict[str, list[str]]:
    """Each node role's setup commands as Ray will run them."""
    if kind == "onprem":    # one node type: the merged global list on every machine
        return {"head": config["head_setup_commands"], "worker": config["worker_setup_commands"]}
    roles = node_types_by_role(config)
    return {
        "head": config["head_setup_commands"],
        # cpu_worker has no override, so it gets the merged global list.
        "cpu": roles["cpu"][1].get("worker_setup_commands", config["worker_setup_commands"]),
        "gpu": roles["gpu"][1]["worker_setup_commands"],
    }


def test_setup_installs_pinned_torch_first_then_the_project(any_config):
    kind, config = any_config
    torch_pin = f"torch=={pinned('torch')}"
    ray_pin = f"ray[default]=={pinned('ray')}"
    for role, cmds in _setup_lists(kind, config).items():
        torch_at = _index_of(cmds, torch_pin)
        project_at = _index_of(cmds, "pip install -e")
        assert torch_at < project_at, f"{kind} {role}: torch must be installed before the project"
        assert ray_pin in cmds[project_at], role
        cpu_build = "download.pytorch.org/whl/cpu" in cmds[torch_at]
        cuda_checked = "torch.cuda.is_available()" in " ".join(cmds[torch_at:project_at + 1])
        if kind == "onprem":   # one node type: the build is chosen per machine by nvidia-smi
            assert "nvidia-smi" in cmds[torch_at] and cpu_build and cuda_checked, cmds[torch_at]
        else:
            assert cpu_build == (role != "gpu"), f"{role}: {cmds[torch_at]}"
            assert cuda_checked == (role == "gpu"), role
    if kind == "aws":
        assert any("boto3" in c for c in config["head_setup_commands"])


def _version_check(cmds: list[str]) -> str:
    return cmds[_index_of(cmds, "importlib.metadata")]


def test_every_node_checks_the_pinned_priorlab_version_after_installing(any_config):
    kind, config = any_config
    version = project_version()
    for role, cmds in _setup_lists(kind, config).items():
        check = _version_check(cmds)
        assert cmds.index(check) == _index_of(cmds, "pip install -e") + 1, role
        assert f"pin = '{version}';" in check, f"{kind} {role}: the pin is not pyproject's {version}"


@pytest.mark.parametrize("installed_matches", [True, False])
def test_the_version_check_passes_on_the_pin_and_fails_loudly_otherwise(installed_matches):
    from importlib.metadata import version

    check = _version_check(ray_validate(load_raw("aws"))["head_setup_commands"])
    if version("priorlab") != project_version():
        pytest.fail(f"this venv's priorlab {version('priorlab')} is not pyproject's "
                    f"{project_version()}: reinstall it (pip install -e .)")
    if not installed_matches:
        check = check.replace(f"pin = '{project_version()}'", "pin = '0.0.0-other'")
    program, flag, code = shlex.split(check)                   # as the node's shell splits it
    assert (program, flag) == ("python", "-c")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode == 0) == installed_matches, done.stderr
    if not installed_matches:
        assert f"priorlab {version('priorlab')} is installed" in done.stderr
        assert "pins 0.0.0-other" in done.stderr


def test_file_mounts_carry_an_installable_project(any_config):
    kind, config = any_config
    mounts = {r: loc for r, loc in config["file_mounts"].items() if r != TOKEN}
    for remote, local in mounts.items():
        # `ray up` resolves local paths against its working directory: the repo root.
        assert (REPO / local).exists(), f"{kind} {remote}: {local} does not exist in the repository"
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


@pytest.mark.parametrize(
    "mutate, error",
    [
        (lambda c: c["provider"].pop("head_ip"), click.ClickException),
        (lambda c: c["provider"].__setitem__("worker_ips", "a,b"), jsonschema.ValidationError),
        (lambda c: c.__setitem__("available_node_types", {"gpu": {"node_config": {}, "resources": {}}}),
         click.ClickException),
        (lambda c: c.__setitem__("max_worker", 3), jsonschema.ValidationError),
    ],
    ids=["no-head-ip", "worker-ips-not-a-list", "node-types-not-allowed", "unknown-top-level-key"],
)
def test_broken_onprem_copies_are_rejected(mutate, error):
    raw = load_raw("onprem")
    mutate(raw)
    with pytest.raises(error):
        ray_validate(raw)

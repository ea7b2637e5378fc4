"""serve.yaml against Ray's Serve schema and priorlab's typed app arguments; `priorlab serve`'s
errors before anything starts; the request helpers of serve_apps.common (no Ray needed)."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest
import yaml

from priorlab.serve_apps.common import checkpoint_sha256, verified_checkpoint

REPO = Path(__file__).resolve().parents[2]


def test_serve_yaml_is_valid_for_ray_and_for_the_apps():
    from ray.serve.schema import ServeDeploySchema

    raw = yaml.safe_load((REPO / "serve.yaml").read_text())
    schema = ServeDeploySchema.model_validate(raw)
    assert schema.http_options.host == "127.0.0.1"
    names = set()
    for app in raw["applications"]:
        module, _, attr = app["import_path"].partition(":")
        builder = getattr(importlib.import_module(module), attr)
        typed = next(iter(inspect.signature(builder).parameters.values())).annotation
        args = typed.model_validate(app["args"])          # unknown or mistyped keys fail here
        assert args.checkpoint.startswith("/shared/")
        names.add(app["name"])
    assert names == {"text2nerf", "molscore"}


def test_serve_command_explains_bad_arguments_before_starting_anything(tmp_path, capsys):
    from priorlab.platform.cli import main

    assert main(["serve", "molscore", "--checkpoint", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "meta.json").write_text('{"method": "fields-hyper", "step": 1, "config": {}}')
    assert main(["serve", "molscore", "--checkpoint", str(tmp_path / "ckpt")]) == 2
    assert "molecules-scorer" in capsys.readouterr().err
    (tmp_path / "scorer").mkdir()
    (tmp_path / "scorer" / "meta.json").write_text('{"method": "molecules-scorer", "step": 1, "config": {}}')
    assert main(["serve", "text2nerf", "--checkpoint", str(tmp_path / "scorer")]) == 2
    assert "fields-hyper" in capsys.readouterr().err
    assert main(["serve", "text2nerf", "--checkpoint", str(tmp_path / "ckpt"), "--set", "bogus=1"]) == 2
    err = capsys.readouterr().err
    assert "bogus" in err and "max_batch_size" in err
    assert main(["serve", "text2nerf", "--checkpoint", str(tmp_path / "ckpt"),
                 "--set", "max_views=0"]) == 2
    assert "max_views" in capsys.readouterr().err
    assert main(["serve", "text2nerf", "--checkpoint", str(tmp_path / "ckpt"),
                 "--expected-sha256", "0" * 64]) == 2
    assert checkpoint_sha256(tmp_path / "ckpt") in capsys.readouterr().err


def test_serve_command_refuses_a_port_in_use(molecule_root, tmp_path, capsys, monkeypatch):
    import socket

    from priorlab.methods.molecules.config import FeaturesConfig
    from priorlab.methods.molecules.protocol import run_protocol
    from priorlab.platform.cli import main

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cfg = FeaturesConfig(feature_set="ecfp", n_splits=1, epochs=2, patience=1, n_boot=5, hidden=4)
    folder = run_protocol(cfg, molecule_root, progress=False).scorer.save(tmp_path / "ckpt")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "molscore", "--checkpoint", str(folder), "--port", str(port)]) == 2
    assert f"127.0.0.1:{port}" in capsys.readouterr().err


def test_the_checkpoint_hash_covers_every_file(tmp_path):
    folder = tmp_path / "c"
    (folder / "sub").mkdir(parents=True)
    (folder / "a").write_bytes(b"1")
    (folder / "sub" / "b").write_bytes(b"2")
    digest = checkpoint_sha256(folder)
    assert verified_checkpoint(folder, digest.upper())[1] == digest
    (folder / "sub" / "b").write_bytes(b"3")
    assert checkpoint_sha256(folder) != digest
    (folder / "sub" / "b").write_bytes(b"2")
    (folder / "c").write_bytes(b"")
    assert checkpoint_sha256(folder) != digest
    with pytest.raises(ValueError, match="not the expected"):
        verified_checkpoint(folder, digest)


def test_an_exception_inside_a_batch_fails_only_the_request_that_caused_it():
    from priorlab.serve_apps.common import RequestError, internal_error, isolate_failures

    calls = []

    def run(batch):
        calls.append(list(batch))
        if "boom" in batch:
            raise RuntimeError("cannot embed\nboom")
        return [s.upper() for s in batch]

    out = isolate_failures(run, ["a", "boom", "c"])
    assert out[0] == "A" and out[2] == "C" and isinstance(out[1], RuntimeError)
    assert calls == [["a", "boom", "c"], ["a"], ["boom"], ["c"]]     # whole batch, then one by one
    assert isolate_failures(run, ["x", "y"]) == ["X", "Y"] and calls[-1] == ["x", "y"]
    err = internal_error(out[1], "featurising these molecules")
    assert isinstance(err, RequestError) and err.status == 500
    assert "RuntimeError: boom" in err.message and "other requests" in err.message

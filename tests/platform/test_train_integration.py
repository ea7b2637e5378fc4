"""`priorlab train`: one run of a study's method, with checkpoints, resume by name, metrics at the end."""

from __future__ import annotations

import json

import pytest

from priorlab.platform.cli import main


def _args(tmp_path, tiny_memory_config, **changes):
    config = dict(tiny_memory_config, **changes)
    return ["train", "memory-label-injection", *(f"{k}={json.dumps(v).replace(' ', '')}"
                                                 for k, v in config.items()),
            "--name", "r", "--runs-dir", str(tmp_path)]


@pytest.mark.integration
def test_train_runs_resumes_by_name_and_prints_metrics(ray_session, data_root, tmp_path,
                                                       tiny_memory_config, capsys):
    assert main(_args(tmp_path, tiny_memory_config, max_iters=4)) == 0
    out = capsys.readouterr()
    assert "eval/acc_1shot" in out.out and "train/loss" in out.out
    run = tmp_path / "train" / "r"
    assert (run / "checkpoints" / "checkpoint_000000004" / "meta.json").is_file()
    assert "priorlab eval" in out.out

    # the same name with a longer budget continues from step 4 (episodes sampled inside the
    # worker this time, as `make run` does: the local stream starts at the restored step too)
    assert main(_args(tmp_path, tiny_memory_config, max_iters=6) + ["--stream", "local"]) == 0
    out = capsys.readouterr()
    assert "resumed from step 4" in out.err and "(resuming)" in out.out
    meta = json.loads((run / "checkpoints" / "checkpoint_000000006" / "meta.json").read_text())
    assert meta["step"] == 6 and "eval/acc_1shot" in meta["metrics"]

    # and the run folder is something `priorlab eval` takes
    assert main(["eval", str(run), "--episodes", "4"]) == 0
    assert "checkpoint at step 6" in capsys.readouterr().out


def test_resuming_with_another_config_is_refused(tmp_path, tiny_memory_config, capsys):
    run = tmp_path / "train" / "r"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps(
        {"study": "memory-label-injection", "config": {"channels": 8, "max_iters": 4}}))
    code = main(_args(tmp_path, tiny_memory_config, channels=4))
    err = capsys.readouterr().err
    assert code == 2 and "channels: 8 -> 4" in err and "another --name" in err

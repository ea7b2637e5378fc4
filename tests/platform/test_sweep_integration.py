"""Integration: a 2-trial sweep on a local Ray writes results.parquet; report prints it."""

from __future__ import annotations

import pandas as pd
import pytest

pytestmark = pytest.mark.integration


def test_two_trial_sweep_writes_results_and_report(ray_session, data_root, tmp_path,
                                                   tiny_memory_config, capsys):
    from priorlab.platform.cli import main
    from priorlab.platform.sweep import run_sweep

    overrides = {k: v for k, v in tiny_memory_config.items()}
    outcome = run_sweep("memory-label-injection", overrides=overrides, data_root=data_root,
                        runs_dir=tmp_path, name="exp", samples=2, seed=1)
    exp = tmp_path / "exp"
    df = pd.read_parquet(exp / "results.parquet")
    assert len(df) == 2 and outcome.n_trials == 2
    # the searcher starts with one trial per injection mode
    assert set(df["config/label_injection"]) == {"first", "every"}
    assert {"eval/acc_1shot", "eval/acc_2shot", "checkpoint_path", "iterations"} <= set(df.columns)
    assert df["eval/acc_1shot"].between(0, 1).all()
    assert (exp / "history.parquet").is_file() and (exp / "report.png").stat().st_size > 1000

    assert main(["report", str(exp)]) == 0
    out = capsys.readouterr().out
    assert "label_injection" in out and "first" in out and "every" in out

    # Resuming a finished sweep runs nothing new and loses no trial.
    again = run_sweep("memory-label-injection", overrides={}, data_root=data_root,
                      runs_dir=tmp_path, name="exp", resume=True)
    assert again.n_trials == 2
    assert len(pd.read_parquet(exp / "results.parquet")) == 2

"""Integration: sweeps on a local Ray: results, report, resume, healing from a killed worker,
failed trials kept out of the statistics, and sweeps with nothing left to search."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

pytestmark = pytest.mark.integration

PINNED = dict(label_injection="first", lr=1e-3, channels=4)  # every key the study searches


def test_two_trial_sweep_writes_results_and_report(ray_session, data_root, tmp_path,
                                                   tiny_memory_config, capsys):
    from priorlab.platform.cli import main
    from priorlab.platform.sweep import run_sweep

    # lr and width pinned, as `make run` does: only the injection mode is left, a choice, so
    # every distinct mode runs (one ConvLSTM layer in the laptop budget: `every` is `first`)
    overrides = dict(tiny_memory_config, lr=1e-2, channels=4)
    outcome = run_sweep("memory-label-injection", overrides=overrides, data_root=data_root,
                        runs_dir=tmp_path, name="exp", samples=1, seed=1)
    exp = tmp_path / "exp"
    df = pd.read_parquet(exp / "results.parquet")
    assert len(df) == 2 and outcome.n_trials == 2 and outcome.failed == 0
    assert sorted(df["config/label_injection"]) == ["first", "lstm"]
    assert list(df["config/seed"]) == [0, 0]
    assert {"eval/acc_1shot", "eval/acc_2shot", "checkpoint_path", "iterations"} <= set(df.columns)
    assert df["eval/acc_1shot"].between(0, 1).all()
    history = pd.read_parquet(exp / "history.parquet")
    assert sorted(history["step"]) == [2, 2, 4, 4]  # every report, appended as it arrived
    assert (exp / "report.png").stat().st_size > 1000
    # the grid is also an Optuna study in the experiment folder (what optuna-dashboard opens)
    import optuna

    trials = optuna.load_study(study_name="exp", storage=f"sqlite:///{exp / 'optuna.db'}").trials
    assert sorted(t.params["label_injection"] for t in trials) == ["first", "lstm"]
    by_id = dict(zip(df["trial_id"], df["eval/acc_1shot"]))  # the study metric
    assert all(t.state.name == "COMPLETE" and t.value == pytest.approx(by_id[t.user_attrs["trial_id"]])
               for t in trials)

    assert main(["report", str(exp)]) == 0
    out = capsys.readouterr().out
    assert "label_injection" in out and "first" in out and "lstm" in out

    # Resuming a finished sweep runs nothing new and loses no trial.
    again = run_sweep("memory-label-injection", overrides={}, data_root=data_root,
                      runs_dir=tmp_path, name="exp", resume=True)
    assert again.n_trials == 2
    assert len(pd.read_parquet(exp / "results.parquet")) == 2
    assert len(optuna.load_study(study_name="exp", storage=f"sqlite:///{exp / 'optuna.db'}").trials) == 2


def _kill_train_worker_after_first_checkpoint(runs: Path, killed: list, timeout: float = 240):
    """Background: SIGKILL the RayTrainWorker process once a report with its checkpoint has
    reached the driver (history.parquet has a row: the controller registered the checkpoint).
    Only this test session's processes (the local Ray is our child) are candidates."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (runs / "history.parquet").is_file():
            for proc in psutil.Process().children(recursive=True):
                try:
                    cmd = " ".join(proc.cmdline())
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                if "RayTrainWorker" in cmd:
                    os.kill(proc.pid, signal.SIGKILL)
                    killed.append(proc.pid)
            if killed:
                return
        time.sleep(0.05)


def _sweep_with_a_killed_worker(tmp_path, data_root, tiny_memory_config, **kw):
    from priorlab.platform.sweep import run_sweep

    exp = tmp_path / "exp"
    killed: list[int] = []
    watcher = threading.Thread(target=_kill_train_worker_after_first_checkpoint,
                               args=(exp, killed), daemon=True)
    watcher.start()
    # All searched keys pinned: nothing left for Optuna, the fixed config runs once (seed 0).
    overrides = dict(tiny_memory_config, max_iters=120, eval_every=4, **PINNED)
    outcome = run_sweep("memory-label-injection", overrides=overrides, data_root=data_root,
                        runs_dir=tmp_path, name="exp", samples=1, **kw)
    watcher.join(timeout=5)
    assert killed, "no Train worker was found to kill"
    return exp, outcome


def test_killed_train_worker_heals_from_its_checkpoint(ray_session, data_root, tmp_path,
                                                        tiny_memory_config, capsys):
    exp, outcome = _sweep_with_a_killed_worker(tmp_path, data_root, tiny_memory_config)
    assert "nothing left to search" in capsys.readouterr().out
    df = pd.read_parquet(exp / "results.parquet")
    row = df.iloc[0]
    assert row["status"] == "TERMINATED" and outcome.failed == 0
    assert row["step"] == 120 and row["train/start_step"] > 0  # resumed, not restarted
    assert int(row["config/seed"]) == 0
    # the reports before the kill are still in the history, each step once
    steps = pd.read_parquet(exp / "history.parquet")["step"].tolist()
    assert steps == sorted(set(steps)) and steps[0] == 4 and steps[-1] == 120


def test_failed_trial_is_reported_and_left_out(ray_session, data_root, tmp_path,
                                               tiny_memory_config, capsys):
    from priorlab.platform.report import build_report

    exp, outcome = _sweep_with_a_killed_worker(tmp_path, data_root, tiny_memory_config,
                                               max_failures=0)
    df = pd.read_parquet(exp / "results.parquet")
    assert list(df["status"]) == ["ERROR"] and outcome.failed == 1
    assert Path(df["error_file"].iloc[0]).is_file()
    report = build_report(exp)
    assert report.failed == 1 and "no trial finished" in report.text
    assert df["error_file"].iloc[0] in report.text


def test_fixed_config_repeats_use_successive_seeds():
    from priorlab.platform.studies import get_study
    from priorlab.platform.sweep import fixed_seed_repeats

    study = get_study("memory-label-injection")
    assert fixed_seed_repeats(study, {}, 3) == [0, 1, 2]
    assert fixed_seed_repeats(study, {"seed": 7}, 2) == [7, 8]


def test_history_rows_are_written_as_reports_arrive(tmp_path):
    """A driver killed mid-sweep must not lose the reports it already received."""
    from types import SimpleNamespace

    from priorlab.platform.sweep import _results_callback

    callback = _results_callback(tmp_path, "step")
    trial = SimpleNamespace(trial_id="t1", config={"lr": 0.1}, last_result={})
    callback.on_trial_result(0, [], trial, {"step": 10.0, "eval/acc_1shot": 0.3})
    first = pd.read_parquet(tmp_path / "history.parquet")
    assert list(first["step"]) == [10.0] and not (tmp_path / "results.parquet").exists()
    callback.on_trial_result(0, [], trial, {"step": 20.0, "eval/acc_1shot": 0.4})
    assert list(pd.read_parquet(tmp_path / "history.parquet")["step"]) == [10.0, 20.0]

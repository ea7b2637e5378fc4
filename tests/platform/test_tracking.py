"""Experiment tracking (platform.tracking): the Optuna export of grid sweeps, W&B's offline mode,
and no W&B key in any file a sweep writes."""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
import pytest

from priorlab.platform.results import ResultsStore
from priorlab.platform.tracking import export_to_optuna, optuna_url, wandb_callback, wandb_mode


MODELS = {"model": ["opn", "cpm", "apl"]}


def _rows():
    return [{"trial_id": "a", "status": "TERMINATED", "config/model": "opn", "config/seed": 0, "eval/acc": 0.8},
            {"trial_id": "b", "status": "TERMINATED", "config/model": "cpm", "config/seed": 0, "eval/acc": 0.9},
            {"trial_id": "c", "status": "ERROR", "config/model": "cpm", "config/seed": 1, "eval/acc": None}]


def test_grid_results_become_an_optuna_study_once(tmp_path):
    ResultsStore(tmp_path).upsert(_rows())
    assert export_to_optuna(tmp_path, MODELS, "eval/acc", "max") == 3
    assert export_to_optuna(tmp_path, MODELS, "eval/acc", "max") == 0  # nothing new
    study = optuna.load_study(study_name=tmp_path.name, storage=optuna_url(tmp_path))
    by_id = {t.user_attrs["trial_id"]: t for t in study.trials}
    assert by_id["a"].params == {"model": "opn"} and by_id["a"].value == pytest.approx(0.8)
    assert by_id["c"].state.name == "FAIL" and by_id["c"].user_attrs["seed"] == 1
    assert study.best_trial.user_attrs["trial_id"] == "b"
    ResultsStore(tmp_path).upsert([{"trial_id": "d", "status": "TERMINATED", "config/model": "apl",
                                    "config/seed": 0, "eval/acc": 0.7}])
    assert export_to_optuna(tmp_path, MODELS, "eval/acc", "max") == 1  # only the new trial


@pytest.mark.parametrize("env, mode", [({}, "offline"), ({"WANDB_API_KEY": "k"}, "online"),
                                       ({"WANDB_API_KEY": "k", "WANDB_MODE": "offline"}, "offline"),
                                       ({"WANDB_MODE": "disabled"}, "disabled")])
def test_wandb_is_offline_without_a_key(monkeypatch, env, mode):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert wandb_mode() == mode


def _files_containing(root: Path, secret: bytes) -> list[Path]:
    hits = []
    for p in root.rglob("*"):
        try:
            if p.is_file() and secret in p.read_bytes():
                hits.append(p)
        except OSError:
            continue
    return hits


@pytest.mark.integration
def test_wandb_callback_logs_offline_and_writes_no_key(ray_session, tmp_path, monkeypatch):
    """Two trials through Tune with the sweep's W&B callback: offline runs in EXPERIMENT/wandb
    hold the metrics; a key in the environment appears in no file there, nor in Ray's logs."""
    from ray import tune

    from priorlab.platform.runtime import log_dir

    secret = "plk-test-not-a-real-key-0123456789abcdef"
    monkeypatch.setenv("WANDB_API_KEY", secret)
    monkeypatch.setenv("WANDB_MODE", "offline")   # a key, yet nothing may leave the machine
    exp = tmp_path / "exp"

    def trainable(config):
        tune.report({"eval/acc": 0.5 + config["x"] / 10, "step": 1})

    tune.Tuner(tune.with_resources(trainable, {"CPU": 0.01}), param_space={"x": tune.grid_search([1, 2])},
               run_config=tune.RunConfig(name="exp", storage_path=str(tmp_path), verbose=0,
                                         callbacks=[wandb_callback(exp, "test-study", "priorlab-test")])).fit()
    runs = sorted((exp / "wandb").rglob("offline-run-*"))
    assert len(runs) == 2, list((exp / "wandb").rglob("*"))
    assert all(list(r.glob("*.wandb")) for r in runs)
    assert _files_containing(tmp_path, secret.encode()) == []
    ray_logs = log_dir()
    assert ray_logs and _files_containing(Path(ray_logs), secret.encode()) == []

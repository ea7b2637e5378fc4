"""Checkpoint folders: RNG round trip, weights-only loading, and a clear error for every damaged file."""

from __future__ import annotations

import json
import pickle
import random

import numpy as np
import pytest
import torch

from priorlab.methods.checkpoint import (
    META, MODEL, TRAIN_STATE, CheckpointError, load_checkpoint, read_meta, rng_state,
    save_checkpoint, set_rng_state,
)


def _draws():
    return (torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)])


def test_rng_state_round_trip_through_a_weights_only_load(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.normal()  # leaves a cached gaussian in numpy's state
    save_checkpoint(tmp_path / "c", method="m", step=1, config={}, model={"w": torch.ones(2)})
    expected = _draws()
    _draws()  # move every generator on
    ckpt = load_checkpoint(tmp_path / "c")  # weights_only=True inside
    set_rng_state(ckpt.train_state["rng"])
    assert _draws() == expected


def test_older_numpy_layout_still_restores():
    torch.manual_seed(0), np.random.seed(5), random.seed(6)
    old = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    expected = _draws()
    set_rng_state(old)
    assert _draws() == expected


def test_saved_state_has_only_weights_only_types(tmp_path):
    save_checkpoint(tmp_path / "c", method="m", step=3, config={"a": 1}, model={"w": torch.ones(2)},
                    optimizer=torch.optim.Adam([torch.nn.Parameter(torch.ones(2))]))
    torch.load(tmp_path / "c" / TRAIN_STATE, weights_only=True)  # raises if anything else is in it
    assert set(rng_state()) >= {"torch", "numpy", "python"}


@pytest.fixture
def ckpt(tmp_path):
    return save_checkpoint(tmp_path / "ckpt", method="memory", step=7, config={"x": 1},
                           model={"w": torch.arange(4.0)}, optimizer=None)


@pytest.mark.parametrize("content, words", [
    ("{not json", "not readable JSON"),
    ("[1, 2]", "expected a JSON object"),
    (json.dumps({"method": "memory", "config": {}}), "'step'"),
    (json.dumps({"method": "memory", "step": "seven", "config": {}}), "'step' should be an integer"),
    (json.dumps({"method": "memory", "step": 1, "config": [1]}), "'config' should be an object"),
])
def test_damaged_meta_names_the_file_and_the_problem(ckpt, content, words):
    (ckpt / META).write_text(content)
    with pytest.raises(CheckpointError) as err:
        read_meta(ckpt)
    assert str(ckpt / META) in str(err.value) and words in str(err.value)
    assert "previous checkpoint" in str(err.value)


def test_missing_and_truncated_tensor_files(ckpt):
    data = (ckpt / MODEL).read_bytes()
    (ckpt / MODEL).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="damaged") as err:
        load_checkpoint(ckpt)
    assert str(ckpt / MODEL) in str(err.value)
    (ckpt / MODEL).unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(ckpt)


def test_truncated_train_state_is_named(ckpt):
    (ckpt / TRAIN_STATE).write_bytes(b"\x80\x04garbage")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(ckpt)
    assert str(ckpt / TRAIN_STATE) in str(err.value)
    # without the training state (evaluation) the checkpoint still loads
    assert load_checkpoint(ckpt, with_train_state=False).step == 7


class Payload:
    def __reduce__(self):  # what a malicious or foreign pickle would do
        return (print, ("executed",))


def test_pickled_code_is_refused_not_executed(ckpt, capsys):
    torch.save({"w": Payload()}, ckpt / MODEL)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_checkpoint(ckpt)
    assert "executed" not in capsys.readouterr().out
    with open(ckpt / MODEL, "wb") as fh:
        pickle.dump([1, 2], fh)  # not a torch file at all
    with pytest.raises(CheckpointError):
        load_checkpoint(ckpt)


def test_another_methods_checkpoint_and_not_a_folder(ckpt, tmp_path):
    with pytest.raises(CheckpointError, match="'memory' checkpoint, expected a 'hyper' one"):
        load_checkpoint(ckpt, method="hyper")
    with pytest.raises(CheckpointError, match="does not exist"):
        read_meta(tmp_path / "nowhere")


def test_every_learner_state_loads_weights_only(tmp_path):
    from priorlab.methods.hyper.config import HyperConfig
    from priorlab.methods.hyper.loop import SupervisedLearner
    from priorlab.methods.memory.config import MemoryConfig
    from priorlab.methods.memory.loop import MemoryLearner

    hyper = SupervisedLearner(HyperConfig(arch="wrn", wrn_depth=10, wrn_widen=1, num_classes=3,
                                          in_channels=1, epochs=2, swa=True, swa_start_epoch=0))
    hyper.train_epoch([(torch.rand(4, 1, 12, 12), torch.tensor([0, 1, 2, 0]))])
    hyper.save(tmp_path / "hyper")
    again = SupervisedLearner(hyper.cfg)
    again.restore(load_checkpoint(tmp_path / "hyper", method="hyper"))
    assert again.epoch == 1
    memory = MemoryLearner(MemoryConfig(channels=4, lstm_hidden=8, n_shot=3, report_shots=[1]))
    memory.save(tmp_path / "memory")
    MemoryLearner(memory.cfg).restore(load_checkpoint(tmp_path / "memory", method="memory"))

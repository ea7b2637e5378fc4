"""Online few-shot continual learning (thesis Sec. 2.4.3, App. A.3): config, curriculum, the CL+LSTM
on continual tasks, the learner, the loop and the evaluation (tiny models, random or fake data)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from priorlab.methods.checkpoint import load_checkpoint
from priorlab.methods.configuration import ConfigError, config_from_dict
from priorlab.methods.memory.continual import (
    CLLSTMContinual, ContinualConfig, build_continual_model, curriculum_length,
)
from priorlab.methods.memory.continual_loop import (
    METHOD, ContinualBatches, ContinualLearner, evaluate_continual, load_model, train,
)

TINY = dict(image_size=16, channels=4, lstm_hidden=8, pln_hidden=8, anml_channels=4, nm_channels=4,
            n_labels=6, subtasks=4, n_shot=2, n_query=2, meta_batch=2, eval_lengths=[2, 4],
            curriculum_start=2, curriculum_every=2, max_iters=4, eval_every=2, seed=1)


def tiny(**kw) -> ContinualConfig:
    cfg = ContinualConfig(**{**TINY, **kw})
    cfg.validate()
    return cfg


class FakeClasses:
    """Class c, drawing d: noise with pixel [0, 0] = c (so a stub model can read the class)."""

    n_samples_per_class = 20

    def __init__(self, n_classes: int = 12, size: int = 16):
        rng = np.random.default_rng(0)
        self.images = rng.integers(0, 256, (n_classes, 20, size, size), dtype=np.uint8)
        self.images[:, :, 0, 0] = np.arange(n_classes)[:, None]

    def __len__(self) -> int:
        return len(self.images)

    def get(self, class_idx, sample_idx):
        return self.images[class_idx][sample_idx]


def random_task(cfg, batch=2, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    s, q = n * cfg.n_shot, n * cfg.n_query
    sx = torch.rand(batch, s, 1, cfg.image_size, cfg.image_size, generator=g)
    sy = torch.stack([torch.randperm(cfg.n_labels, generator=g)[:n].repeat_interleave(cfg.n_shot)
                      for _ in range(batch)])
    qx = torch.rand(batch, q, 1, cfg.image_size, cfg.image_size, generator=g)
    return sx, sy, qx


# ----------------------------------------------------------------------------------- config

def test_defaults_are_the_thesis():
    cfg = ContinualConfig()
    cfg.validate()
    assert (cfg.model, cfg.n_shot, cfg.meta_batch, cfg.n_labels) == ("cl_lstm", 5, 16, 20)
    assert (cfg.curriculum_start, cfg.curriculum_every, cfg.order) == (5, 5000, "blocked")
    assert (cfg.conv_layers, cfg.channels, cfg.lstm_hidden, cfg.anml_channels) == (4, 64, 400, 256)
    assert cfg.eval_lengths == [5, 10, 15, 20] and not cfg.first_order
    lrs = {m: ContinualConfig(model=m).resolved_lr() for m in ("cl_lstm", "oml", "anml")}
    assert lrs == {"cl_lstm": 1e-3, "oml": 1e-4, "anml": 1e-3}
    oml, anml = ContinualConfig(model="oml"), ContinualConfig(model="anml")
    assert oml.resolved_inner_lr() == 0.03 and oml.resolved_inner_optimizer() == "sgd"
    assert oml.resolved_test_inner_lr() == 0.03
    assert anml.resolved_inner_optimizer() == "adam" and anml.resolved_test_inner_lr() == 1e-3
    assert ContinualConfig(model="anml", inner_optimizer="sgd").resolved_test_inner_lr() == 0.01
    assert ContinualConfig(lr=3e-4).resolved_lr() == 3e-4


def test_memory_config_of_the_cl_lstm():
    mc = tiny(skip_pair=[0, 2], label_injection="every", lstm_forget_bias=2.0).to_memory_config()
    assert (mc.model, mc.n_way, mc.n_shot, mc.channels, mc.lstm_hidden) == ("cl_lstm", 6, 2, 4, 8)
    assert mc.skip_pair == [0, 2] and mc.label_injection == "every" and mc.lstm_forget_bias == 2.0
    assert mc.label_delay == 1


@pytest.mark.parametrize("kw,match", [
    (dict(model="lstm"), "choose one of"),
    (dict(order="random"), "blocked"),
    (dict(n_labels=3), "n_labels >= 4"),
    (dict(eval_lengths=[2, 8]), "n_labels >= 8"),
    (dict(eval_lengths=[]), "eval_lengths"),
    (dict(n_shot=10, n_query=11), "20 drawings"),
    (dict(query_label="first"), "query_label"),
    (dict(inner_optimizer="rmsprop"), "inner_optimizer"),
    (dict(lr=0.0), "lr=0.0 must be > 0"),
    (dict(curriculum_every=0), "curriculum_every=0 must be >= 1"),
    (dict(image_size=4), "too small"),
    (dict(label_injection=[9]), "label_injection"),
])
def test_validate_rejects_with_actionable_messages(kw, match):
    with pytest.raises(ConfigError, match=match):
        ContinualConfig(**{**TINY, **kw}).validate()


def test_config_from_cli_strings():
    cfg = config_from_dict(ContinualConfig, {"model": "oml", "inner_lr": "0.01", "inner_optimizer": "null",
                                             "eval_lengths": "[5,10]", "order": "shuffled"})
    assert cfg.inner_lr == 0.01 and cfg.inner_optimizer is None and cfg.eval_lengths == [5, 10]
    with pytest.raises(ConfigError, match="valid keys"):
        config_from_dict(ContinualConfig, {"subtask": 5})


def test_curriculum_length():
    cfg = ContinualConfig(subtasks=10)
    got = [curriculum_length(cfg, s) for s in (0, 4999, 5000, 9999, 10000, 24999, 25000, 10**6)]
    assert got == [5, 5, 6, 6, 7, 9, 10, 10]
    assert curriculum_length(ContinualConfig(subtasks=3), 0) == 3        # target below the start
    assert curriculum_length(ContinualConfig(subtasks=5), 0) == 5
    with pytest.raises(ValueError):
        curriculum_length(cfg, -1)


# --------------------------------------------------------------------------------- CL+LSTM

@pytest.fixture
def cl_lstm(one_thread):
    torch.manual_seed(0)
    return build_continual_model(tiny()).eval()


def test_cl_lstm_queries_never_see_each_other(cl_lstm):
    sx, sy, qx = random_task(cl_lstm.cfg)
    with torch.no_grad():
        out = cl_lstm(sx, sy, qx)
        assert out.shape == (2, 6, 6)
        perm = torch.randperm(6)
        torch.testing.assert_close(cl_lstm(sx, sy, qx[:, perm]), out[:, perm])
        for i in (0, 5):                                   # alone = in the set: no information flows
            torch.testing.assert_close(cl_lstm(sx, sy, qx[:, i:i + 1])[:, 0], out[:, i])
        other = qx.clone()
        other[:, 1:] = torch.rand_like(other[:, 1:])
        torch.testing.assert_close(cl_lstm(sx, sy, other)[:, 0], out[:, 0])


def test_cl_lstm_query_output_depends_on_the_support(cl_lstm):
    sx, sy, qx = random_task(cl_lstm.cfg)
    with torch.no_grad():
        out = cl_lstm(sx, sy, qx)
        sx2 = sx.clone()
        sx2[:, 0] = torch.rand_like(sx2[:, 0])
        assert not torch.allclose(cl_lstm(sx2, sy, qx), out)
        sy2 = sy.clone()
        sy2[:, 0] = (sy[:, 0] + 1) % 6
        assert not torch.allclose(cl_lstm(sx, sy2, qx), out)


def test_cl_lstm_support_has_no_label_leakage(cl_lstm):
    sx, sy, _ = random_task(cl_lstm.cfg)
    t = 3
    sy2 = sy.clone()
    sy2[:, t:] = (sy[:, t:] + 1) % 6
    with torch.no_grad():
        a, b = cl_lstm.support_logits(sx, sy), cl_lstm.support_logits(sx, sy2)
    torch.testing.assert_close(a[:, :t + 1], b[:, :t + 1])               # step t sees y_<t only
    assert not torch.allclose(a[:, t + 1], b[:, t + 1])


@pytest.mark.parametrize("query_label", ["last", "null"])
def test_cl_lstm_query_label_input(one_thread, query_label):
    torch.manual_seed(0)
    model = CLLSTMContinual(tiny(query_label=query_label)).eval()
    sx, sy, qx = random_task(model.cfg)
    sy2 = sy.clone()
    sy2[:, -1] = (sy[:, -1] + 1) % 6
    with torch.no_grad():
        same = torch.allclose(model(sx, sy, qx), model(sx, sy2, qx))
    assert same == (query_label == "null")     # the final support label reaches the queries only as `last`


# ------------------------------------------------------------------------- learner and loop

def test_train_reports_curriculum_and_checkpoint_roundtrip(tmp_path, one_thread):
    cfg = tiny(max_iters=6, eval_every=2)
    src = FakeClasses()
    learner = ContinualLearner(cfg)
    reports = []

    def report(metrics, save):
        reports.append(metrics)
        save(tmp_path / f"ckpt_{int(metrics['step'])}")

    train(learner, ContinualBatches(src, cfg), report=report,
          evaluate_fn=lambda m: evaluate_continual(m, src, cfg, range(3), lengths=[2]))
    assert [r["step"] for r in reports] == [2.0, 4.0, 6.0]
    assert [r["train/subtasks"] for r in reports] == [2.0, 3.0, 4.0]  # length at updates 1, 3, 5
    assert {"train/loss", "train/query_acc", "eval/acc_len2", "eval/acc_len2_ci95",
            "eval/acc_subtask2"} <= set(reports[-1])
    ckpt = load_checkpoint(tmp_path / "ckpt_6", method=METHOD)
    assert ckpt.step == 6 and ckpt.config["model"] == "cl_lstm"
    model, cfg2, step = load_model(tmp_path / "ckpt_6")
    assert cfg2 == cfg and step == 6 and not model.training
    sx, sy, qx = random_task(cfg)
    with torch.no_grad():
        torch.testing.assert_close(model(sx, sy, qx), learner.model.eval()(sx, sy, qx))


def test_resumed_training_equals_uninterrupted(tmp_path, one_thread):
    cfg = tiny(max_iters=4, eval_every=2)
    src = FakeClasses()
    full = ContinualLearner(cfg)
    train(full, ContinualBatches(src, cfg), evaluate_fn=None, report=lambda m, s: None)
    first = ContinualLearner(cfg)
    train(first, ContinualBatches(src, cfg), evaluate_fn=None, report=lambda m, s: None, max_iters=2)
    first.save(tmp_path / "ckpt")
    resumed = ContinualLearner(cfg)
    resumed.restore(load_checkpoint(tmp_path / "ckpt", method=METHOD))
    train(resumed, ContinualBatches(src, cfg), evaluate_fn=None, report=lambda m, s: None)
    assert resumed.step == full.step == 4
    for a, b in zip(resumed.model.parameters(), full.model.parameters()):
        torch.testing.assert_close(a, b)


class RemembersFirstSubtask(nn.Module):
    """A stub learner: predicts the first support label for every query (perfect on subtask 1)."""

    def __init__(self, n_labels):
        super().__init__()
        self.n_labels = n_labels
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, sx, sy, qx):
        return nn.functional.one_hot(sy[:, :1], self.n_labels).float().expand(-1, qx.shape[1], -1)


def test_evaluate_continual_metrics(one_thread):
    cfg = tiny(eval_lengths=[2, 4])
    stub = RemembersFirstSubtask(cfg.n_labels).train()
    metrics = evaluate_continual(stub, FakeClasses(), cfg, range(5))
    assert stub.training                                                # mode restored
    assert metrics["eval/episodes"] == 5.0
    assert metrics["eval/acc_len2"] == pytest.approx(1 / 2) and metrics["eval/acc_len4"] == pytest.approx(1 / 4)
    assert metrics["eval/acc_len4_ci95"] == pytest.approx(0.0)
    assert [metrics[f"eval/acc_subtask{i}"] for i in range(1, 5)] == [1.0, 0.0, 0.0, 0.0]
    assert "eval/acc_subtask5" not in metrics
    study = evaluate_continual(stub, FakeClasses(), tiny(subtasks=3), range(2))  # target length too
    assert {"eval/acc_len2", "eval/acc_len3", "eval/acc_len4"} <= set(study)
    shuffled = evaluate_continual(stub, FakeClasses(), tiny(order="shuffled"), range(5), lengths=[3])
    assert shuffled["eval/acc_subtask1"] == 1.0 and shuffled["eval/acc_len3"] == pytest.approx(1 / 3)
    learner = ContinualLearner(cfg)
    out = evaluate_continual(learner, FakeClasses(), cfg, range(2), lengths=[2], batch_size=1)
    assert 0.0 <= out["eval/acc_len2"] <= 1.0

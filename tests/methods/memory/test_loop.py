import numpy as np
import torch

from priorlab.methods.checkpoint import load_checkpoint
from priorlab.methods.memory.config import MemoryConfig
from priorlab.methods.memory.loop import MemoryLearner, evaluate, mean_ci95, train


class FakeSource:
    """Classes are constant images with class-specific brightness patterns."""

    def __init__(self, cfg, n_classes=10, fixed_classes=False):
        rng = np.random.default_rng(123)
        self.fixed = fixed_classes
        self.protos = rng.integers(0, 256, (n_classes, 1, cfg.image_size, cfg.image_size), dtype=np.uint8)
        self.cfg = cfg

    def sample_batch(self, seeds):
        xs, ys = [], []
        for s in seeds:
            rng = np.random.default_rng(s)
            cls = rng.choice(len(self.protos), self.cfg.n_way, replace=False)
            if self.fixed:  # same classes and labels in every episode: learnable without memory
                cls = np.arange(self.cfg.n_way)
            y = rng.permutation(np.repeat(np.arange(self.cfg.n_way), self.cfg.n_shot))
            xs.append(self.protos[cls[y]])
            ys.append(y)
        return np.stack(xs), np.stack(ys)


def tiny_cfg(**kw):
    base = dict(channels=4, lstm_hidden=16, n_way=2, n_shot=3, image_size=8, conv_layers=2,
                report_shots=[1, 2], meta_batch=4, eval_every=5, max_iters=10, seed=3)
    base.update(kw)
    return MemoryConfig(**base)


def batches(source, cfg, start=0):
    i = start
    while True:
        yield source.sample_batch(range(i * cfg.meta_batch, (i + 1) * cfg.meta_batch))
        i += 1


def test_mean_ci95():
    m, ci = mean_ci95(np.array([0.0, 1.0, 0.0, 1.0]))
    assert m == 0.5 and abs(ci - 1.96 * np.std([0, 1, 0, 1], ddof=1) / 2) < 1e-12


def test_train_reports_and_checkpoint_roundtrip(tmp_path):
    cfg = tiny_cfg()
    src = FakeSource(cfg)
    learner = MemoryLearner(cfg)
    reports = []

    def report(metrics, save):
        reports.append(metrics)
        save(tmp_path / f"ckpt_{int(metrics['step'])}")

    train(learner, batches(src, cfg),
          evaluate_fn=lambda m: evaluate(m, src, list(range(1000, 1008)), cfg.report_shots),
          report=report)
    assert [r["step"] for r in reports] == [5.0, 10.0]
    assert {"train/loss", "eval/acc_1shot", "eval/acc_2shot_ci95"} <= set(reports[-1])
    ckpt = load_checkpoint(tmp_path / "ckpt_10", method="memory")
    assert ckpt.step == 10 and ckpt.config["channels"] == 4
    fresh = MemoryLearner(cfg)
    fresh.restore(ckpt)
    x, y = src.sample_batch([7])
    x = torch.as_tensor(x).float() / 255
    y = torch.as_tensor(y)
    with torch.no_grad():
        assert torch.equal(fresh.model(x, y), learner.model(x, y))
    assert fresh.step == 10


def test_resumed_training_equals_uninterrupted(tmp_path):
    cfg = tiny_cfg(max_iters=6, eval_every=3)
    src = FakeSource(cfg)
    full = MemoryLearner(cfg)
    train(full, batches(src, cfg), evaluate_fn=None, report=lambda m, s: None)

    first = MemoryLearner(cfg)
    train(first, batches(src, cfg), evaluate_fn=None,
          report=lambda m, s: s(tmp_path / "c") if m["step"] == 3 else None, max_iters=3)
    resumed = MemoryLearner(cfg)
    resumed.restore(load_checkpoint(tmp_path / "c"))
    train(resumed, batches(src, cfg, start=3), evaluate_fn=None, report=lambda m, s: None)
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_learning_happens_on_an_easy_task():
    """The loop learns: with fixed class->label pairs even 0-shot accuracy must rise."""
    cfg = tiny_cfg(max_iters=200, eval_every=200, lr=3e-3)
    src = FakeSource(cfg, fixed_classes=True)
    learner = MemoryLearner(cfg)
    seeds = list(range(5000, 5064))
    before = evaluate(learner.model, src, seeds, [0])["eval/acc_0shot"]
    train(learner, batches(src, cfg), evaluate_fn=None, report=lambda m, s: None)
    after = evaluate(learner.model, src, seeds, [0])["eval/acc_0shot"]
    assert after > before + 0.2 and after > 0.9, (before, after)

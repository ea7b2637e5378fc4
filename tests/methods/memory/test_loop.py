import numpy as np
import torch

from priorlab.data.episodes import OnlineEpisodeSampler
from priorlab.methods.checkpoint import load_checkpoint
from priorlab.methods.memory.config import MemoryConfig
from priorlab.methods.memory.loop import MemoryLearner, evaluate, mean_ci95, to_inputs, train
from priorlab.methods.memory.protocol import kshot_counts, previous_labels, shot_indices


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


def test_loop_fits_fixed_class_label_pairs(one_thread):
    """The optimiser and loop fit a task that needs *no* memory: the same classes carry the same
    labels in every episode, so even 0-shot accuracy can reach ~1. This checks training, not the
    online memory (see the permuted-label test below for that)."""
    cfg = tiny_cfg(max_iters=200, eval_every=200, lr=3e-3)
    src = FakeSource(cfg, fixed_classes=True)
    learner = MemoryLearner(cfg)
    seeds = list(range(5000, 5064))
    before = evaluate(learner.model, src, seeds, [0])["eval/acc_0shot"]
    train(learner, batches(src, cfg), evaluate_fn=None, report=lambda m, s: None)
    after = evaluate(learner.model, src, seeds, [0])["eval/acc_0shot"]
    assert after > before + 0.2 and after > 0.9, (before, after)


class PatternClasses:
    """A ``ClassSource`` of random binary s x s patterns: drawing j of class c is pattern c with
    a few pixels flipped. ``lo:hi`` selects a range of classes (disjoint train / eval classes)."""

    def __init__(self, n_classes: int, size: int, n_drawings: int = 8, flip: float = 0.05,
                 seed: int = 0, lo: int = 0, hi: int | None = None):
        rng = np.random.default_rng(seed)
        protos = rng.random((n_classes, 1, size, size)) < 0.5
        noise = rng.random((n_classes, n_drawings, size, size)) < flip
        self.images = ((protos ^ noise) * 255).astype(np.uint8)[lo:hi]
        self.n_samples_per_class = n_drawings

    def __len__(self) -> int:
        return len(self.images)

    def get(self, class_idx, sample_idx):
        return self.images[class_idx][sample_idx]


def no_memory_bound(y: np.ndarray, shots: list[int], n_way: int) -> dict[int, float]:
    """Best k-shot accuracy of any predictor that sees only (x_t, y_{t-1}), even one told k.

    Labels are a fresh uniform permutation per episode, so given y_{t-1} = a every other label
    is equally likely for y_t whatever x_t shows: the best such rule predicts a (right with
    P(y_t = y_{t-1})) or one fixed other label (right with (1 - P(same)) / (n_way - 1)); at t = 0
    there is no label yet (1 / n_way). Rates are taken on the evaluation episodes themselves.
    """
    y = torch.as_tensor(y)
    k_of = shot_indices(y).numpy()
    same = np.zeros_like(k_of, dtype=bool)
    same[:, 1:] = (y[:, 1:] == y[:, :-1]).numpy()
    bound = {}
    for k in shots:
        first = (k_of[:, 0] == k).sum()
        later = k_of[:, 1:] == k
        p_same = same[:, 1:][later].mean() if later.any() else 0.0
        best = max(p_same, (1 - p_same) / (n_way - 1))
        bound[k] = float((first / n_way + later.sum() * best) / (first + later.sum()))
    return bound


@torch.no_grad()
def memory_wiped_accuracy(model, x, y, shots: list[int]) -> dict[int, float]:
    """k-shot accuracy of ``model`` with its hidden state reset before every step (it still gets
    x_t and y_{t-1}): the same weights with the online memory taken away."""
    model.eval()
    x, y = to_inputs(x, y, torch.device("cpu"))
    y_prev = previous_labels(y, model.n_way)
    logits = torch.stack([model.step(x[:, t], y_prev[:, t], model.initial_state(len(x), x))[0]
                          for t in range(x.shape[1])], 1)
    return {k: float(c.sum() / n.sum()) for k, (c, n) in kshot_counts(logits, y, shots).items()}


def test_online_memory_learns_labels_permuted_per_episode(one_thread):
    """Accuracy at the k-th repeat of a class (k >= 1) needs the online memory.

    Episodes come from the real ``OnlineEpisodeSampler``, which gives the episode's classes a
    fresh random permutation of the labels, so which label goes with which pattern holds only
    inside one episode: the weights cannot store it, and the only way to name a class right is
    to have kept, in the hidden state, the pairs (x_i, y_i) shown earlier in the same episode.
    Evaluation uses classes never seen in training. Without memory the best possible k-shot
    accuracy is ``no_memory_bound`` (about 0.35 here: a guess from y_{t-1} alone); after a few
    hundred steps the CL+LSTM leaves that plateau and the 1-, 2- and 3-shot accuracies must lie
    far above it and above the 0-shot accuracy (a first appearance can only be guessed). The
    same trained weights with the hidden state wiped at every step fall back under the bound.
    """
    cfg = MemoryConfig(n_way=3, n_shot=4, image_size=6, conv_layers=1, channels=8,
                       lstm_hidden=32, label_injection="first", meta_batch=16, lr=1e-2,
                       report_shots=[1, 2, 3], max_iters=1200, eval_every=1200, seed=0)
    shots = [0, 1, 2, 3]
    train_s = OnlineEpisodeSampler(PatternClasses(60, 6, hi=40), cfg.n_way, cfg.n_shot)
    eval_s = OnlineEpisodeSampler(PatternClasses(60, 6, lo=40), cfg.n_way, cfg.n_shot)
    seeds = list(range(10**6, 10**6 + 200))

    # The sampler really permutes: every evaluation class shows up under every label.
    labels_of: dict[int, set[int]] = {}
    for s in seeds:
        for label, c in enumerate(eval_s.sample(s).classes):
            labels_of.setdefault(int(c), set()).add(label)
    assert all(len(v) == cfg.n_way for v in labels_of.values()), labels_of

    x_eval, y_eval = eval_s.sample_batch(seeds)
    bound = no_memory_bound(y_eval, shots, cfg.n_way)
    learner = MemoryLearner(cfg)
    before = evaluate(learner.model, eval_s, seeds, shots)
    train(learner, batches(train_s, cfg), evaluate_fn=None, report=lambda m, s: None)
    after = evaluate(learner.model, eval_s, seeds, shots)
    acc = {k: after[f"eval/acc_{k}shot"] for k in shots}
    info = (acc, bound, {k: before[f"eval/acc_{k}shot"] for k in shots})
    for k in (1, 2, 3):
        assert before[f"eval/acc_{k}shot"] < bound[k] + 0.1, info
        assert acc[k] > bound[k] + 0.2, info
        assert acc[k] > acc[0] + 0.15, info
    assert min(acc[2], acc[3]) > acc[1] - 0.03, info  # more shots do not hurt
    wiped = memory_wiped_accuracy(learner.model, x_eval, y_eval, shots)
    assert all(wiped[k] < bound[k] + 0.06 for k in (1, 2, 3)), (wiped, bound)

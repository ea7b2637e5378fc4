"""Adaptive Posterior Learning (Sec. 2.4.2 baseline): a sample is written to the memory iff its
surprise, known once its label arrives, exceeds the threshold; the memory only ever holds samples
whose labels have arrived; a read returns the true nearest entries; no step sees its own or a
later label; gradients reach the CNN through the stored embeddings; it trains in the learner."""

import math

import pytest
import torch
import torch.nn.functional as F

from priorlab.methods.memory.apl import AdaptivePosteriorLearning, surprise_threshold
from priorlab.methods.memory.cl_lstm import build_model
from priorlab.methods.memory.config import MemoryConfig

pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models: one thread is fastest

CFG = dict(model="apl", channels=8, n_way=3, n_shot=4, lstm_hidden=8, apl_neighbours=3,
           report_shots=[1, 2])


def _model(label_vote=True, **over) -> AdaptivePosteriorLearning:
    torch.manual_seed(0)
    cfg = MemoryConfig(**dict(CFG, **over))
    return (build_model(cfg) if label_vote else AdaptivePosteriorLearning(cfg, label_vote=False)).eval()


def _episode(b=2, t=12, n_way=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, t, 1, 28, 28, generator=g), torch.randint(0, n_way, (b, t), generator=g)


@pytest.mark.parametrize("label_vote", [True, False])
def test_predictions_never_see_the_current_or_later_labels(label_vote):
    model = _model(label_vote)
    x, y = _episode()
    with torch.no_grad():
        out = model(x, y)
        for t in (0, 5, 11):
            y2 = y.clone()
            y2[:, t:] = torch.randint(0, 3, y2[:, t:].shape, generator=torch.Generator().manual_seed(t))
            torch.testing.assert_close(model(x, y2)[:, :t + 1], out[:, :t + 1], rtol=0, atol=0)
    torch.testing.assert_close(out[:, 0], torch.zeros(2, 3), rtol=0, atol=0)   # empty memory: uniform


@pytest.mark.parametrize("label_vote", [True, False])
def test_a_label_delay_of_d_shifts_what_each_step_sees_by_exactly_d(label_vote):
    model = _model(label_vote, label_delay=3, apl_surprise=0.0, apl_neighbours=5)   # keep all arrived
    x, y = _episode()
    with torch.no_grad():
        out = model(x, y)
        for t in (3, 7):
            y2 = y.clone()
            y2[:, t - 2:] = (y2[:, t - 2:] + 1) % 3        # every label from step t - d + 1 on
            torch.testing.assert_close(model(x, y2)[:, :t + 1], out[:, :t + 1], rtol=0, atol=0)
            y3 = y.clone()
            y3[:, t - 3] = (y3[:, t - 3] + 1) % 3          # the label that arrives at step t
            assert not torch.equal(model(x, y3)[:, t], out[:, t])
    assert torch.equal(out[:, :3], torch.zeros(2, 3, 3))   # nothing has arrived before step 3


@pytest.mark.parametrize("delay", [1, 3])
def test_the_memory_only_holds_arrived_samples_and_writes_iff_surprised(delay):
    model = _model(label_delay=delay)
    x, y = _episode(t=15)
    with torch.no_grad():
        out, trace = model(x, y, return_trace=True)
    t_len = y.shape[1]
    steps = torch.arange(t_len)
    arrived = steps[None, :] <= steps[:, None] - delay                  # [t, s]: y_s known at t
    assert not (trace.stored & ~arrived).any()
    # once stored, kept; stored at step t = written among the arrived
    assert torch.equal(trace.stored[:, -1], trace.written)
    assert torch.equal(trace.stored, trace.written[:, None, :] & arrived)
    # surprise = the loss of the prediction made at step s; written iff it exceeds the threshold
    loss = -F.log_softmax(out, -1).gather(2, y[..., None])[..., 0]
    known = steps < t_len - delay
    torch.testing.assert_close(trace.surprise[:, known], loss[:, known], rtol=1e-5, atol=1e-5)
    assert trace.surprise[:, ~known].isnan().all()
    sigma = surprise_threshold(model.cfg)
    assert sigma == pytest.approx(math.log(3) / 2)
    assert torch.equal(trace.written[:, known], trace.surprise[:, known] > sigma)
    assert not trace.written[:, ~known].any()


def test_threshold_zero_writes_every_arrived_sample_and_a_huge_one_none():
    x, y = _episode()
    with torch.no_grad():
        _, every = _model(apl_surprise=0.0)(x, y, return_trace=True)
        out, none = _model(apl_surprise=1e9)(x, y, return_trace=True)
    assert every.written[:, :-1].all() and not every.written[:, -1].any()
    assert not none.written.any() and (none.neighbours == -1).all()
    torch.testing.assert_close(out, torch.zeros_like(out), rtol=0, atol=0)   # falls back to uniform


def test_a_read_returns_the_nearest_stored_entries_in_order():
    model = _model(apl_neighbours=4)
    x, y = _episode(t=15)
    with torch.no_grad():
        _, trace = model(x, y, return_trace=True)
        h = model.embed(x)
    for b in range(2):
        for t in range(15):
            stored = trace.stored[b, t].nonzero()[:, 0]
            dist = ((h[b, t] - h[b, stored]) ** 2).sum(-1)
            expect = stored[dist.argsort()][:4].tolist()
            got = trace.neighbours[b, t]
            assert got[:len(expect)].tolist() == expect and (got[len(expect):] == -1).all()
    assert (trace.neighbours[:, -1] >= 0).sum() > 0


def test_gradients_reach_the_cnn_through_the_stored_embeddings():
    model = _model(apl_surprise=0.0).train()
    x, y = _episode()
    x.requires_grad_(True)
    model(x, y)[:, 6].sum().backward()                  # step 6 reads samples 0..5 (k = 3 of them)
    _, trace = model(x, y, return_trace=True)
    read = set(trace.neighbours[0, 6].tolist())
    per_sample = x.grad[0].abs().flatten(1).sum(-1)
    assert all(per_sample[s] > 0 for s in read)         # stored embeddings get gradients
    assert per_sample[6] > 0 and (per_sample[7:] == 0).all()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.embed.parameters())


def test_apl_trains_in_the_learner():
    from priorlab.methods.memory.loop import MemoryLearner, to_inputs

    learner = MemoryLearner(MemoryConfig(**dict(CFG, meta_batch=2, lr=1e-2)))
    x, y = _episode(t=12)
    xs, ys = to_inputs(x.numpy(), y.numpy(), learner.device)
    losses = [learner.train_step(xs, ys) for _ in range(15)]
    assert all(math.isfinite(v) for v in losses) and min(losses[-3:]) < losses[0]

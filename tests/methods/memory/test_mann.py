"""The NTM / memory-augmented baseline (Santoro et al.): read weights are distributions, least-used
access, no label leakage, and it trains in the learner."""

import torch

from priorlab.methods.memory.cl_lstm import build_model
from priorlab.methods.memory.config import MemoryConfig
from priorlab.methods.memory.mann import least_used, read_weights

CFG = dict(model="ntm", n_way=3, n_shot=4, report_shots=[1, 2], lstm_hidden=16, memory_slots=10,
           memory_width=6, read_heads=2, image_size=12)


def _episode(t=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, t, 1, 12, 12, generator=g), torch.randint(0, 3, (2, t), generator=g)


def test_read_weights_are_distributions_over_slots_and_least_used_picks_the_smallest():
    g = torch.Generator().manual_seed(0)
    w = read_weights(torch.randn(3, 2, 5, generator=g), torch.randn(3, 7, 5, generator=g))
    assert w.shape == (3, 2, 7) and bool((w >= 0).all())
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 2))
    usage = torch.tensor([[0.5, 0.1, 0.9, 0.2], [0.0, 1.0, 2.0, 3.0]])
    assert least_used(usage, 2).tolist() == [[0, 1, 0, 1], [1, 1, 0, 0]]


def test_the_network_reads_distributions_and_never_sees_the_current_label():
    torch.manual_seed(0)
    net = build_model(MemoryConfig(**CFG)).eval()
    x, y = _episode()
    with torch.no_grad():
        out, weights = net(x, y, return_weights=True)
        assert weights.shape == (2, 12, 2, 10)
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, 12, 2))
        for t in (0, 6):
            y2 = y.clone()
            y2[:, t:] = (y2[:, t:] + 1) % 3
            torch.testing.assert_close(net(x, y2)[:, :t + 1], out[:, :t + 1], rtol=0, atol=0)


def test_it_trains_in_the_learner():
    from priorlab.methods.memory.loop import MemoryLearner, to_inputs

    learner = MemoryLearner(MemoryConfig(**CFG, meta_batch=2, lr=3e-3))
    x, y = _episode()
    xs, ys = to_inputs(x.numpy(), y.numpy(), learner.device)
    losses = [learner.train_step(xs, ys) for _ in range(20)]
    assert all(torch.isfinite(torch.tensor(losses))) and min(losses[-3:]) < losses[0]

import pytest
import torch
from torch import nn

from priorlab.methods.maml import MAML


def tiny_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()


def data(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randint(0, 2, (6,), generator=g)


def meta_loss(maml, steps=1):
    xs, ys = data(1)
    xq, yq = data(2)
    learner = maml.clone()
    for _ in range(steps):
        learner.adapt(nn.functional.cross_entropy(learner(xs), ys))
    return nn.functional.cross_entropy(learner(xq), yq), learner


def test_clone_equals_original_before_adaptation():
    net = tiny_net()
    maml = MAML(net)
    x, _ = data(3)
    assert torch.equal(maml.clone()(x), net(x))


def test_second_order_gradient_matches_finite_differences():
    net = tiny_net()
    maml = MAML(net, inner_lr=0.5)
    loss, _ = meta_loss(maml, steps=2)
    grads = torch.autograd.grad(loss, list(net.parameters()))
    eps = 1e-6
    for p, g in zip(net.parameters(), grads):
        flat = p.data.view(-1)
        for i in range(0, flat.numel(), max(1, flat.numel() // 3)):
            old = flat[i].item()
            flat[i] = old + eps
            up = meta_loss(maml, steps=2)[0].item()
            flat[i] = old - eps
            down = meta_loss(maml, steps=2)[0].item()
            flat[i] = old
            assert g.view(-1)[i].item() == pytest.approx((up - down) / (2 * eps), rel=1e-4, abs=1e-8)


def test_first_order_drops_second_order_terms():
    net = tiny_net()
    so = torch.autograd.grad(meta_loss(MAML(net, inner_lr=0.5))[0], list(net.parameters()))
    fo_loss, learner = meta_loss(MAML(net, inner_lr=0.5, first_order=True))
    fo = torch.autograd.grad(fo_loss, list(net.parameters()))
    assert any(not torch.allclose(a, b) for a, b in zip(so, fo))
    # first order: the meta-gradient is the query gradient at the adapted parameters
    adapted = [learner.params[n].detach().requires_grad_() for n, _ in net.named_parameters()]
    from torch.func import functional_call
    xq, yq = data(2)
    names = [n for n, _ in net.named_parameters()]
    q = nn.functional.cross_entropy(functional_call(net, dict(zip(names, adapted)), (xq,)), yq)
    ref = torch.autograd.grad(q, adapted)
    for a, b in zip(fo, ref):
        assert torch.allclose(a, b)


def test_adapt_filter_moves_only_selected_parameters():
    net = tiny_net()
    maml = MAML(net, inner_lr=0.5, adapt=lambda n: n.startswith("2."))
    _, learner = meta_loss(maml)
    moved = learner.movement()
    assert set(moved) == {"2.weight", "2.bias"} and all(v > 0 for v in moved.values())
    assert learner.params["0.weight"] is dict(net.named_parameters())["0.weight"]
    with pytest.raises(ValueError, match="selects no parameter"):
        MAML(net, adapt=lambda n: False)


def test_learned_preconditioner_gets_meta_gradient():
    net = tiny_net()
    maml = MAML(net, inner_lr=0.5, learn_preconditioner=True).double()
    loss, _ = meta_loss(maml)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in maml.preconditioner.values())


def test_meta_training_improves_adapted_accuracy_on_a_toy_task_family():
    """Tasks: 2-way, class means drawn per task; MAML must learn to adapt (not memorise)."""
    import numpy as np

    from priorlab.data.episodes import FewShotTask
    from priorlab.methods.maml import evaluate_tasks, meta_train_step

    def task(seed):
        rng = np.random.default_rng(seed)
        means = rng.normal(0, 1, (2, 4))
        def draw(k):
            y = np.repeat([0, 1], k)
            return (means[y] + 0.3 * rng.normal(size=(2 * k, 4))).astype(np.float32), y
        xs, ys = draw(3)
        xq, yq = draw(5)
        return FewShotTask(xs, ys, xq, yq, seed)

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 2))
    maml = MAML(net, inner_lr=0.5)
    opt = torch.optim.Adam(maml.parameters(), lr=1e-2)
    test = [task(10_000 + i) for i in range(40)]

    def query_loss():  # mean query loss after one inner step, on held-out tasks
        out = []
        for t in test:
            learner = maml.clone()
            learner.adapt(nn.functional.cross_entropy(learner(torch.tensor(t.x_support)),
                                                      torch.tensor(t.y_support)), keep_graph=False)
            out.append(float(nn.functional.cross_entropy(learner(torch.tensor(t.x_query)),
                                                         torch.tensor(t.y_query))))
        return sum(out) / len(out)

    before = query_loss()
    for step in range(150):
        meta_train_step(maml, opt, [task(4 * step + i) for i in range(4)])
    after = query_loss()
    acc, ci = evaluate_tasks(maml, test)
    assert after < before - 0.03 and acc > 0.8, (before, after, acc, ci)

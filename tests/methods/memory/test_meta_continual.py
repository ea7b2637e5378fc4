"""OML and ANML on continual tasks (priorlab.methods.memory.meta_continual, thesis App. A.3.2-A.3.3):
the functional inner loop against hand-computed updates, what it adapts, meta-test isolation,
the second-order meta-gradient, query independence, and a few training steps of every model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from priorlab.methods.memory.continual import ContinualConfig, build_continual_model
from priorlab.methods.memory.continual_loop import ContinualLearner
from priorlab.methods.memory.meta_continual import ADAM_EPS, ANML, OML

TINY = dict(image_size=8, conv_layers=2, channels=3, lstm_hidden=8, pln_hidden=5, anml_channels=3,
            nm_channels=4, n_labels=4, subtasks=3, n_shot=2, n_query=2, meta_batch=2,
            eval_lengths=[3], curriculum_start=3)


def tiny(model="oml", **kw) -> ContinualConfig:
    cfg = ContinualConfig(model=model, **{**TINY, **kw})
    cfg.validate()
    return cfg


def task(cfg, batch=2, n=3, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    s, q = n * cfg.n_shot, n * cfg.n_query
    sx = torch.rand(batch, s, 1, cfg.image_size, cfg.image_size, generator=g, dtype=dtype)
    sy = torch.stack([torch.randperm(cfg.n_labels, generator=g)[:n].repeat_interleave(cfg.n_shot)
                      for _ in range(batch)])
    qx = torch.rand(batch, q, 1, cfg.image_size, cfg.image_size, generator=g, dtype=dtype)
    qy = sy[:, ::cfg.n_shot].repeat_interleave(cfg.n_query, 1)
    return sx, sy, qx, qy


def build(model="oml", **kw):
    torch.manual_seed(0)
    return build_continual_model(tiny(model, **kw))


def hand_adapt(model, sx, sy, lr, optimizer="sgd"):
    """The inner loop written out with torch.autograd, task by task, sample by sample."""
    out = []
    for b in range(sx.shape[0]):
        params = {k: p.detach().clone().requires_grad_() for k, p in model.adapted.named_parameters()}
        m = {k: torch.zeros_like(p) for k, p in params.items()}
        v = {k: torch.zeros_like(p) for k, p in params.items()}
        for t in range(sx.shape[1]):
            inputs = [x[b, t:t + 1] for x in model.per_sample_inputs(sx)]
            logits = torch.func.functional_call(model.adapted, params, tuple(inputs))
            grads = torch.autograd.grad(F.cross_entropy(logits, sy[b, t:t + 1]), list(params.values()))
            new = {}
            for (k, p), g in zip(params.items(), grads):
                if optimizer == "sgd":
                    new[k] = p - lr * g
                else:
                    m[k] = 0.9 * m[k] + 0.1 * g
                    v[k] = 0.999 * v[k] + 0.001 * g * g
                    mh, vh = m[k] / (1 - 0.9 ** (t + 1)), v[k] / (1 - 0.999 ** (t + 1))
                    new[k] = p - lr * mh / (vh.sqrt() + ADAM_EPS)
            params = {k: p.detach().requires_grad_() for k, p in new.items()}
        out.append({k: p.detach() for k, p in params.items()})
    return {k: torch.stack([o[k] for o in out]) for k in out[0]}


@pytest.mark.parametrize("model_name", ["oml", "anml"])
def test_inner_loop_equals_hand_computed_sgd(one_thread, model_name):
    model = build(model_name).train()
    sx, sy, _, _ = task(model.cfg)
    fast = model.adapt(sx[:, :3], sy[:, :3])
    expected = hand_adapt(model, sx[:, :3], sy[:, :3], model.cfg.resolved_inner_lr())
    assert set(fast) == set(expected)
    for k in fast:
        torch.testing.assert_close(fast[k], expected[k], rtol=1e-4, atol=1e-6)


def test_meta_test_adam_equals_hand_computed_adam(one_thread):
    model = build("anml").eval()
    sx, sy, _, _ = task(model.cfg)
    with torch.no_grad():
        fast = model.adapt(sx[:, :3], sy[:, :3])
    expected = hand_adapt(model, sx[:, :3], sy[:, :3], 1e-3, optimizer="adam")
    for k in fast:
        torch.testing.assert_close(fast[k], expected[k], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("model_name,adapted,fixed", [("oml", "pln", "rln"), ("anml", "trunk", "neuromodulator")])
def test_only_the_adapted_weights_change(one_thread, model_name, adapted, fixed):
    model = build(model_name).train()
    sx, sy, _, _ = task(model.cfg)
    fast = model.adapt(sx, sy)
    own = dict(getattr(model, adapted).named_parameters())
    assert set(fast) == set(own) and model.adapted_names() == list(own)
    assert not any(n.startswith(fixed) for n in fast)
    for k, p in own.items():
        assert fast[k].shape == (2, *p.shape)
        assert not torch.allclose(fast[k], p.expand_as(fast[k]))        # every adapted tensor moved


@pytest.mark.parametrize("model_name", ["oml", "anml"])
def test_meta_test_inside_no_grad_leaves_the_meta_parameters_alone(one_thread, model_name):
    model = build(model_name)
    sx, sy, qx, _ = task(model.cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    with torch.no_grad():
        out = model(sx, sy, qx)
    again = model(sx, sy, qx)                                           # also outside no_grad
    assert out.shape == (2, 6, 4) and torch.isfinite(out).all()
    assert not out.requires_grad and not again.requires_grad
    torch.testing.assert_close(out, again)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.parameters())
    # the adaptation did something: the support changes the answer
    with torch.no_grad():
        assert not torch.allclose(model(sx, (sy + 1) % 4, qx), out)


@pytest.mark.parametrize("model_name", ["oml", "anml"])
def test_queries_are_classified_independently(one_thread, model_name):
    model = build(model_name).eval()
    sx, sy, qx, _ = task(model.cfg)
    with torch.no_grad():
        out = model(sx, sy, qx)
        perm = torch.randperm(qx.shape[1])
        torch.testing.assert_close(model(sx, sy, qx[:, perm]), out[:, perm])
        torch.testing.assert_close(model(sx, sy, qx[:, :1])[:, 0], out[:, 0])


def test_second_order_meta_gradient_matches_finite_differences(one_thread):
    model = build("oml").double().train()
    sx, sy, qx, qy = task(model.cfg, dtype=torch.float64)
    sx, sy = sx[:, :4], sy[:, :4]

    def loss():
        return F.cross_entropy(model(sx, sy, qx).flatten(0, 1), qy.flatten())

    w = model.pln.fc1.weight
    full = torch.autograd.grad(loss(), w)[0]
    model.cfg.first_order = True
    first = torch.autograd.grad(loss(), w)[0]
    model.cfg.first_order = False
    idx = tuple(int(i) for i in (full.abs() == full.abs().max()).nonzero()[0])
    eps = 1e-6
    with torch.no_grad():
        w[idx] += eps
        up = loss().item()
        w[idx] -= 2 * eps
        down = loss().item()
        w[idx] += eps
    assert full[idx].item() == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-9)
    assert not torch.allclose(full, first)                              # the second-order terms matter


@pytest.mark.parametrize("model_name,first_order", [("cl_lstm", False), ("oml", False), ("oml", True),
                                                    ("anml", False), ("anml", True)])
def test_a_few_training_steps_stay_finite(one_thread, model_name, first_order):
    learner = ContinualLearner(tiny(model_name, first_order=first_order))
    params0 = [p.detach().clone() for p in learner.model.parameters()]
    for seed in range(3):
        sx, sy, qx, qy = task(learner.cfg, seed=seed)
        out = learner.train_step((sx, sy, qx, qy, torch.zeros_like(qy)))
        assert torch.isfinite(torch.tensor(out["loss"])) and 0.0 <= out["acc"] <= 1.0
    assert learner.step == 3
    assert all(torch.isfinite(p).all() for p in learner.model.parameters())
    moved = [not torch.equal(a, b) for a, b in zip(params0, learner.model.parameters())]
    assert all(moved)                                       # every meta-parameter gets a gradient


def test_models_are_what_the_config_names():
    assert isinstance(build("oml"), OML) and isinstance(build("anml"), ANML)
    oml = build("oml")
    assert oml.rln.out_features == 3 * 4 * 4 and oml.pln.fc1.out_features == 5
    anml = build("anml")
    assert anml.neuromodulator.out.out_features == anml.trunk.cnn.out_features == 3 * 4 * 4
    assert len(anml.neuromodulator.cnn.convs) == 3 and len(anml.trunk.cnn.convs) == 2
    assert not any(k.startswith("adapted") for k in anml.state_dict())

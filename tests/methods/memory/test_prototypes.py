"""Online Prototypical Networks (Sec. 2.4.2 baseline): the online update is the running mean for
equal weights, the prediction at step t never sees y_t or later, and it trains in the learner."""

import pytest
import torch

from priorlab.methods.configuration import ConfigError
from priorlab.methods.memory.cl_lstm import build_model
from priorlab.methods.memory.config import MemoryConfig
from priorlab.methods.memory.prototypes import online_prototypes

CFG = dict(model="opn", channels=8, n_way=3, n_shot=4, report_shots=[1, 2])


def _episode(b=2, t=12, n_way=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, t, 1, 28, 28, generator=g), torch.randint(0, n_way, (b, t), generator=g)


def test_the_online_update_is_the_running_mean_of_earlier_samples():
    g = torch.Generator().manual_seed(1)
    h, y = torch.randn(2, 9, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (2, 9), generator=g)
    protos, counts = online_prototypes(h, y, 3)
    for b in range(2):
        for t in range(9):
            for c in range(3):
                earlier = [h[b, s] for s in range(t) if y[b, s] == c]
                assert counts[b, t, c] == len(earlier)
                if earlier:
                    torch.testing.assert_close(protos[b, t, c], torch.stack(earlier).mean(0))
    # the incremental form p <- (n p + w h) / (n + w) with w = 1 gives the same
    p, n = torch.zeros(3, 4, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    for t in range(9):
        seen = n > 0
        torch.testing.assert_close(protos[0, t][seen], p[seen])
        c = int(y[0, t])
        p[c], n[c] = (n[c] * p[c] + h[0, t]) / (n[c] + 1), n[c] + 1


@pytest.mark.parametrize("kind", ["opn", "cpm"])
def test_predictions_never_see_the_current_or_later_labels(kind):
    torch.manual_seed(0)
    model = build_model(MemoryConfig(**dict(CFG, model=kind, lstm_hidden=8))).eval()
    x, y = _episode()
    with torch.no_grad():
        out = model(x, y)
        for t in (0, 5, 11):
            y2 = y.clone()
            y2[:, t:] = torch.randint(0, 3, y2[:, t:].shape, generator=torch.Generator().manual_seed(t))
            torch.testing.assert_close(model(x, y2)[:, :t + 1], out[:, :t + 1], rtol=0, atol=0)
    probs = out.exp()
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 12), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(probs[:, 0], torch.full((2, 3), 1 / 3))   # nothing seen yet: uniform


@pytest.mark.parametrize("kind", ["opn", "cpm"])
def test_prototype_models_train_in_the_learner_and_are_checked_like_the_others(kind):
    from priorlab.methods.memory.loop import MemoryLearner, to_inputs

    learner = MemoryLearner(MemoryConfig(**dict(CFG, model=kind, lstm_hidden=8), meta_batch=2, lr=1e-2))
    x, y = _episode(t=12)
    xs, ys = to_inputs(x.numpy(), y.numpy(), learner.device)
    losses = [learner.train_step(xs, ys) for _ in range(15)]
    assert all(torch.isfinite(torch.tensor(losses))) and min(losses[-3:]) < losses[0]
    with pytest.raises(ConfigError, match="model=opn"):
        MemoryConfig(**dict(CFG, image_size=8)).validate()
    with pytest.raises(ConfigError, match="choose one of"):
        MemoryConfig(model="matching_net").validate()


@pytest.mark.parametrize("model", ["cl_lstm", "lstm", "opn", "cpm", "ntm"])
def test_a_label_delay_of_d_shifts_what_each_step_sees_by_exactly_d(model):
    """With label_delay=d the output at step t depends on y_s only for s <= t - d."""
    from priorlab.methods.memory.protocol import previous_labels

    y = torch.tensor([[2, 0, 1, 1, 0, 2, 2, 1]])
    onehot = torch.nn.functional.one_hot(y, 3).float()
    shifted = previous_labels(y, 3, delay=3)
    assert torch.equal(shifted[:, :3], torch.zeros(1, 3, 3))
    assert torch.equal(shifted[:, 3:], onehot[:, :-3])
    torch.manual_seed(0)
    cfg = dict(CFG, model=model, conv_layers=2, lstm_hidden=8, label_delay=3)
    net = build_model(MemoryConfig(**cfg)).eval()
    x, y = _episode(t=12)
    with torch.no_grad():
        out = net(x, y)
        for t in (3, 7):
            y2 = y.clone()
            y2[:, t - 2:] = (y2[:, t - 2:] + 1) % 3        # every label from step t - d + 1 on
            torch.testing.assert_close(net(x, y2)[:, :t + 1], out[:, :t + 1], rtol=0, atol=0)
            y3 = y.clone()
            y3[:, t - 3] = (y3[:, t - 3] + 1) % 3          # the label that arrives at step t
            assert not torch.equal(net(x, y3)[:, t], out[:, t])


def test_cpm_with_a_constant_gate_and_no_context_is_opn():
    """CPM's gate weights the prototype average and its context shifts the embedding; with the
    shift at its initial zero and a constant gate the weights cancel: CPM computes OPN."""
    torch.manual_seed(0)
    opn = build_model(MemoryConfig(**CFG)).eval()
    cpm = build_model(MemoryConfig(**dict(CFG, model="cpm", lstm_hidden=8))).eval()
    cpm.load_state_dict(opn.state_dict(), strict=False)          # the CNN and the scoring params
    with torch.no_grad():
        cpm.gate.weight.zero_()
        cpm.gate.bias.fill_(0.3)
        x, y = _episode()
        torch.testing.assert_close(cpm(x, y), opn(x, y), rtol=1e-5, atol=1e-5)
        cpm.gate.weight.normal_()                                  # a real gate changes them
        assert not torch.allclose(cpm(x, y), opn(x, y), atol=1e-4)

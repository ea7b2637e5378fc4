import numpy as np
import pytest
import torch

from priorlab.methods.configuration import ConfigError, apply_overrides
from priorlab.methods.memory.cl_lstm import CLLSTM, LSTMBaseline, build_model
from priorlab.methods.memory.config import MemoryConfig
from priorlab.methods.memory.convlstm import ConvLSTMCell


def tiny(**kw):
    base = dict(channels=8, lstm_hidden=16, n_way=3, n_shot=3, image_size=16, report_shots=[1])
    base.update(kw)
    cfg = MemoryConfig(**base)
    cfg.validate()
    return cfg


def episode(cfg, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, cfg.episode_length, 1, cfg.image_size, cfg.image_size, generator=g)
    y = torch.randint(0, cfg.n_way, (batch, cfg.episode_length), generator=g)
    return x, y


def test_convlstm_cell_shapes_and_state_carry():
    cell = ConvLSTMCell(3, 5, 3)
    x = torch.rand(2, 3, 9, 9)
    h, c = cell(x, cell.initial_state(2, 9, x))
    assert h.shape == c.shape == (2, 5, 9, 9)
    h2, _ = cell(x, (h, c))
    assert not torch.allclose(h, h2)  # the persistent state changes the response


@pytest.mark.parametrize("mode", ["first", "every", "lstm", [0, 4], [2]])
@pytest.mark.parametrize("model", ["cl_lstm", "lstm"])
def test_no_label_leakage(mode, model):
    """Changing y_i never changes the prediction at steps <= i (Sec. 2.3.1)."""
    cfg = tiny(label_injection=mode, model=model)
    torch.manual_seed(0)
    net = build_model(cfg).eval()
    x, y = episode(cfg)
    i = 4
    y2 = y.clone()
    y2[:, i] = (y[:, i] + 1) % cfg.n_way
    with torch.no_grad():
        a, b = net(x, y), net(x, y2)
    assert torch.allclose(a[:, : i + 1], b[:, : i + 1])
    # ...and the label is actually used: step i+1 sees y_i.
    assert not torch.allclose(a[:, i + 1], b[:, i + 1])


def test_injection_modes_change_input_channels():
    def in_channels(mode):
        return [c.conv.in_channels - 8 for c in CLLSTM(tiny(label_injection=mode)).cells]

    assert in_channels("first") == [1 + 3, 8, 8, 8]
    assert in_channels("every") == [4, 11, 11, 11]
    assert in_channels("lstm") == [1, 8, 8, 8]
    lstm_in = CLLSTM(tiny(label_injection="lstm")).lstm.input_size
    assert lstm_in == CLLSTM(tiny(label_injection="first")).lstm.input_size + 3


def test_output_shapes_and_gradient_reaches_every_parameter():
    cfg = tiny(label_injection="every")
    net = build_model(cfg)
    x, y = episode(cfg)
    logits = net(x, y)
    assert logits.shape == (2, cfg.episode_length, cfg.n_way)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten()).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_skip_connection_only_when_enabled():
    assert CLLSTM(tiny(skip=True)).skip == (1, 3)
    assert CLLSTM(tiny(skip=False)).skip is None
    cfg_on, cfg_off = tiny(skip=True), tiny(skip=False)
    torch.manual_seed(0)
    a = CLLSTM(cfg_on)
    b = CLLSTM(cfg_off)
    b.load_state_dict(a.state_dict())
    x, y = episode(cfg_on)
    with torch.no_grad():
        assert not torch.allclose(a(x, y), b(x, y))


def test_lstm_baseline_shapes():
    cfg = tiny(model="lstm")
    net = build_model(cfg)
    assert isinstance(net, LSTMBaseline)
    x, y = episode(cfg)
    assert net(x, y).shape == (2, cfg.episode_length, 3)


def test_config_errors_name_key_and_choices():
    cfg = MemoryConfig()
    with pytest.raises(ConfigError, match="valid keys"):
        apply_overrides(cfg, {"lerning_rate": "0.1"})
    with pytest.raises(ConfigError, match="lr"):
        apply_overrides(cfg, {"lr": "fast"})
    with pytest.raises(ConfigError, match="label_injection"):
        apply_overrides(cfg, {"label_injection": "middle"})
    with pytest.raises(ConfigError, match="indices must be in"):
        apply_overrides(cfg, {"label_injection": "[0, 9]"})
    with pytest.raises(ConfigError, match="report_shots"):
        apply_overrides(cfg, {"n_shot": "3"})
    good = apply_overrides(cfg, {"lr": "3e-4", "label_injection": "[0,2]", "skip": "false",
                                 "channels": "32"})
    assert (good.lr, good.injection_layers(), good.skip, good.channels) == (3e-4, (0, 2), False, 32)


def test_forget_bias_default_and_override():
    """ConvLSTM forget gates start at forget_bias (1 by default), the other gates at 0."""
    for value in (1.0, 0.5):
        cfg = tiny() if value == 1.0 else tiny(forget_bias=value)
        bias = CLLSTM(cfg).cells[0].conv.bias.detach()
        c = cfg.channels
        assert torch.equal(bias[c:2 * c], torch.full((c,), value))
        assert torch.equal(torch.cat([bias[:c], bias[2 * c:]]), torch.zeros(3 * c))


@pytest.mark.parametrize("model", ["cl_lstm", "lstm"])
def test_lstm_forget_bias_changes_only_the_forget_gate(model):
    """None keeps PyTorch's LSTM init (draws the same random numbers); a value sets b_ih + b_hh
    of the forget gate and nothing else."""
    torch.manual_seed(0)
    default = build_model(tiny(model=model)).state_dict()
    torch.manual_seed(0)
    set_ = build_model(tiny(model=model, lstm_forget_bias=2.0)).state_dict()
    h = 16
    for name, value in default.items():
        if "lstm.bias_" not in name:
            assert torch.equal(value, set_[name]), name
            continue
        keep = torch.ones_like(value, dtype=torch.bool)
        keep[h:2 * h] = False
        assert torch.equal(value[keep], set_[name][keep]), name
    f = slice(h, 2 * h)
    ih = next(k for k in set_ if "lstm.bias_ih" in k)
    hh = next(k for k in set_ if "lstm.bias_hh" in k)
    assert torch.equal(set_[ih][f] + set_[hh][f], torch.full((h,), 2.0))
    assert not torch.equal(default[ih][f] + default[hh][f], torch.full((h,), 2.0))


@pytest.mark.parametrize("model", ["cl_lstm", "lstm", "ntm", "opn", "cpm", "apl"])
def test_every_model_reads_cifar_fs_episodes(cifar_root, model):
    """dataset=cifar_fs: 32x32 RGB episodes of the CIFAR-FS split feed every model (App. A.1.1)."""
    from priorlab.data.episodes import OnlineEpisodeSampler
    from priorlab.data.fewshot_sources import load_episode_classes
    from priorlab.methods.memory.loop import MemoryLearner, to_inputs

    cfg = MemoryConfig(model=model, dataset="cifar_fs", image_size=32, conv_layers=2, channels=4,
                       lstm_hidden=8, n_shot=3, report_shots=[1], memory_slots=8, memory_width=4,
                       meta_batch=2)
    sampler = OnlineEpisodeSampler(load_episode_classes(cifar_root, "cifar_fs", "val", 32), 5, 3)
    x, y = to_inputs(*sampler.sample_batch([0, 1]), torch.device("cpu"))
    assert x.shape == (2, 15, 3, 32, 32)
    learner = MemoryLearner(cfg)
    assert np.isfinite(learner.train_step(x, y))
    assert learner.model(x, y).shape == (2, 15, 5)


def test_cifar_fs_needs_32_pixel_images_and_known_datasets():
    with pytest.raises(ConfigError, match="image_size=32"):
        MemoryConfig(dataset="cifar_fs").validate()
    with pytest.raises(ConfigError, match="choose one of"):
        MemoryConfig(dataset="mnist").validate()


def test_skip_pair_places_the_residual_and_is_checked():
    assert CLLSTM(MemoryConfig(conv_layers=2, skip_pair=[0, 1])).skip == (0, 1)
    assert CLLSTM(MemoryConfig(conv_layers=2)).skip is None
    assert CLLSTM(MemoryConfig()).skip == (1, 3)
    assert CLLSTM(MemoryConfig(skip=False, skip_pair=[0, 2])).skip is None
    with pytest.raises(ConfigError, match="skip_pair"):
        MemoryConfig(conv_layers=2, skip_pair=[1, 2]).validate()

"""Hypernetwork layer, sharing schemes, regularisers and config (thesis Sec. 3.3)."""

import dataclasses

import pytest
import torch
from torch import nn

from priorlab.methods.configuration import ConfigError, config_from_dict
from priorlab.methods.hyper.config import HyperConfig
from priorlab.methods.hyper.hypernet import (
    ConvHypernet,
    HyperConv2d,
    embedding_grad_ratios,
    generated_weights,
    hyper_layers,
    output_l2,
    param_groups,
)
from priorlab.methods.hyper.resnets import build_model

TINY = {
    "resnet12": dict(arch="resnet12", widths=[4, 6, 8, 8]),
    "resnet18": dict(arch="resnet18", widths=[4, 4, 8, 8]),
    "resnet34": dict(arch="resnet34", widths=[2, 4, 4, 6], stem="imagenet"),
    "wrn": dict(arch="wrn", wrn_depth=16, widths=[4, 8, 8], stem_width=4),
}


def tiny(name, **kw):
    return HyperConfig(**{**TINY[name], "num_classes": 5, **kw})


def hypernet_params(model):
    return sum(p.numel() for p in model.hypernets.parameters())


@pytest.mark.parametrize("bias", [False, True])
def test_generated_weight_is_linear_in_embedding_only_without_bias(bias):
    torch.manual_seed(0)
    h = ConvHypernet(d=5, c_in=4, kernel=3, bias=bias)
    e1, e2 = torch.randn(2, 6, 5, 3, 3)
    a, b = 0.7, -1.3
    lhs = h(a * e1 + b * e2, 4)
    rhs = a * h(e1, 4) + b * h(e2, 4)
    assert lhs.shape == (6, 4, 3, 3)
    assert torch.allclose(lhs, rhs, atol=1e-5) is (not bias)


def test_smaller_layers_use_first_filters_and_centre_taps():
    torch.manual_seed(0)
    h = ConvHypernet(d=3, c_in=6, kernel=3)
    e = torch.randn(4, 3, 3, 3)
    assert torch.allclose(h(e, 2), h(e, 6)[:, :2])
    # A 1x1 embedding through a 3x3 'same' conv sees only the centre taps.
    e1 = torch.randn(4, 3, 1, 1)
    expected = torch.einsum("od,cd->oc", e1[:, :, 0, 0], h.weight[:, :, 1, 1])
    assert torch.allclose(h(e1, 6)[:, :, 0, 0], expected, atol=1e-6)


def test_hyperconv_init_matches_kaiming_std():
    torch.manual_seed(0)
    layer = HyperConv2d(32, 48, 3)
    layer.attach(ConvHypernet(32, 32, 3), 32)
    w = layer.generated_weight()
    assert w.shape == (48, 32, 3, 3)
    assert abs(w.std().item() - (2 / (32 * 9)) ** 0.5) < 1e-4


@pytest.mark.parametrize("name", list(TINY))
@pytest.mark.parametrize("sharing", ["unshared", "stage", "global"])
def test_generated_shapes_match_plain_twin(name, sharing):
    torch.manual_seed(0)
    cfg = tiny(name, sharing=sharing, generate_stem=True, generate_shortcuts=True)
    hyper, plain = build_model(cfg), build_model(dataclasses.replace(cfg, hyper=False))
    plain_convs = {n: m for n, m in plain.named_modules() if isinstance(m, nn.Conv2d)}
    layers = dict(hyper_layers(hyper))
    assert set(layers) == set(plain_convs)  # everything conv is generated with both flags on
    for n, layer in layers.items():
        assert layer.generated_weight().shape == plain_convs[n].weight.shape, n
    assert not any(isinstance(m, HyperConv2d) for m in plain.modules())


def test_stem_and_shortcuts_are_plain_by_default():
    model = build_model(tiny("resnet18"))
    names = {n for n, _ in hyper_layers(model)}
    assert isinstance(model.stem[0], nn.Conv2d)
    assert isinstance(model.layer2[0].shortcut[0], nn.Conv2d)
    assert "layer2.0.conv1" in names and not any("shortcut" in n or "stem" in n for n in names)


def test_sharing_groups():
    cfg = tiny("wrn", generate_shortcuts=True)
    n_layers = len(list(hyper_layers(build_model(cfg))))
    unshared = build_model(dataclasses.replace(cfg, sharing="unshared"))
    stage = build_model(dataclasses.replace(cfg, sharing="stage"))
    glob = build_model(dataclasses.replace(cfg, sharing="global"))
    assert len(unshared.hypernets) == n_layers
    assert sorted(stage.hypernets) == ["stage1", "stage2", "stage3"]
    assert list(glob.hypernets) == ["all"]
    # Layers of a stage call the very same hypernetwork object.
    assert stage.layer2[0].conv1.hypernet is stage.layer2[1].conv2.hypernet is stage.hypernets["stage2"]
    assert stage.layer1[0].conv1.hypernet is not stage.layer2[0].conv1.hypernet
    # Shared hypernetworks are counted once in parameters().
    assert hypernet_params(unshared) > hypernet_params(stage) > hypernet_params(glob)
    assert hypernet_params(glob) == 8 * 8 * 9  # sized for the largest C_in (8), d = 8, K = 3


def test_train_param_count_by_hand():
    # WRN-10 (one block per stage), widths 2-4-4, stem 2, 3->5 classes, unshared, no bias,
    # stem and shortcuts plain. Generated (C_in, C_out): (2,2) (2,2) | (2,4) (4,4) | (4,4) (4,4)
    cfg = HyperConfig(arch="wrn", wrn_depth=10, widths=[2, 4, 4], stem_width=2, num_classes=5)
    model = build_model(cfg)
    gen = [(2, 2), (2, 2), (2, 4), (4, 4), (4, 4), (4, 4)]
    embeddings = sum(co * ci * 9 for ci, co in gen)  # (C_out, d=C_in, 3, 3)
    hypernets = sum(ci * ci * 9 for ci, _ in gen)  # C_in filters of (d=C_in, 3, 3)
    stem = 3 * 2 * 9
    shortcuts = 2 * 4 + 4 * 4  # stage2 (2->4) and stage3 (stride 2) projections
    bn = 2 * (2 + 2) + 2 * (2 + 4) + 2 * (4 + 4) + 2 * 4  # bn1/bn2 per block + final bn
    fc = 4 * 5 + 5
    assert sum(p.numel() for p in model.parameters()) == embeddings + hypernets + stem + shortcuts + bn + fc
    glob = build_model(dataclasses.replace(cfg, sharing="global", bias=True))
    # One 4x4x3x3 hypernet (+4 bias); every embedding has d = 4.
    expected = sum(co * 4 * 9 for _, co in gen) + 4 * 4 * 9 + 4 + stem + shortcuts + bn + fc
    assert sum(p.numel() for p in glob.parameters()) == expected


def _params_by_kind(model):
    hyper = [p for n, p in model.named_parameters() if n.endswith("embedding") or n.startswith("hypernets.")]
    other = [p for n, p in model.named_parameters() if not (n.endswith("embedding") or n.startswith("hypernets."))]
    return hyper, other


@pytest.mark.parametrize("sharing", ["unshared", "stage", "global"])
def test_output_l2_touches_generated_weights_only(sharing):
    torch.manual_seed(0)
    model = build_model(tiny("resnet18", sharing=sharing, bias=True))
    loss = output_l2(model)
    expected = sum(w.pow(2).sum() for w in generated_weights(model))
    assert torch.allclose(loss, expected)
    loss.backward()
    hyper, other = _params_by_kind(model)
    assert hyper and other
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in hyper)
    assert all(p.grad is None or not p.grad.any() for p in other)
    assert output_l2(build_model(dataclasses.replace(tiny("resnet18"), hyper=False))).item() == 0.0


def test_param_groups_no_decay_for_embeddings_and_hypernets():
    model = build_model(tiny("wrn", sharing="stage", bias=True))
    groups = param_groups(model, weight_decay=5e-4)
    decay = {id(p) for p in groups[0]["params"]}
    no_decay = {id(p) for p in groups[1]["params"]}
    assert groups[0]["weight_decay"] == 5e-4 and groups[1]["weight_decay"] == 0.0
    hyper, other = _params_by_kind(model)
    assert no_decay == {id(p) for p in hyper} and decay == {id(p) for p in other}
    torch.optim.SGD(groups, lr=0.1, momentum=0.9)  # accepted by an optimizer (no duplicates)
    plain_groups = param_groups(build_model(dataclasses.replace(tiny("wrn"), hyper=False)), 5e-4)
    assert len(plain_groups) == 1


def test_embedding_grad_ratios_after_backward():
    torch.manual_seed(0)
    model = build_model(tiny("resnet12", in_channels=1))
    before = embedding_grad_ratios(model)
    assert before and all(r == float("inf") for r in before.values())
    model(torch.randn(2, 1, 28, 28)).logsumexp(1).sum().backward()
    ratios = embedding_grad_ratios(model)
    assert set(ratios) == set(before) and "layer1.conv2.embedding" in ratios
    for name, r in ratios.items():
        layer = model.get_submodule(name.rsplit(".", 1)[0])
        assert r == pytest.approx(layer.embedding.norm().item() / layer.embedding.grad.norm().item())


def test_config_defaults_are_the_papers():
    cfg = HyperConfig()
    cfg.validate()
    assert (cfg.sharing, cfg.bias, cfg.lambda_output_l2) == ("unshared", False, 6.25e-5)
    assert cfg.stage_widths() == (64, 128, 256) and cfg.wrn_depth == 28


@pytest.mark.parametrize("overrides, message", [
    ({"sharing": "layer"}, "sharing"),
    ({"wrn_depth": 27}, r"6n\+4"),
    ({"arch": "wrn", "widths": [4, 8]}, "3 positive stage widths"),
    ({"arch": "vgg"}, "arch"),
])
def test_config_errors_are_clear(overrides, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(HyperConfig, overrides)


def test_validate_catches_values_set_directly():
    with pytest.raises(ConfigError, match="choose one of"):
        build_model(HyperConfig(sharing="per-layer"))
    with pytest.raises(ConfigError, match="6n\\+4"):
        build_model(HyperConfig(wrn_depth=30))

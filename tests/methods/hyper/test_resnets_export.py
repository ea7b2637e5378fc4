"""Architectures, reparameterisation into the plain twin, SWA export and param counts (Sec. 3.4)."""

import copy
import dataclasses

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, update_bn

from priorlab.methods.hyper.config import HyperConfig
from priorlab.methods.hyper.export import count_params, export_plain
from priorlab.methods.hyper.hypernet import HyperConv2d, output_l2, param_groups
from priorlab.methods.hyper.resnets import HyperResNet, HyperWRN, build_model

TINY = {
    "resnet12": dict(arch="resnet12", widths=[4, 6, 8, 8], in_channels=1),
    "resnet18": dict(arch="resnet18", widths=[4, 4, 8, 8]),
    "resnet18-imagenet": dict(arch="resnet18", widths=[4, 4, 8, 8], stem="imagenet"),
    "wrn": dict(arch="wrn", wrn_depth=16, widths=[4, 8, 8], stem_width=4),
}
SHARINGS = ["unshared", "stage", "global"]


def tiny(name, **kw):
    return HyperConfig(**{**TINY[name], "num_classes": 5, **kw})


def inputs(cfg, n=4, size=None, seed=1):
    size = size or (28 if cfg.in_channels == 1 else 32)
    return torch.randn(n, cfg.in_channels, size, size, generator=torch.Generator().manual_seed(seed))


def warm_bn(model, cfg):
    """Give BN non-trivial running stats and affines, so export must copy them."""
    model.train()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        for seed in range(2):
            model(inputs(cfg, seed=10 + seed))
    return model.eval()


@pytest.mark.parametrize("name", list(TINY))
@pytest.mark.parametrize("sharing", SHARINGS)
def test_export_plain_gives_same_logits(name, sharing):
    torch.manual_seed(0)
    cfg = tiny(name, sharing=sharing, bias=(sharing == "stage"), generate_shortcuts=(sharing != "unshared"))
    model = warm_bn(build_model(cfg), cfg)
    plain = export_plain(model)
    assert not plain.training
    assert not any(isinstance(m, HyperConv2d) for m in plain.modules())
    keys = list(plain.state_dict())
    assert not any("embedding" in k or "hypernets" in k for k in keys)
    assert keys == list(build_model(dataclasses.replace(cfg, hyper=False)).state_dict())
    x = inputs(cfg)
    with torch.no_grad():
        expected, got = model(x), plain(x)
    assert expected.shape == (4, 5)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # The exported weights are detached copies: training the twin leaves the hypernetwork alone.
    assert all(p.grad_fn is None and p.requires_grad for p in plain.parameters())


def test_export_detects_a_wrong_result():
    # Guards the invariant test above: a perturbed embedding must change the plain twin's logits.
    torch.manual_seed(0)
    cfg = tiny("wrn")
    model = warm_bn(build_model(cfg), cfg)
    plain = export_plain(model)
    with torch.no_grad():
        model.layer1[0].conv1.embedding.mul_(3.0)
        assert not torch.allclose(export_plain(model)(inputs(cfg)), plain(inputs(cfg)), atol=1e-3)


@pytest.mark.parametrize("sharing", SHARINGS)
def test_swa_average_then_export(sharing):
    torch.manual_seed(0)
    cfg = tiny("resnet18", sharing=sharing)
    base = build_model(cfg)
    swa = AveragedModel(base)
    copies = []
    for scale in (0.1, -0.05):
        m = copy.deepcopy(base)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(scale * torch.randn_like(p))
        copies.append(m)
        swa.update_parameters(m)
    # SWA averages embeddings and hypernetworks, not generated weights.
    with torch.no_grad():
        for name, p in swa.module.named_parameters():
            mean = sum(dict(c.named_parameters())[name] for c in copies) / 2
            torch.testing.assert_close(p, mean)
    loader = [inputs(cfg, seed=s) for s in range(3)]
    update_bn(loader, swa)
    swa.eval()
    plain = export_plain(swa)
    x = inputs(cfg, seed=99)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), swa(x), atol=1e-5, rtol=1e-5)
    # Shared hypernetworks stay shared in the averaged copy.
    if sharing != "unshared":
        assert swa.module.layer1[0].conv1.hypernet is swa.module.layer1[1].conv2.hypernet


@pytest.mark.parametrize("name", ["resnet12", "resnet18", "wrn"])
def test_count_params(name):
    counts = {}
    for sharing in SHARINGS:
        cfg = tiny(name, sharing=sharing)
        model = build_model(cfg)
        plain = build_model(dataclasses.replace(cfg, hyper=False))
        counts[sharing] = count_params(model)
        n_plain = sum(p.numel() for p in plain.parameters())
        assert counts[sharing]["test"] == n_plain
        assert counts[sharing]["train"] == sum(p.numel() for p in model.parameters())
        assert counts[sharing]["train"] > counts[sharing]["test"]
        assert count_params(plain) == {"train": n_plain, "test": n_plain}
    # Embeddings are (C_out, C_in, k, k) for unshared and stage when d = C_in, so the totals differ
    # only by the hypernetworks.
    if name != "resnet12":  # there the stage's first conv has a smaller C_in than its group's d
        assert counts["unshared"]["train"] > counts["stage"]["train"]


def test_paper_scale_test_params():
    # "Test Params" of Tables 3.3/3.4: WRN-40-2 2.2M, ResNet-18 11.1M (plain twins, 10 classes).
    wrn = build_model(HyperConfig(arch="wrn", wrn_depth=40, wrn_widen=2, hyper=False))
    assert round(sum(p.numel() for p in wrn.parameters()) / 1e6, 1) == 2.2
    # ResNet-18 on CIFAR: Table 3.4 lists 21.4M train / 11.1M test for the unshared variant.
    counts = count_params(build_model(HyperConfig(arch="resnet18", sharing="unshared")))
    assert round(counts["train"] / 1e6, 1) == 21.4
    assert round(counts["test"] / 1e6, 2) == 11.17


def test_state_dict_roundtrip_and_functional_call():
    torch.manual_seed(0)
    cfg = tiny("resnet18", sharing="stage")
    model = warm_bn(build_model(cfg), cfg)
    x = inputs(cfg)
    torch.manual_seed(1)
    fresh = build_model(cfg).eval()
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x))
    # MAML-style functional_call (Algorithm 2) must reach the shared hypernetwork through the layers.
    params = dict(model.named_parameters())
    swapped = {"hypernets.stage2.weight": torch.zeros_like(params["hypernets.stage2.weight"])}
    with torch.no_grad():
        out = torch.func.functional_call(model, swapped, (x,))
        assert not torch.allclose(out, model(x))
    # The swap is undone after the call.
    assert model.layer2[1].conv1.generated_weight().abs().sum() > 0


def test_build_model_dispatch_and_small_inputs():
    assert isinstance(build_model(tiny("wrn")), HyperWRN)
    assert isinstance(build_model(tiny("resnet12")), HyperResNet)
    torch.manual_seed(0)
    # Omniglot-sized 1-channel 28x28 inputs through every architecture.
    for name in TINY:
        cfg = tiny(name, in_channels=1)
        out = build_model(cfg)(inputs(cfg, n=2, size=28))
        assert out.shape == (2, 5) and torch.isfinite(out).all()


def test_wrn_topology():
    model = build_model(HyperConfig(arch="wrn", wrn_depth=28, wrn_widen=4, hyper=False))
    assert [len(getattr(model, f"layer{i}")) for i in (1, 2, 3)] == [4, 4, 4]
    assert model.layer1[0].conv1.weight.shape == (64, 16, 3, 3)
    assert model.layer3[-1].conv2.weight.shape == (256, 256, 3, 3)
    assert model.fc.in_features == 256


def test_one_training_step_moves_hyper_params():
    torch.manual_seed(0)
    cfg = tiny("wrn", sharing="stage")
    model = build_model(cfg)
    opt = torch.optim.SGD(param_groups(model, cfg.weight_decay), lr=0.1, momentum=0.9)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    x, y = inputs(cfg), torch.tensor([0, 1, 2, 3])
    loss = nn.functional.cross_entropy(model(x), y) + cfg.lambda_output_l2 * output_l2(model)
    loss.backward()
    opt.step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert "hypernets.stage2.weight" in moved and "layer2.0.conv1.embedding" in moved

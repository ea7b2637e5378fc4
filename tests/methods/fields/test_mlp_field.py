import math

import pytest
import torch
import torch.nn.functional as F

from priorlab.methods.configuration import ConfigError, apply_overrides, config_from_dict
from priorlab.methods.fields.config import FieldConfig
from priorlab.methods.fields.encoding import sinusoidal_encoding
from priorlab.methods.fields.field import NeRFField
from priorlab.methods.fields.mlp import (NeRFMLP, mlp_forward, skip_layers, trunc_exp,
                                         weight_shapes)


def small_cfg(**kw):
    base = dict(n_levels=2, log2_hashmap_size=8, base_resolution=4, finest_resolution=16,
                n_frequencies=2, hidden=16, backend="torch")
    base.update(kw)
    return FieldConfig(**base)


def reference_concat(mlp, x):
    """NeRF's MLP written out for 6 layers: the input rejoins at layers 2 and 4."""
    L = mlp.layers
    h = F.relu(L[0](x))
    h = F.relu(L[1](h))
    h = F.relu(L[2](torch.cat([h, x], -1)))
    h = F.relu(L[3](h))
    h = F.relu(L[4](torch.cat([h, x], -1)))
    return L[5](h)


def test_weight_shapes_match_the_thesis_mlp_and_the_module():
    cfg = FieldConfig()
    shapes = weight_shapes(cfg)
    d = cfg.encoding_dim
    assert d == 16 * 2 + 3 + 6 * 6
    assert skip_layers(cfg) == [2, 4]
    assert shapes == {"layers.0.weight": (64, d), "layers.1.weight": (64, 64),
                      "layers.2.weight": (64, 64 + d), "layers.3.weight": (64, 64),
                      "layers.4.weight": (64, 64 + d), "layers.5.weight": (4, 64)}
    mlp = NeRFMLP(cfg)
    assert {k: tuple(v.shape) for k, v in mlp.named_parameters()} == shapes   # no biases
    with_bias = weight_shapes(small_cfg(bias=True, feature_dim=5))
    assert with_bias["layers.5.bias"] == (9,) and with_bias["layers.5.weight"] == (9, 16)


def test_module_forward_equals_reference_functional_and_functional_call():
    torch.manual_seed(0)
    cfg = small_cfg()
    mlp = NeRFMLP(cfg)
    x = torch.randn(10, cfg.encoding_dim)
    own = dict(mlp.named_parameters())
    out = mlp(x)
    assert out.shape == (10, 4)
    assert torch.allclose(out, reference_concat(mlp, x), atol=1e-6)
    assert torch.equal(out, mlp_forward(own, x, cfg))
    assert torch.equal(out, torch.func.functional_call(mlp, own, (x,)))


def test_supplied_weights_are_used_and_gradients_reach_them():
    torch.manual_seed(0)
    cfg = small_cfg(bias=True)
    mlp = NeRFMLP(cfg)
    x = torch.randn(12, cfg.encoding_dim)
    given = {k: (0.3 * torch.randn(s)).requires_grad_(True) for k, s in weight_shapes(cfg).items()}
    out = mlp_forward(given, x, cfg)
    assert not torch.allclose(out, mlp(x))
    assert torch.allclose(out, torch.func.functional_call(mlp, given, (x,)), rtol=1e-5, atol=1e-5)
    assert torch.allclose(out, mlp(x, given), rtol=1e-5, atol=1e-5)
    other = NeRFMLP(cfg)
    other.load_state_dict({k: v.detach() for k, v in given.items()})
    assert torch.allclose(out, other(x), rtol=1e-5, atol=1e-5)
    # batch-independent weights: a point's output does not depend on the rest of the batch
    assert torch.allclose(mlp_forward(given, x[:3], cfg), out[:3], rtol=1e-5, atol=1e-5)
    out.sum().backward()
    assert all(g.grad is not None and g.grad.abs().sum() > 0 for g in given.values())


def test_per_scene_weights_and_a_dynamic_layer_callable():
    torch.manual_seed(0)
    cfg = small_cfg()
    mlp = NeRFMLP(cfg)
    x = torch.randn(3, 7, cfg.encoding_dim)                    # (B scenes, N points, D)
    batched = {k: 0.3 * torch.randn(3, *s) for k, s in weight_shapes(cfg).items()}
    out = mlp_forward(batched, x, cfg)
    for b in range(3):
        one = {k: v[b] for k, v in batched.items()}
        assert torch.allclose(out[b], mlp_forward(one, x[b], cfg), rtol=1e-5, atol=1e-5)
    # the callable sees a_{i-1} (None first) and may give weights that depend on it
    seen = []

    def layers(i, a_prev):
        seen.append(None if a_prev is None else a_prev.shape)
        return {"weight": mlp.layers[i].weight}
    flat = x[0]
    assert torch.allclose(mlp_forward(layers, flat, cfg), mlp(flat), atol=1e-6)
    assert seen == [None] + [(7, cfg.hidden)] * (cfg.n_layers - 1)


def test_additive_skip_is_the_repository_variant():
    torch.manual_seed(0)
    cfg = small_cfg(skip_mode="add")
    mlp = NeRFMLP(cfg)
    assert weight_shapes(cfg)["layers.2.weight"] == (16, 16)
    x = torch.randn(5, cfg.encoding_dim)
    L = mlp.layers
    h0 = F.relu(L[0](x))
    h1 = F.relu(L[1](h0))
    h2 = F.relu(L[2](h1) + h0)
    h3 = F.relu(L[3](h2))
    h4 = F.relu(L[4](h3) + h2)
    assert torch.allclose(mlp(x), L[5](h4), atol=1e-6)


def test_wrong_weights_raise_actionable_errors():
    cfg = small_cfg()
    x = torch.randn(2, cfg.encoding_dim)
    params = {k: torch.zeros(s) for k, s in weight_shapes(cfg).items()}
    del params["layers.3.weight"]
    with pytest.raises(KeyError, match="layers.3.weight"):
        mlp_forward(params, x, cfg)
    params["layers.3.weight"] = torch.zeros(16, 17)
    with pytest.raises(ValueError, match=r"layer 3: weight of shape \(16, 17\), expected \(16, 16\)"):
        mlp_forward(params, x, cfg)


def test_field_outputs_heads_and_zero_density_outside_the_bound():
    torch.manual_seed(0)
    cfg = small_cfg(feature_dim=3, bound=1.5)
    field = NeRFField(cfg)
    inside = torch.randn(20, 3)
    inside = inside / inside.norm(dim=-1, keepdim=True) * torch.rand(20, 1) * 1.4
    outside = torch.tensor([[1.5, 0.1, 0.0], [0.0, 0.0, -2.0], [1.4, 1.4, 1.4]])
    out = field(torch.cat([inside, outside]))
    assert out["sigma"].shape == (23,) and out["rgb"].shape == (23, 3) and out["features"].shape == (23, 3)
    assert (out["sigma"][:20] > 0).all() and (out["sigma"][20:] == 0).all()
    assert ((out["rgb"] > 0) & (out["rgb"] < 1)).all()
    # the blob: at init the raw density is ~0, so σ(0) ≈ exp(5)
    assert math.isclose(field(torch.zeros(1, 3))["sigma"].item(), math.exp(5.0), rel_tol=0.2)
    # hypernetwork weights go through the same heads
    zeros = {k: torch.zeros(s) for k, s in weight_shapes(cfg).items()}
    z = field(inside[:4], mlp_params=zeros)
    assert torch.allclose(z["rgb"], torch.full((4, 3), 0.5))
    r2 = (inside[:4] ** 2).sum(-1)
    assert torch.allclose(z["sigma"], torch.exp(5.0 * torch.exp(-r2 / (2 * 0.2 ** 2))))


def test_trunc_exp_clamps_its_gradient_and_encoding_values():
    x = torch.tensor([0.0, 20.0], requires_grad=True)
    trunc_exp(x).sum().backward()
    assert torch.allclose(x.grad, torch.tensor([1.0, math.exp(15.0)]))
    enc = sinusoidal_encoding(torch.tensor([[0.5, 0.0, -0.25]]), n_frequencies=2)
    assert enc.shape == (1, 3 + 12)
    assert torch.allclose(enc[0, :3], torch.tensor([0.5, 0.0, -0.25]))
    assert torch.allclose(enc[0, 3:6], torch.sin(math.pi * torch.tensor([0.5, 0.0, -0.25])))
    assert torch.allclose(enc[0, 12:15], torch.cos(2 * math.pi * torch.tensor([0.5, 0.0, -0.25])), atol=1e-6)


def test_config_is_strict_and_validated():
    cfg = apply_overrides(FieldConfig(), {"n_levels": "8", "background": "[0,0,0]"})
    assert cfg.n_levels == 8 and cfg.background == [0.0, 0.0, 0.0]
    with pytest.raises(ConfigError, match="valid keys"):
        config_from_dict(FieldConfig, {"n_level": 8})
    for bad, msg in [({"backend": "cuda"}, "backend"), ({"finest_resolution": 8}, "finest_resolution"),
                     ({"background": [1, 1]}, "background"), ({"n_layers": 1}, "n_layers"),
                     ({"bound": 0}, "bound"), ({"log2_hashmap_size": 40}, "log2_hashmap_size")]:
        with pytest.raises(ConfigError, match=msg):
            config_from_dict(FieldConfig, bad)

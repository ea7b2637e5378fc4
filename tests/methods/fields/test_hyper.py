import math

import pytest
import torch

from priorlab.methods.configuration import ConfigError, apply_overrides, parse_overrides
from priorlab.methods.fields.cameras import get_rays
from priorlab.methods.fields.config import FieldConfig
from priorlab.methods.fields.hyper import HyperFields, HyperFieldsConfig
from priorlab.methods.fields.mlp import weight_shapes
from priorlab.methods.fields.renderer import render_image, render_rays
from priorlab.methods.fields.views import sample_cameras


def field_cfg(**kw):
    base = dict(n_levels=2, log2_hashmap_size=8, base_resolution=4, finest_resolution=16,
                n_frequencies=2, hidden=16, n_samples=8, backend="torch")
    base.update(kw)
    return FieldConfig(**base)


def hyper_cfg(**kw):
    base = dict(text_dim=12, model_dim=32, n_layers=1, n_heads=2, head_dim=8, mlp_dim=16,
                hyper_hidden=16)
    base.update(kw)
    return HyperFieldsConfig(**base)


def make(seed=0, fcfg=None, **kw):
    torch.manual_seed(seed)
    return HyperFields(hyper_cfg(**kw), fcfg or field_cfg())


def tokens(b=2, t=5, d=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[0, 3:] = False
    return torch.randn(b, t, d, generator=g), mask


def points(b=2, n=64, seed=2):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, n, 3, generator=g) * 2 - 1) * 0.7


def test_config_defaults_follow_app_b1_and_load_strictly():
    cfg = HyperFieldsConfig()
    assert (cfg.model_dim, cfg.n_layers, cfg.n_heads, cfg.head_dim, cfg.mlp_dim) == (256, 6, 12, 16, 64)
    assert cfg.dynamic and cfg.adain and cfg.weight_mode == "direct"
    cfg = apply_overrides(cfg, parse_overrides(["text_dim=768", "dynamic=false", "weight_mode=modulate"]))
    assert cfg.text_dim == 768 and not cfg.dynamic and cfg.weight_mode == "modulate"
    with pytest.raises(ConfigError, match="valid keys"):
        apply_overrides(cfg, {"n_head": 4})
    with pytest.raises(ConfigError, match="weight_mode"):
        apply_overrides(cfg, {"weight_mode": "scale"})
    with pytest.raises(ConfigError, match="head_dim"):
        apply_overrides(cfg, {"head_dim": 0})
    with pytest.raises(ConfigError, match="bias=False"):
        HyperFields(hyper_cfg(), field_cfg(bias=True))


def test_shapes_and_padding_mask():
    model = make()
    tok, mask = tokens()
    ct = model.condition(tok, mask)
    assert ct.shape == (2, 32)
    # what the mask hides does not matter
    tok2 = tok.clone()
    tok2[0, 3:] = 100.0
    assert torch.allclose(model.condition(tok2, mask), ct, atol=1e-6)
    out = model(points(), ct)
    assert out["sigma"].shape == (2, 64) and out["rgb"].shape == (2, 64, 3)
    weights = model.generated_weights(ct, points())
    assert list(weights) == list(weight_shapes(model.field_cfg))
    assert all(w.shape == (2, *s) for w, s in zip(weights.values(), weight_shapes(model.field_cfg).values()))
    assert not any(n.startswith("field.mlp.") for n, _ in model.named_parameters())


@pytest.mark.parametrize("weight_mode", ["direct", "modulate"])
def test_thesis_sized_hypernetwork_starts_at_kaiming_scale_and_renders_finite(weight_mode):
    fcfg = field_cfg(n_levels=4, hidden=64, n_frequencies=6, n_samples=8)     # the 6 x 64 NeRF
    model = make(fcfg=fcfg, text_dim=384, model_dim=256, n_layers=6, n_heads=12, head_dim=16,
                 mlp_dim=64, hyper_hidden=64, weight_mode=weight_mode)
    tok, mask = tokens(d=384)
    ct = model.condition(tok, mask)
    for w in model.generated_weights(ct, points()).values():
        scale = float(w.detach().std() * math.sqrt(w.shape[-1]))          # sqrt(fan_in * Var W)
        assert 0.5 < scale < 2.0, scale
    cams = sample_cameras(1, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        img = render_image(model.scene_field(ct[0]), cams.c2w, 8, 8, cams.fov, fcfg, chunk=64)
    assert torch.isfinite(img["rgb"]).all() and torch.isfinite(img["depth"]).all()
    assert 0 < float(img["opacity"].mean()) < 1                 # the density blob is visible


@pytest.mark.parametrize("dynamic", [True, False])
def test_different_prompts_give_different_weights(dynamic):
    model = make(dynamic=dynamic)
    ct = model.condition(*tokens())
    weights = model.generated_weights(ct, points())
    for w in weights.values():
        assert not torch.allclose(w[0], w[1], atol=1e-4)


def test_static_weights_do_not_depend_on_points_and_dynamic_ones_do():
    static, dynamic = make(dynamic=False), make(dynamic=True)
    for model in (static, dynamic):
        ct = model.condition(*tokens())
        a = model.generated_weights(ct, points(seed=2))
        b = model.generated_weights(ct, points(seed=3))
        same = [torch.equal(a[k], b[k]) for k in a]
        if model is static:
            assert all(same)
        else:
            assert same[0] and not any(same[1:])                # W_0 sees CT only (Fig. 4.3)


@pytest.mark.parametrize("adain", [True, False])
def test_dynamic_scenes_never_share_batch_statistics(adain):
    model = make(adain=adain)
    ct = model.condition(*tokens())
    p = points()
    q = p.clone()
    q[1] = points(b=1, seed=9)[0]                               # scene 1 sees other points
    a, b = model(p, ct), model(q, ct)
    assert torch.equal(a["rgb"][0], b["rgb"][0]) and torch.equal(a["sigma"][0], b["sigma"][0])
    assert not torch.allclose(a["rgb"][1], b["rgb"][1])


def test_activations_reach_the_hypernetwork_through_a_stop_gradient():
    model = make()
    grid = list(model.field.grid.parameters())
    ct = model.condition(*tokens())
    weights = model.generated_weights(ct, points())
    for name, w in weights.items():
        assert all(g is None for g in torch.autograd.grad(w.sum(), grid, retain_graph=True,
                                                          allow_unused=True)), name
    # ... but W_i does see them: perturbing the grid changes W_1 and later
    with torch.no_grad():
        grid[0].add_(0.3 * torch.randn_like(grid[0]))
    moved = model.generated_weights(ct, points())
    assert torch.equal(moved["layers.0.weight"], weights["layers.0.weight"])
    assert not torch.allclose(moved["layers.1.weight"], weights["layers.1.weight"])


def test_a_rendered_loss_reaches_transformer_hypernetworks_and_grid():
    fcfg = field_cfg()
    model = make(fcfg=fcfg)
    ct = model.condition(*tokens())
    cams = sample_cameras(1, generator=torch.Generator().manual_seed(0))
    origins, dirs = get_rays(cams.c2w, 6, 6, cams.fov)
    out = render_rays(model.scene_field(ct[1]), origins.reshape(-1, 3), dirs.reshape(-1, 3), fcfg)
    out["rgb"].mean().backward()
    for name, p in model.named_parameters():
        if name.startswith("field.grid.") or name.startswith("transformer.inp.") or \
                name.startswith("transformer.blocks.0.qkv.") or ".fc" in name:
            assert p.grad is not None and bool(p.grad.abs().sum() > 0), name
    groups = model.param_groups(lr=1e-4, grid_lr=1e-2)
    assert [g["name"] for g in groups] == ["grid", "hypernetwork"]
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert groups[0]["params"] == list(model.field.grid.parameters())


def test_scene_field_equals_forward_for_one_scene():
    model = make()
    ct = model.condition(*tokens())
    p = points(b=1)
    out = model(p, ct[1:])
    one = model.scene_field(ct[1])(p[0])
    assert torch.equal(out["sigma"][0], one["sigma"]) and torch.equal(out["rgb"][0], one["rgb"])
    grid = model.scene_field(ct[1:])(p.reshape(8, 8, 3))        # leading dims are kept
    assert grid["rgb"].shape == (8, 8, 3) and torch.equal(grid["sigma"].reshape(-1), one["sigma"])


@pytest.mark.parametrize("weight_mode", ["direct", "modulate"])
@pytest.mark.parametrize("dynamic", [True, False])
def test_exported_nerf_equals_the_hypernetwork(dynamic, weight_mode):
    model = make(dynamic=dynamic, weight_mode=weight_mode)
    ct = model.condition(*tokens())
    p = points()
    weights = model.generated_weights(ct, p)
    exported = model.field(p, mlp_params={k: w.detach() for k, w in weights.items()})
    out = model(p, ct)
    assert torch.equal(exported["sigma"], out["sigma"]) and torch.equal(exported["rgb"], out["rgb"])
    if not dynamic:                                              # a static NeRF renders any points
        other = points(seed=5)
        assert torch.allclose(model.field(other, mlp_params=weights)["rgb"], model(other, ct)["rgb"])
    with pytest.raises(ValueError, match="no weights of its own"):
        model.field(p)


@pytest.mark.parametrize("dynamic", [True, False])
def test_fits_two_constant_colours_for_two_prompts(dynamic):
    model = make(dynamic=dynamic)
    tok, mask = tokens()
    target = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.2, 0.9]])[:, None, :]   # (2, 1, 3)
    opt = torch.optim.Adam(model.param_groups(lr=1e-3, grid_lr=1e-2), betas=(0.9, 0.99))
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(60):
        p = (torch.rand(2, 128, 3, generator=g) * 2 - 1) * 0.7
        loss = ((model(p, model.condition(tok, mask))["rgb"] - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0], (losses[0], losses[-1])
    with torch.no_grad():
        rgb = model(points(), model.condition(tok, mask))["rgb"].mean(1)     # (2, 3)
    assert torch.allclose(rgb, target[:, 0], atol=0.1)

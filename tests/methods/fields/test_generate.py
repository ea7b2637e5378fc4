"""Zero-shot generation: the exported NeRF equals the hypernetwork; `priorlab generate`."""

import pytest
import torch

from priorlab.data.scenes import VIEW_FOV_DEG, view_cameras
from priorlab.methods.checkpoint import save_checkpoint
from priorlab.methods.configuration import config_to_dict
from priorlab.methods.fields.distill import DistillConfig, DistillFit
from priorlab.methods.fields.generate import (GenerateError, check_prompt, export_nerf,
                                              generate_nerf, load_hyperfields, reference_points)
from priorlab.methods.fields.renderer import render_image
from priorlab.methods.fields.store import TeacherStore
from priorlab.methods.fields.text import TextEncoder

TINY = dict(model_dim=32, transformer_layers=1, n_heads=2, head_dim=8, hyper_hidden=16,
            n_levels=4, log2_hashmap_size=10, finest_resolution=64, n_samples=16,
            rays_per_prompt=64, image_size=8, eval_size=12, eval_views=1, n_prompts=1,
            scenes="a red sphere", objective="direct")


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder()


@pytest.fixture(scope="module")
def trained(encoder):
    fit = DistillFit(DistillConfig(**TINY), encoder=encoder)
    for _ in range(3):
        fit.train_step()
    return fit


def test_the_exported_nerf_renders_what_the_hypernetwork_renders(trained):
    model, fcfg = trained.model, trained.fcfg
    assert model.cfg.dynamic                                    # weights depend on the batch
    ct = trained.conditioning(trained.train_scenes)[0]
    c2w, _, _ = view_cameras(1, seed=5)
    points = reference_points(c2w, 12, VIEW_FOV_DEG, fcfg, max_points=10 ** 9)
    assert points.shape == (12 * 12 * fcfg.n_samples, 3)         # every sample of the view
    field = export_nerf(model, ct, points)
    with torch.no_grad():
        ours = field(points)
        theirs = model(points[None], ct[None])
        for key in ("sigma", "rgb"):
            torch.testing.assert_close(ours[key], theirs[key][0], rtol=0, atol=0)
        # one forward pass of the hypernetwork over the whole view = the exported NeRF's image
        image = render_image(field, c2w, 12, 12, VIEW_FOV_DEG, fcfg)["rgb"]
        direct = render_image(model.scene_field(ct), c2w, 12, 12, VIEW_FOV_DEG, fcfg,
                              chunk=12 * 12)["rgb"]
    torch.testing.assert_close(image, direct, rtol=0, atol=1e-6)
    subset = reference_points(c2w, 12, VIEW_FOV_DEG, fcfg, max_points=100, seed=1)
    assert subset.shape == (100, 3)


def test_an_exported_nerf_with_an_occupancy_grid_renders_the_same_skipping_empty_cells(trained):
    """Serving's fast path: the grid is part of the field (σ = 0 in empty cells), so skipping
    those samples changes nothing; and the NeRF as bytes (what text2nerf answers) round-trips."""
    from priorlab.methods.fields.store import StoreError, nerf_from_bytes, nerf_to_bytes

    model, fcfg = trained.model, trained.fcfg
    ct = trained.conditioning(trained.train_scenes)[0]
    c2w, _, _ = view_cameras(2, seed=3)
    points = reference_points(c2w, 12, VIEW_FOV_DEG, fcfg)
    plain = export_nerf(model, ct, points)
    field = export_nerf(model, ct, points, occupancy_resolution=8)
    assert field.occupancy.shape == (8, 8, 8) and plain.occupancy is None
    with torch.no_grad():
        torch.testing.assert_close(field.mlp.layers[0].weight, plain.mlp.layers[0].weight)
        skipped = render_image(field, c2w, 12, 12, VIEW_FOV_DEG, field.cfg, occupancy=field.occupancy)
        every = render_image(field, c2w, 12, 12, VIEW_FOV_DEG, field.cfg)
        torch.testing.assert_close(skipped["rgb"], every["rgb"], rtol=0, atol=1e-6)
        back = nerf_from_bytes(nerf_to_bytes(field, prompt="a red sphere"))
        again = render_image(back, c2w, 12, 12, VIEW_FOV_DEG, back.cfg, occupancy=back.occupancy)
    torch.testing.assert_close(again["rgb"], skipped["rgb"], rtol=0, atol=0)
    with pytest.raises(StoreError, match="nerf_to_bytes"):
        nerf_from_bytes(b"not a safetensors file")


def test_prompts_are_checked(encoder):
    assert check_prompt("  a red torus ", encoder) == "a red torus"
    with pytest.raises(GenerateError, match="empty"):
        check_prompt("   ", encoder)
    with pytest.raises(GenerateError, match="tokens"):
        check_prompt("a red torus " * 20, encoder)


def test_priorlab_generate_writes_weights_and_a_turntable(trained, encoder, tmp_path, capsys):
    from priorlab.platform.cli import main

    ckpt = tmp_path / "ckpt"
    save_checkpoint(ckpt, method="fields-hyper", step=3, config=config_to_dict(trained.cfg),
                    model=trained.model, optimizer=trained.optimizer, metrics={},
                    extra_state=trained.train_state())
    model, cfg, _ = load_hyperfields(ckpt, encoder=encoder)
    assert cfg.scenes == "a red sphere"
    out = tmp_path / "gen" / "red-torus"
    assert main(["generate", "a red torus", "--checkpoint", str(ckpt), "--out", str(out),
                 "--views", "2", "--size", "12"]) == 0
    printed = capsys.readouterr().out
    assert "one forward pass" in printed and "PSNR vs the exact views of red-torus" in printed
    assert (out / "model.safetensors").exists() and (out / "contact_sheet.png").exists()
    field, meta = TeacherStore(out.parent).load("red-torus")
    assert meta["objective"] == "hyperfields" and meta["prompt"] == "a red torus"
    c2w, _, _ = view_cameras(2, orbit=True, elevation=(20.0, 20.0))
    again = generate_nerf(model, encoder, "a red torus", c2w, 12, VIEW_FOV_DEG)
    for (name, a), b in zip(field.state_dict().items(), again.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    # a prompt outside the family still generates (no ground truth to compare with)
    assert main(["generate", "a plaid teapot", "--checkpoint", str(ckpt), "--out",
                 str(tmp_path / "gen" / "teapot"), "--views", "1", "--size", "12"]) == 0
    assert main(["generate", "", "--checkpoint", str(ckpt)]) == 2
    assert "empty" in capsys.readouterr().err
    (tmp_path / "other").mkdir()
    save_checkpoint(tmp_path / "other", method="fields-teacher", step=1, config={},
                    model=torch.nn.Linear(1, 1), optimizer=None, metrics={}, extra_state={})
    assert main(["generate", "a red torus", "--checkpoint", str(tmp_path / "other")]) == 2
    assert "fields-hyper" in capsys.readouterr().err


def test_ood_finetuning_arms_start_where_they_should(trained, encoder):
    """(P) starts exactly at HyperFields' zero-shot output; fine-tuning leaves the model alone."""
    from priorlab.data.scenes import parse_scene
    from priorlab.methods.fields.finetune import FinetuneConfig, compare_finetuning

    before = {k: v.clone() for k, v in trained.model.state_dict().items()}
    cfg = FinetuneConfig(target_psnr=60.0, max_steps=4, eval_every=2, rays_per_step=64,
                         image_size=16, n_train_views=2, n_test_views=1)
    rows = {r["arm"]: r for r in compare_finetuning(trained.model, encoder,
                                                    parse_scene("a red capsule"), cfg)}
    assert set(rows) == {"hyperfields", "scratch", "pretrained"}
    assert rows["pretrained"]["start_psnr"] == pytest.approx(rows["hyperfields"]["start_psnr"], abs=1e-6)
    assert rows["scratch"]["start_psnr"] != pytest.approx(rows["hyperfields"]["start_psnr"], abs=1e-3)
    for row in rows.values():
        assert not row["reached"] and row["steps"] is None          # 60 dB is out of reach
        assert [r["step"] for r in row["curve"]] == [0.0, 2.0, 4.0]
    for name, tensor in trained.model.state_dict().items():
        assert torch.equal(tensor, before[name]), name


def test_ood_arms_can_all_render_with_the_same_samples_per_ray(trained, encoder):
    """``n_samples`` renders the HyperFields and (P) arms like (S); the weights are the model's."""
    from priorlab.data.scenes import parse_scene
    from priorlab.methods.fields.finetune import FinetuneConfig, finetune_hyperfields

    assert trained.model.field_cfg.n_samples == 16
    cfg = FinetuneConfig(target_psnr=60.0, max_steps=1, eval_every=1, rays_per_step=32,
                         image_size=16, n_train_views=2, n_test_views=1, n_samples=40)
    curve, field = finetune_hyperfields(trained.model, encoder, parse_scene("a red capsule"), cfg)
    assert field.cfg.n_samples == 40 and trained.model.field_cfg.n_samples == 16
    zero = finetune_hyperfields(trained.model, encoder, parse_scene("a red capsule"),
                                FinetuneConfig(**{**cfg.__dict__, "n_samples": 0}))[0]
    assert curve[0]["eval/psnr"] != pytest.approx(zero[0]["eval/psnr"], abs=1e-6)   # more samples


def test_priorlab_finetune_reports_the_arms(trained, tmp_path, capsys, monkeypatch):
    from priorlab.methods.fields import finetune
    from priorlab.platform.cli import main

    ckpt = tmp_path / "ckpt"
    save_checkpoint(ckpt, method="fields-hyper", step=3, config=config_to_dict(trained.cfg),
                    model=trained.model, optimizer=trained.optimizer, metrics={},
                    extra_state=trained.train_state())
    small = dict(rays_per_step=64, image_size=16, n_train_views=2, n_test_views=1, eval_every=1)
    real = finetune.FinetuneConfig
    monkeypatch.setattr(finetune, "FinetuneConfig", lambda **kw: real(**kw, **small))
    out = tmp_path / "ft" / "red-capsule"
    assert main(["finetune", "a red capsule", "--checkpoint", str(ckpt), "--target-psnr", "60",
                 "--max-steps", "2", "--compare", "--views", "1", "--size", "12",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "did NOT reach 60.0 dB" in printed and "scratch" in printed and "pretrained" in printed
    assert (out / "model.safetensors").exists() and (out / "compare.json").exists()
    assert main(["finetune", "a plaid teapot", "--checkpoint", str(ckpt)]) == 2
    assert "score distillation" in capsys.readouterr().err
    assert main(["eval", str(ckpt), "--split", "train", "--data-dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "fields-hyper checkpoint at step 3, 1 train scenes" in printed and "eval/psnr" in printed
    assert main(["eval", str(ckpt), "--data-dir", str(tmp_path)]) == 2     # nothing held out
    assert "--split train" in capsys.readouterr().err

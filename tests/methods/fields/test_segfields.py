"""HyperSegmentationFields (thesis Sec. 4.4.8): the view encoder reads poses, the exported NeRF
carries the feature field, background and parts are read off the rendered features, and a tiny
model learns its scenes' parts beyond what a field without part information could reach."""

from __future__ import annotations

import pytest
import torch

from priorlab.methods.configuration import ConfigError
from priorlab.methods.fields.generate import reference_points, scene_nerf
from priorlab.methods.fields.segfields import (HyperSegFields, SegFieldsConfig, SegFieldsError,
                                               SegFieldsFit, ViewEncoder)

TINY = dict(n_train_scenes=2, n_novel_scenes=1, shapes="chair;lamp", context_views=2,
            context_size=16, target_views=4, target_size=16, eval_views=2, eval_size=16,
            encoder_width=8, token_dim=16, token_grid=2, feature_dim=4, model_dim=16,
            transformer_layers=1, n_heads=2, head_dim=4, hyper_hidden=16, n_levels=4,
            log2_hashmap_size=10, finest_resolution=32, n_samples=16, n_scenes=2,
            rays_per_scene=128, eval_every=50)


def test_the_view_encoder_sees_the_cameras_not_only_the_pixels():
    from priorlab.data.scenes import VIEW_FOV_DEG, view_cameras

    torch.manual_seed(0)
    enc = ViewEncoder(8, 16, 2)
    rgb = torch.rand(1, 2, 16, 16, 3)
    a, _, _ = view_cameras(2, seed=1)
    b, _, _ = view_cameras(2, seed=2)
    ta, tb = enc(rgb, a[None], VIEW_FOV_DEG), enc(rgb, b[None], VIEW_FOV_DEG)
    assert ta.shape == (1, 2 * 4, 16)
    assert not torch.allclose(ta, tb)
    with pytest.raises(ValueError, match=r"\(B, V, H, W, 3\)"):
        enc(rgb[0], a, VIEW_FOV_DEG)


def test_the_exported_nerf_carries_the_feature_field_of_the_forward_pass():
    from priorlab.data.scenes import VIEW_FOV_DEG, view_cameras

    torch.manual_seed(0)
    cfg = SegFieldsConfig(**TINY)
    model = HyperSegFields(cfg).eval()
    c2w, _, _ = view_cameras(1, seed=4)
    ct = model.condition(torch.rand(1, 2, 16, 16, 3), view_cameras(2, seed=5)[0][None], VIEW_FOV_DEG)[0]
    with torch.no_grad():
        field = scene_nerf(model.hyper, ct, c2w, 8, VIEW_FOV_DEG)
        pts = reference_points(c2w, 8, VIEW_FOV_DEG, model.hyper.field_cfg)
        want = model(pts[None], ct[None])
        got = field(pts)
    assert got["features"].shape == (pts.shape[0], cfg.feature_dim)
    torch.testing.assert_close(got["features"], want["features"][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got["sigma"], want["sigma"][0], rtol=1e-5, atol=1e-4)


def test_background_and_parts_are_read_off_the_rendered_features():
    model = HyperSegFields(SegFieldsConfig(**TINY))
    with torch.no_grad():
        model.classifier.weight.copy_(torch.eye(4)[:, :4].repeat(3, 1)[:12])
    feats = torch.tensor([[0.0, 3.0, 0.0, 0.0], [0.0, 3.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    opacity = torch.tensor([0.9, 0.4, 0.6])
    labels = model.segment(feats, opacity)
    assert labels[1] == 0                                       # too transparent: background
    assert labels[0] == 1 + int(model.classifier(feats[0]).argmax())
    # no classifier bias: scaling a ray's features by its opacity never changes its part
    torch.testing.assert_close(model.segment(feats * 0.7, torch.ones(3)), model.segment(feats, torch.ones(3)))


def test_bad_configs_and_labels_are_refused():
    with pytest.raises(ConfigError, match="shapenet_root"):
        SegFieldsConfig(source="shapenet").validate()
    with pytest.raises(ConfigError, match="source="):
        SegFieldsConfig(source="pixels").validate()
    with pytest.raises(SegFieldsError, match="set n_parts=11"):
        SegFieldsFit(SegFieldsConfig(**{**TINY, "n_parts": 3}))      # the lamp's shade is class 11


def test_a_tiny_model_learns_its_scenes_parts_beyond_a_part_blind_field(one_thread):
    cfg = SegFieldsConfig(**{**TINY, "steps": 300, "lr": 3e-3, "seg_weight": 0.5, "seed": 0})
    fit = SegFieldsFit(cfg)
    before = fit.evaluate()
    losses = [fit.train_step() for _ in range(cfg.steps)]
    after = fit.evaluate()
    assert sum(losses[-20:]) < sum(losses[:20])
    assert after["seen/psnr"] > before["seen/psnr"] + 3.0
    assert after["seen/fg_iou"] > before["seen/fg_iou"] + 0.2
    # the majority part painted over the true mask is what a field without parts could reach
    assert after["seen/miou"] > after["seen/miou_majority"]


def test_priorlab_eval_scores_a_checkpoint_on_its_novel_scenes(tmp_path, capsys):
    from priorlab.methods.checkpoint import save_checkpoint
    from priorlab.methods.configuration import config_to_dict
    from priorlab.platform.cli import main

    cfg = SegFieldsConfig(**TINY)
    fit = SegFieldsFit(cfg)
    fit.train_step()
    save_checkpoint(tmp_path / "ckpt", method="fields-seg", step=1, config=config_to_dict(cfg),
                    model=fit.model)
    assert main(["eval", str(tmp_path / "ckpt"), "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "fields-seg checkpoint at step 1, 1 test scenes" in out and "eval/miou" in out
    assert main(["eval", str(tmp_path / "ckpt"), "--split", "val", "--data-dir", str(tmp_path)]) == 2
    assert "novel scenes (test)" in capsys.readouterr().err

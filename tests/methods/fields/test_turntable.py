"""Turntables: the files, the two-row contact sheet, PSNR against the same cameras' truth."""

import numpy as np
import pytest
import torch
from PIL import Image

from priorlab.data.scenes import parse_scene, render_views
from priorlab.methods.fields.config import FieldConfig
from priorlab.methods.fields.field import NeRFField
from priorlab.methods.fields.teacher import psnr
from priorlab.methods.fields.turntable import render_teacher, save_png

TINY = dict(n_levels=2, log2_hashmap_size=8, finest_resolution=16, hidden=16, n_samples=8,
            backend="torch")
N, SIZE = 4, 16


def read(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_turntable_writes_views_and_a_one_row_sheet(tmp_path):
    torch.manual_seed(0)
    field = NeRFField(FieldConfig(**TINY))
    out = render_teacher(field, field.cfg, tmp_path / "t", n_views=N, size=SIZE)
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == \
        ["contact_sheet.png"] + [f"view_{i:02d}.png" for i in range(N)]
    assert "psnr" not in out and "psnr_mean" not in out
    sheet = read(out["contact_sheet"])
    assert sheet.shape == (SIZE, N * SIZE, 3)
    for i in range(N):
        assert np.array_equal(sheet[:, i * SIZE:(i + 1) * SIZE], read(out[f"view_{i:02d}"]))
    assert field.training  # left as it was


def test_with_a_scene_the_sheet_has_the_truth_of_the_same_cameras_and_psnr(tmp_path):
    torch.manual_seed(0)
    field = NeRFField(FieldConfig(**TINY))
    scene = parse_scene("a red sphere")
    out = render_teacher(field, field.cfg, tmp_path, n_views=N, size=SIZE, scene=scene,
                         elevation=20.0)
    sheet = read(out["contact_sheet"])
    assert sheet.shape == (2 * SIZE, N * SIZE, 3)
    # the second row is render_views' orbit at this elevation: the same cameras exactly
    truth = render_views(scene, N, SIZE, orbit=True, elevation=(20.0, 20.0))["rgb"]
    truth_row = np.concatenate([np.round(truth[i].numpy() * 255) for i in range(N)], axis=1)
    assert np.abs(sheet[SIZE:].astype(float) - truth_row).max() <= 1
    # PSNR: one per view, of the teacher's view against that truth
    assert len(out["psnr"]) == N and out["psnr_mean"] == pytest.approx(np.mean(out["psnr"]))
    views = [torch.from_numpy(read(out[f"view_{i:02d}"]) / 255.0).float() for i in range(N)]
    for i in range(N):   # up to the 8-bit rounding of the saved view
        assert out["psnr"][i] == pytest.approx(psnr(views[i], truth[i]), abs=0.1)


def test_a_field_shaped_like_the_scene_scores_higher_than_an_untrained_one(tmp_path):
    """An analytic field, an opaque ball of the red sphere's radius (0.75) and albedo, has the
    scene's silhouette (unshaded): its PSNR must beat a random field's (the score points the
    right way)."""
    scene = parse_scene("a red sphere")
    cfg = FieldConfig(**{**TINY, "n_samples": 64})
    torch.manual_seed(0)
    random_field = NeRFField(cfg)

    def red_ball(points):
        inside = (points.norm(dim=-1) < 0.75).float()
        return {"sigma": 1e3 * inside, "rgb": torch.tensor([0.85, 0.12, 0.10]).expand_as(points)}

    good = render_teacher(red_ball, cfg, tmp_path / "good", n_views=2, size=SIZE, scene=scene)
    bad = render_teacher(random_field, cfg, tmp_path / "bad", n_views=2, size=SIZE, scene=scene)
    assert good["psnr_mean"] > bad["psnr_mean"] + 3.0, (good["psnr"], bad["psnr"])


def test_save_png_round_trips_8_bit_values(tmp_path):
    img = torch.rand(5, 7, 3)
    path = save_png(img, tmp_path / "sub" / "x.png")
    assert np.abs(read(path) / 255.0 - img.numpy()).max() <= 0.5 / 255 + 1e-6
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        save_png(torch.rand(2, 5, 7, 3), tmp_path / "y.png")

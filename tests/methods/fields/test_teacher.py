import math

import pytest
import torch

from priorlab.data.scenes import parse_scene
from priorlab.methods.configuration import ConfigError
from priorlab.methods.fields.teacher import TeacherConfig, fit_reconstruction, psnr, scene_views

TINY = dict(image_size=32, steps=100, eval_every=50, n_levels=8, log2_hashmap_size=14,
            finest_resolution=128, n_samples=32, rays_per_step=512, n_train_views=16,
            n_test_views=4)


def test_psnr_of_known_errors():
    a = torch.zeros(2, 4, 4, 3)
    assert psnr(a, a) == math.inf
    assert psnr(a + 0.1, a) == pytest.approx(20.0)


def test_held_out_views_are_other_poses_of_the_same_scene():
    cfg = TeacherConfig(**TINY)
    scene = parse_scene("a red sphere")
    train, test = scene_views(scene, cfg, "train"), scene_views(scene, cfg, "test")
    assert train["rgb"].shape == (16, 32, 32, 3) and test["rgb"].shape == (4, 32, 32, 3)
    dists = torch.cdist(train["c2w"][:, :3, 3], test["c2w"][:, :3, 3])
    assert float(dists.min()) > 1e-3


def test_reconstruction_teacher_reaches_a_psnr_floor_on_one_scene():
    """A small budget (100 steps of 512 rays at 32x32, ~8 s here) must fit a red sphere to
    >= 24 dB on held-out views: an untrained field renders a grey blob (~10 dB)."""
    torch.set_num_threads(2)
    seen = []
    result = fit_reconstruction(parse_scene("a red sphere"), TeacherConfig(**TINY),
                                on_eval=lambda step, m: seen.append((step, m["eval/psnr"])))
    assert [s for s, _ in seen] == [50, 100]
    assert result.metrics["eval/psnr"] >= 24.0, seen
    assert seen[-1][1] > seen[0][1] - 0.5  # it does not get worse


def test_bad_recipe_is_refused():
    with pytest.raises(ConfigError, match="n_samples"):
        fit_reconstruction(parse_scene("a red sphere"), TeacherConfig(n_samples=0))

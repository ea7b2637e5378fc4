"""The teacher trainable: checkpoints at every evaluation, and a run cut at step 4 and resumed
follows the uninterrupted one (same losses, PSNRs and weights)."""

from __future__ import annotations

import pytest

from priorlab.methods.configuration import ConfigError

pytestmark = pytest.mark.integration

TINY = dict(scene="a red sphere", image_size=16, n_levels=2, log2_hashmap_size=8,
            finest_resolution=16, n_samples=8, rays_per_step=64, n_train_views=2, n_test_views=1,
            eval_every=2)


def test_resumed_teacher_follows_the_uninterrupted_fit(ray_session, tmp_path):
    import torch

    from priorlab.methods.checkpoint import load_checkpoint
    from priorlab.trainables.fields_teacher import fit

    base = dict(TINY, steps=6, data_root=str(tmp_path), storage_path=str(tmp_path))
    straight = fit(dict(base, run_name="straight"))
    assert straight.metrics["step"] == 6 and straight.metrics["train/start_step"] == 0
    assert {"train/loss", "eval/psnr", "seconds"} <= set(straight.metrics)
    fit(dict(base, run_name="cut", steps=4))
    resumed = fit(dict(base, run_name="cut"))
    assert resumed.metrics["train/start_step"] == 4 and resumed.metrics["step"] == 6
    a = load_checkpoint(tmp_path / "straight" / "checkpoint_000000006", method="fields-teacher")
    b = load_checkpoint(tmp_path / "cut" / "checkpoint_000000006", method="fields-teacher")
    for key in ("train/loss", "eval/psnr"):
        assert b.metrics[key] == pytest.approx(a.metrics[key], rel=1e-6, abs=1e-6), key
    for name, tensor in a.model_state.items():
        torch.testing.assert_close(b.model_state[name], tensor, rtol=1e-6, atol=1e-6)


def test_teacher_trainable_refuses_workers_and_unknown_scenes(tmp_path):
    from priorlab.data.sdf import SceneError
    from priorlab.trainables.fields_teacher import build_trainer

    base = dict(TINY, steps=2, data_root=str(tmp_path), storage_path=str(tmp_path))
    with pytest.raises(ConfigError, match="one worker"):
        build_trainer(dict(base, workers=2))
    with pytest.raises(SceneError, match="sofa"):
        build_trainer(dict(base, scene="a red sofa"))

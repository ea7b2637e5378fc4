"""The HyperSegmentationFields trainable: checkpoints at every evaluation, exact resume, its
study registered, and bad runs refused in the driver."""

from __future__ import annotations

import pytest

from priorlab.methods.configuration import ConfigError

pytestmark = pytest.mark.integration

TINY = dict(n_train_scenes=2, n_novel_scenes=1, shapes="chair;mug", context_views=2,
            context_size=16, target_views=2, target_size=16, eval_views=1, eval_size=16,
            encoder_width=8, token_dim=16, token_grid=2, feature_dim=4, model_dim=16,
            transformer_layers=1, n_heads=2, head_dim=4, hyper_hidden=8, n_levels=2,
            log2_hashmap_size=8, finest_resolution=16, n_samples=8, n_scenes=2,
            rays_per_scene=32, eval_every=2)


def test_resumed_segmentation_fields_follow_the_uninterrupted_fit(ray_session, tmp_path, one_thread):
    import torch

    from priorlab.methods.checkpoint import load_checkpoint
    from priorlab.trainables.fields_seg import fit

    base = dict(TINY, steps=4, data_root=str(tmp_path), storage_path=str(tmp_path))
    straight = fit(dict(base, run_name="straight"))
    assert straight.metrics["step"] == 4
    assert {"train/loss", "novel/miou", "novel/psnr", "seen/miou", "novel/miou_majority"} <= set(straight.metrics)
    fit(dict(base, run_name="cut", steps=2))
    resumed = fit(dict(base, run_name="cut"))
    assert resumed.metrics["train/start_step"] == 2 and resumed.metrics["step"] == 4
    a = load_checkpoint(tmp_path / "straight" / "checkpoint_000000004", method="fields-seg")
    b = load_checkpoint(tmp_path / "cut" / "checkpoint_000000004", method="fields-seg")
    for name, tensor in a.model_state.items():
        torch.testing.assert_close(b.model_state[name], tensor, rtol=1e-6, atol=1e-6)


def test_bad_segmentation_runs_are_refused_in_the_driver(tmp_path):
    from priorlab.platform.studies import get_study
    from priorlab.trainables.fields_seg import build_trainer, resolve_paths

    base = dict(TINY, steps=2, data_root=str(tmp_path), storage_path=str(tmp_path))
    with pytest.raises(ConfigError, match="one worker"):
        build_trainer(dict(base, workers=2))
    with pytest.raises(ConfigError, match="shapenet_root"):
        build_trainer(dict(base, source="shapenet"))
    with pytest.raises(ConfigError, match="set n_parts=12"):       # the mug's handle is class 12
        build_trainer(dict(base, n_parts=3))
    assert resolve_paths({"shapenet_root": "data/sn"})["shapenet_root"].endswith("/data/sn")
    study = get_study("fields-segmentation")
    assert study.method == "fields-seg" and study.metric == "novel/miou"
    assert study.resolve({"shapenet_root": "sn"})["shapenet_root"].startswith("/")

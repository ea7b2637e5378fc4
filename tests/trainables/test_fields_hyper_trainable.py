"""The HyperFields trainable: checkpoints at every evaluation, exact resume, two DDP workers, and
bad input refused in the driver."""

from __future__ import annotations

import pytest

from priorlab.methods.configuration import ConfigError

pytestmark = pytest.mark.integration

TINY = dict(scenes="a red sphere;a blue cube", objective="direct", model_dim=16,
            transformer_layers=1, n_heads=2, head_dim=4, hyper_hidden=8, n_levels=2,
            log2_hashmap_size=8, finest_resolution=16, n_samples=8, rays_per_prompt=32,
            image_size=8, eval_size=11, eval_views=1, n_prompts=2, eval_every=2)


def test_resumed_hyperfields_follow_the_uninterrupted_fit(ray_session, tmp_path):
    import torch

    from priorlab.methods.checkpoint import load_checkpoint
    from priorlab.trainables.fields_hyper import fit

    base = dict(TINY, steps=4, data_root=str(tmp_path), storage_path=str(tmp_path))
    straight = fit(dict(base, run_name="straight"))
    assert straight.metrics["step"] == 4 and straight.metrics["train/start_step"] == 0
    assert {"train/loss", "seen/psnr", "seen/ssim", "seconds"} <= set(straight.metrics)
    fit(dict(base, run_name="cut", steps=2))
    resumed = fit(dict(base, run_name="cut"))
    assert resumed.metrics["train/start_step"] == 2 and resumed.metrics["step"] == 4
    a = load_checkpoint(tmp_path / "straight" / "checkpoint_000000004", method="fields-hyper")
    b = load_checkpoint(tmp_path / "cut" / "checkpoint_000000004", method="fields-hyper")
    assert b.metrics["seen/psnr"] == pytest.approx(a.metrics["seen/psnr"], rel=1e-6, abs=1e-6)
    for name, tensor in a.model_state.items():
        torch.testing.assert_close(b.model_state[name], tensor, rtol=1e-6, atol=1e-6)


def test_two_ddp_workers_share_the_prompts_of_a_step(ray_session, tmp_path):
    from priorlab.trainables.fields_hyper import fit

    result = fit(dict(TINY, steps=2, workers=2, data_root=str(tmp_path), storage_path=str(tmp_path),
                      run_name="ddp"))
    assert result.error is None and result.metrics["step"] == 2
    assert result.metrics["train/loss"] > 0


def test_bad_hyperfields_runs_are_refused_in_the_driver(tmp_path):
    from priorlab.trainables.fields_hyper import build_trainer, resolve_paths

    base = dict(TINY, steps=2, data_root=str(tmp_path), storage_path=str(tmp_path))
    with pytest.raises(ConfigError, match="divisible by workers=2"):
        build_trainer(dict(base, n_prompts=3, workers=2))
    with pytest.raises(ConfigError, match=r"no teacher in .*farm teachers"):
        build_trainer(dict(base, objective="distill", teachers=str(tmp_path / "none")))
    assert resolve_paths({"teachers": "runs/t"})["teachers"].endswith("/runs/t")
    assert resolve_paths({"teachers": "s3://b/t"})["teachers"] == "s3://b/t"
    assert resolve_paths({})["teachers"].endswith("/runs/teachers")       # the default too
    from priorlab.platform.studies import get_study

    for name in ("fields-dynamic", "fields-distillation"):   # applied before trials chdir
        assert get_study(name).resolve({"teachers": "t"})["teachers"].startswith("/")

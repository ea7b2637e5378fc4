"""Integration: the MAML (Hyper)ResNet trainable reports, checkpoints and resumes; eval CLI reads it."""

import pytest

pytestmark = pytest.mark.integration


def test_hyper_maml_trainable_reports_checkpoints_and_resumes(ray_session, data_root, tmp_path):
    from priorlab.methods.checkpoint import load_checkpoint
    from priorlab.trainables.hyper_maml import fit

    cfg = dict(widths=[4, 4, 8, 8], n_query=2, meta_batch=2, inner_steps=1, eval_inner_steps=1,
               eval_tasks=2, diag_tasks=1, pretrain_steps=2, pretrain_classes=10, pretrain_batch=8,
               meta_iters=2, eval_every=1, data_root=str(data_root), storage_path=str(tmp_path),
               run_name="maml")
    first = fit(cfg)
    m = first.metrics
    assert m["iteration"] == 2 and 0.0 <= m["eval/cross/acc"] <= 1.0 and "eval/same/acc" in m
    assert "diag/movement_late" in m and "train/loss" in m
    ckpt = load_checkpoint(first.checkpoint.path, method="hyper-maml")
    assert ckpt.step == 2 and ckpt.train_state["pretrained_done"]

    second = fit(dict(cfg, meta_iters=3))  # same run name: resumes, no second pre-training
    assert second.metrics["train/start_iteration"] == 2 and second.metrics["iteration"] == 3
    assert "pretrain/loss" not in second.metrics

    from priorlab.platform.cli import main

    assert main(["eval", second.checkpoint.path, "--episodes", "3",
                 "--data-dir", str(data_root)]) == 0

"""Integration: the MAML (Hyper)ResNet trainable validates during training, tests once at the end,
checkpoints, resumes exactly; the eval CLI reads its checkpoint."""

import pytest

pytestmark = pytest.mark.integration

# Resume tolerance: the resumed run replays the same tasks (functions of (seed, iteration)) from
# the same weights, Adam state, LR schedule and RNG with the same thread count, so its losses
# should be bit-identical; 1e-6 relative leaves room only for float reduction order.
RESUME_RTOL = 1e-6


def test_hyper_maml_trainable_tests_once_checkpoints_and_resumes_exactly(ray_session, data_root,
                                                                       tmp_path):
    from priorlab.methods.checkpoint import load_checkpoint
    from priorlab.trainables.hyper_maml import fit

    cfg = dict(widths=[4, 4, 8, 8], n_query=2, meta_batch=2, inner_steps=1, eval_inner_steps=1,
               eval_tasks=2, diag_tasks=1, pretrain_steps=2, pretrain_classes=10, pretrain_batch=8,
               meta_iters=4, eval_every=1, data_root=str(data_root), storage_path=str(tmp_path))
    full = fit(dict(cfg, run_name="full"))  # 4 iterations, uninterrupted

    first = fit(dict(cfg, meta_iters=2, run_name="cut"))  # interrupted after 2 ...
    m = first.metrics
    assert m["iteration"] == 2 and 0.0 <= m["eval/cross/acc"] <= 1.0 and "eval/same/acc" in m
    assert 0.0 <= m["eval/val/acc"] <= 1.0 and "diag/movement_late" in m and "train/loss" in m
    ckpt = load_checkpoint(first.checkpoint.path, method="hyper-maml")
    assert ckpt.step == 2 and ckpt.train_state["pretrained_done"]

    second = fit(dict(cfg, run_name="cut"))  # ... and resumed to 4 under the same run name
    assert second.metrics["train/start_iteration"] == 2 and second.metrics["iteration"] == 4
    assert "pretrain/loss" not in second.metrics  # no second pre-training

    # The last two reports (kept checkpoints) of each run: iterations 3 and 4.
    resumed = {m["iteration"]: m for _, m in second.best_checkpoints}
    uninterrupted = {m["iteration"]: m for _, m in full.best_checkpoints}
    assert sorted(resumed) == sorted(uninterrupted) == [3.0, 4.0]
    for it in (3.0, 4.0):
        assert resumed[it]["train/loss"] == pytest.approx(uninterrupted[it]["train/loss"],
                                                          rel=RESUME_RTOL), it
    # Periodic reports validate only; the test classes appear in the last report alone.
    assert "eval/val/acc" in resumed[3.0] and "eval/same/acc" not in resumed[3.0]
    assert "eval/cross/acc" not in resumed[3.0]
    assert resumed[4.0]["eval/same/acc"] == pytest.approx(uninterrupted[4.0]["eval/same/acc"])

    from priorlab.platform.cli import main

    assert main(["eval", second.checkpoint.path, "--episodes", "3",
                 "--data-dir", str(data_root)]) == 0

"""Integration: the online segmentation trainable (Sec. 2.4.4) runs the curriculum through Ray
Train on composited Omniglot episodes and reports Table 2.2's metrics with a checkpoint."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_a_tiny_segmentation_run_switches_on_distractors_and_reports_table_2_2(ray_session, data_root, tmp_path):
    from priorlab.methods.memory.segmentation_loop import load_segmentation_model
    from priorlab.trainables.memory_segmentation import fit

    result = fit(dict(source="omniglot", image_size=16, channels=2, n_targets=3, n_distractors=3,
                      meta_batch=1, max_iters=3, curriculum_steps=2, eval_every=3, eval_episodes=2,
                      report_shots=[1], injection_layer=9, data_root=str(data_root),
                      storage_path=str(tmp_path), run_name="seg"))
    m = result.metrics
    assert m["step"] == 3 and m["train/distractors"] == 1.0
    assert {"eval/iou_1shot", "eval/mask_1shot", "eval/iou_mean", "eval/mask_mean"} <= set(m)
    model, cfg, step = load_segmentation_model(result.checkpoint.path)
    assert step == 3 and cfg.injection_layer == 9 and cfg.source == "omniglot"

"""Integration: the continual-learning trainable (Sec. 2.4.3) runs a tiny curriculum through Ray
Train and reports Fig. 2.3 / 2.4's metrics with a checkpoint a person can evaluate."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_a_tiny_continual_run_reports_lengths_subtasks_and_the_study_metric(ray_session, data_root, tmp_path):
    from priorlab.methods.memory.continual_loop import load_model
    from priorlab.trainables.memory_continual import fit

    result = fit(dict(model="oml", image_size=14, conv_layers=2, channels=4, pln_hidden=8, subtasks=3,
                      curriculum_start=2, curriculum_every=2, n_labels=4, n_shot=2, n_query=2,
                      meta_batch=2, max_iters=4, eval_every=4, eval_episodes=4, eval_lengths=[2],
                      data_root=str(data_root), storage_path=str(tmp_path), run_name="cont"))
    m = result.metrics
    assert m["step"] == 4 and m["train/subtasks"] == 3                 # the curriculum grew 2 -> 3
    assert m["eval/acc"] == m["eval/acc_len3"] and {"eval/acc_len2", "eval/acc_subtask3"} <= set(m)
    model, cfg, step = load_model(result.checkpoint.path)
    assert step == 4 and cfg.model == "oml"


def test_more_than_one_worker_is_refused_with_a_reason(data_root, tmp_path):
    from priorlab.trainables.memory_continual import build_trainer

    with pytest.raises(ValueError, match="one worker"):
        build_trainer(dict(workers=2, data_root=str(data_root), storage_path=str(tmp_path)))

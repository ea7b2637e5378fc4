"""Integration: the Ray Train trainable for memory, and the Ray Data episode stream."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.integration


def test_ray_data_stream_equals_in_process_sampler(ray_session, data_root):
    from priorlab.data.episodes import OnlineEpisodeSampler
    from priorlab.data.omniglot import load_omniglot_split
    from priorlab.trainables.streams import episode_dataset, local_batches

    kw = dict(n_way=3, n_shot=2, image_size=28, base_seed=7, meta_batch=2)
    ds = episode_dataset(str(data_root), "train", start_step=5, n_steps=3, **kw)
    rows = list(ds.iter_batches(batch_size=2, batch_format="numpy"))
    sampler = OnlineEpisodeSampler(load_omniglot_split(data_root, "train", progress=False), 3, 2)
    local = local_batches(sampler, base_seed=7, start_step=5, meta_batch=2)
    assert [int(r["step"][0]) for r in rows] == [5, 6, 7]
    for row in rows:
        x, y = next(local)
        assert np.array_equal(row["x"], x) and np.array_equal(row["y"], y)


def test_trainable_checkpoints_and_resumes_at_saved_step(ray_session, data_root, tmp_path,
                                                         tiny_memory_config):
    from priorlab.methods.checkpoint import load_checkpoint
    from priorlab.trainables.common import latest_saved_step
    from priorlab.trainables.memory import fit

    base = dict(tiny_memory_config, data_root=str(data_root), storage_path=str(tmp_path),
                run_name="resume-me")
    first = fit(base)
    assert first.metrics["step"] == 4 and first.metrics["train/start_step"] == 0
    assert {"train/loss", "eval/acc_1shot", "eval/acc_2shot"} <= set(first.metrics)
    assert latest_saved_step(tmp_path / "resume-me") == 4
    ckpt = load_checkpoint(first.checkpoint.path, method="memory")
    assert ckpt.step == 4 and "optimizer" in ckpt.train_state and "rng" in ckpt.train_state

    # Same run name, longer budget: training continues from step 4, not from 0.
    second = fit(dict(base, max_iters=6))
    assert second.metrics["train/start_step"] == 4
    assert second.metrics["step"] == 6
    meta = json.loads((tmp_path / "resume-me" / "checkpoint_000000006" / "meta.json").read_text())
    assert meta["step"] == 6 and meta["config"]["max_iters"] == 6


def test_two_workers_train_with_ddp_on_cpu(ray_session, data_root, tmp_path, tiny_memory_config):
    """Two gloo workers split the meta-batch; rank 0 reports and checkpoints."""
    from priorlab.trainables.memory import fit

    cfg = dict(tiny_memory_config, max_iters=2, eval_every=2, workers=2, cpus_per_worker=0.5,
               data_root=str(data_root), storage_path=str(tmp_path), run_name="ddp")
    result = fit(cfg)
    assert result.metrics["step"] == 2 and 0.0 <= result.metrics["eval/acc_1shot"] <= 1.0
    assert (tmp_path / "ddp" / "checkpoint_000000002" / "model.pt").is_file()

"""Integration: the Ray Train trainable for memory, and the Ray Data episode stream."""

from __future__ import annotations

import json
from pathlib import Path

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


def test_resumed_run_follows_the_uninterrupted_trajectory(ray_session, data_root, tmp_path,
                                                          tiny_memory_config):
    """Interrupted at step 4 and resumed to 8 (same run name, longer budget) == run straight to
    8: same reported losses and accuracies, same weights (tolerance 1e-6: the same CPU ops on the
    same episodes); the checkpoint holds the optimiser and RNG states."""
    import torch

    from priorlab.methods.checkpoint import load_checkpoint
    from priorlab.trainables.common import latest_saved_step
    from priorlab.trainables.memory import fit

    base = dict(tiny_memory_config, max_iters=8, data_root=str(data_root), storage_path=str(tmp_path))
    fit(dict(base, run_name="straight"))
    first = fit(dict(base, run_name="cut", max_iters=4))
    assert first.metrics["step"] == 4 and first.metrics["train/start_step"] == 0
    assert {"train/loss", "eval/acc_1shot", "eval/acc_2shot"} <= set(first.metrics)
    assert latest_saved_step(tmp_path / "cut") == 4
    ckpt = load_checkpoint(first.checkpoint.path, method="memory")
    assert ckpt.step == 4 and "optimizer" in ckpt.train_state and "rng" in ckpt.train_state
    resumed = fit(dict(base, run_name="cut"))
    assert resumed.metrics["train/start_step"] == 4 and resumed.metrics["step"] == 8
    meta = json.loads((tmp_path / "cut" / "checkpoint_000000008" / "meta.json").read_text())
    assert meta["step"] == 8 and meta["config"]["max_iters"] == 8
    for step in (6, 8):  # the reports made after the resume
        a = load_checkpoint(tmp_path / "straight" / f"checkpoint_{step:09d}", method="memory")
        b = load_checkpoint(tmp_path / "cut" / f"checkpoint_{step:09d}", method="memory")
        for key in ("train/loss", "eval/acc_1shot", "eval/acc_2shot"):
            assert b.metrics[key] == pytest.approx(a.metrics[key], rel=1e-6, abs=1e-6), (step, key)
        for name, tensor in a.model_state.items():
            torch.testing.assert_close(b.model_state[name], tensor, rtol=1e-6, atol=1e-6)


def _ddp_check(config):
    """Train worker body: the trainable's own learner under DDP, checked against one process."""
    import torch
    import ray.train
    import ray.train.torch

    from priorlab.data.episodes import OnlineEpisodeSampler
    from priorlab.data.omniglot import load_omniglot_split
    from priorlab.methods.configuration import config_from_dict
    from priorlab.methods.memory.config import MemoryConfig
    from priorlab.methods.memory.loop import MemoryLearner, episode_loss, to_inputs
    from priorlab.trainables.streams import local_batches

    cfg = config_from_dict(MemoryConfig, config["method"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    learner = MemoryLearner(cfg, wrap=ray.train.torch.prepare_model)
    sampler = OnlineEpisodeSampler(load_omniglot_split(config["data_root"], "train", progress=False),
                                   cfg.n_way, cfg.n_shot)
    batches = local_batches(sampler, base_seed=cfg.seed, start_step=0, meta_batch=cfg.meta_batch)
    share = cfg.meta_batch // world
    for _ in range(3):  # a few DDP steps, each rank on its half of the meta-batch
        x, y = next(batches)
        learner.train_step(*to_inputs(x[rank * share:(rank + 1) * share],
                                      y[rank * share:(rank + 1) * share], learner.device))
    # 1. every rank holds the same parameters
    flat = torch.cat([p.detach().flatten() for p in learner.bare_model.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(world)]
    torch.distributed.all_gather(gathered, flat)
    same_params = max(float((g - flat).abs().max()) for g in gathered)
    # 2. DDP's averaged gradient on the halves == one process's gradient on the whole batch
    x, y = next(batches)
    xs, ys = to_inputs(x, y, learner.device)
    learner.optimizer.zero_grad()
    episode_loss(learner.model(xs[rank * share:(rank + 1) * share], ys[rank * share:(rank + 1) * share]),
                 ys[rank * share:(rank + 1) * share]).backward()
    ddp_grad = torch.cat([p.grad.flatten() for p in learner.bare_model.parameters()])
    single = MemoryLearner(cfg)
    single.bare_model.load_state_dict(learner.bare_model.state_dict())
    episode_loss(single.model(xs, ys), ys).backward()
    full_grad = torch.cat([p.grad.flatten() for p in single.model.parameters()])
    grad_diff = float((ddp_grad - full_grad).abs().max() / full_grad.abs().max())
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:  # Result.metrics keeps reports with a checkpoint
        (Path(tmp) / "done").write_text("1")
        ray.train.report({"param_diff": same_params, "grad_rel_diff": grad_diff,
                          "grad_norm": float(full_grad.norm())},
                         checkpoint=ray.train.Checkpoint.from_directory(tmp) if rank == 0 else None)


def test_two_workers_train_with_ddp_on_cpu(ray_session, data_root, tmp_path, tiny_memory_config):
    """Two gloo workers split the meta-batch: identical parameters on both ranks after several
    steps, and the all-reduced gradient equals the single-process gradient of the whole batch."""
    import sys

    import cloudpickle
    import ray.train
    from ray.train.torch import TorchTrainer

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # ship this test's function
    method = {k: v for k, v in tiny_memory_config.items() if k not in ("max_iters", "eval_every")}
    trainer = TorchTrainer(
        _ddp_check, train_loop_config={"method": method, "data_root": str(data_root)},
        scaling_config=ray.train.ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5}),
        run_config=ray.train.RunConfig(name="ddp-check", storage_path=str(tmp_path)))
    metrics = trainer.fit().metrics
    assert metrics["param_diff"] == 0.0
    assert metrics["grad_norm"] > 0 and metrics["grad_rel_diff"] < 1e-5

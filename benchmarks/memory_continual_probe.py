"""Short learning probe of the continual learners (issue 12) on real Omniglot: train for a wall-clock budget, evaluate query accuracy per task length before and after. Logs: benchmarks/logs/memory_continual_probe_*.log.

    T=1 PRIORLAB_DATA_DIR=... python benchmarks/memory_continual_probe.py MODEL SECONDS [key=value ...]
"""
import json
import sys
import time

import torch

from priorlab.data.episodes import episode_seed
from priorlab.data.omniglot import load_omniglot_split
from priorlab.methods.configuration import apply_overrides, parse_overrides
from priorlab.methods.memory.continual import ContinualConfig
from priorlab.methods.memory.continual_loop import (
    TEST_SEED, ContinualBatches, ContinualLearner, evaluate_continual, train,
)

import os; torch.set_num_threads(int(os.environ.get("T", "2")))
model = sys.argv[1]
budget_s = float(sys.argv[2])
overrides = parse_overrides(sys.argv[3:])
widths = dict(channels=16, lstm_hidden=64, pln_hidden=64, anml_channels=16, nm_channels=8)
cfg = ContinualConfig(model=model, subtasks=10, n_labels=10, n_query=5, meta_batch=8,
                      curriculum_start=10, eval_lengths=[5, 10], eval_episodes=50, **widths)
cfg = apply_overrides(cfg, overrides)
root = "/work/shared/datasets"
t = time.time()
train_cls = load_omniglot_split(root, cfg.train_split, cfg.image_size, progress=False)
val_cls = load_omniglot_split(root, cfg.eval_split, cfg.image_size, progress=False)
print(f"data {time.time() - t:.1f}s", flush=True)
learner = ContinualLearner(cfg)
n_params = sum(p.numel() for p in learner.model.parameters())
seeds = [episode_seed(TEST_SEED, i) for i in range(cfg.eval_episodes)]
t = time.time()
before = evaluate_continual(learner, val_cls, cfg, seeds)
eval_s = time.time() - t
print(f"{model} params={n_params} before: len5={before['eval/acc_len5']:.3f} "
      f"len10={before['eval/acc_len10']:.3f} (eval {eval_s:.1f}s)", flush=True)

batches = ContinualBatches(train_cls, cfg)
step_times, log = [], []
t_train = time.time()
while time.time() - t_train < budget_s:
    t0 = time.time()
    out = learner.train_step(batches(learner.step, cfg.subtasks))
    step_times.append(time.time() - t0)
    log.append(out["loss"])
    if learner.step % 25 == 0:
        print(f"  step {learner.step} loss {sum(log[-25:]) / 25:.3f} "
              f"acc {out['acc']:.3f} {sum(step_times[-25:]) / 25:.3f}s/step", flush=True)
train_s = time.time() - t_train
t = time.time()
after = evaluate_continual(learner, val_cls, cfg, seeds)
print(json.dumps({"model": model, "steps": learner.step, "train_s": round(train_s, 1),
                  "s_per_step": round(sum(step_times) / len(step_times), 3),
                  "params": n_params,
                  "before": {k: round(before[k], 3) for k in ("eval/acc_len5", "eval/acc_len10")},
                  "after": {k: round(v, 3) for k, v in after.items() if "subtask" not in k},
                  "after_subtasks": [round(after[f"eval/acc_subtask{i}"], 2) for i in range(1, 11)],
                  "eval_s": round(time.time() - t, 1)}), flush=True)

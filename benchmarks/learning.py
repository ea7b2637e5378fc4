"""Benchmark 4: a learning check, CL+LSTM vs the LSTM baseline at the same CPU budget.

Thesis Table 2.1 has CL+LSTM ahead of the LSTM at every shot on Omniglot (5-way; 96.8 vs 85.3
at 1-shot after 100k iterations on a GPU). Here each model trains for the same *CPU time*
(process time, one thread, so the two can run side by side without one starving the other),
on 5-way 6-shot episodes (T=30) from the Vinyals train split, then is tested on 1000 episodes
of the test split. The CL+LSTM is narrowed to 32 channels to get a useful number of steps.

    python benchmarks/learning.py --cpu-minutes 20          # both models, in parallel
    python benchmarks/learning.py --model lstm --cpu-minutes 1 --test-episodes 100
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from _common import HERE, table, write_json  # noqa: E402

from priorlab.data.episodes import OnlineEpisodeSampler, episode_seed  # noqa: E402
from priorlab.data.omniglot import load_omniglot_split  # noqa: E402
from priorlab.data.root import resolve_data_root  # noqa: E402
from priorlab.methods.memory.config import MemoryConfig  # noqa: E402
from priorlab.methods.memory.loop import MemoryLearner, evaluate, to_inputs  # noqa: E402

MODELS = {
    "cl_lstm": dict(model="cl_lstm", channels=32),
    "lstm": dict(model="lstm"),
}


def run_one(name: str, cpu_minutes: float, test_episodes: int, seed: int) -> dict:
    torch.set_num_threads(1)
    cfg = MemoryConfig(n_shot=6, report_shots=[1, 5], seed=seed, **MODELS[name])
    root = resolve_data_root()
    train_s = OnlineEpisodeSampler(load_omniglot_split(root, "train", progress=False), 5, 6)
    val_s = OnlineEpisodeSampler(load_omniglot_split(root, "val", progress=False), 5, 6)
    test_s = OnlineEpisodeSampler(load_omniglot_split(root, "test", progress=False), 5, 6)
    learner = MemoryLearner(cfg)
    val_seeds = [episode_seed(seed + 99, i) for i in range(100)]
    budget = cpu_minutes * 60
    t0 = time.process_time()
    curve = []
    while time.process_time() - t0 < budget:
        first = learner.step * cfg.meta_batch
        x, y = to_inputs(*train_s.sample_batch(
            episode_seed(seed, i) for i in range(first, first + cfg.meta_batch)), learner.device)
        loss = learner.train_step(x, y)
        if learner.step % 50 == 0:
            m = evaluate(learner.model, val_s, val_seeds, [1, 5])
            curve.append({"step": learner.step, "cpu_s": time.process_time() - t0, "loss": loss,
                          "val_1shot": m["eval/acc_1shot"], "val_5shot": m["eval/acc_5shot"]})
            print(f"[{name}] step {learner.step} cpu {curve[-1]['cpu_s']:.0f}s loss {loss:.2f} "
                  f"val 1-shot {m['eval/acc_1shot']:.3f} 5-shot {m['eval/acc_5shot']:.3f}", flush=True)
    test = evaluate(learner.model, test_s, [episode_seed(20_250_101, i) for i in range(test_episodes)],
                    [1, 5], batch_size=50)
    params = sum(p.numel() for p in learner.model.parameters())
    return {"model": name, "config": MODELS[name], "params": params, "steps": learner.step,
            "cpu_s": time.process_time() - t0, "test_episodes": test_episodes,
            "acc_1shot": test["eval/acc_1shot"], "ci_1shot": test["eval/acc_1shot_ci95"],
            "acc_5shot": test["eval/acc_5shot"], "ci_5shot": test["eval/acc_5shot_ci95"],
            "curve": curve}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=sorted(MODELS))
    ap.add_argument("--cpu-minutes", type=float, default=20)
    ap.add_argument("--test-episodes", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.model:  # one model: print its result as JSON on the last line
        print(json.dumps(run_one(args.model, args.cpu_minutes, args.test_episodes, args.seed)))
        return
    procs = {m: subprocess.Popen([sys.executable, __file__, "--model", m, "--cpu-minutes",
                                  str(args.cpu_minutes), "--test-episodes", str(args.test_episodes),
                                  "--seed", str(args.seed)], stdout=subprocess.PIPE, text=True)
             for m in MODELS}
    results = []
    for m, p in procs.items():
        lines = []
        for line in p.stdout:
            print(line, end="", flush=True)
            lines.append(line)
        if p.wait() != 0:
            raise SystemExit(f"{m} failed")
        results.append(json.loads(lines[-1]))
    rows = [{"model": r["model"], "params": r["params"], "steps": r["steps"],
             "cpu_min": f"{r['cpu_s'] / 60:.1f}",
             "test 1-shot": f"{r['acc_1shot']:.3f} ± {r['ci_1shot']:.3f}",
             "test 5-shot": f"{r['acc_5shot']:.3f} ± {r['ci_5shot']:.3f}"} for r in results]
    print(table(rows, list(rows[0])))
    print("wrote", write_json("learning", {"cpu_minutes": args.cpu_minutes, "results": results}))


if __name__ == "__main__":
    main()

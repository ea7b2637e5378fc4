"""Sizing the `make run` demo: which CL+LSTM config learns within a 2-core, 10-minute sweep?

Issue 7 item 4: the default `priorlab sweep memory-label-injection` budget must show accuracy
clearly above chance (5-way: 0.2) and rising with the shot k. This script runs one candidate
`MemoryConfig` with the pure in-process loop (`priorlab.methods.memory.loop`: `MemoryLearner`,
`train`, `evaluate`) on the same episodes a sweep trial sees (train episodes
`episode_seed(seed, i)`, meta-batch i*B..i*B+B-1 as in `trainables/streams.py`; validation
episodes `episode_seed(seed + 1_000_003, i)` as in `trainables/memory.py`), one thread, and
records the validation curve acc_k vs step together with the *process CPU time* spent
training and evaluating, so that wall-clock budgets can be computed for a quiet machine.

    # one candidate; appends a record to benchmarks/demo_budget_runs.jsonl
    python benchmarks/demo_budget.py run --tag probe image_size=14 conv_layers=2 channels=8 \
        lstm_hidden=64 n_shot=4 meta_batch=8 lr=3e-3 --steps 1500 --eval-every 250
    # table of all recorded runs (or --tag-prefix X) and benchmarks/demo_budget.json
    python benchmarks/demo_budget.py summary --select final-

Thesis: Ch. 2, Sec. 2.3.1 (protocol), 2.3.3 (CL+LSTM, label injection), 2.3.4 (training).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import HERE, machine, table  # noqa: E402

from priorlab.data.episodes import OnlineEpisodeSampler, episode_seed  # noqa: E402
from priorlab.data.omniglot import load_omniglot_split  # noqa: E402
from priorlab.data.root import resolve_data_root  # noqa: E402
from priorlab.methods.configuration import config_from_dict, config_to_dict, parse_overrides  # noqa: E402
from priorlab.methods.memory.config import MemoryConfig  # noqa: E402
from priorlab.methods.memory.loop import MemoryLearner, evaluate, train  # noqa: E402

RUNS = HERE / "demo_budget_runs.jsonl"
OUT = HERE / "demo_budget.json"
# Same as priorlab.trainables.memory.EVAL_SEED_OFFSET (not imported: that module imports Ray).
EVAL_SEED_OFFSET = 1_000_003


def train_batches(sampler: OnlineEpisodeSampler, seed: int, meta_batch: int, start: int = 0):
    """The episode stream of a sweep trial: step i trains on episodes i*B .. i*B+B-1."""
    step = start
    while True:
        yield sampler.sample_batch(
            [episode_seed(seed, i) for i in range(step * meta_batch, (step + 1) * meta_batch)])
        step += 1


def run(overrides: dict[str, str], steps: int, eval_every: int, eval_episodes: int,
        shots: list[int] | None, tag: str, eval_at_zero: bool = True) -> dict:
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    n_shot = int(overrides.get("n_shot", MemoryConfig.n_shot))
    shots = shots if shots is not None else list(range(n_shot))  # k = 0 .. n_shot-1
    cfg = config_from_dict(MemoryConfig, {**overrides, "max_iters": steps, "eval_every": eval_every,
                                          "eval_episodes": eval_episodes, "report_shots": shots})
    root = resolve_data_root()
    train_s = OnlineEpisodeSampler(
        load_omniglot_split(root, cfg.train_split, cfg.image_size, progress=False),
        cfg.n_way, cfg.n_shot)
    val_s = OnlineEpisodeSampler(
        load_omniglot_split(root, cfg.eval_split, cfg.image_size, progress=False),
        cfg.n_way, cfg.n_shot)
    val_seeds = [episode_seed(cfg.seed + EVAL_SEED_OFFSET, i) for i in range(eval_episodes)]
    learner = MemoryLearner(cfg)
    params = sum(p.numel() for p in learner.model.parameters())

    clock = {"eval_cpu": 0.0, "t0": time.process_time(), "w0": time.perf_counter()}
    curve: list[dict] = []

    def evaluate_fn(model) -> dict[str, float]:
        t = time.process_time()
        m = evaluate(model, val_s, val_seeds, shots, batch_size=50)
        clock["eval_cpu"] += time.process_time() - t
        return m

    def record(metrics: dict[str, float], _save=None) -> None:
        total = time.process_time() - clock["t0"]
        row = {"step": int(metrics["step"]), "loss": metrics.get("train/loss"),
               "train_cpu_s": total - clock["eval_cpu"], "eval_cpu_s": clock["eval_cpu"],
               "wall_s": time.perf_counter() - clock["w0"]}
        for k in shots:
            row[f"acc_{k}"] = metrics[f"eval/acc_{k}shot"]
            row[f"ci_{k}"] = metrics[f"eval/acc_{k}shot_ci95"]
        curve.append(row)
        accs = " ".join(f"{k}:{row[f'acc_{k}']:.3f}" for k in shots)
        print(f"[{tag}] step {row['step']:>6} train-cpu {row['train_cpu_s']:7.1f}s "
              f"eval-cpu {row['eval_cpu_s']:6.1f}s loss {row['loss'] if row['loss'] is not None else float('nan'):7.2f} "
              f"val {accs}", flush=True)

    stopped = False
    try:
        if eval_at_zero:
            record({"step": 0.0, **evaluate_fn(learner.model)})
        train(learner, train_batches(train_s, cfg.seed, cfg.meta_batch), evaluate_fn=evaluate_fn,
              report=record)
    except KeyboardInterrupt:  # SIGINT / SIGTERM: keep the curve measured so far
        stopped = True
    last = curve[-1]
    train_steps = last["step"]
    n_evals = len(curve)
    return {
        "tag": tag, "stopped_early": stopped, "overrides": overrides,
        "config": config_to_dict(cfg), "params": params,
        "steps": train_steps, "eval_episodes": eval_episodes, "shots": shots,
        "train_cpu_s": last["train_cpu_s"], "eval_cpu_s": last["eval_cpu_s"],
        "train_cpu_s_per_step": last["train_cpu_s"] / max(train_steps, 1),
        "eval_cpu_s_per_episode": last["eval_cpu_s"] / max(n_evals * eval_episodes, 1),
        "wall_s": last["wall_s"], "curve": curve, "machine": machine(),
        "load_avg_at_end": os.getloadavg()[0],
    }


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def first_step_reaching(curve: list[dict], key: str, level: float) -> int | None:
    for row in curve:
        if row.get(key) is not None and row[key] >= level:
            return row["step"]
    return None


def summarize(records: list[dict]) -> list[dict]:
    rows = []
    for r in records:
        c = r["curve"][-1]
        best = max(r["curve"], key=lambda row: row.get("acc_1", -1))
        cfg = r["config"]
        rows.append({
            "tag": r["tag"],
            "inj": cfg["label_injection"], "img": cfg["image_size"], "L": cfg["conv_layers"],
            "ch": cfg["channels"], "H": cfg["lstm_hidden"], "N": cfg["n_shot"],
            "B": cfg["meta_batch"], "lr": cfg["lr"], "steps": r["steps"],
            "cpu/step": f"{r['train_cpu_s_per_step']:.4f}",
            "train cpu": f"{r['train_cpu_s']:.0f}", "eval cpu": f"{r['eval_cpu_s']:.0f}",
            "step@1shot>=.5": first_step_reaching(r["curve"], "acc_1", 0.5),
            "final acc_k (k=0..)": " ".join(f"{c[f'acc_{k}']:.2f}" for k in r["shots"]),
            "final 1-shot": f"{c['acc_1']:.3f}±{c['ci_1']:.3f}" if "acc_1" in c else "",
            "best 1-shot": f"{best['acc_1']:.3f}@{best['step']}" if "acc_1" in best else "",
        })
    return rows


def load_runs(select: str | None) -> list[dict]:
    if not RUNS.exists():
        return []
    recs = [json.loads(line) for line in RUNS.read_text().splitlines() if line.strip()]
    return [r for r in recs if select is None or r["tag"].startswith(select)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train one candidate and append its record to the log")
    r.add_argument("overrides", nargs="*", help="MemoryConfig key=value")
    r.add_argument("--tag", required=True)
    r.add_argument("--steps", type=int, required=True, help="training steps (meta-batches)")
    r.add_argument("--eval-every", type=int, default=250)
    r.add_argument("--eval-episodes", type=int, default=200)
    r.add_argument("--shots", type=str, default=None, help="comma list; default 0..n_shot-1")
    s = sub.add_parser("summary", help="print the table, write demo_budget.json")
    s.add_argument("--select", default=None, help="only runs whose tag starts with this")
    s.add_argument("--note", default=None, help="free text stored in the JSON")
    args = ap.parse_args()

    if args.cmd == "run":
        signal.signal(signal.SIGTERM, _interrupt)
        shots = [int(k) for k in args.shots.split(",")] if args.shots else None
        rec = run(parse_overrides(args.overrides), args.steps, args.eval_every,
                  args.eval_episodes, shots, args.tag)
        with RUNS.open("a") as fh:
            fh.write(json.dumps(rec, default=float) + "\n")
        print(table(summarize([rec]), list(summarize([rec])[0])))
        return

    recs = load_runs(args.select)
    if not recs:
        raise SystemExit(f"no runs in {RUNS} matching {args.select!r}")
    rows = summarize(recs)
    print(table(rows, list(rows[0])))
    OUT.write_text(json.dumps({"machine": machine(), "select": args.select, "note": args.note,
                               "runs": recs}, indent=1, default=float))
    print("wrote", OUT)


if __name__ == "__main__":
    main()

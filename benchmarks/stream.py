"""Benchmark 2: training episodes/s fed by Ray Data vs by the in-process sampler (same loop).

Two Ray Train runs in one Ray session with the same config, one worker of one CPU each:
`stream=ray_data` (the EpisodeDatasource read tasks, 0.25 CPU, streamed through
get_dataset_shard) and `stream=local` (the same sampler called inside the worker). The loop
measures episodes/s over the last `eval_every` iterations (evaluation excluded). Target:
ratio ray_data / local >= 0.9, i.e. the trainer is never starved.

    python benchmarks/stream.py [--iters 60]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_json  # noqa: E402

from priorlab.data.root import resolve_data_root  # noqa: E402
from priorlab.platform import runtime  # noqa: E402

CONFIG = dict(channels=16, lstm_hidden=128, n_shot=5, report_shots=[1, 4], meta_batch=8,
              eval_episodes=20, cpus_per_worker=1.0, data_cpus=0.25)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    runtime.start()
    from priorlab.trainables.memory import fit

    root = str(resolve_data_root())
    rates: dict[str, list[float]] = {"ray_data": [], "local": []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):  # interleaved, so drifting load hits both
            for stream in rates:
                cfg = dict(CONFIG, max_iters=args.iters, eval_every=args.iters // 2,
                           data_root=root, storage_path=tmp, run_name=f"{stream}-{rep}",
                           stream=stream)
                result = fit(cfg)
                rates[stream].append(float(result.metrics["train/episodes_per_s"]))
                print(f"{stream} run {rep}: {rates[stream][-1]:.2f} episodes/s", flush=True)
    mean = {k: sum(v) / len(v) for k, v in rates.items()}
    ratio = mean["ray_data"] / mean["local"]
    rows = [{"feed": k, "episodes_per_s": f"{mean[k]:.2f}", "runs": len(rates[k])} for k in rates]
    print(table(rows, list(rows[0])))
    print(f"ratio ray_data/local = {ratio:.3f} -> {'PASS' if ratio >= 0.9 else 'FAIL'} (target >= 0.9)")
    print("wrote", write_json("stream", {"config": CONFIG, "iters": args.iters, "rates": rates,
                                         "ratio": ratio, "pass": ratio >= 0.9}))


if __name__ == "__main__":
    main()

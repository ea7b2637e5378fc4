"""Speed of a CL+LSTM training step under each execution option, on one device, in one run.

Issue 7, item 7. The paper-size CL+LSTM (thesis App. A.1.4: 4 ConvLSTM layers of 64 channels,
LSTM 400, 5-way 10-shot so T = 50, meta-batch 16, 28x28; Sec. 2.4.3: 0.40 GFLOPs per time
step) is launch-bound on a GPU (163 ms per step on an H200, gpu_check_h200.json). This compares
eager with every applicable option of ``MemoryConfig`` (``accel``, ``compile_mode``,
``precision``, ``channels_last``; see ``priorlab.methods.memory.accel``):

1. exactness: every variant starts from the same initial weights (same seed) and trains on the
   same ``--traj-steps`` batches; its loss trajectory is compared with eager's (max abs / rel
   difference). fp32 variants must be within ``FP32_RTOL`` (float reordering only); bf16
   variants within ``BF16_RTOL`` ("close", never "exact": they change the arithmetic). On CUDA
   a second eager learner gives the floor eager-vs-eager (cuDNN algorithm choice, atomics).
2. speed: ``--rounds`` rounds, each timing ``--steps`` training steps of every variant in turn,
   the order reversed every other round (A B C, C B A, ...), so background load and clock drift
   hit all of them; per variant the median over rounds (every round is kept in the JSON). The first step of each variant (compilation, CUDA-graph warm-up and
   capture) is timed separately: ``first_step_s`` (wall) and ``first_step_cpu_s`` (process
   CPU time, less sensitive to other load on a shared CPU); ``setup_s`` is the first step's
   excess over the variant's own median step. Compilation starts from empty inductor / Triton
   caches (a fresh temporary folder; ``--warm-cache`` keeps the user's), so the first compiled
   variant pays a cold compile; later ones with the same graph may hit the cache it filled.

Each variant runs inside try/except: one that fails is recorded with its error and the others
go on; the JSON is rewritten after every phase, so a killed run still leaves what it measured.
``default_candidate`` names the fastest fp32 variant that passed its exactness check and beat
eager by >= 5% ("eager" otherwise): the value for ``DEFAULT_ACCEL`` in accel.py.

    PYTHONPATH=src python3 benchmarks/memory_speed.py --device cpu                # paper size
    PYTHONPATH=src python3 benchmarks/memory_speed.py --device cpu --size small
    PYTHONPATH=src python3 benchmarks/memory_speed.py --device cuda --out $OUT/memory_speed_cuda.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import HERE, machine, table  # noqa: E402

from priorlab.methods.memory.config import MemoryConfig  # noqa: E402
from priorlab.methods.memory.loop import MemoryLearner  # noqa: E402

FP32_RTOL = 1e-4   # fp32 variants: only the order of float operations may differ
BF16_RTOL = 3e-2   # bf16 autocast: close, not exact (8-bit mantissa in the forward)
MIN_GAIN = 1.05    # a default must beat eager by at least 5%

SIZES = {
    # thesis App. A.1.4 (the MemoryConfig defaults)
    "paper": dict(),
    # the same depth and episode length at a quarter of the width and batch: overhead-heavier
    "small": dict(channels=16, lstm_hidden=100, meta_batch=4),
    # a smoke test of this script (seconds on a CPU)
    "tiny": dict(channels=4, lstm_hidden=8, conv_layers=2, n_shot=2, image_size=8, meta_batch=2,
                 report_shots=[1]),
}

# name -> MemoryConfig overrides; the device filter keeps the applicable ones.
VARIANTS = {
    "eager": dict(accel="eager"),
    "cuda_graph": dict(accel="cuda_graph"),
    "compile": dict(accel="compile"),
    "compile_cuda_graph": dict(accel="compile_cuda_graph"),
    "channels_last": dict(accel="eager", channels_last=True),
    "bf16": dict(accel="eager", precision="bf16"),
    "bf16_channels_last": dict(accel="eager", precision="bf16", channels_last=True),
    "cuda_graph_bf16": dict(accel="cuda_graph", precision="bf16"),
    "cuda_graph_bf16_channels_last": dict(accel="cuda_graph", precision="bf16", channels_last=True),
    "compile_reduce_overhead": dict(accel="compile", compile_mode="reduce-overhead"),
    "compile_cuda_graph_bf16_channels_last": dict(accel="compile_cuda_graph", precision="bf16",
                                                  channels_last=True),
}
CUDA_ONLY = {"cuda_graph", "compile_cuda_graph", "cuda_graph_bf16", "cuda_graph_bf16_channels_last",
             "compile_reduce_overhead", "compile_cuda_graph_bf16_channels_last"}
CPU_DEFAULT = ["eager", "compile", "channels_last", "bf16"]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_batches(cfg: MemoryConfig, n: int, device: torch.device, seed: int = 0):
    """n synthetic meta-batches: images in [0, 1], each episode a shuffled n_shot x n_way labels."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x = torch.rand(cfg.meta_batch, cfg.episode_length, 1, cfg.image_size, cfg.image_size,
                       generator=g)
        labels = torch.arange(cfg.n_way).repeat(cfg.n_shot)
        y = torch.stack([labels[torch.randperm(labels.numel(), generator=g)]
                         for _ in range(cfg.meta_batch)])
        out.append((x.to(device), y.to(device)))
    return out


def trajectory(learner: MemoryLearner, batches, device) -> tuple[list[float], float, float]:
    """Losses over ``batches``; the wall and CPU seconds of the first step (setup included)."""
    losses = []
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    first_wall = first_cpu = 0.0
    for i, (x, y) in enumerate(batches):
        losses.append(learner.train_step(x, y))
        if i == 0:
            sync(device)
            first_wall, first_cpu = time.perf_counter() - t0, time.process_time() - c0
    return losses, first_wall, first_cpu


def compare(losses: list[float], ref: list[float]) -> dict:
    a, b = torch.tensor(losses, dtype=torch.float64), torch.tensor(ref, dtype=torch.float64)
    diff = (a - b).abs()
    return {"max_abs_diff": float(diff.max()), "max_rel_diff": float((diff / b.abs()).max())}


def dynamo_graphs() -> int:
    try:
        from torch._dynamo.utils import counters
        return int(counters["stats"]["unique_graphs"])
    except Exception:  # counters are private API: report -1 rather than fail the benchmark
        return -1


def run(args) -> dict:
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as gpu_check.py, which measured the 163 ms
    # Several learners compile the same CLLSTM.step in one process: let dynamo keep them all.
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, 64)
    base = dict(SIZES[args.size], seed=0)
    cfg0 = MemoryConfig(**base)
    names = args.variants or (list(VARIANTS) if device.type == "cuda" else CPU_DEFAULT)
    names = [n for n in names if device.type == "cuda" or n not in CUDA_ONLY]
    names = ["eager"] + [n for n in names if n != "eager"]  # the reference runs first
    load0 = os.getloadavg()
    res: dict = {
        "machine": machine(), "device": str(device), "size": args.size,
        "config": {k: v for k, v in vars(cfg0).items() if k in (
            "conv_layers", "channels", "lstm_hidden", "n_way", "n_shot", "image_size", "meta_batch",
            "kernel_size", "label_injection", "lr")},
        "episode_length": cfg0.episode_length,
        "torch_threads": torch.get_num_threads(),
        "traj_steps": args.traj_steps, "rounds": args.rounds, "steps_per_round": args.steps,
        "round_order": "alternating", "fp32_rtol": FP32_RTOL, "bf16_rtol": BF16_RTOL, "min_gain": MIN_GAIN,
        "loadavg_start": load0, "variants": {},
    }
    if device.type == "cuda":
        res["machine"]["capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
        res["cudnn_tf32"] = torch.backends.cudnn.allow_tf32
        res["matmul_precision"] = torch.get_float32_matmul_precision()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save():
        res["loadavg_end"] = os.getloadavg()
        out.write_text(json.dumps(res, indent=2, default=float))

    t_start = time.perf_counter()
    traj = make_batches(cfg0, args.traj_steps, device, seed=1)
    timing_batch = make_batches(cfg0, 1, device, seed=2)[0]
    learners: dict[str, MemoryLearner] = {}
    eager_losses = None
    floor = args.floor if args.floor is not None else device.type == "cuda"
    for name in names:
        row: dict = {"overrides": VARIANTS[name]}
        res["variants"][name] = row
        if time.perf_counter() - t_start > args.budget_s * 0.7:
            row["skipped"] = "time budget (--budget-s) spent before this variant started"
            print(f"[memory_speed] {name}: skipped (time budget)", flush=True)
            continue
        try:
            graphs0 = dynamo_graphs()
            cfg = MemoryConfig(**base, **VARIANTS[name])
            learner = MemoryLearner(cfg, device=device)
            losses, first_wall, first_cpu = trajectory(learner, traj, device)
            row.update(accel=learner.accel, losses=losses, first_step_s=first_wall,
                       first_step_cpu_s=first_cpu, dynamo_graphs=dynamo_graphs() - graphs0)
            graph = getattr(learner, "_graph", None)
            if graph is not None:
                row["capture_s"] = graph.capture_s
            if name == "eager":
                eager_losses = losses
                if floor:
                    rep = MemoryLearner(MemoryConfig(**base, accel="eager"), device=device)
                    res["eager_vs_eager"] = compare(trajectory(rep, traj, device)[0], losses)
                    del rep
            if eager_losses is not None:
                row.update(compare(losses, eager_losses))
                tol = BF16_RTOL if cfg.precision == "bf16" else FP32_RTOL
                row["rtol"] = tol
                row["exact_enough"] = row["max_rel_diff"] <= tol
            learners[name] = learner
            print(f"[memory_speed] {name}: first step {first_wall:.1f} s, losses "
                  f"{[round(v, 4) for v in losses]}", flush=True)
        except Exception as exc:  # one broken variant must not lose the others
            row["error"] = f"{type(exc).__name__}: {exc}"
            row["trace"] = traceback.format_exc()
            print(f"[memory_speed] {name} FAILED: {row['error']}", flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
        save()

    x, y = timing_batch
    times: dict[str, list[float]] = {n: [] for n in learners}
    cpu_times: dict[str, list[float]] = {n: [] for n in learners}
    for r in range(args.rounds):
        if r > 0 and time.perf_counter() - t_start > args.budget_s:
            print(f"[memory_speed] time budget spent after {r} rounds", flush=True)
            break
        order = list(learners.items())
        for name, learner in order if r % 2 == 0 else order[::-1]:  # A B C, C B A, ...
            try:
                sync(device)
                t0, c0 = time.perf_counter(), time.process_time()
                for _ in range(args.steps):
                    learner.train_step(x, y)
                sync(device)
                times[name].append((time.perf_counter() - t0) / args.steps)
                cpu_times[name].append((time.process_time() - c0) / args.steps)
            except Exception as exc:
                res["variants"][name]["error"] = f"timing: {type(exc).__name__}: {exc}"
                res["variants"][name]["trace"] = traceback.format_exc()
                del learners[name]
        print(f"[memory_speed] round {r + 1}/{args.rounds} done at "
              f"{time.perf_counter() - t_start:.0f} s", flush=True)
    eager_step = statistics.median(times["eager"]) if times.get("eager") else None
    for name, ts in times.items():
        if not ts:
            continue
        row = res["variants"][name]
        step = statistics.median(ts)
        row.update(step_s=step, step_s_rounds=ts, cpu_s_per_step=statistics.median(cpu_times[name]),
                   steps_per_s=1 / step, episodes_per_s=cfg0.meta_batch / step)
        if eager_step is not None:
            row["speedup_vs_eager"] = eager_step / step
        if "first_step_s" in row:
            row["setup_s"] = max(row["first_step_s"] - step, 0.0)
            row["setup_cpu_s"] = max(row["first_step_cpu_s"] - row["cpu_s_per_step"], 0.0)
    res["default_candidate"] = pick_default(res["variants"])
    res["wall_s"] = time.perf_counter() - t_start
    save()
    return res


def pick_default(rows: dict) -> str:
    """Fastest fp32 variant that is exact enough and >= MIN_GAIN x eager; else eager."""
    best, best_gain = "eager", MIN_GAIN
    for name, row in rows.items():
        if row["overrides"].get("precision", "fp32") != "fp32" or not row.get("exact_enough"):
            continue
        gain = row.get("speedup_vs_eager", 0.0)
        if gain >= best_gain:
            best, best_gain = name, gain
    return best


def report(res: dict) -> str:
    rows = []
    for name, r in res["variants"].items():
        rows.append({
            "variant": name,
            "steps/s": f"{r['steps_per_s']:.3g}" if "steps_per_s" in r else "-",
            "episodes/s": f"{r['episodes_per_s']:.3g}" if "episodes_per_s" in r else "-",
            "vs eager": f"{r['speedup_vs_eager']:.2f}" if "speedup_vs_eager" in r else "-",
            "setup s": f"{r['setup_s']:.1f}" if "setup_s" in r else "-",
            "setup CPU-s": f"{r['setup_cpu_s']:.1f}" if "setup_cpu_s" in r else "-",
            "max rel dloss": f"{r['max_rel_diff']:.1e}" if "max_rel_diff" in r else "-",
            "tol": f"{r['rtol']:.0e}" if "rtol" in r else "-",
            "ok": r.get("exact_enough", "-") if "error" not in r else "ERROR",
        })
    cols = ["variant", "steps/s", "episodes/s", "vs eager", "setup s", "setup CPU-s", "max rel dloss",
            "tol", "ok"]
    text = table(rows, cols)
    text += f"\ndefault candidate: {res['default_candidate']}"
    if "eager_vs_eager" in res:
        text += f"; eager vs eager: max rel dloss {res['eager_vs_eager']['max_rel_diff']:.1e}"
    text += f"\nload average start {res['loadavg_start']}, end {res['loadavg_end']}"
    for name, r in res["variants"].items():
        if "error" in r:
            text += f"\n{name}: {r['error']}"
    return text


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--size", choices=list(SIZES), default="paper")
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS),
                    help="default: every variant the device can run (CPU: %s)" % CPU_DEFAULT)
    ap.add_argument("--traj-steps", type=int, help="steps of the exactness trajectory "
                    "(default: 10 on CUDA, 3 on CPU)")
    ap.add_argument("--rounds", type=int, help="interleaved timing rounds (default 5 CUDA, 3 CPU)")
    ap.add_argument("--steps", type=int, help="steps per variant per round (default 10 CUDA, 1 CPU)")
    ap.add_argument("--budget-s", type=float, default=420.0,
                    help="wall budget: no new variant after 70%% of it, no new round after it")
    ap.add_argument("--floor", action=argparse.BooleanOptionalAction, default=None,
                    help="also train a second eager learner (default: on CUDA, where cuDNN may "
                         "not be deterministic)")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    ap.add_argument("--warm-cache", action="store_true",
                    help="use the existing inductor/Triton caches (compile time then understates)")
    ap.add_argument("--out", help="JSON path (default benchmarks/memory_speed_<device>[_<size>].json)")
    args = ap.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is visible to torch")
    args.traj_steps = args.traj_steps or (10 if cuda else 3)
    args.rounds = args.rounds or (5 if cuda else 3)
    args.steps = args.steps or (10 if cuda else 1)
    if args.threads:
        torch.set_num_threads(args.threads)
    name = "memory_speed_" + ("cuda" if cuda else "cpu") + ("" if args.size == "paper" else "_" + args.size)
    args.out = args.out or str(HERE / f"{name}.json")
    fresh = None
    if not args.warm_cache:  # read lazily by inductor and Triton: setting them here is in time
        fresh = tempfile.mkdtemp(prefix="memory_speed_cache_")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(fresh, "inductor")
        os.environ["TRITON_CACHE_DIR"] = os.path.join(fresh, "triton")
    try:
        res = run(args)
    finally:
        if fresh is not None:
            shutil.rmtree(fresh, ignore_errors=True)
    res["cold_compile_cache"] = fresh is not None
    Path(args.out).write_text(json.dumps(res, indent=2, default=float))
    print(report(res), flush=True)
    print(f"[memory_speed] wrote {args.out}", flush=True)
    return res


if __name__ == "__main__":
    main()

"""One prepared GPU check of the CUDA paths (run on a lent GPU machine; no Ray needed there).

Sections, each timed on the same card in the same run so that ratios are meaningful:

1. environment (torch, card, bf16 support);
2. supervised (Hyper)ResNet-18 / HyperWRN-28-4 training steps through the project's
   ``SupervisedLearner`` in fp32 and bf16 autocast (``precision``): images/s, and the loss
   is finite (the AMP path works with generated weights and the output-l2 penalty);
3. inference latency of an exported HyperResNet-18 vs a plain ResNet-18 (issue 3 benchmark 1
   on a GPU), fp32 and bf16;
4. the paper-size CL+LSTM (Ch. 2) training step on the GPU (episodes/s);
5. HyperResNet vs ResNet under MAML, Omniglot -> digits (benchmarks/maml_transfer.py) at a
   GPU budget, several runs at a time on the one card.

Not checked here: the tiny-cuda-nn hash grid and its torch fallback (HyperFields is a later
issue; the project has no hash grid yet).

    PYTHONPATH=src python3 benchmarks/gpu_check.py --out $OUT --data-dir .devdata --maml-iters 300
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, table  # noqa: E402


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def section(results: dict, name: str):
    def wrap(fn):
        t0 = time.perf_counter()
        try:
            results[name] = fn()
        except Exception as exc:  # one broken section must not lose the others
            results[name] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
            print(f"[gpu_check] {name} FAILED: {exc}", flush=True)
        results.setdefault("seconds", {})[name] = time.perf_counter() - t0
        print(f"[gpu_check] {name}: {time.perf_counter() - t0:.1f} s", flush=True)
        return fn
    return wrap


QUICK = False  # --quick: tiny sizes, a smoke test of this script on a CPU


def supervised(device) -> list[dict]:
    from dataclasses import fields

    from priorlab.methods.hyper.config import HyperConfig
    from priorlab.methods.hyper.loop import SupervisedLearner

    has_precision = "precision" in {f.name for f in fields(HyperConfig)}
    rows = []
    g = torch.Generator().manual_seed(0)
    for arch, extra in (("resnet18", {}), ("wrn", dict(wrn_depth=28, wrn_widen=4))):
        bs, nb = (8, 2) if QUICK else (128, 20)
        batches = [(torch.randint(0, 256, (bs, 3, 32, 32), dtype=torch.uint8, generator=g),
                    torch.randint(0, 10, (bs,), generator=g)) for _ in range(nb)]
        for precision in ("fp32", "bf16", "fp16"):
            if precision == "fp16" and device != "cuda":  # fp16 + GradScaler: CUDA only
                continue
            if precision != "fp32" and not has_precision:
                continue
            for hyper in (False, True):
                kw = dict(arch=arch, hyper=hyper, num_classes=10, batch_size=bs, **extra)
                if has_precision:
                    kw["precision"] = precision
                learner = SupervisedLearner(HyperConfig(**kw), device=torch.device(device))
                learner.train_epoch(batches[:2])  # warm-up (cuDNN autotune, allocator)
                sync()
                t0 = time.perf_counter()
                m = learner.train_epoch(batches)
                sync()
                dt = time.perf_counter() - t0
                rows.append({"arch": arch, "hyper": hyper, "precision": precision,
                             "images_per_s": round(len(batches) * bs / dt, 1),
                             "loss_finite": bool(torch.isfinite(torch.tensor(m["train/loss"])))})
                del learner
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
    for r in rows:  # ratio to the plain twin at the same arch and precision
        plain = next(p for p in rows if p["arch"] == r["arch"] and p["precision"] == r["precision"]
                     and not p["hyper"])
        r["step_cost_vs_plain"] = round(plain["images_per_s"] / r["images_per_s"], 2)
    print(table(rows, ["arch", "hyper", "precision", "images_per_s", "step_cost_vs_plain",
                       "loss_finite"]), flush=True)
    return rows


def exported_latency(device) -> list[dict]:
    from priorlab.methods.hyper.config import HyperConfig
    from priorlab.methods.hyper.export import export_plain
    from priorlab.methods.hyper.resnets import build_model

    torch.manual_seed(0)
    exported = export_plain(build_model(HyperConfig(arch="resnet18", num_classes=10)).eval()).to(device)
    plain = build_model(HyperConfig(arch="resnet18", num_classes=10, hyper=False)).eval().to(device)
    x = torch.randn(8 if QUICK else 256, 3, 32, 32, device=device)
    rows = []
    for precision in ("fp32", "bf16"):
        times = {"exported": [], "plain": []}
        kind = "cuda" if device == "cuda" else "cpu"
        ctx = (torch.autocast(kind, dtype=torch.bfloat16) if precision == "bf16"
               else torch.autocast(kind, enabled=False))
        with torch.no_grad(), ctx:
            for _ in range(5):
                exported(x), plain(x)
            for _ in range(3 if QUICK else 30):  # interleaved so drift hits both
                for name, net in (("exported", exported), ("plain", plain)):
                    sync()
                    t0 = time.perf_counter()
                    net(x)
                    sync()
                    times[name].append(time.perf_counter() - t0)
        e, p = statistics.median(times["exported"]), statistics.median(times["plain"])
        rows.append({"precision": precision, "exported_ms": round(e * 1e3, 3),
                     "plain_ms": round(p * 1e3, 3), "ratio": round(e / p, 3)})
    print(table(rows, ["precision", "exported_ms", "plain_ms", "ratio"]), flush=True)
    return rows


def memory_step(device) -> dict:
    from priorlab.methods.memory.config import MemoryConfig
    from priorlab.methods.memory.loop import MemoryLearner

    cfg = MemoryConfig(meta_batch=2, n_shot=2, report_shots=[1]) if QUICK else MemoryConfig()  # paper size: 4x64 ConvLSTM, LSTM 400, 5-way 10-shot, meta-batch 16
    learner = MemoryLearner(cfg, device=torch.device(device))
    t_steps = cfg.n_way * cfg.n_shot
    x = torch.rand(cfg.meta_batch, t_steps, 1, cfg.image_size, cfg.image_size, device=device)
    y = torch.randint(0, cfg.n_way, (cfg.meta_batch, t_steps), device=device)
    for _ in range(3):
        learner.train_step(x, y)
    sync()
    t0 = time.perf_counter()
    n = 2 if QUICK else 20
    for _ in range(n):
        loss = learner.train_step(x, y)
    sync()
    dt = (time.perf_counter() - t0) / n
    out = {"step_s": round(dt, 4), "episodes_per_s": round(cfg.meta_batch / dt, 1),
           "loss": float(loss), "steps_for_100k": "%.1f h" % (100_000 * dt / 3600)}
    print(out, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--maml-iters", type=int, default=300)
    ap.add_argument("--maml-procs", type=int, default=12)
    ap.add_argument("--skip-maml", action="store_true")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test on a CPU")
    args = ap.parse_args()
    global QUICK
    QUICK = args.quick
    out = Path(args.out)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cudnn.benchmark = True
    results: dict = {"machine": machine()}
    if device == "cuda":
        results["machine"]["bf16_supported"] = torch.cuda.is_bf16_supported()
        results["machine"]["capability"] = ".".join(map(str, torch.cuda.get_device_capability()))
    print(results["machine"], flush=True)

    def save():
        (out / "gpu_check.json").write_text(json.dumps(results, indent=2, default=float))

    section(results, "supervised")(lambda: supervised(device))
    save()
    section(results, "exported_latency")(lambda: exported_latency(device))
    save()
    section(results, "memory_step")(lambda: memory_step(device))
    save()
    if not args.skip_maml:
        import maml_transfer

        section(results, "maml_transfer")(lambda: {k: v for k, v in maml_transfer.main([
            "--device", device, "--procs", str(args.maml_procs), "--data-dir", args.data_dir,
            *(["--widths", "4", "4", "8", "8", "--pretrain-steps", "2", "--eval-tasks", "2",
                "--seeds", "0", "--shots", "1"] if QUICK else
              ["--widths", "32", "32", "64", "64", "--pretrain-steps", "500", "--eval-tasks", "200",
               "--seeds", "0", "1", "2"]),
            "--pretrain-classes", "400", "--meta-iters", str(args.maml_iters),
            "--eval-every", str(max(args.maml_iters // 3, 1)), "--name", "maml_transfer_gpu", "--out-dir", str(out),
        ]).items() if k != "runs"})
    save()
    print(f"[gpu_check] wrote {out / 'gpu_check.json'}")


if __name__ == "__main__":
    main()

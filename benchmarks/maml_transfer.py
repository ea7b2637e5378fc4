"""Issue 3 benchmark 3b: HyperResNet vs ResNet under MAML, same-domain and cross-domain.

The CPU/GPU-scale analogue of thesis Tables 3.6 and 3.7: pre-train and meta-train on Omniglot
(Vinyals train split), validate on the Vinyals val classes during training, and meta-test once
at the end on held-out Omniglot test classes (same domain) and on scikit-learn's handwritten
digits (cross domain), 5-way 1- and 5-shot, several seeds. Each (model, shot, seed) run is the
project's own ``MetaLearner`` driven by ``run_meta_training`` (the code the `hyper-maml` study
runs through Ray), here without Ray so that it also runs where Ray is not installed (the GPU
machine). Runs go to a process pool (``--procs``), which fills a GPU with small MAML models.

    python benchmarks/maml_transfer.py --device cpu --procs 2 --meta-iters 200
    python benchmarks/maml_transfer.py --device cuda --procs 6 --meta-iters 1000 --name maml_transfer_gpu

Prints Tables 3.6/3.7-shaped tables (mean ± 95% t-interval over seeds, n - 1 dof) and the
paired Hyper - plain difference per seed (mean ± 95% t-interval over the pairs), both from
``priorlab.platform.stats``; writes benchmarks/<name>.json (or --out-dir/<name>.json).
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_json  # noqa: E402


def run_one(job: dict) -> dict:
    import torch

    from priorlab.methods.configuration import config_from_dict
    from priorlab.methods.hyper.meta import MetaConfig, MetaLearner, run_meta_training

    torch.set_num_threads(job.pop("threads"))
    data_root, device = job.pop("data_root"), job.pop("device")
    cfg = config_from_dict(MetaConfig, job)
    t0 = time.perf_counter()
    learner = MetaLearner(cfg, data_root, device=torch.device(device))
    curve: list[dict] = []
    run_meta_training(learner, curve.append)  # validation every eval_every, test once at the end
    pre = {k: v for k, v in curve[0].items() if k.startswith("pretrain/")}
    return {"hyper": cfg.hyper, "k_shot": cfg.k_shot, "seed": cfg.seed, "pretrain": pre,
            "final": curve[-1], "curve": curve, "seconds": time.perf_counter() - t0}


def summarise(runs: list[dict], arch_name: str) -> tuple[list[dict], list[dict]]:
    from hyper_maml_paired import summarise as paired_summary

    from priorlab.platform.stats import mean_ci95

    df = pd.DataFrame([{"config/hyper": r["hyper"], "config/k_shot": r["k_shot"],
                        "config/seed": r["seed"], **r["final"]} for r in runs])
    rows = []
    shots = sorted(df["config/k_shot"].unique())
    for role in ("same", "cross", "val"):
        for hyper in (True, False):
            row = {"eval": role, "model": ("Hyper" if hyper else "") + arch_name}
            for k in shots:
                accs = df[(df["config/hyper"] == hyper) & (df["config/k_shot"] == k)][f"eval/{role}/acc"]
                row[f"{k}-shot 5-way"] = mean_ci95(accs).text()
            rows.append(row)
    return rows, paired_summary(df)["paired"]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    ap.add_argument("--widths", type=int, nargs=4, default=[16, 16, 32, 32])
    ap.add_argument("--pretrain-steps", type=int, default=150)
    ap.add_argument("--pretrain-classes", type=int, default=200)
    ap.add_argument("--meta-iters", type=int, default=60)
    ap.add_argument("--eval-every", type=int, default=30)
    ap.add_argument("--eval-tasks", type=int, default=50)
    ap.add_argument("--first-order", action="store_true")
    ap.add_argument("--name", default="maml_transfer")
    ap.add_argument("--out-dir", default=None, help="write the JSON here instead of benchmarks/")
    args = ap.parse_args(argv)

    from priorlab.data.root import resolve_data_root

    data_root = str(resolve_data_root(args.data_dir))
    base = dict(meta_train="omniglot", cross_domain="digits", arch="resnet12", widths=args.widths,
                pretrain_steps=args.pretrain_steps, pretrain_classes=args.pretrain_classes,
                meta_iters=args.meta_iters, eval_every=args.eval_every, eval_tasks=args.eval_tasks,
                first_order=args.first_order)
    jobs = [dict(base, hyper=h, k_shot=k, seed=s, data_root=data_root, device=args.device,
                 threads=args.threads)
            for s, k, h in itertools.product(args.seeds, args.shots, (True, False))]
    # decode the Omniglot cache once, before the workers start
    from priorlab.methods.hyper.meta import load_classes

    load_classes(data_root, "omniglot", "train", 28)
    t0 = time.perf_counter()
    print(f"[maml_transfer] {len(jobs)} runs on {args.device}, {args.procs} at a time", flush=True)
    runs = []
    with mp.get_context("spawn").Pool(args.procs) as pool:
        for r in pool.imap_unordered(run_one, jobs):
            runs.append(r)
            print(f"  done {len(runs)}/{len(jobs)}: hyper={r['hyper']} k={r['k_shot']} seed={r['seed']} "
                  f"same={r['final']['eval/same/acc']:.3f} cross={r['final']['eval/cross/acc']:.3f} "
                  f"({r['seconds']:.0f} s)", flush=True)
    wall = time.perf_counter() - t0
    rows, diffs = summarise(runs, "ResNet-12")
    cols = ["eval", "model"] + [f"{k}-shot 5-way" for k in sorted(args.shots)]
    print("\nquery accuracy after adaptation (mean ± 95% t-interval over seeds; same/cross: test, "
          "once at the end; val: last validation)\n" + table(rows, cols))
    print("\npaired Hyper - plain per seed (mean ± 95% t-interval over the pairs)\n"
          + table(diffs, ["metric", "k_shot", "text"]))
    payload = {"config": {**base, "seeds": args.seeds, "shots": args.shots, "device": args.device},
               "table": rows, "paired": diffs, "wall_s": wall, "runs": runs}
    if args.out_dir:
        import json

        from _common import machine

        path = Path(args.out_dir) / f"{args.name}.json"
        path.write_text(json.dumps({"machine": machine(), **payload}, indent=2, default=float))
    else:
        path = write_json(args.name, payload)
    print(f"\nwrote {path} ({wall:.0f} s)")
    return payload


if __name__ == "__main__":
    main()

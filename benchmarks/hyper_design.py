"""Issue 3 benchmark 3a: the hypernetwork design ablation on Omniglot at a CPU budget, with seeds.

Thesis Tables 3.1-3.5 change one design choice at a time around the recommended HyperWRN
(unshared hypernetworks, no bias, l2 on generated weights; SWA on top). This script does the
same with the project's ``SupervisedLearner`` (the code the `hyper-design` study runs through
Ray): Omniglot character x rotation classification (Vinyals train split, 15 drawings per class
to train, 5 to test), a small HyperWRN, several seeds per variant, and reports the test
accuracy as mean ± 95% CI over seeds plus the paired difference to the recommended design.

    python benchmarks/hyper_design.py [--seeds 0 1 2] [--epochs 8] [--procs 2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_json  # noqa: E402

REFERENCE = dict(hyper=True, sharing="unshared", bias=False, lambda_output_l2=6.25e-5, swa=False)
VARIANTS = {  # name -> the one change from the reference (thesis table it mirrors)
    "recommended (unshared, no bias, output l2)": {},
    "with hypernetwork bias (Table 3.1)": dict(bias=True),
    "no output l2 (Table 3.2)": dict(lambda_output_l2=0.0),
    "stage-shared (Fig. 3.1, Tables 3.3/3.4)": dict(sharing="stage"),
    "global (one hypernetwork, Ha et al.)": dict(sharing="global"),
    "+ SWA (Table 3.5)": dict(swa=True),
    "plain WRN (no hypernetwork)": dict(hyper=False),
}


def run_one(job: dict) -> dict:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from priorlab.data.classification import omniglot_classification
    from priorlab.methods.hyper.config import HyperConfig
    from priorlab.methods.hyper.loop import SupervisedLearner, evaluate

    torch.set_num_threads(1)
    name, seed, data_root, budget = job["name"], job["seed"], job["data_root"], job["budget"]
    (xtr, ytr), (xte, yte) = omniglot_classification(
        data_root, "train", n_classes=budget["num_classes"], test_per_class=5, seed=seed)
    epochs = budget["epochs"]
    cfg = HyperConfig(dataset="omniglot", in_channels=1, num_classes=budget["num_classes"],
                      arch="wrn", wrn_depth=10, wrn_widen=budget["widen"], epochs=epochs,
                      lr_milestones=[epochs // 2, 3 * epochs // 4], batch_size=64,
                      swa_start_epoch=3 * epochs // 4, swa_lr=0.02, seed=seed,
                      **{**REFERENCE, **VARIANTS[name]})
    t0 = time.perf_counter()
    learner = SupervisedLearner(cfg)
    g = torch.Generator().manual_seed(seed)
    train = DataLoader(TensorDataset(torch.from_numpy(xtr), torch.from_numpy(ytr)), batch_size=64,
                       shuffle=True, generator=g)
    test = DataLoader(TensorDataset(torch.from_numpy(xte), torch.from_numpy(yte)), batch_size=256)
    for _ in range(epochs):
        learner.train_epoch(train)
    acc = evaluate(learner.final_model(train), test)
    return {"name": name, "seed": seed, "acc": acc, "seconds": time.perf_counter() - t0}


def ci(v) -> str:
    v = np.asarray(v, dtype=float)
    return f"{v.mean():.3f} ± {1.96 * v.std(ddof=1) / np.sqrt(len(v)):.3f}" if len(v) > 1 else f"{v.mean():.3f}"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--num-classes", type=int, default=100)
    ap.add_argument("--widen", type=int, default=2)
    ap.add_argument("--procs", type=int, default=2)
    args = ap.parse_args(argv)
    from priorlab.data.omniglot import load_omniglot_split
    from priorlab.data.root import resolve_data_root

    data_root = str(resolve_data_root(args.data_dir))
    load_omniglot_split(data_root, "train", progress=False)  # decode the cache once
    budget = dict(epochs=args.epochs, num_classes=args.num_classes, widen=args.widen)
    jobs = [dict(name=n, seed=s, data_root=data_root, budget=budget) for s in args.seeds for n in VARIANTS]
    t0 = time.perf_counter()
    runs = []
    with mp.get_context("spawn").Pool(args.procs) as pool:
        for r in pool.imap_unordered(run_one, jobs):
            runs.append(r)
            print(f"  done {len(runs)}/{len(jobs)}: {r['name']} seed {r['seed']}: {r['acc']:.3f} "
                  f"({r['seconds']:.0f} s)", flush=True)
    ref = {r["seed"]: r["acc"] for r in runs if r["name"] == next(iter(VARIANTS))}
    rows = []
    for name in VARIANTS:
        accs = {r["seed"]: r["acc"] for r in runs if r["name"] == name}
        diffs = [accs[s] - ref[s] for s in accs if s in ref]
        rows.append({"variant": name, "test acc (mean ± 95% CI)": ci(list(accs.values())),
                     "vs recommended (paired)": "-" if not VARIANTS[name] else ci(diffs),
                     "n": len(accs)})
    print(f"\nOmniglot {args.num_classes}-way classification, HyperWRN-10-{args.widen}, "
          f"{args.epochs} epochs, seeds {args.seeds}\n"
          + table(rows, ["variant", "test acc (mean ± 95% CI)", "vs recommended (paired)", "n"]))
    payload = {"budget": budget, "seeds": args.seeds, "table": rows, "runs": runs,
               "wall_s": time.perf_counter() - t0}
    print(f"\nwrote {write_json('hyper_design', payload)}")
    return payload


if __name__ == "__main__":
    main()

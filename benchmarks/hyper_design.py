"""Issue 3 benchmark 3a: the hypernetwork design ablation on Omniglot at a CPU budget, with seeds.

Thesis Tables 3.1-3.5 change one design choice at a time around the recommended HyperWRN
(unshared hypernetworks, no bias, l2 on generated weights; SWA on top). This script does the
same with the project's ``SupervisedLearner`` (the code the `hyper-design` study runs through
Ray): Omniglot character x rotation classification (Vinyals train split, 15 drawings per class
to train, 5 to test), a small HyperWRN, several seeds per variant, and reports the test
accuracy as mean ± 95% t-interval over seeds (n - 1 dof) plus the paired difference to the
recommended design (same seed; mean ± 95% t-interval over the seeds' differences), both from
``priorlab.platform.stats``. ``--from-json`` recomputes the table from the runs stored in
``hyper_design.json`` without training again.

    python benchmarks/hyper_design.py [--seeds 0 1 2] [--epochs 8] [--procs 2]
    python benchmarks/hyper_design.py --from-json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import HERE, table, write_json  # noqa: E402

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


def summarise(runs: list[dict]) -> list[dict]:
    """Per variant: test accuracy mean ± 95% t-interval over seeds, and the paired difference to
    the recommended design over the seeds both ran (mean ± 95% t-interval, n - 1 dof)."""
    from priorlab.platform.stats import mean_ci95, paired_effect

    df = pd.DataFrame(runs).rename(columns={"seed": "config/seed"})
    ref = next(iter(VARIANTS))
    rows = []
    for name in VARIANTS:
        accs = df[df["name"] == name]["acc"]
        row = {"variant": name, "test acc (mean ± 95% t-CI)": mean_ci95(accs).text(),
               "vs recommended (paired)": "-", "n": len(accs)}
        if name != ref:
            eff = paired_effect(df, "name", ref, name, "acc", match=["config/seed"])
            row["vs recommended (paired)"] = eff.text(names=("recommended", "variant"))
            row["paired"] = eff.to_dict()
        rows.append(row)
    return rows


COLUMNS = ["variant", "test acc (mean ± 95% t-CI)", "vs recommended (paired)", "n"]


def from_json() -> dict:
    path = HERE / "hyper_design.json"
    stored = json.loads(path.read_text())
    stored["table"] = summarise(stored["runs"])
    stored["intervals"] = ("mean ± t_{0.975, n-1} * sd / sqrt(n) over seeds; paired: the same over "
                           "per-seed differences variant - recommended (platform.stats)")
    path.write_text(json.dumps(stored, indent=2, default=float))
    print(table(stored["table"], COLUMNS) + f"\n\nrewrote the table of {path} from its stored runs")
    return stored


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--num-classes", type=int, default=100)
    ap.add_argument("--widen", type=int, default=2)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--from-json", action="store_true",
                    help="recompute the table from the runs in hyper_design.json (no training)")
    args = ap.parse_args(argv)
    if args.from_json:
        return from_json()
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
    rows = summarise(runs)
    print(f"\nOmniglot {args.num_classes}-way classification, HyperWRN-10-{args.widen}, "
          f"{args.epochs} epochs, seeds {args.seeds}\n"
          + table(rows, COLUMNS))
    payload = {"budget": budget, "seeds": args.seeds, "table": rows, "runs": runs,
               "wall_s": time.perf_counter() - t0,
               "intervals": "mean ± t_{0.975, n-1} * sd / sqrt(n) over seeds; paired: the same over "
                            "per-seed differences variant - recommended (platform.stats)"}
    print(f"\nwrote {write_json('hyper_design', payload)}")
    return payload


if __name__ == "__main__":
    main()

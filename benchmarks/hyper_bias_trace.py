"""Issue 3 benchmark 3a, the bias trace: why the hypernetwork-bias variant does not train (Fig. 3.3).

The design ablation (``hyper_design.py``) found that the HyperWRN with a hypernetwork bias barely
trains at lr 0.1. Fig. 3.3 of the thesis explains bias-induced slow-down by the ratio
||E|| / ||grad E|| of the embeddings: the larger it is, the less an SGD step moves E. This script
traces it on the ablation's own setting (Omniglot 100-way, HyperWRN-10-2, unshared, output l2
6.25e-5, SGD 0.1 / momentum 0.9, batch 64, the 15-epoch schedule), for the first ``--epochs``
epochs of one seed, with and without the bias: per epoch the median over layers of
||E|| / ||grad E|| on the epoch's first batch (``SupervisedLearner``'s Fig. 3.3 diagnostic, i.e.
after ``epoch - 1`` epochs of training), the epoch's mean squared norm of the generated weights
(the output-l2 term), its mean training loss and the test accuracy after it.

    python benchmarks/hyper_bias_trace.py [--epochs 4] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_json  # noqa: E402


def trace(bias: bool, args, data) -> list[dict]:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from priorlab.methods.hyper.config import HyperConfig
    from priorlab.methods.hyper.loop import SupervisedLearner, evaluate

    (xtr, ytr), (xte, yte) = data
    # hyper_design.py's configuration (epochs=15: milestones 7 and 11, SWA off)
    cfg = HyperConfig(dataset="omniglot", in_channels=1, num_classes=args.num_classes, arch="wrn",
                      wrn_depth=10, wrn_widen=2, epochs=15, lr_milestones=[7, 11], batch_size=64,
                      swa_start_epoch=11, swa_lr=0.02, seed=args.seed, hyper=True,
                      sharing="unshared", bias=bias, lambda_output_l2=6.25e-5, swa=False)
    learner = SupervisedLearner(cfg)
    g = torch.Generator().manual_seed(args.seed)
    train = DataLoader(TensorDataset(torch.from_numpy(xtr), torch.from_numpy(ytr)), batch_size=64,
                       shuffle=True, generator=g)
    test = DataLoader(TensorDataset(torch.from_numpy(xte), torch.from_numpy(yte)), batch_size=256)
    rows = []
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        m = learner.train_epoch(train)
        rows.append({"bias": bias, "epoch": epoch,
                     "ratio_median_first_batch": m["diag/embedding_grad_ratio_median"],
                     "output_l2_mean": m["train/loss_output_l2"], "train_loss": m["train/loss"],
                     "test_acc": evaluate(learner.bare_model, test),
                     "seconds": time.perf_counter() - t0})
        print(f"  bias={bias} epoch {epoch}: ratio {rows[-1]['ratio_median_first_batch']:.4g}, "
              f"output l2 {rows[-1]['output_l2_mean']:.4g}, loss {rows[-1]['train_loss']:.3f}, "
              f"test acc {rows[-1]['test_acc']:.3f}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--num-classes", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    import torch

    from priorlab.data.classification import omniglot_classification
    from priorlab.data.root import resolve_data_root

    torch.set_num_threads(args.threads)
    data = omniglot_classification(str(resolve_data_root(args.data_dir)), "train",
                                   n_classes=args.num_classes, test_per_class=5, seed=args.seed)
    t0 = time.perf_counter()
    rows = trace(True, args, data) + trace(False, args, data)
    cols = ["bias", "epoch", "ratio_median_first_batch", "output_l2_mean", "train_loss", "test_acc"]
    fmt = [{c: (f"{r[c]:.4g}" if isinstance(r[c], float) else r[c]) for c in cols} for r in rows]
    print("\n" + table(fmt, cols))
    payload = {"setting": {"dataset": "omniglot", "num_classes": args.num_classes, "arch": "wrn-10-2",
                           "sharing": "unshared", "lambda_output_l2": 6.25e-5, "lr": 0.1,
                           "batch_size": 64, "seed": args.seed, "threads": args.threads},
               "what": "ratio_median_first_batch: median over layers of ||E|| / ||grad E|| on the "
                       "first batch of the epoch (after epoch - 1 epochs); output_l2_mean: the "
                       "epoch's mean of sum ||W_generated||^2; test_acc: after the epoch",
               "rows": rows, "wall_s": time.perf_counter() - t0}
    print(f"\nwrote {write_json('hyper_bias_trace', payload)}")
    return payload


if __name__ == "__main__":
    main()

"""Issue 3 benchmark 3b, the paired view: Hyper - plain per seed from a hyper-maml sweep's results.

Reads the ``results.parquet`` of a `priorlab sweep hyper-maml` experiment (one row per trial:
its config and its last report) and, with ``priorlab.platform.stats``, writes for every metric
and shot the paired difference Hyper - plain between the trials that agree on every other
config field and the seed (mean ± 95% t-interval over the pairs, n - 1 dof; how many pairs
favour each model), plus each model's mean ± 95% t-interval over seeds. Metrics: the test
accuracies measured once after training (``eval/same/acc``, ``eval/cross/acc``), the validation
accuracy at the last evaluation (``eval/val/acc``) and the Fig. 3.5 movement per depth.

    python benchmarks/hyper_maml_paired.py benchmarks/hyper_maml_cpu_results.parquet \\
        --out benchmarks/hyper_maml_cpu_paired.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, table  # noqa: E402

METRICS = ("eval/same/acc", "eval/cross/acc", "eval/val/acc",
           "diag/movement_early", "diag/movement_mid", "diag/movement_late")


def summarise(df: pd.DataFrame) -> dict:
    from priorlab.platform.stats import mean_ci95, paired_effect

    paired, per_model = [], []
    for metric in (m for m in METRICS if m in df):
        for k in sorted(df["config/k_shot"].unique()):
            part = df[df["config/k_shot"] == k]
            eff = paired_effect(part, "config/hyper", False, True, metric)
            paired.append({"metric": metric, "k_shot": int(k), **eff.to_dict(),
                           "text": eff.text(".4g" if "movement" in metric else ".3f",
                                            names=("plain", "Hyper"))})
            for hyper in (True, False):
                iv = mean_ci95(part[part["config/hyper"] == hyper][metric])
                per_model.append({"metric": metric, "k_shot": int(k), "hyper": hyper,
                                  "mean": iv.mean, "ci95_half_width_t": iv.half_width, "n": iv.n})
    return {"paired": paired, "per_model": per_model}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", help="results.parquet of a hyper-maml sweep")
    ap.add_argument("--out", required=True, help="JSON to write")
    args = ap.parse_args(argv)
    df = pd.read_parquet(args.results)
    out = summarise(df)
    payload = {"machine": machine(), "source": str(args.results), "trials": len(df),
               "what": "b - a = Hyper - plain, pairs = trials equal in every other config field and "
                       "the seed; ci95_half_width_t = t_{0.975, n-1} * sd(diffs) / sqrt(n)", **out}
    Path(args.out).write_text(json.dumps(payload, indent=2, default=float))
    print(table([{"metric": p["metric"], "shot": p["k_shot"], "Hyper - plain": p["text"]}
                 for p in out["paired"]], ["metric", "shot", "Hyper - plain"]))
    print(f"\nwrote {args.out}")
    return payload


if __name__ == "__main__":
    main()

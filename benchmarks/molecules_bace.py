"""Molecules benchmark 3: BACE, scaffold splits: test AUROC of `ecfp`, `midi`, `ecfp+midi` and a
random forest on ECFP (the floor), from a `molecules-features` sweep; target: `ecfp+midi` above
`ecfp` by more than its interval (paired over the same splits).

The sweep does the work (`priorlab sweep molecules-features midi_checkpoint=CKPT noise_t=10
layer=2 n_splits=5 --samples 1 --name molecules-bace`); this script turns its results.parquet
into molecules_bace.json and copies the report's tables beside it.

    python benchmarks/molecules_bace.py runs/molecules-bace
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import HERE, table, write_json  # noqa: E402


def main() -> None:
    from priorlab.platform.stats import mean_ci95
    from priorlab.search_spaces.molecules_features import run_values

    experiment = Path(sys.argv[1])
    df = pd.read_parquet(experiment / "results.parquet")
    df = df[df["status"] == "TERMINATED"]
    out, rows = {}, []
    for _, r in df.iterrows():
        name = r["config/feature_set"]
        out[name] = {"test_auroc": r["test/auroc"], "ci95_over_runs": r["test/auroc_ci95"],
                     "bootstrap95": [r["test/auroc_lo"], r["test/auroc_hi"]],
                     "valid_auroc": r["valid/auroc"], "runs": run_values(r),
                     "rf_floor": r["floor/auroc"], "rf_floor_ci95": r["floor/auroc_ci95"],
                     "excluded": r["data/n_excluded"]}
        rows.append({"features": name, "test AUROC": f"{r['test/auroc']:.3f} ± {r['test/auroc_ci95']:.3f}",
                     "bootstrap 95%": f"{r['test/auroc_lo']:.3f}-{r['test/auroc_hi']:.3f}",
                     "RF on ECFP (same splits)": f"{r['floor/auroc']:.3f} ± {r['floor/auroc_ci95']:.3f}",
                     "excluded": int(r["data/n_excluded"])})
    paired = None
    if {"ecfp", "ecfp+midi"} <= set(out):
        diff = np.asarray(out["ecfp+midi"]["runs"]) - np.asarray(out["ecfp"]["runs"])
        ci = mean_ci95(diff)
        paired = {"mean": ci.mean, "ci95": ci.half_width, "n": ci.n,
                  "target_met": bool(ci.mean - ci.half_width > 0)}
    print(table(rows, list(rows[0])))
    if paired:
        print(f"ecfp+midi - ecfp, paired over {paired['n']} splits: {paired['mean']:+.3f} ± "
              f"{paired['ci95']:.3f} -> {'MET' if paired['target_met'] else 'MISSED'} (target: above "
              "ecfp by more than its interval)")
    for name in ("results.parquet", "tables.md"):
        if (experiment / name).exists():
            shutil.copy(experiment / name, HERE / f"molecules_bace_{name}")
    print("wrote", write_json("molecules_bace", {"experiment": str(experiment), "feature_sets": out,
                                                 "paired_ecfp_midi_minus_ecfp": paired}))


if __name__ == "__main__":
    main()

"""What the `make run` demo learned, from its experiment folder: a table and a JSON for RESULTS.md.

Issue 7 item 4 asks the main job to show learning within 10 minutes on 2 cores: 1-shot accuracy
clearly above chance (5-way: 0.2), rising with the shot k. This reads an experiment written by
`priorlab sweep memory-label-injection ...` (results.parquet, history.parquet, study.json) and,
if given, the console log of the run (its `real` time line from bash's `time`, its line count),
and writes benchmarks/<out>.json with each trial's k-shot accuracies and 95% intervals over its
evaluation episodes at every report, the wall time and the judgement against the target.

    python benchmarks/demo_summary.py runs/memory-label-injection-... --log run.log --out demo_run

Thesis: Ch. 2, Sec. 2.3.1 (k-shot accuracy of the online protocol), Table 2.1.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_json  # noqa: E402

TARGET = "1-shot mean >= 0.5 with its 95% interval above 0.2, accuracy rising with k, <= 10 min"


def wall_seconds(log_text: str) -> float | None:
    """bash `time`'s `real XmY.Zs` line, in seconds."""
    m = re.search(r"^real\s+(\d+)m([\d.]+)s", log_text, re.M)
    return None if m is None else int(m.group(1)) * 60 + float(m.group(2))


def summarise(experiment: Path) -> dict:
    study = json.loads((experiment / "study.json").read_text())
    fixed = study["fixed"]
    shots = list(fixed.get("report_shots", []))
    results = pd.read_parquet(experiment / "results.parquet")
    history = pd.read_parquet(experiment / "history.parquet")
    trials = []
    for _, row in results.iterrows():
        h = history[history["trial_id"] == row["trial_id"]].sort_values("step")
        curve = [{"step": int(r["step"]),
                  **{f"acc_{k}": float(r[f"eval/acc_{k}shot"]) for k in shots},
                  **{f"ci95_{k}": float(r[f"eval/acc_{k}shot_ci95"]) for k in shots}}
                 for _, r in h.iterrows()]
        final = curve[-1]
        trials.append({
            "trial_id": row["trial_id"], "status": row["status"],
            "label_injection": row["config/label_injection"], "seed": int(row["config/seed"]),
            "final": final,
            "episodes_per_s": float(row["train/episodes_per_s"]),
            "above_chance": all(final[f"acc_{k}"] - final[f"ci95_{k}"] > 0.2 for k in shots),
            "rising_with_k": all(final[f"acc_{a}"] <= final[f"acc_{b}"]
                                 for a, b in zip(shots, shots[1:])),
            "curve": curve,
        })
    return {"experiment": experiment.name, "fixed": fixed, "shots": shots, "trials": trials}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("experiment", type=Path)
    ap.add_argument("--log", type=Path, default=None, help="the run's console log (with `time`)")
    ap.add_argument("--command", default=None, help="the command that was run, for the record")
    ap.add_argument("--out", default="demo_run")
    args = ap.parse_args()
    out = summarise(args.experiment)
    if args.log is not None:
        text = args.log.read_text()
        out["wall_s"] = wall_seconds(text)
        out["console_lines"] = len(text.splitlines())
    out["command"] = args.command
    best = max(out["trials"], key=lambda t: t["final"][f"acc_{out['shots'][0]}"])
    k1 = out["shots"][0]
    out["target"] = TARGET
    out["pass"] = bool(best["final"][f"acc_{k1}"] >= 0.5 and best["above_chance"]
                       and best["rising_with_k"]
                       and (out.get("wall_s") is None or out["wall_s"] <= 600))
    rows = [{"label_injection": t["label_injection"], "seed": t["seed"],
             **{f"{k}-shot": f"{t['final'][f'acc_{k}']:.3f} ± {t['final'][f'ci95_{k}']:.3f}"
                for k in out["shots"]},
             "episodes/s": f"{t['episodes_per_s']:.0f}"} for t in out["trials"]]
    print(table(rows, list(rows[0])))
    print(f"(± = 95% interval over each trial's evaluation episodes) wall {out.get('wall_s')} s; "
          f"target {TARGET}: {'pass' if out['pass'] else 'MISS'}")
    print(write_json(args.out, out))


if __name__ == "__main__":
    main()

"""Issue 8, benchmark 2 at full size: what a teacher farm over the whole 72-scene grid (9 shapes x 8
colours, Sec. 4.4.1) produced, read from its store: held-out PSNR, steps and seconds per
teacher, against the target (every teacher >= 25 dB, ~2 CPU-minutes each, the farm in about an
hour on this machine). The farm's own console log (progress bar, closing summary, total wall
time) sits beside the JSON.

    priorlab farm teachers --scenes sphere cube torus cylinder cone chair table vase lamp \\
        --store runs/teachers72 > benchmarks/fields_farm72.log 2>&1
    python benchmarks/fields_farm_summary.py runs/teachers72 --out fields_farm72
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_json  # noqa: E402

from priorlab.methods.fields.store import TeacherStore  # noqa: E402

TARGET_DB = 25.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("store")
    ap.add_argument("--out", default="fields_farm72")
    args = ap.parse_args()
    store = TeacherStore(args.store)
    rows = []
    for slug in sorted(store.finished()):
        meta = store.read_meta(slug)
        ran = int(meta["curve"][-1]["step"]) if meta.get("curve") else int(meta["steps"])
        rows.append({"slug": slug, "psnr_db": round(meta["psnr"], 2), "steps": ran,
                     "seconds": round(meta["seconds"], 1)})
    psnrs = [r["psnr_db"] for r in rows]
    secs = [r["seconds"] for r in rows]
    steps = [r["steps"] for r in rows]
    summary = {"teachers": len(rows), "above_target": sum(p >= TARGET_DB for p in psnrs),
               "psnr_min": min(psnrs), "psnr_mean": round(statistics.mean(psnrs), 2),
               "steps_median": statistics.median(steps), "steps_max": max(steps),
               "seconds_mean": round(statistics.mean(secs), 1), "seconds_max": max(secs),
               "seconds_sum": round(sum(secs), 1)}
    worst = sorted(rows, key=lambda r: r["psnr_db"])[:5]
    slowest = sorted(rows, key=lambda r: -r["seconds"])[:5]
    print(table(worst, ["slug", "psnr_db", "steps", "seconds"]))
    print(table(slowest, ["slug", "psnr_db", "steps", "seconds"]))
    print(summary)
    write_json(args.out, {"store": args.store, "target_db": TARGET_DB, "summary": summary,
                          "teachers": rows})


if __name__ == "__main__":
    main()

"""Issue 9 benchmark: zero-shot generation, seen vs unseen, dynamic vs static conditioning
(thesis Sec. 4.4.1 / Table 4.1 and Fig. 4.9), side by side in one run.

Two HyperFields fits on the zero-shot split of the colour x shape grid (45 seen prompts with
teachers, 27 held out; ``scenes.zero_shot_split``), identical but for ``dynamic`` (Eq. 4.5:
weights from CT and the activations) vs static (weights from CT alone): the same seed, steps,
teachers and budget, each in its own process on one core at the same time. Then every one of the
72 scenes is generated in one forward pass and scored against its exact views (``distill.
evaluate_zero_shot``): PSNR / SSIM per split and the retrieval analogue of Table 4.1 (rank all
72 ground-truth scenes by similarity over the same views; top-1/3/5/10).

Intervals are over scenes (one training seed each; the run is ~half an hour per seed on this
CPU): mean +- 95% t-interval over the scenes of a split, and over the per-scene paired
differences for dynamic - static. Targets as set in the issue: unseen within 3 dB of seen; the
thesis has dynamic ahead on unseen prompts.

The dynamic fit's checkpoint is kept (``--ckpt-dir``) for the amortisation and OOD benchmarks.

    python benchmarks/fields_zero_shot.py --teachers runs/teachers72 --steps 600
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interval, table, train_and_save, write_json  # noqa: E402


VARIANTS = {"dynamic": True, "static": False}


def train_one(args: tuple) -> dict:
    name, overrides, ckpt_dir = args
    from priorlab.methods.configuration import config_from_dict
    from priorlab.methods.fields.distill import DistillConfig, DistillFit, evaluate_zero_shot

    torch.set_num_threads(1)
    cfg = config_from_dict(DistillConfig, overrides)
    fit = DistillFit(cfg)
    train_s, folder = train_and_save(fit, name, "fields-hyper", ckpt_dir)
    started = time.perf_counter()
    rows, summary = evaluate_zero_shot(fit)
    print(f"[{name}] evaluated 72 scenes in {time.perf_counter() - started:.0f} s", flush=True)
    return {"variant": name, "train_s": round(train_s, 1), "checkpoint": str(folder),
            "rows": rows, "summary": summary}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--teachers", default="runs/teachers72")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ckpt-dir", default="runs/bench/fields_zero_shot")
    ap.add_argument("--out", default="fields_zero_shot")
    args = ap.parse_args()
    base = {"teachers": str(Path(args.teachers).resolve()), "steps": args.steps, "seed": args.seed,
            "n_samples": 32, "rays_per_prompt": 512, "eval_size": 32, "eval_views": 4}
    jobs = [(name, {**base, "dynamic": dyn}, args.ckpt_dir) for name, dyn in VARIANTS.items()]
    with mp.get_context("spawn").Pool(len(jobs)) as pool:
        results = pool.map(train_one, jobs)

    table_rows, per_variant = [], {}
    for res in results:
        by_split = {s: [r for r in res["rows"] if r["split"] == s] for s in ("seen", "unseen")}
        entry = {"train_s": res["train_s"], "checkpoint": res["checkpoint"], "summary": res["summary"]}
        for split, rows in by_split.items():
            entry[f"{split}_psnr"] = interval(r["psnr"] for r in rows)
            entry[f"{split}_ssim"] = interval(r["ssim"] for r in rows)
            table_rows.append({
                "variant": res["variant"], "split": split, "scenes": len(rows),
                "psnr": f"{entry[f'{split}_psnr']['mean']:.2f} +- {entry[f'{split}_psnr']['ci95']:.2f}",
                "ssim": f"{entry[f'{split}_ssim']['mean']:.3f} +- {entry[f'{split}_ssim']['ci95']:.3f}",
                **{f"top{k}": f"{res['summary'][f'{split}/top{k}']:.2f}" for k in (1, 3, 5, 10)}})
        gap = entry["seen_psnr"]["mean"] - entry["unseen_psnr"]["mean"]
        entry["gap_db"] = round(gap, 3)
        entry["unseen_within_3db"] = gap <= 3.0
        entry["per_scene"] = [{k: v for k, v in r.items()} for r in res["rows"]]
        per_variant[res["variant"]] = entry
    print(table(table_rows, ["variant", "split", "scenes", "psnr", "ssim", "top1", "top3", "top5", "top10"]))

    paired = {}
    dyn = {r["slug"]: r for r in per_variant["dynamic"]["per_scene"]}
    sta = {r["slug"]: r for r in per_variant["static"]["per_scene"]}
    for split in ("seen", "unseen"):
        slugs = [s for s, r in dyn.items() if r["split"] == split]
        paired[split] = interval(dyn[s]["psnr"] - sta[s]["psnr"] for s in slugs)
        p = paired[split]
        print(f"dynamic - static, {split}: {p['mean']:+.2f} +- {p['ci95']:.2f} dB "
              f"(95% t-interval over {p['n']} scenes, paired)")
    for name, entry in per_variant.items():
        print(f"{name}: seen - unseen = {entry['gap_db']:.2f} dB (target <= 3 dB: "
              f"{'pass' if entry['unseen_within_3db'] else 'MISS'}); trained {entry['train_s']:.0f} s")
    write_json(args.out, {
        "steps": args.steps, "seed": args.seed, "config": base, "threads_per_fit": 1,
        "intervals": "mean +- 95% t-interval over the scenes of a split (one training seed)",
        "variants": per_variant, "dynamic_minus_static_psnr": paired,
        "targets": {"unseen_within_3db_of_seen": {n: e["unseen_within_3db"] for n, e in per_variant.items()},
                    "thesis_dynamic_ahead_on_unseen": paired["unseen"]["mean"] > 0}})


if __name__ == "__main__":
    main()

"""Issue 9 benchmark: HyperSegmentationFields on novel scenes (thesis Sec. 4.4.8, Fig. 4.11),
dynamic vs static conditioning side by side in one run.

Two fits of ``segfields.SegFieldsFit`` on the same part-labelled procedural scenes
(``data.part_scenes``: 40 training instances of chairs, tables, vases, lamps and mugs in random
colours, patterns and yaw; 10 novel instances), identical but for ``dynamic``, each in its own
process on one core at the same time, for the same number of steps. Then every scene's NeRF
and feature field are generated in one forward pass from its 4 context views and rendered from
4 novel cameras: part mIoU (ShapeNet's per-shape convention over the scene's parts), foreground
IoU and PSNR, for training and novel scenes, beside the mIoU of painting the true mask with the
scene's most frequent part (what a field without part information reaches).

Intervals: mean +- 95% t-interval over the scenes of a split (one training seed per variant),
and over per-scene paired differences for dynamic - static. A contact sheet of novel scenes
(context view, generated RGB, predicted parts, true parts) goes to ``docs/img``.

    python benchmarks/fields_segmentation.py --steps 800
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import HERE, interval, table, train_and_save, write_json  # noqa: E402


KEYS = ("miou", "fg_iou", "psnr", "miou_majority")


def train_one(args: tuple) -> dict:
    name, overrides, ckpt_dir = args
    from priorlab.methods.configuration import config_from_dict
    from priorlab.methods.fields.segfields import SegFieldsConfig, SegFieldsFit

    torch.set_num_threads(1)
    cfg = config_from_dict(SegFieldsConfig, overrides)
    fit = SegFieldsFit(cfg)
    train_s, folder = train_and_save(fit, name, "fields-seg", ckpt_dir)
    rows = {}
    for split, scenes in (("seen", fit.train_scenes), ("novel", fit.novel_scenes)):
        rows[split] = fit.score(scenes)
    sheet = None
    if name == "dynamic":
        sheet = contact_sheet(fit, rows["novel"][:5])
    for split in rows:
        for r in rows[split]:
            r.pop("labels"), r.pop("rgb")
    return {"variant": name, "train_s": round(train_s, 1), "checkpoint": str(folder), "rows": rows,
            "contact_sheet": sheet}


def contact_sheet(fit, rows: list[dict]) -> str:
    """Per novel scene one row: a context view, generated RGB, predicted parts, true parts."""
    from PIL import Image

    palette = torch.tensor([[255, 255, 255], [230, 25, 75], [60, 180, 75], [255, 225, 25],
                            [0, 130, 200], [245, 130, 48], [145, 30, 180], [70, 240, 240],
                            [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128],
                            [170, 110, 40]], dtype=torch.uint8)
    tiles = []
    for r, scene in zip(rows, fit.novel_scenes):
        truth = fit._truth(scene)
        ctx = (fit.context[scene.slug]["rgb"][0].clamp(0, 1) * 255).to(torch.uint8)
        gen = (r["rgb"][0].clamp(0, 1) * 255).to(torch.uint8)
        pred = palette[r["labels"][0].clamp(max=len(palette) - 1)]
        true = palette[truth["labels"][0].clamp(max=len(palette) - 1)]
        size = gen.shape[0]
        ctx = torch.nn.functional.interpolate(ctx.permute(2, 0, 1)[None].float(), size=(size, size),
                                              mode="nearest")[0].permute(1, 2, 0).to(torch.uint8)
        tiles.append(torch.cat([ctx, gen, pred, true], 1))
    img = torch.cat(tiles, 0).numpy()
    path = HERE.parent / "docs" / "img" / "hypersegfields_novel_scenes.png"
    Image.fromarray(img).resize((img.shape[1] * 4, img.shape[0] * 4), Image.NEAREST).save(path)
    return str(path.relative_to(HERE.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ckpt-dir", default="runs/bench/fields_segmentation")
    ap.add_argument("--out", default="fields_segmentation")
    args = ap.parse_args()
    base = {"steps": args.steps, "seed": args.seed}
    jobs = [(name, {**base, "dynamic": dyn}, args.ckpt_dir) for name, dyn in (("dynamic", True), ("static", False))]
    with mp.get_context("spawn").Pool(len(jobs)) as pool:
        results = pool.map(train_one, jobs)
    shown, per_variant = [], {}
    for res in results:
        entry = {"train_s": res["train_s"], "checkpoint": res["checkpoint"], "per_scene": res["rows"]}
        for split, rows in res["rows"].items():
            entry[split] = {k: interval((r[k] for r in rows), digits=4) for k in KEYS}
            shown.append({"variant": res["variant"], "split": split, "scenes": len(rows),
                          **{k: f"{entry[split][k]['mean']:.3f} +- {entry[split][k]['ci95']:.3f}" for k in KEYS}})
        per_variant[res["variant"]] = entry
        if res["contact_sheet"]:
            per_variant[res["variant"]]["contact_sheet"] = res["contact_sheet"]
    print(table(shown, ["variant", "split", "scenes", *KEYS]))
    paired = {}
    for split in ("seen", "novel"):
        dyn = {r["slug"]: r for r in per_variant["dynamic"]["per_scene"][split]}
        sta = {r["slug"]: r for r in per_variant["static"]["per_scene"][split]}
        paired[split] = interval((dyn[s]["miou"] - sta[s]["miou"] for s in dyn), digits=4)
        print(f"dynamic - static mIoU, {split}: {paired[split]['mean']:+.3f} +- {paired[split]['ci95']:.3f} "
              f"(95% t-interval over {paired[split]['n']} scenes, paired)")
    for name, entry in per_variant.items():
        gain = entry["novel"]["miou"]["mean"] - entry["novel"]["miou_majority"]["mean"]
        print(f"{name}: novel mIoU {entry['novel']['miou']['mean']:.3f} vs majority-part reference "
              f"{entry['novel']['miou_majority']['mean']:.3f} ({gain:+.3f}); trained {entry['train_s']:.0f} s")
    write_json(args.out, {
        "steps": args.steps, "seed": args.seed, "threads_per_fit": 1,
        "intervals": "mean +- 95% t-interval over the scenes of a split (one training seed)",
        "variants": per_variant, "dynamic_minus_static_miou": paired})


if __name__ == "__main__":
    main()

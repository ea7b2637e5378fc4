"""Issue 9 benchmark: amortisation (thesis Sec. 4.4.7). Wall time to produce every unseen scene
of the zero-shot split (27 of the 72 colour x shape scenes, Sec. 4.4.1) in one forward pass of
HyperFields each, against fitting one reconstruction teacher per scene to 25 dB with the farm's
recipe, measured in one run on this machine.

Target, as set in the issue: >= 500x in HyperFields' favour (the thesis: 27 unseen scenes in
under a minute vs about 30 minutes per teacher on a GPU).

Generation of a scene = encode the prompt, condition, generate the MLP weights on a reference
batch of sample points of one 64x64 view (``generate.generate_nerf``) and export the NeRF. The
dynamic hypernetwork needs that batch for its means (Eq. 4.4); its size (``--max-points``, each
timed) sets most of the cost, so the same run also scores the unseen scenes generated with each
size against their exact views (4 views, 32x32): a smaller batch is only worth its speed if the
NeRFs are as good. Everything is timed on ONE thread, so zero-shot and teacher are core-seconds
alike. Generation time does not depend on how well the checkpoint was trained: without
``--checkpoint`` a randomly initialised HyperFields of the thesis' size is timed, and the JSON
says so. Teachers: ``--teachers N`` of the unseen scenes are fitted (default 4, one thread each,
``--jobs`` at a time) and the per-scene mean is multiplied by 27; ``--teachers 27`` fits them all.

    python benchmarks/fields_amortisation.py [--checkpoint CKPT] [--teachers 4] [--jobs 2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_json  # noqa: E402

from priorlab.data.scenes import VIEW_FOV_DEG, view_cameras, zero_shot_split  # noqa: E402
from priorlab.methods.configuration import config_from_dict  # noqa: E402
from priorlab.methods.fields.teacher import TeacherConfig, fit_reconstruction  # noqa: E402


def fit_one(prompt: str) -> dict:
    from priorlab.data.scenes import parse_scene
    from priorlab.platform.farm import FARM_RECIPE

    torch.set_num_threads(1)
    started = time.perf_counter()
    result = fit_reconstruction(parse_scene(prompt), config_from_dict(TeacherConfig, dict(FARM_RECIPE)))
    return {"prompt": prompt, "wall_s": round(time.perf_counter() - started, 1),
            "psnr_db": round(result.metrics["eval/psnr"], 2), "steps": int(result.metrics["step"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--teachers", type=int, default=4)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--max-points", type=int, nargs="+", default=[65536, 4096],
                    help="reference batch sizes to time (generate.MAX_REFERENCE_POINTS is the default)")
    ap.add_argument("--out", default="fields_amortisation")
    args = ap.parse_args()
    from priorlab.methods.fields.distill import DistillConfig, eval_views, generate_views
    from priorlab.methods.fields.metrics import psnr_per_image
    from priorlab.platform.stats import mean_ci95
    from priorlab.methods.fields.generate import generate_nerf, load_hyperfields
    from priorlab.methods.fields.hyper import HyperFields
    from priorlab.methods.fields.text import TextEncoder

    _, unseen = zero_shot_split(0)
    encoder = TextEncoder()
    if args.checkpoint:
        model, _, encoder = load_hyperfields(args.checkpoint, encoder=encoder)
    else:
        cfg = DistillConfig()
        model = HyperFields(cfg.hyper_config(encoder.dim), cfg.field_config()).eval()
    c2w, _, _ = view_cameras(1, orbit=True, elevation=(20.0, 20.0))
    torch.set_num_threads(1)
    generate_nerf(model, encoder, unseen[0].prompt, c2w, args.size, VIEW_FOV_DEG)     # warm-up
    truth = [eval_views(s, DistillConfig()) for s in unseen]
    zero_shot = []
    for max_points in args.max_points:
        encoder.clear_cache()
        started = time.perf_counter()
        for scene in unseen:
            generate_nerf(model, encoder, scene.prompt, c2w, args.size, VIEW_FOV_DEG, max_points)
        seconds = time.perf_counter() - started
        with torch.no_grad():
            cts = model.condition(*encoder.encode([s.prompt for s in unseen]))
            psnrs = [float(psnr_per_image(generate_views(model, ct, t["c2w"], t["rgb"].shape[1],
                                                         t["fov_deg"], model.field_cfg, max_points),
                                          t["rgb"]).mean()) for ct, t in zip(cts, truth)]
        ci = mean_ci95(psnrs)
        zero_shot.append({"max_points": max_points, "seconds": round(seconds, 3),
                          "per_scene_s": round(seconds / len(unseen), 4),
                          "unseen_psnr": round(ci.mean, 3), "unseen_psnr_ci95": round(ci.half_width, 3)})
        print(f"zero-shot, reference batch {max_points}: {len(unseen)} unseen scenes in {seconds:.2f} s "
              f"(one thread); PSNR {ci.mean:.2f} +- {ci.half_width:.2f} dB", flush=True)

    prompts = [s.prompt for s in unseen[:args.teachers]]
    started = time.perf_counter()
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        fits = pool.map(fit_one, prompts)
    teachers_wall = time.perf_counter() - started
    per_teacher = statistics.mean(f["wall_s"] for f in fits)
    all_teachers_s = per_teacher * len(unseen)
    for row in zero_shot:
        row["ratio"] = round(all_teachers_s / row["seconds"], 1)
        row["pass"] = row["ratio"] >= 500
    print(table(fits, ["prompt", "steps", "psnr_db", "wall_s"]))
    print(f"teachers: {len(fits)} fitted, {per_teacher:.1f} s each (one core) -> "
          f"{all_teachers_s:.0f} core-s for all {len(unseen)}")
    print(table(zero_shot, ["max_points", "seconds", "per_scene_s", "unseen_psnr", "unseen_psnr_ci95",
                            "ratio", "pass"]))
    write_json(args.out, {
        "checkpoint": args.checkpoint, "model": "trained" if args.checkpoint else "random init (timing only)",
        "unseen_scenes": len(unseen), "threads": 1, "zero_shot": zero_shot,
        "psnr_interval": "mean +- 95% t-interval over the 27 unseen scenes",
        "teacher_fits": fits, "teachers_wall_s": round(teachers_wall, 1),
        "teacher_s_mean": round(per_teacher, 1), "teachers_extrapolated": len(fits) < len(unseen),
        "all_teachers_core_s": round(all_teachers_s, 1), "target": ">= 500x"})

if __name__ == "__main__":
    main()

"""Load on the Serve apps (issue 11): p50/p99 latency and throughput at concurrency 1, 8 and 32
for text2nerf and molscore, Serve's overhead over a direct in-process call of the same model,
and molscore batched vs unbatched, all in one run on one machine.

    python benchmarks/serve_load.py [--hf-checkpoint CKPT] [--scorer-checkpoint CKPT ...]

Targets (issue 11): Serve's p50 within 5 ms of the direct call; batched molscore throughput at
concurrency 32 >= 5x unbatched; text2nerf, 4 views at 128x128, p50 < 2 s on this CPU.

The load generator (asyncio + httpx) runs in this process on the same machine as the server, so
on 2 cores client and server share the CPUs; every number below is measured that way, for both
sides of each comparison. molscore requests carry one SMILES each (the case batching is for),
real BACE molecules, each sent once per measurement (no cache helps). Writes
benchmarks/serve_load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_json  # noqa: E402

HF = "runs/train/hf-first2/checkpoints/checkpoint_000000300"
SCORERS = ["runs/molecules-bace/train_runs/train_599a2_00000/checkpoint_000000001",      # ecfp
           "runs/train/bace-ecfp-midi/checkpoints/checkpoint_000000001"]                  # ecfp+midi
OCCUPANCY = 32            # the app's default occupancy_resolution
PROMPTS = ["a red sphere", "a blue cube", "a green torus", "a yellow cone", "a purple chair",
           "a white vase", "an orange lamp", "a pink table", "a brown cylinder", "a black mug"]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def summary(lat: list[float], wall: float, n_items: int) -> dict:
    return {"n": len(lat), "p50_ms": 1e3 * pct(lat, 0.5), "p99_ms": 1e3 * pct(lat, 0.99),
            "mean_ms": 1e3 * statistics.fmean(lat), "throughput_rps": len(lat) / wall,
            "items_per_s": n_items / wall, "wall_s": wall}


async def ping(url: str, n: int = 200) -> dict:
    """GET ``url`` n times in a row: what one HTTP hop through Serve costs here (proxy -> ingress,
    no model, no handle call)."""
    import httpx

    lat = []
    async with httpx.AsyncClient() as client:
        await client.get(url)
        started = time.perf_counter()
        for _ in range(n):
            t0 = time.perf_counter()
            (await client.get(url)).raise_for_status()
            lat.append(time.perf_counter() - t0)
    return summary(lat, time.perf_counter() - started, n)


async def load(url: str, bodies: list[dict], concurrency: int, timeout: float = 600.0) -> dict:
    """Send ``bodies`` with ``concurrency`` requests in flight; every answer must be 200."""
    import httpx

    queue = list(reversed(bodies))
    lat: list[float] = []

    async def worker(client):
        while queue:
            body = queue.pop()
            t0 = time.perf_counter()
            r = await client.post(url, json=body)
            lat.append(time.perf_counter() - t0)
            if r.status_code != 200:
                raise RuntimeError(f"{url}: {r.status_code} {r.text[:300]}")

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        await client.post(url, json=bodies[0])                       # warm the connection path
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - started
    n_items = sum(len(b.get("smiles", [None])) for b in bodies)
    return summary(lat, wall, n_items)


def views_psnr(a: list[str], b: list[str]) -> float:
    """PSNR (dB) between two lists of base64 PNG views (inf when identical)."""
    import base64
    import io
    import math

    import numpy as np
    from PIL import Image

    def arr(x):
        return np.concatenate([np.asarray(Image.open(io.BytesIO(base64.b64decode(v))), dtype=np.float64)
                               for v in x]) / 255.0

    mse = float(np.mean((arr(a) - arr(b)) ** 2))
    return math.inf if mse == 0 else -10.0 * math.log10(mse)


def direct(call, inputs: list, warm: int = 2) -> dict:
    for x in inputs[:warm]:
        call(x)
    lat = []
    started = time.perf_counter()
    for x in inputs:
        t0 = time.perf_counter()
        call(x)
        lat.append(time.perf_counter() - t0)
    return summary(lat, time.perf_counter() - started, len(inputs))


def bench_text2nerf(ckpt: str, port: int, counts: dict[int, int]) -> dict:
    import base64

    import torch
    from ray import serve

    from priorlab.data.scenes import VIEW_FOV_DEG, view_cameras
    from priorlab.methods.fields.generate import load_hyperfields, scene_nerf
    from priorlab.methods.fields.turntable import orbit_pngs
    from priorlab.platform.cli_serve import app_args, deploy

    out: dict = {"checkpoint": ckpt}
    # direct: the same work as one request, in this process (2 torch threads, like the replica)
    torch.set_num_threads(2)
    model, _cfg, encoder = load_hyperfields(ckpt)

    def one(prompt: str, occupancy: int = OCCUPANCY) -> list[str]:
        encoder.clear_cache()                 # the replica meets each prompt for the first time too
        with torch.no_grad():
            ct = model.condition(*encoder.encode([prompt]))[0]
        c2w, _, _ = view_cameras(4, orbit=True, elevation=(20.0, 20.0))
        field = scene_nerf(model, ct, c2w, 128, VIEW_FOV_DEG, occupancy_resolution=occupancy)
        return [base64.b64encode(b).decode() for b in orbit_pngs(field, field.cfg, 4, 128)]

    # what skipping empty cells costs in quality: PSNR of its views against every-sample views
    full = direct(lambda p: out.setdefault("views_full", {}).__setitem__(p, one(p, 0)), PROMPTS)
    out["direct_every_sample"] = full
    out["direct"] = direct(lambda p: out.setdefault("views_occ", {}).__setitem__(p, one(p)), PROMPTS)
    out["occupancy_psnr_db"] = [views_psnr(out["views_full"][p], out["views_occ"][p]) for p in PROMPTS]
    del out["views_full"], out["views_occ"]
    print(f"[text2nerf] direct p50 {out['direct']['p50_ms']:.0f} ms (every sample: "
          f"{full['p50_ms']:.0f} ms); occupancy vs every sample: min PSNR "
          f"{min(out['occupancy_psnr_db']):.1f} dB", flush=True)
    args = app_args("text2nerf", ckpt, [], replica_cpus=2, request_timeout_s=600,
                    jobs_dir="runs/bench/serve-jobs", max_body_bytes=65536,
                    occupancy_resolution=OCCUPANCY)
    base = deploy("text2nerf", args, port=port, name="text2nerf", route_prefix="/t2n")
    out["serve"] = {}
    for c, n in counts.items():
        bodies = [{"prompt": PROMPTS[i % len(PROMPTS)], "views": 4, "resolution": 128}
                  for i in range(n)]
        out["serve"][c] = asyncio.run(load(base + "/v1/generate", bodies, c))
        print(f"[text2nerf] concurrency {c}: p50 {out['serve'][c]['p50_ms']:.0f} ms", flush=True)
    serve.delete("text2nerf")
    return out


def bench_molscore(ckpt: str, port: int, smiles: list[str], concurrency: list[int],
                   per_level: int) -> dict:
    from ray import serve

    from priorlab.methods.molecules.scorer import MoleculeScorer
    from priorlab.platform.cli_serve import app_args, deploy

    scorer = MoleculeScorer.load(ckpt)
    out: dict = {"checkpoint": ckpt, "feature_set": scorer.cfg.feature_set}
    out["direct"] = direct(lambda s: scorer.score([s]), smiles[:per_level])
    print(f"[molscore {scorer.cfg.feature_set}] direct p50 {out['direct']['p50_ms']:.1f} ms", flush=True)
    for mode, batch in (("batched", 32), ("unbatched", 1)):
        args = app_args("molscore", ckpt, [], max_batch_size=batch, featurizer_cpus=1,
                        scorer_cpus=0.1, ingress_cpus=0.1, request_timeout_s=600)
        base = deploy("molscore", args, port=port, name="molscore", route_prefix="/mol")
        out[mode] = {}
        if mode == "batched":
            out["healthz"] = asyncio.run(ping(base + "/healthz"))
            print(f"[molscore] GET /healthz p50 {out['healthz']['p50_ms']:.1f} ms", flush=True)
        for c in concurrency:
            # each molecule once per measurement: a window of the list per level
            start = (concurrency.index(c) * per_level) % max(1, len(smiles) - per_level)
            bodies = [{"smiles": [s]} for s in smiles[start:start + per_level]]
            out[mode][c] = asyncio.run(load(base + "/v1/score", bodies, c))
            print(f"[molscore {scorer.cfg.feature_set} {mode}] concurrency {c}: "
                  f"p50 {out[mode][c]['p50_ms']:.1f} ms, {out[mode][c]['items_per_s']:.1f} mol/s",
                  flush=True)
        serve.delete("molscore")
    out["batched_over_unbatched_c32"] = (out["batched"][32]["items_per_s"]
                                         / out["unbatched"][32]["items_per_s"])
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hf-checkpoint", default=HF)
    p.add_argument("--scorer-checkpoint", action="append", default=None)
    p.add_argument("--molecules", type=int, default=200,
                   help="requests per molscore level (ECFP scorers)")
    p.add_argument("--midi-molecules", type=int, default=48,
                   help="requests per level for scorers with diffusion features (~8 mol/s here)")
    p.add_argument("--apps", default="text2nerf,molscore", help="a subset, for trying settings")
    p.add_argument("--port", type=int, default=8765)
    a = p.parse_args()
    from priorlab.data.molecules import load_moleculenet
    from priorlab.data.root import resolve_data_root
    from priorlab.platform import runtime

    runtime.start(num_cpus=os.cpu_count())
    from ray import serve

    serve.start(http_options={"host": "127.0.0.1", "port": a.port})
    smiles = list(dict.fromkeys(load_moleculenet("bace", resolve_data_root()).smiles))
    apps = a.apps.split(",")
    results = {}
    if "text2nerf" in apps:
        results["text2nerf"] = bench_text2nerf(a.hf_checkpoint, a.port, {1: 10, 8: 16, 32: 32})
    if "molscore" in apps:
        results["molscore"] = []
        for c in a.scorer_checkpoint or SCORERS:
            from priorlab.methods.checkpoint import read_meta

            midi = "midi" in read_meta(c)["config"]["feature_set"]
            results["molscore"].append(bench_molscore(c, a.port, smiles, [1, 8, 32],
                                                      a.midi_molecules if midi else a.molecules))
    serve.shutdown()
    if apps != ["text2nerf", "molscore"]:
        print(json.dumps(results, indent=1, default=float)[:4000])
        return 0
    rows = []
    t = results["text2nerf"]
    e = t["direct_every_sample"]
    rows.append({"app": "text2nerf 4x128^2", "mode": "direct, every sample", "c": 1,
                 "p50_ms": f"{e['p50_ms']:.0f}", "p99_ms": f"{e['p99_ms']:.0f}",
                 "rps": f"{e['throughput_rps']:.2f}"})
    rows.append({"app": "text2nerf 4x128^2", "mode": "direct", "c": 1,
                 "p50_ms": f"{t['direct']['p50_ms']:.0f}", "p99_ms": f"{t['direct']['p99_ms']:.0f}",
                 "rps": f"{t['direct']['throughput_rps']:.2f}"})
    for c, s in t["serve"].items():
        rows.append({"app": "text2nerf 4x128^2", "mode": "serve", "c": c, "p50_ms": f"{s['p50_ms']:.0f}",
                     "p99_ms": f"{s['p99_ms']:.0f}", "rps": f"{s['throughput_rps']:.2f}"})
    for m in results["molscore"]:
        name = f"molscore {m['feature_set']}"
        rows.append({"app": name, "mode": "direct", "c": 1, "p50_ms": f"{m['direct']['p50_ms']:.1f}",
                     "p99_ms": f"{m['direct']['p99_ms']:.1f}", "rps": f"{m['direct']['throughput_rps']:.1f}"})
        for mode in ("batched", "unbatched"):
            for c, s in m[mode].items():
                rows.append({"app": name, "mode": mode, "c": c, "p50_ms": f"{s['p50_ms']:.1f}",
                             "p99_ms": f"{s['p99_ms']:.1f}", "rps": f"{s['throughput_rps']:.1f}"})
    print(table(rows, ["app", "mode", "c", "p50_ms", "p99_ms", "rps"]))
    targets = {"text2nerf_p50_ms_c1": t["serve"][1]["p50_ms"],
               "text2nerf_under_2s": t["serve"][1]["p50_ms"] < 2000.0,
               "text2nerf_overhead_ms": t["serve"][1]["p50_ms"] - t["direct"]["p50_ms"]}
    for m in results["molscore"]:
        key = m["feature_set"]
        targets[f"molscore_{key}_overhead_ms"] = m["batched"][1]["p50_ms"] - m["direct"]["p50_ms"]
        targets[f"molscore_{key}_healthz_p50_ms"] = m["healthz"]["p50_ms"]
        targets[f"molscore_{key}_batched_over_unbatched_c32"] = m["batched_over_unbatched_c32"]
    for k, v in targets.items():
        print(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}")
    path = write_json("serve_load", {"results": results, "targets": targets,
                                     "notes": "client and server on the same machine"})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

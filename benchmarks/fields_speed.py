"""Issue 8, benchmark 1: hash-grid NeRF samples/s, forward and forward + backward.

Points uniform in the bounding cube go through `NeRFField` (hash grid + sinusoidal encoding +
the App. B.1 MLP; thesis Sec. 4.3.3) in batches of `--batch` samples; forward alone (no grad)
and forward + backward of a scalar loss, median of `--repeats` timed batches after a warm-up.
Two configs: the App. B.1 defaults (16 levels up to 2048, 2^19 entries per level) and the
reduced recipe of `fields_teacher.py`. On CUDA (`--device cuda`) it also times the
`torch.compile`d field; on this CPU compile is left out unless `--compile` is given.

    python benchmarks/fields_speed.py [--device cpu|cuda] [--batch 65536] [--compile]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_json  # noqa: E402

from priorlab.methods.fields.config import FieldConfig  # noqa: E402
from priorlab.methods.fields.field import NeRFField  # noqa: E402

CONFIGS = {
    "App. B.1 defaults": dict(),
    "teacher recipe (fields_teacher.py)": dict(n_levels=12, log2_hashmap_size=15, finest_resolution=256),
}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_field(field, batch: int, device: str, repeats: int, backward: bool) -> float:
    """Median seconds per batch."""
    g = torch.Generator(device="cpu").manual_seed(0)
    pts = (torch.rand(batch, 3, generator=g) * 2 - 1).to(device)
    times = []
    for i in range(repeats + 2):                       # two warm-up batches
        _sync(device)
        t = time.perf_counter()
        if backward:
            out = field(pts)
            loss = out["sigma"].mean() + out["rgb"].mean()
            loss.backward()
        else:
            with torch.no_grad():
                field(pts)
        _sync(device)
        if i >= 2:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=65536)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (default on CUDA)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    compile_too = args.compile or args.device == "cuda"
    rows = []
    for name, overrides in CONFIGS.items():
        cfg = FieldConfig(backend="torch", **overrides)
        field = NeRFField(cfg).to(args.device)
        variants = [("eager", field)]
        if compile_too:
            variants.append(("torch.compile", torch.compile(field)))
        for label, f in variants:
            fwd = time_field(f, args.batch, args.device, args.repeats, backward=False)
            both = time_field(f, args.batch, args.device, args.repeats, backward=True)
            rows.append({"config": name, "variant": label, "batch": args.batch,
                         "fwd_samples_per_s": round(args.batch / fwd),
                         "fwd_bwd_samples_per_s": round(args.batch / both),
                         "fwd_s": round(fwd, 4), "fwd_bwd_s": round(both, 4)})
            print(rows[-1], flush=True)
    print(table(rows, ["config", "variant", "fwd_samples_per_s", "fwd_bwd_samples_per_s"]))
    out = args.out or f"fields_speed_{args.device}"
    print(write_json(out, {"device": args.device, "threads": torch.get_num_threads(),
                           "rows": rows}))


if __name__ == "__main__":
    main()

"""Issue 8, benchmark 3: teacher-farm throughput with 1 vs 2 concurrent teachers, and the cost of
a killed-and-retried teacher.

Eight prompts of the scene family go through `platform.farm.run_farm` (thesis Ch. 4, Fig. 4.2
Stage 1: one teacher per prompt) three times on one local Ray of this machine's cores, each
into a fresh store:
1. one teacher at a time (`--cpus-per-teacher` = all cores, as many torch threads);
2. two at a time (half the cores each, one thread each);
3. as 2, but the first teacher task's worker is SIGKILLed half-way through its expected time;
   Ray re-runs it from scratch, so the extra wall time is what the retry cost.
Times are wall seconds from the first task submitted to the last teacher stored.

    python benchmarks/fields_farm.py [--steps 60] [--out fields_farm]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_json  # noqa: E402

from priorlab.data.scenes import parse_scene  # noqa: E402
from priorlab.platform import runtime  # noqa: E402
from priorlab.platform.farm import FARM_RECIPE, run_farm  # noqa: E402

PROMPTS = ["a red sphere", "an orange cube", "a yellow torus", "a pink chair", "a brown table",
           "a blue lamp", "a green vase", "a purple mug"]


def _killer(after_s: float, killed: list) -> None:
    """SIGKILL the first process running a teacher task, ``after_s`` seconds after it appears."""
    seen = None
    while not killed:
        for proc in psutil.Process().children(recursive=True):
            try:
                if "fit_teacher_task" not in " ".join(proc.cmdline()):
                    continue
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            seen = seen or time.time()
            if time.time() - seen >= after_s:
                os.kill(proc.pid, signal.SIGKILL)
                killed.append(proc.pid)
                return
            break
        time.sleep(0.05)


def farm(scenes, cpus: float, steps: int, kill_after: float | None = None) -> dict:
    with tempfile.TemporaryDirectory() as store:
        killed: list[int] = []
        if kill_after is not None:
            threading.Thread(target=_killer, args=(kill_after, killed), daemon=True).start()
        t = time.perf_counter()
        out = run_farm(scenes=scenes, objective="reconstruction", store_uri=store,
                       overrides={"steps": steps, "eval_every": steps}, cpus_per_teacher=cpus)
        wall = time.perf_counter() - t
    return {"wall_s": round(wall, 1), "done": len(out.done), "failed": len(out.failed),
            "killed": len(killed)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--out", default="fields_farm")
    args = ap.parse_args()
    cores = os.cpu_count() or 2
    rt = runtime.start(num_cpus=cores)
    scenes = [parse_scene(p) for p in PROMPTS]
    one = farm(scenes, float(cores), args.steps)
    two = farm(scenes, cores / 2, args.steps)
    per_teacher_two = two["wall_s"] * 2 / len(scenes)       # each of the 2 lanes runs 4 teachers
    kill = farm(scenes, cores / 2, args.steps, kill_after=0.5 * per_teacher_two)
    rows = [{"run": "1 at a time", **one}, {"run": "2 at a time", **two},
            {"run": "2 at a time, one teacher killed half-way", **kill}]
    print(table(rows, ["run", "wall_s", "done", "failed", "killed"]))
    ratio = one["wall_s"] / two["wall_s"]
    extra = kill["wall_s"] - two["wall_s"]
    print(f"throughput, 2 concurrent / 1: {ratio:.2f}x; a teacher killed half-way cost "
          f"{extra:.1f} s more wall time (its expected time per lane: {per_teacher_two:.1f} s)")
    print(write_json(args.out, {"prompts": PROMPTS, "steps": args.steps, "cores": cores,
                                "cluster_cpus": rt.cpus,
                                "recipe": {**FARM_RECIPE, "steps": args.steps, "eval_every": args.steps},
                                "runs": rows, "throughput_ratio_2_over_1": ratio,
                                "kill_extra_wall_s": extra,
                                "expected_teacher_wall_s_two_lanes": per_teacher_two}))


if __name__ == "__main__":
    main()

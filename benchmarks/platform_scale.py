"""Benchmark: the platform's own cost at scale, with no-op work so only the machinery is timed.

The numbers behind docs/platform_scale.md (an on-paper estimate for a 100-GPU cluster). Everything
runs in this one process, which is the Ray driver as `priorlab sweep` / `priorlab farm` are:

1. **sweep**: ``--trials`` (1,000) no-op trials in one ``tune.Tuner`` built the way
   ``platform.sweep.run_sweep`` builds it: the study's fixed budget, space and platform keys as the
   param space (study ``memory-label-injection``), each trial a Tune function trainable with
   ``{"CPU": 0.01}``, ``max_concurrent_trials``, ``_trial_dirname``, one Tune retry, the study's
   status table, and sweep.py's own ``_results_callback`` (the results store: history.parquet
   rewritten on every report, results.parquet on every trial end). Not used: the searcher and the
   scheduler (Tune's random variant generator instead; part 3 times the searcher). The no-op trial
   makes the study's reports per trial (6), each with the keys a memory trial reports (values
   random: they mean nothing) and a tiny checkpoint folder written to
   ``train_runs/train_<id>/checkpoint_<step>/`` (newest 2 kept, as Train's ``num_to_keep=2``), its
   path in ``checkpoint_path`` as Train's TuneReportCallback sends it; it imports neither torch nor
   priorlab (a real trial's imports are its own cost, not the machinery's). Snapshots when 100, 300
   and 1,000 trials have ended: wall and driver CPU time, driver RSS (psutil), the experiment
   folder's size; every callback call is timed. ``--sweep-cap-s`` stops Tune (``time_budget_s``) if
   the machine is too slow to finish: the JSON then says how many trials ended. Then the same sweep
   with ``reuse_actors=True`` (``--reuse-cap-s``): run_sweep leaves it off, so every trial starts a
   new actor process; the difference is that process start.
2. **store growth** (no Ray): one more results row / one more history report timed against a store
   already holding the rows of 100 ... 5,000 trials (the per-call cost the sweep's store pays).
3. **searcher** (no Ray): the study's own searcher (``make_searcher``: seeded Optuna TPE) driven
   directly, ``suggest`` then ``on_trial_complete`` per trial, as Tune calls it.
4. **farm**: ``--teachers`` (1,000) no-op teachers through
   ``platform.farm.run_farm(fit_fn=noop_teacher)``: each Ray task parses its scene and recipe as
   ``fit_teacher`` does, builds an *untrained* field of a tiny recipe and saves it to the store
   (the real store write, minus the fit); the driver rebuilds ``teachers.parquet`` after every
   teacher as it does for real ones (``TeacherStore.rebuild_index`` wrapped here to time it).
5. **store index**: on the farm's store, then on a store of ``--index-teachers`` (10,000) no-op
   teachers saved in this process: ``finished()`` (list), ``index()`` (read + check),
   ``rebuild_index()``, "add one" (save one teacher + rebuild: what the farm does per teacher).

The machine is shared (2 cores, other sessions' sweeps and tests): ``os.getloadavg()`` is recorded
around every part.

    source scripts/offline-env.sh
    python benchmarks/platform_scale.py [--trials 1000] [--teachers 1000] [--index-teachers 10000] \\
        [--concurrency 8] [--sweep-cap-s 300] [--reuse-cap-s 240] [--out platform_scale]

Order of the run: sweep, sweep with reused actors, farm and its store's index (Ray up), then store
growth, searcher and the in-process store (Ray shut down).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform as pyplatform
import random
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_json  # noqa: E402

os.environ.setdefault("TQDM_MININTERVAL", "10")   # the farm's progress bar: a line per 10 s in the log

STUDY_NAME = "memory-label-injection"
MILESTONES = (100, 300, 1000, 3000, 10000)
"""Items done at which the sweep and the farm take a snapshot (``--milestones``)."""
NOOP_RECIPE = dict(image_size=16, n_levels=2, log2_hashmap_size=8, finest_resolution=16,
                   n_samples=8, rays_per_step=64, n_train_views=2, n_test_views=1, steps=4,
                   eval_every=4, occupancy_resolution=0)
"""The no-op teachers' recipe: a tiny untrained field (what is saved), never fitted."""


# ---- measuring -------------------------------------------------------------------------------

class PeakRSS:
    """The driver process's peak resident set size while the block runs (psutil, every 0.1 s)."""

    def __init__(self, interval: float = 0.1):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self.proc = psutil.Process()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self):
        self.start_rss = self.proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.end_rss = self.proc.memory_info().rss
        self.peak = max(self.peak, self.end_rss)


class LiveOnly:
    """Measuring state of the driver. Tune pickles its callbacks into the experiment state (for a
    restore); a pickled copy carries none of this (threads and locks do not pickle)."""

    def __init__(self, **items):
        self.__dict__.update(items)

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        pass


def cpu_s() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system


def ray_head_rss_mib() -> dict[str, float]:
    """RSS of the local Ray's head processes (children of this driver), by name."""
    out: dict[str, float] = {}
    for proc in psutil.Process().children(recursive=True):
        try:
            name = proc.name()
            if name in ("gcs_server", "raylet"):
                out[name] = out.get(name, 0.0) + proc.memory_info().rss / 2**20
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def folder_bytes(root: Path) -> dict[str, int]:
    """Bytes (file sizes) under an experiment folder: total, and split by what wrote them."""
    parts = {"results.parquet": 0, "history.parquet": 0, "train_runs": 0, "trial_dirs": 0,
             "tune_state": 0}
    files = 0
    for path in root.rglob("*"):
        try:
            if not path.is_file():
                continue
            size = path.stat().st_size
        except FileNotFoundError:            # a temp file renamed while walking
            continue
        files += 1
        top = path.relative_to(root).parts[0]
        if top in ("results.parquet", "history.parquet"):
            parts[top] += size
        elif top == "train_runs":
            parts["train_runs"] += size
        elif top.startswith("trial_"):
            parts["trial_dirs"] += size
        else:
            parts["tune_state"] += size
    return {"total": sum(parts.values()), "files": files, **parts}


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def linear_fit(xs: list[float], ys: list[float]) -> dict:
    """Least-squares y = a + b x (per-call cost against rows or teachers already stored)."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    return {"a_s": my - b * mx, "b_s_per_unit": b, "n": len(xs)}


def window_mean(values: list[float], end: int, width: int) -> float | None:
    """Mean of values[end - width:end] (items in order), or None if there are not that many."""
    if end > len(values) or width < 1 or end < width:
        return None
    return statistics.fmean(values[end - width:end])


def study_parts():
    """The study, its fixed budget (parsed as run_sweep parses it) and its searched space."""
    from priorlab.methods.configuration import config_from_dict, config_to_dict
    from priorlab.platform.studies import get_study

    study = get_study(STUDY_NAME)
    fixed = study.resolve(dict(study.budget))
    parsed = config_to_dict(config_from_dict(study.config_cls, fixed))
    fixed = {k: parsed[k] for k in fixed}
    space = {k: v for k, v in study.space(fixed).items() if k not in fixed}
    return study, fixed, space


def trial_metrics(rng: random.Random, step: int, config: dict, folder: str) -> dict:
    """The keys a memory trial reports to Tune (random values: no training happened)."""
    now = time.time()
    metrics = {"train/loss": rng.random(), "train/episodes_per_s": rng.random(), "step": step,
               "train/start_step": 0, "eval/episodes": int(config["eval_episodes"]),
               "time/worker_start_unix": now, "time/loop_start_unix": now,
               "time/first_step_unix": now, "time/report_unix": now,
               "checkpoint_path": folder, "checkpoint_dir_name": Path(folder).name}
    for k in config["report_shots"]:
        metrics[f"eval/acc_{k}shot"] = rng.random()
        metrics[f"eval/acc_{k}shot_ci95"] = rng.random()
    return metrics


# ---- 1. the sweep ----------------------------------------------------------------------------

def noop_trial(config: dict) -> None:
    """A trial's reports and checkpoints without the training (see the module docstring)."""
    import ray.tune      # no priorlab or torch import: a trial's own imports are not the machinery

    trial_id = ray.tune.get_context().get_trial_id()
    run_dir = Path(config["storage_path"]) / f"train_{trial_id}"
    rng = random.Random(trial_id)
    every = int(config["eval_every"])
    kept: list[Path] = []
    for i in range(1, math.ceil(int(config["max_iters"]) / every) + 1):
        folder = run_dir / f"checkpoint_{i * every:09d}"   # trainables.common.checkpoint_dir_name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "meta.json").write_text(json.dumps({"method": "noop", "step": i * every}))
        kept.append(folder)
        if len(kept) > 2:
            shutil.rmtree(kept.pop(0))
        ray.tune.report(trial_metrics(rng, i * every, config, str(folder)))


def sweep_run(root: Path, n: int, concurrency: int, cap_s: float, reuse: bool = False) -> dict:
    from ray import tune

    from priorlab.platform.results import ResultsStore
    from priorlab.platform.sweep import TRIAL_RETRIES, _results_callback, _status_table, _trial_dirname
    from priorlab.trainables.common import RunResources

    study, fixed, space = study_parts()
    reports = study.reports_per_trial(fixed)
    experiment = root / f"noop-{n}{'-reuse' if reuse else ''}"
    experiment.mkdir(parents=True)
    res = RunResources(data_root=str(root / "data"), storage_path=str(experiment / "train_runs"))
    cb = _results_callback(experiment, study.progress_metric)
    rec = LiveOnly(history_s=[], results_s=[], ends=[], snapshots=[], clock={}, rss=PeakRSS())
    original_result, original_complete = cb.on_trial_result, cb.on_trial_complete

    def on_trial_result(*args, **kwargs):
        t0 = time.perf_counter()
        original_result(*args, **kwargs)
        rec.history_s.append(time.perf_counter() - t0)

    def on_trial_complete(*args, **kwargs):
        t0 = time.perf_counter()
        original_complete(*args, **kwargs)
        t1 = time.perf_counter()
        rec.results_s.append(t1 - t0)
        rec.ends.append(t1 - rec.clock["t0"])
        done = len(rec.ends)
        if done in MILESTONES:          # the snapshot's own time is recorded, not hidden
            rss = rec.rss.proc.memory_info().rss
            snap = {"trials": done, "wall_s": t1 - rec.clock["t0"],
                    "driver_cpu_s": cpu_s() - rec.clock["cpu0"], "driver_rss_mib": rss / 2**20,
                    "driver_rss_peak_mib": max(rec.rss.peak, rss) / 2**20,
                    "history_calls": len(rec.history_s), "history_s": sum(rec.history_s),
                    "results_s": sum(rec.results_s), "bytes": folder_bytes(experiment),
                    "ray_head_rss_mib": ray_head_rss_mib(), "loadavg": loadavg()}
            snap["snapshot_s"] = time.perf_counter() - t1
            rec.snapshots.append(snap)
            print(f"[platform_scale] sweep: {done} trials ended: {json.dumps(snap)}", flush=True)

    cb.on_trial_result, cb.on_trial_complete = on_trial_result, on_trial_complete
    tuner = tune.Tuner(
        tune.with_resources(noop_trial, {"CPU": 0.01}),
        param_space={**fixed, **space, **vars(res)},
        tune_config=tune.TuneConfig(num_samples=n, max_concurrent_trials=concurrency,
                                    trial_dirname_creator=_trial_dirname, time_budget_s=cap_s,
                                    reuse_actors=reuse),
        run_config=tune.RunConfig(name=experiment.name, storage_path=str(root), callbacks=[cb],
                                  failure_config=tune.FailureConfig(max_failures=TRIAL_RETRIES),
                                  progress_reporter=_status_table(study, space), verbose=1))
    load0 = loadavg()
    with rec.rss:
        rec.clock.update(t0=time.perf_counter(), cpu0=cpu_s())
        try:
            errors, tune_error = len(tuner.fit().errors), None
        except TypeError as err:
            # Tune's status table (sort_by_metric) fails on trials the time budget stopped before
            # they reported; every trial has ended by then and the store holds their rows
            errors, tune_error = None, f"{type(err).__name__}: {err}"
        wall = time.perf_counter() - rec.clock["t0"]
        cpu = cpu_s() - rec.clock["cpu0"]
    history_s, results_s, ends, rss = rec.history_s, rec.results_s, rec.ends, rec.rss
    store = ResultsStore(experiment)
    rows = store.read()
    sizes = folder_bytes(experiment)
    gaps = [b - a for a, b in zip([0.0] + ends[:-1], ends)]
    out = {
        "n_requested": n, "trials_ended": len(ends), "concurrency": concurrency, "cap_s": cap_s,
        "reuse_actors": reuse,
        "finished": len(ends) >= n, "wall_s": wall, "driver_cpu_s": cpu,
        "trials_per_s": len(ends) / wall, "errors": errors, "tune_error": tune_error,
        "rows_results": len(rows),
        "trials_with_all_reports": int((rows["iterations"] == reports).sum()) if len(rows) else 0,
        "statuses": rows["status"].value_counts().to_dict() if len(rows) else {},
        "rows_history": len(store.read_history()),
        "first_trial_end_s": ends[0] if ends else None,
        "history_calls": len(history_s), "history_total_s": sum(history_s),
        "results_calls": len(results_s), "results_total_s": sum(results_s),
        # per call against the rows already stored (history call i finds i rows)
        "history_fit": linear_fit(list(range(len(history_s))), history_s) if len(history_s) > 2 else None,
        "results_fit": linear_fit(list(range(len(results_s))), results_s) if len(results_s) > 2 else None,
        # windows of 50 trials ending at each milestone: time between trial ends, store calls
        "windows": {str(m): {"gap_between_trial_ends_s": window_mean(gaps, m, 50),
                             "results_call_s": window_mean(results_s, m, 50),
                             "history_call_s": window_mean(history_s, 6 * m, 300)}
                    for m in MILESTONES if m <= len(ends)},
        "snapshots": rec.snapshots,
        "driver_rss_start_mib": rss.start_rss / 2**20, "driver_rss_peak_mib": rss.peak / 2**20,
        "driver_rss_end_mib": rss.end_rss / 2**20, "ray_head_rss_mib_end": ray_head_rss_mib(),
        "experiment_bytes": sizes, "bytes_per_trial": sizes["total"] / max(1, len(ends)),
        "loadavg_start": load0, "loadavg_end": loadavg(),
    }
    shutil.rmtree(experiment, ignore_errors=True)
    return out


# ---- 2. store growth -------------------------------------------------------------------------

def store_growth(root: Path, points: list[int], repeats: int = 7) -> list[dict]:
    """Time one upsert (a trial ends) and one history append (a report) against a store already
    holding the rows of k trials (k results rows, reports x k history rows): min and median of
    ``repeats`` (on a loaded machine the min is the closest to the cost itself)."""
    import pandas as pd

    from priorlab.platform.results import ResultsStore, trial_row
    from priorlab.trainables.common import RunResources

    study, fixed, space = study_parts()
    reports = study.reports_per_trial({**fixed})
    every = int(fixed["eval_every"])
    rng = random.Random(0)
    base = {**fixed, **vars(RunResources(data_root="/data", storage_path="/runs/x/train_runs"))}

    def config() -> dict:
        return {**base, "label_injection": rng.choice(["first", "lstm"]), "lr": rng.random() / 50,
                "channels": rng.choice([8, 16])}

    def row(i: int, status: str, step: int) -> dict:
        metrics = trial_metrics(rng, step, fixed, f"/runs/x/train_runs/train_{i:05d}/checkpoint")
        return trial_row(f"t{i:05d}", status, config(), {**metrics, "training_iteration": step // every})

    out = []
    for k in points:
        store = ResultsStore(root / f"store-{k}")
        load0 = loadavg()
        # the rows are built as DataFrames at once (the sweep appends them one by one)
        store.upsert([row(i, "TERMINATED", reports * every) for i in range(k)])
        store.append_history([row(i, "RUNNING", j * every) for i in range(k)
                              for j in range(1, reports + 1)], key="step")
        upsert_s, append_s = [], []
        for r in range(repeats):
            t0 = time.perf_counter()
            store.append_history([row(k + r, "RUNNING", every)], key=study.progress_metric)
            t1 = time.perf_counter()
            store.upsert([row(k + r, "TERMINATED", reports * every)])
            upsert_s.append(time.perf_counter() - t1)
            append_s.append(t1 - t0)
        out.append({"trials": k, "history_rows": k * reports,
                    "history_append_s": statistics.median(append_s),
                    "results_upsert_s": statistics.median(upsert_s),
                    "history_append_min_s": min(append_s), "results_upsert_min_s": min(upsert_s),
                    "results_bytes": store.results_path.stat().st_size,
                    "history_bytes": store.history_path.stat().st_size,
                    "loadavg": load0})
        print(f"[platform_scale] store growth: {json.dumps(out[-1])}", flush=True)
        shutil.rmtree(store.dir, ignore_errors=True)
        if out[-1]["history_append_s"] > 20:
            break                                   # a larger store would take minutes per call
    return out


# ---- 3. the searcher -------------------------------------------------------------------------

def searcher_run(n: int) -> dict:
    study, fixed, space = study_parts()
    searcher = study.make_searcher(0, space)
    searcher.set_search_properties(None, None, space)     # what the Tuner calls
    rng = random.Random(0)
    per: list[float] = []
    load0 = loadavg()
    for i in range(n):
        t0 = time.perf_counter()
        searcher.suggest(f"t{i:05d}")
        searcher.on_trial_complete(f"t{i:05d}", {study.metric: rng.random(), "training_iteration": 1})
        per.append(time.perf_counter() - t0)
    return {"n": n, "total_s": sum(per), "space": sorted(space),
            "per_trial_s": {str(m): window_mean(per, m, 50) for m in MILESTONES if m <= n},
            "fit": linear_fit(list(range(n // 10, n)), per[n // 10:]),
            "loadavg_start": load0, "loadavg_end": loadavg()}


# ---- 4. the farm -----------------------------------------------------------------------------

def noop_teacher(slug: str, seed: int, objective: str, recipe: dict, store_uri: str, threads: int,
                 sd_model: str = "", sds_options: dict | None = None) -> dict:
    """``fit_teacher`` without the fit: the scene and recipe parsed as it does, an untrained field
    of the recipe saved to the store with the same meta keys (steps 0, no PSNR, no curve)."""
    import torch

    from priorlab.data.scenes import parse_scene
    from priorlab.methods.configuration import config_from_dict, config_to_dict
    from priorlab.methods.fields.field import NeRFField
    from priorlab.methods.fields.store import TeacherStore
    from priorlab.methods.fields.teacher import TeacherConfig

    torch.set_num_threads(max(1, threads))
    started = time.perf_counter()
    scene = parse_scene(slug, seed=seed)
    cfg = config_from_dict(TeacherConfig, {**recipe, "scene": scene.slug, "scene_seed": seed})
    field = NeRFField(cfg.field_config())
    meta = {"prompt": scene.prompt, "slug": scene.slug, "objective": objective, "scene_seed": seed,
            "teacher_config": config_to_dict(cfg), "field_config": config_to_dict(cfg.field_config()),
            "steps": 0, "seconds": time.perf_counter() - started, "psnr": None, "curve": []}
    TeacherStore(store_uri).save(scene.slug, field, meta)
    return {"slug": scene.slug, "psnr": float("nan"), "seconds": time.perf_counter() - started}


def all_scenes() -> list:
    """Every distinct scene the family's words make (plain, then two colours + an attribute)."""
    from priorlab.data.scenes import ATTRIBUTES, COLOURS, SHAPES, Scene, make_scene

    scenes = [Scene(s, c) for s in SHAPES for c in COLOURS]
    scenes += [make_scene(s, c, a, c2) for a in ATTRIBUTES for s in SHAPES for c in COLOURS
               for c2 in COLOURS if c2 != c]
    return scenes


def farm_run(root: Path, n: int, scenes: list) -> tuple[dict, str]:
    from priorlab.methods.fields.store import TeacherStore
    from priorlab.platform.farm import run_farm

    store = root / f"teachers-{n}"
    calls: list[tuple[float, int, float]] = []        # (seconds, teachers indexed, wall at end)
    snapshots: list[dict] = []
    clock: dict = {}
    rss = PeakRSS()
    original = TeacherStore.rebuild_index

    def timed(self):
        t0 = time.perf_counter()
        df = original(self)
        t1 = time.perf_counter()
        calls.append((t1 - t0, len(df), t1 - clock["t0"]))
        if len(calls) in MILESTONES:
            snap = {"teachers": len(calls), "wall_s": t1 - clock["t0"],
                    "driver_cpu_s": cpu_s() - clock["cpu0"],
                    "driver_rss_mib": rss.proc.memory_info().rss / 2**20,
                    "rebuild_index_s": sum(c[0] for c in calls), "loadavg": loadavg()}
            snapshots.append(snap)
            print(f"\n[platform_scale] farm: {len(calls)} teachers: {json.dumps(snap)}", flush=True)
        return df

    load0 = loadavg()
    TeacherStore.rebuild_index = timed      # the driver's calls only: tasks import their own class
    try:
        with rss:
            clock.update(t0=time.perf_counter(), cpu0=cpu_s())
            outcome = run_farm(scenes=scenes[:n], objective="reconstruction", store_uri=str(store),
                               overrides=NOOP_RECIPE, fit_fn=noop_teacher)
            wall = time.perf_counter() - clock["t0"]
            cpu = cpu_s() - clock["cpu0"]
    finally:
        TeacherStore.rebuild_index = original
    secs = [c[0] for c in calls]
    gaps = [b - a for a, b in zip([0.0] + [c[2] for c in calls[:-1]], [c[2] for c in calls])]
    size = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
    out = {"n": n, "wall_s": wall, "loop_s": outcome.seconds, "teachers_per_s": n / wall,
           "done": len(outcome.done), "failed": len(outcome.failed),
           "failed_examples": dict(list(outcome.failed.items())[:3]), "driver_cpu_s": cpu,
           "first_teacher_s": calls[0][2] if calls else None,
           "rebuild_index_calls": len(secs), "rebuild_index_total_s": sum(secs),
           "rebuild_index_fit": linear_fit([c[1] for c in calls], secs) if len(secs) > 2 else None,
           "windows": {str(m): {"gap_between_teachers_s": window_mean(gaps, m, 50),
                                "rebuild_index_s": window_mean(secs, m, 50)}
                       for m in MILESTONES if m <= len(calls)},
           "snapshots": snapshots,
           "driver_rss_start_mib": rss.start_rss / 2**20, "driver_rss_peak_mib": rss.peak / 2**20,
           "driver_rss_end_mib": rss.end_rss / 2**20, "store_bytes": size,
           "bytes_per_teacher": size / n, "loadavg_start": load0, "loadavg_end": loadavg()}
    return out, str(store)


# ---- 5. the store index ------------------------------------------------------------------------

def median_time(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def index_timings(store_uri: str, new_slugs: list[str], saver) -> dict:
    """finished / index / rebuild_index / add one (a save + a rebuild), median of 3 each."""
    from priorlab.methods.fields.store import TeacherStore

    store = TeacherStore(store_uri)
    store.rebuild_index()
    slugs = iter(new_slugs)
    return {"teachers": len(store.finished()), "finished_s": median_time(store.finished),
            "index_read_s": median_time(store.index),
            "rebuild_index_s": median_time(store.rebuild_index),
            "add_one_s": median_time(lambda: (saver(next(slugs)), store.rebuild_index())),
            "index_bytes": os.path.getsize(os.path.join(store_uri, "teachers.parquet")),
            "loadavg": loadavg()}


def in_process_store(root: Path, total: int) -> dict:
    """A store of ``total`` no-op teachers saved in this process (no Ray), with the index timings
    at each milestone size; slugs ``noop-00000`` ... (the store takes any folder-safe slug)."""
    from priorlab.methods.configuration import config_from_dict, config_to_dict
    from priorlab.methods.fields.field import NeRFField
    from priorlab.methods.fields.store import TeacherStore
    from priorlab.methods.fields.teacher import FARM_RECIPE, TeacherConfig

    cfg = config_from_dict(TeacherConfig, {**FARM_RECIPE, **NOOP_RECIPE, "scene": "red-sphere"})
    field = NeRFField(cfg.field_config())
    meta = {"prompt": "a red sphere", "objective": "reconstruction", "scene_seed": 0,
            "teacher_config": config_to_dict(cfg), "field_config": config_to_dict(cfg.field_config()),
            "steps": 0, "seconds": 0.0, "psnr": None, "curve": []}
    uri = str(root / f"teachers-inprocess-{total}")
    store = TeacherStore(uri)
    store.check_writable()

    def save(slug: str) -> None:
        store.save(slug, field, {**meta, "slug": slug})

    load0 = loadavg()
    save_s, at = [], []
    for i in range(total):
        t0 = time.perf_counter()
        save(f"noop-{i:05d}")
        save_s.append(time.perf_counter() - t0)
        if i + 1 in MILESTONES or i + 1 == total:
            at.append(index_timings(uri, [f"extra-{i + 1}-{j}" for j in range(5)], save))
            for extra in Path(uri).glob(f"extra-{i + 1}-*"):
                shutil.rmtree(extra)
            print(f"[platform_scale] in-process store: {json.dumps(at[-1])}", flush=True)
    size = sum(p.stat().st_size for p in Path(uri).rglob("*") if p.is_file())
    shutil.rmtree(uri, ignore_errors=True)
    return {"total": total, "save_median_s": statistics.median(save_s),
            "save_mean_s": statistics.fmean(save_s), "store_bytes": size,
            "bytes_per_teacher": size / total, "at": at,
            "loadavg_start": load0, "loadavg_end": loadavg()}


def farm_recipe_model_bytes() -> int:
    """Bytes of model.safetensors for a FARM_RECIPE teacher (untrained: same size as trained)."""
    from safetensors.torch import save as st_save

    from priorlab.methods.configuration import config_from_dict
    from priorlab.methods.fields.field import NeRFField
    from priorlab.methods.fields.store import field_parts
    from priorlab.methods.fields.teacher import FARM_RECIPE, TeacherConfig

    cfg = config_from_dict(TeacherConfig, {**FARM_RECIPE, "scene": "red-sphere"})
    state, _ = field_parts(NeRFField(cfg.field_config()))
    return len(st_save(state))


# ---- main ----------------------------------------------------------------------------------------

def main() -> None:
    global MILESTONES
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000, help="no-op trials in one sweep (0: skip)")
    ap.add_argument("--concurrency", type=int, default=8,
                    help="max_concurrent_trials (each trial actor takes 0.01 CPU)")
    ap.add_argument("--sweep-cap-s", type=float, default=300,
                    help="Tune's time_budget_s: the sweep stops here if not done")
    ap.add_argument("--reuse-cap-s", type=float, default=240,
                    help="the same sweep again with reuse_actors=True, stopped here (0: skip)")
    ap.add_argument("--store-points", type=int, nargs="*", default=[100, 300, 1000, 3000, 5000],
                    help="trials already stored, for the store-growth timings")
    ap.add_argument("--searcher-trials", type=int, default=1000)
    ap.add_argument("--teachers", type=int, default=1000, help="no-op teachers in one farm (0: skip)")
    ap.add_argument("--index-teachers", type=int, default=10000,
                    help="size of the in-process store for the index timings (0: skip)")
    ap.add_argument("--milestones", type=int, nargs="*", default=list(MILESTONES),
                    help="trials / teachers done at which to take a snapshot")
    ap.add_argument("--out", default="platform_scale", help="JSON name in benchmarks/")
    args = ap.parse_args()
    MILESTONES = tuple(args.milestones)

    import optuna
    import pandas
    import pyarrow
    import ray

    from priorlab.platform import runtime

    started = time.perf_counter()
    payload: dict = {
        "versions": {"python": pyplatform.python_version(), "ray": ray.__version__,
                     "optuna": optuna.__version__, "pandas": pandas.__version__,
                     "pyarrow": pyarrow.__version__, "psutil": psutil.__version__},
        "args": vars(args), "study": STUDY_NAME, "noop_recipe": NOOP_RECIPE,
        "loadavg_at_start": loadavg(), "memory_total_gib": psutil.virtual_memory().total / 2**30,
        "rss_method": "psutil.Process().memory_info().rss of the driver process, sampled every "
                      "0.1 s (peak per part) and at snapshots; resource.getrusage ru_maxrss at the "
                      "end for the whole run",
    }
    root = Path(tempfile.mkdtemp(prefix="priorlab-platform-scale-"))
    print(f"[platform_scale] scratch folder {root}; load {loadavg()}", flush=True)
    try:
        if args.trials or args.teachers:
            payload["ray_start_failures"] = []
            for _ in range(3):      # an overloaded machine can time the raylet's start out
                t0 = time.perf_counter()
                try:
                    rt = runtime.start()
                    break
                except Exception as err:  # noqa: BLE001 - recorded, retried, raised at the end
                    payload["ray_start_failures"].append(f"{type(err).__name__}: {err}"[:300])
                    print(f"[platform_scale] ray start failed, retrying: {err}", flush=True)
                    ray.shutdown()
            else:
                raise RuntimeError(f"Ray did not start: {payload['ray_start_failures']}")
            payload["ray_start_s"], payload["ray_cpus"] = time.perf_counter() - t0, rt.cpus
        if args.trials:
            payload["sweep"] = sweep_run(root, args.trials, args.concurrency, args.sweep_cap_s)
            print(f"[platform_scale] sweep: {json.dumps(payload['sweep'])}", flush=True)
            write_json(args.out, payload)                # partial results survive a stop
        if args.trials and args.reuse_cap_s:
            payload["sweep_reuse_actors"] = sweep_run(root, args.trials, args.concurrency,
                                                      args.reuse_cap_s, reuse=True)
            print(f"[platform_scale] sweep, reuse_actors: {json.dumps(payload['sweep_reuse_actors'])}",
                  flush=True)
            write_json(args.out, payload)
        if args.teachers:
            scenes = all_scenes()
            payload["distinct_scenes"] = len(scenes)
            payload["farm"], uri = farm_run(root, args.teachers, scenes)
            print(f"[platform_scale] farm: {json.dumps(payload['farm'])}", flush=True)
            recipe = {**_farm_recipe(), **NOOP_RECIPE}
            payload["index_farm_store"] = index_timings(
                uri, [s.slug for s in scenes[args.teachers:args.teachers + 5]],
                lambda slug: noop_teacher(slug, 0, "reconstruction", recipe, uri, 1))
            print(f"[platform_scale] index of the farm's store: "
                  f"{json.dumps(payload['index_farm_store'])}", flush=True)
            shutil.rmtree(uri, ignore_errors=True)
            write_json(args.out, payload)
        if args.trials or args.teachers:
            ray.shutdown()                               # the rest runs without Ray
        if args.store_points:
            payload["store_growth"] = store_growth(root, args.store_points)
            write_json(args.out, payload)
        if args.searcher_trials:
            payload["searcher"] = searcher_run(args.searcher_trials)
            print(f"[platform_scale] searcher: {json.dumps(payload['searcher'])}", flush=True)
            write_json(args.out, payload)
        if args.index_teachers:
            payload["index_in_process"] = in_process_store(root, args.index_teachers)
            write_json(args.out, payload)
        payload["farm_recipe_model_bytes"] = farm_recipe_model_bytes()
    finally:
        payload["loadavg_at_end"] = loadavg()
        payload["driver_ru_maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        payload["total_wall_s"] = time.perf_counter() - started
        path = write_json(args.out, payload)
        shutil.rmtree(root, ignore_errors=True)
        if ray.is_initialized():
            ray.shutdown()
    summary(payload)
    print("wrote", path)


def _farm_recipe() -> dict:
    from priorlab.methods.fields.teacher import FARM_RECIPE

    return dict(FARM_RECIPE)


def _f(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def summary(p: dict) -> None:
    f = p.get("farm")
    for key in ("sweep", "sweep_reuse_actors"):
        s = p.get(key)
        if not s:
            continue
        print(f"\n{key}: {s['trials_ended']} of {s['n_requested']} no-op trials ended in "
              f"{s['wall_s']:.1f} s ({s['trials_per_s']:.2f}/s, {s['concurrency']} at a time), "
              f"driver CPU {s['driver_cpu_s']:.1f} s, store calls "
              f"{s['history_total_s'] + s['results_total_s']:.1f} s, RSS peak "
              f"{s['driver_rss_peak_mib']:.0f} MiB, folder {s['bytes_per_trial']:.0f} B/trial, "
              f"errors {s['errors']}, load {s['loadavg_start'][0]} -> {s['loadavg_end'][0]}")
        rows = [{"trials ended": x["trials"], "wall_s": _f(x["wall_s"], 1),
                 "driver_cpu_s": _f(x["driver_cpu_s"], 1), "store_s": _f(x["history_s"] + x["results_s"], 1),
                 "rss_MiB": _f(x["driver_rss_mib"], 0), "folder_bytes": x["bytes"]["total"],
                 "gap_s (last 50)": _f(s["windows"][str(x["trials"])]["gap_between_trial_ends_s"]),
                 "upsert_s (last 50)": _f(s["windows"][str(x["trials"])]["results_call_s"]),
                 "append_s (last 300)": _f(s["windows"][str(x["trials"])]["history_call_s"]),
                 "load": x["loadavg"][0]} for x in s["snapshots"]]
        if rows:
            print(table(rows, list(rows[0])))
    if p.get("store_growth"):
        print("\nstore growth (one call against k trials already stored):")
        cols = ["trials", "history_rows", "append_min_s", "append_median_s", "upsert_min_s",
                "upsert_median_s", "history_bytes", "load"]
        print(table([{"trials": x["trials"], "history_rows": x["history_rows"],
                      "append_min_s": _f(x["history_append_min_s"]),
                      "append_median_s": _f(x["history_append_s"]),
                      "upsert_min_s": _f(x["results_upsert_min_s"]),
                      "upsert_median_s": _f(x["results_upsert_s"]),
                      "history_bytes": x["history_bytes"], "load": x["loadavg"][0]}
                     for x in p["store_growth"]], cols))
    if "searcher" in p:
        print("\nsearcher s per trial (suggest + complete), mean of the 50 trials before n:",
              {k: _f(v, 4) for k, v in p["searcher"]["per_trial_s"].items()})
    if f:
        print(f"\nfarm: {f['done']} of {f['n']} no-op teachers in {f['wall_s']:.1f} s "
              f"({f['teachers_per_s']:.2f}/s), failed {f['failed']}, index rebuilds "
              f"{f['rebuild_index_total_s']:.1f} s, driver CPU {f['driver_cpu_s']:.1f} s, RSS peak "
              f"{f['driver_rss_peak_mib']:.0f} MiB, load {f['loadavg_start'][0]} -> {f['loadavg_end'][0]}")
        rows = [{"teachers": x["teachers"], "wall_s": _f(x["wall_s"], 1),
                 "driver_cpu_s": _f(x["driver_cpu_s"], 1), "rebuild_total_s": _f(x["rebuild_index_s"], 1),
                 "gap_s (last 50)": _f(f["windows"][str(x["teachers"])]["gap_between_teachers_s"]),
                 "rebuild_s (last 50)": _f(f["windows"][str(x["teachers"])]["rebuild_index_s"]),
                 "load": x["loadavg"][0]} for x in f["snapshots"]]
        if rows:
            print(table(rows, list(rows[0])))
    idx = ([p["index_farm_store"]] if "index_farm_store" in p else []) + \
        list(p.get("index_in_process", {}).get("at", []))
    if idx:
        print("\nteacher store index (median of 3, s):")
        print(table([{k: (_f(v, 4) if isinstance(v, float) else v) for k, v in r.items()
                      if k != "loadavg"} | {"load": r["loadavg"][0]} for r in idx],
                    ["teachers", "finished_s", "index_read_s", "rebuild_index_s", "add_one_s",
                     "index_bytes", "load"]))


if __name__ == "__main__":
    main()

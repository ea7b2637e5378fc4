"""`priorlab farm teachers`: one teacher NeRF per prompt, fitted on Ray, landing in a teacher store.

Thesis Ch. 4, Fig. 4.2 Stage 1: HyperFields distils many per-prompt teacher NeRFs; this farm
makes them. Each teacher is one Ray **task** (``fit_teacher_task``) with declared resources
(``num_cpus``, and ``num_gpus=1`` with ``--gpu`` on a cluster) and ``max_retries``:

* teachers are independent pure functions of (scene, recipe), so a task per teacher is the
  whole job: no searcher, scheduler or trial state is needed (a Tune run over prompts would add
  them and one more actor per teacher);
* Ray queues the tasks by their resources, so on a cluster the autoscaler sees the queue of
  pending GPU tasks and scales the GPU worker type of ``cluster.yaml`` up, and back down when the
  queue drains;
* a task whose worker dies (killed, OOM, node lost) is re-run by Ray up to ``max_retries``
  times; it loses only its own unfinished teacher. An exception inside the fit is not retried
  (the same inputs would fail again): it is reported with its reason.

Each finished teacher is written by its task to ``<store>/<slug>/`` (``methods.fields.store``:
model.safetensors, then meta.json, each through a temporary file and a move); the driver
rebuilds ``teachers.parquet`` from the folders after every teacher, so the index always agrees
with them. Re-running skips teachers the store already holds.

    priorlab farm teachers --scenes chair torus --objective reconstruction --steps 400 \\
        --store runs/teachers [key=value ...]   # TeacherConfig overrides (the recipe)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from priorlab.data.scenes import Scene, filter_scenes, parse_scene, scene_family
from priorlab.methods.configuration import config_from_dict, config_to_dict
from priorlab.methods.fields.teacher import FARM_RECIPE, TeacherConfig  # noqa: F401 - re-exported
from priorlab.platform import runtime

OBJECTIVES = ("reconstruction", "sds")


class FarmError(ValueError):
    """Bad farm input (no scenes, an empty prompt file, an objective that is not built)."""


@dataclass
class FarmOutcome:
    store: str
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    """slug -> reason"""
    seconds: float = 0.0


def select_scenes(filter_words: list[str] | None, prompts_file: str | None, seed: int = 0,
                  attributes: bool = False) -> list[Scene]:
    """The scenes to fit: the family filtered by words, or one per line of a prompt file."""
    if prompts_file is not None:
        path = Path(prompts_file)
        if not path.is_file():
            raise FarmError(f"--prompts {prompts_file}: no such file")
        lines = [ln.strip() for ln in path.read_text().splitlines()]
        prompts = [ln for ln in lines if ln and not ln.startswith("#")]
        if not prompts:
            raise FarmError(f"--prompts {prompts_file} has no prompts (one per line; # starts a comment)")
        scenes = [parse_scene(p, seed=seed) for p in prompts]   # unknown words: SceneError
    else:
        scenes = scene_family(seed=seed, attributes=attributes)
        if filter_words:
            scenes = filter_scenes(scenes, filter_words)
    if not scenes:
        raise FarmError(f"no scene matches {filter_words!r} (see `priorlab scenes list`)")
    unique = {s.slug: s for s in scenes}
    return list(unique.values())


def fit_teacher(slug: str, seed: int, objective: str, recipe: dict[str, Any],
                store_uri: str, threads: int, sd_model: str = "",
                sds_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit one teacher and write it to the store (the body of a farm task; no Ray inside).

    ``reconstruction`` fits the scene's exact renders; ``sds`` distils the scene's prompt from the
    local Stable Diffusion at ``sd_model`` (held-out PSNR against the scene's renders);
    ``sds_options``: other ``SDSConfig`` fields (e.g. ``render_size``)."""
    import torch

    from priorlab.methods.fields.store import TeacherStore
    from priorlab.methods.fields.teacher import fit_reconstruction, fit_sds

    torch.set_num_threads(max(1, threads))
    scene = parse_scene(slug, seed=seed)
    cfg = config_from_dict(TeacherConfig, {**recipe, "scene": scene.slug, "scene_seed": seed})
    started = time.perf_counter()
    if objective == "sds":
        from priorlab.methods.fields.sds import SDSConfig, StableDiffusionGuidance

        guidance = StableDiffusionGuidance(SDSConfig(model_path=sd_model, **(sds_options or {})))
        result = fit_sds(scene, cfg, guidance)
    else:
        result = fit_reconstruction(scene, cfg)
    seconds = time.perf_counter() - started
    meta = {"prompt": scene.prompt, "slug": scene.slug, "objective": objective,
            "scene_seed": seed, "teacher_config": config_to_dict(cfg),
            "field_config": config_to_dict(cfg.field_config()),
            "steps": int(result.metrics["step"]),       # run, not the cap (stop_at_psnr stops early)
            "seconds": seconds, "psnr": result.metrics["eval/psnr"], "curve": result.curve}
    TeacherStore(store_uri).save(scene.slug, result.field, meta)
    return {"slug": scene.slug, "psnr": result.metrics["eval/psnr"], "seconds": seconds}


def run_farm(*, scenes: list[Scene], objective: str, store_uri: str, overrides: dict[str, Any],
             steps: int | None = None, address: str | None = None, cpus_per_teacher: float = 1.0,
             use_gpu: bool = False, max_retries: int = 2, seed: int = 0,
             verbose: bool = False, sd_model: str = "",
             fit_fn: Callable[..., dict[str, Any]] = fit_teacher) -> FarmOutcome:
    """Fit every scene's teacher that the store does not hold yet; see the module docstring.

    ``fit_fn``: the body of each task, called as :func:`fit_teacher` is and returning the same
    dict (benchmarks/platform_scale.py passes a no-op fit to time the farm's own machinery)."""
    from priorlab.methods.fields.store import TeacherStore

    if objective not in OBJECTIVES:
        raise FarmError(f"--objective {objective!r}: choose one of {list(OBJECTIVES)}")
    if objective == "sds":
        from priorlab.methods.fields.sds import check_model_path

        check_model_path(sd_model)     # no weights: a ConfigError that says how to provide them
    recipe = {**FARM_RECIPE, **overrides}
    if steps is not None:
        recipe["steps"] = steps
    # unknown keys and bad values fail here (config_from_dict validates)
    recipe = config_to_dict(config_from_dict(TeacherConfig, recipe))
    store = TeacherStore(store_uri)
    store.check_writable()                     # an unwritable store fails before any work
    outcome = FarmOutcome(store=store_uri)
    finished = set(store.finished())
    todo = [s for s in scenes if s.slug not in finished]
    outcome.skipped = [s.slug for s in scenes if s.slug in finished]

    if not todo:
        store.rebuild_index()
        print(f"[priorlab] farm: all {len(scenes)} teacher(s) are already in {store_uri}", flush=True)
        return outcome
    rt = runtime.start(address, verbose=verbose)
    import ray
    from tqdm import tqdm

    threads = max(1, int(cpus_per_teacher))
    task = ray.remote(fit_fn).options(
        name="fit_teacher_task", num_cpus=cpus_per_teacher, num_gpus=1 if use_gpu else 0,
        max_retries=max_retries, retry_exceptions=False)
    print(f"[priorlab] farm: {len(scenes)} teacher(s), {len(outcome.skipped)} already in "
          f"{store_uri}, {len(todo)} to fit ({objective}, {recipe['steps']} steps, "
          f"{cpus_per_teacher:g} CPU{' + 1 GPU' if use_gpu else ''} each, "
          f"{rt.cpus:g} CPUs in the cluster)", flush=True)
    started = time.perf_counter()
    pending = {task.remote(s.slug, seed, objective, recipe, store_uri, threads, sd_model): s.slug
               for s in todo}
    with tqdm(total=len(todo), desc="teachers", unit="teacher", dynamic_ncols=True) as bar:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            ref = ready[0]
            slug = pending.pop(ref)
            try:
                info = ray.get(ref)
                outcome.done.append(slug)
                bar.set_postfix_str(f"{slug}: {info['psnr']:.1f} dB")
            except Exception as err:  # noqa: BLE001 - every failure is reported, none stops the farm
                outcome.failed[slug] = _reason(err)
            store.rebuild_index()          # after every teacher: the index never lags the folders
            bar.update(1)
    outcome.seconds = time.perf_counter() - started
    return outcome


def _reason(err: Exception) -> str:
    """One line saying why a teacher failed (the cause of a RayTaskError, or the Ray error)."""
    cause = getattr(err, "cause", None)
    if cause is not None:
        return f"{type(cause).__name__}: {cause}".splitlines()[0]
    return f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"


def summary(outcome: FarmOutcome) -> str:
    lines = [f"done {len(outcome.done)}, skipped {len(outcome.skipped)} (already in the store), "
             f"failed {len(outcome.failed)} in {outcome.seconds:.0f} s; store {outcome.store}"]
    for slug, reason in sorted(outcome.failed.items()):
        lines.append(f"  failed {slug}: {reason}")
    return "\n".join(lines)

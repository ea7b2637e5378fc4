"""``run_farm(fit_fn=...)``: the farm's task body can be swapped (benchmarks/platform_scale.py swaps
in a no-op save to time the farm's own machinery); the driver loop and the store index are the same."""

from __future__ import annotations

import inspect
import sys

import pandas as pd
import pytest

from priorlab.platform.farm import fit_teacher, run_farm, select_scenes

TINY = dict(image_size=16, n_levels=2, log2_hashmap_size=8, finest_resolution=16, n_samples=8,
            rays_per_step=64, n_train_views=2, n_test_views=1, steps=4, eval_every=4)


def noop_fit(slug, seed, objective, recipe, store_uri, threads, sd_model="", sds_options=None):
    """Saves an untrained field of the recipe under the scene's slug; fits nothing (steps 0)."""
    from priorlab.data.scenes import parse_scene
    from priorlab.methods.configuration import config_from_dict
    from priorlab.methods.fields.field import NeRFField
    from priorlab.methods.fields.store import TeacherStore
    from priorlab.methods.fields.teacher import TeacherConfig

    scene = parse_scene(slug, seed=seed)
    cfg = config_from_dict(TeacherConfig, {**recipe, "scene": scene.slug, "scene_seed": seed})
    TeacherStore(store_uri).save(scene.slug, NeRFField(cfg.field_config()), {
        "prompt": scene.prompt, "objective": objective, "teacher_config": cfg, "steps": 0,
        "seconds": 0.0, "psnr": None})
    return {"slug": scene.slug, "psnr": float("nan"), "seconds": 0.0}


def test_the_default_task_body_is_fit_teacher():
    assert inspect.signature(run_farm).parameters["fit_fn"].default is fit_teacher


@pytest.mark.integration
def test_a_farm_runs_the_injected_task_body(ray_session, tmp_path):
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # ship this test's function
    store = tmp_path / "teachers"
    scenes = select_scenes(["torus"], None)[:3]
    outcome = run_farm(scenes=scenes, objective="reconstruction", store_uri=str(store),
                       overrides=TINY, fit_fn=noop_fit)
    assert sorted(outcome.done) == sorted(s.slug for s in scenes) and not outcome.failed
    index = pd.read_parquet(store / "teachers.parquet")
    assert sorted(index["slug"]) == sorted(outcome.done)
    assert (index["steps"] == 0).all() and index["psnr"].isna().all()   # noop_fit ran, not a fit

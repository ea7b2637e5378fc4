"""The teacher farm: scene selection and bad input, then (integration) a farm on the local Ray:
idempotent re-runs, a killed teacher retried, the store index consistent with its folders."""

from __future__ import annotations

import os
import signal
import threading
import time

import pandas as pd
import psutil
import pytest

from priorlab.data.sdf import SceneError
from priorlab.platform.farm import FarmError, run_farm, select_scenes

TINY = dict(image_size=16, n_levels=2, log2_hashmap_size=8, finest_resolution=16, n_samples=8,
            rays_per_step=64, n_train_views=2, n_test_views=1, steps=4, eval_every=4)


def test_select_scenes_by_words_or_prompt_file(tmp_path):
    assert [s.slug for s in select_scenes(["torus"], None)][:2] == ["red-torus", "orange-torus"]
    prompts = tmp_path / "p.txt"
    prompts.write_text("# two teachers\na red torus\n\nan orange cube\na red torus\n")
    assert [s.slug for s in select_scenes(None, str(prompts))] == ["red-torus", "orange-cube"]


def test_bad_farm_input_names_the_problem(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    with pytest.raises(FarmError, match="has no prompts"):
        select_scenes(None, str(empty))
    with pytest.raises(FarmError, match="no such file"):
        select_scenes(None, str(tmp_path / "missing.txt"))
    bad = tmp_path / "bad.txt"
    bad.write_text("a red sofa\n")
    with pytest.raises(SceneError, match="sofa"):
        select_scenes(None, str(bad))
    from priorlab.methods.configuration import ConfigError

    with pytest.raises(ConfigError, match="model_path"):       # sds without local weights
        run_farm(scenes=select_scenes(["torus"], None)[:1], objective="sds",
                 store_uri=str(tmp_path / "s"), overrides={})
    assert not (tmp_path / "s").exists()


def test_unwritable_store_fails_before_any_work(tmp_path, capsys):
    from priorlab.platform.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = main(["farm", "teachers", "--scenes", "red", "torus", "--store", str(blocker / "store"),
                 *(f"{k}={v}" for k, v in TINY.items())])
    assert code == 2 and str(blocker / "store") in capsys.readouterr().err
    assert blocker.read_text() == "not a folder"


def _kill_first_teacher(killed: list, timeout: float = 120):
    """Background: SIGKILL the first worker process running a teacher task, once."""
    deadline = time.time() + timeout
    while time.time() < deadline and not killed:
        for proc in psutil.Process().children(recursive=True):
            try:
                cmd = " ".join(proc.cmdline())
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if "fit_teacher_task" in cmd:
                time.sleep(0.5)                       # let it get going
                os.kill(proc.pid, signal.SIGKILL)
                killed.append(proc.pid)
                return
        time.sleep(0.05)


@pytest.mark.integration
def test_a_teacher_that_stops_early_records_the_steps_it_ran(tmp_path):
    from priorlab.methods.fields.store import TeacherStore
    from priorlab.platform.farm import fit_teacher

    recipe = dict(TINY, steps=8, eval_every=2, stop_at_psnr=1.0)    # any fit passes 1 dB at once
    fit_teacher("red-sphere", 0, "reconstruction", recipe, str(tmp_path), threads=1)
    meta = TeacherStore(str(tmp_path)).read_meta("red-sphere")
    assert meta["steps"] == 2 and meta["teacher_config"]["steps"] == 8
    assert [row["step"] for row in meta["curve"]] == [2.0]


def test_farm_fits_skips_and_retries(ray_session, tmp_path):
    from priorlab.methods.fields.store import TeacherStore

    store = tmp_path / "teachers"
    scenes = select_scenes(None, None)[:2]                  # red-sphere, orange-sphere
    killed: list[int] = []
    watcher = threading.Thread(target=_kill_first_teacher, args=(killed,), daemon=True)
    watcher.start()
    first = run_farm(scenes=scenes, objective="reconstruction", store_uri=str(store),
                     overrides=dict(TINY, steps=150, eval_every=150))
    watcher.join(timeout=5)
    assert killed, "no teacher task was found to kill"
    assert sorted(first.done) == sorted(s.slug for s in scenes) and not first.failed
    index = pd.read_parquet(store / "teachers.parquet")
    assert sorted(index["slug"]) == sorted(TeacherStore(str(store)).finished())
    assert len(index) == 2 and index["psnr"].notna().all()

    # a re-run fits nothing and touches nothing; a new scene is added beside the old ones
    stamps = {p: p.stat().st_mtime_ns for p in store.rglob("model.safetensors")}
    more = select_scenes(None, None)[:3]
    again = run_farm(scenes=more, objective="reconstruction", store_uri=str(store),
                     overrides=TINY)
    assert sorted(again.skipped) == sorted(first.done) and again.done == [more[2].slug]
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    assert len(pd.read_parquet(store / "teachers.parquet")) == 3


@pytest.mark.integration
def test_render_writes_a_contact_sheet_outside_the_store(ray_session, tmp_path, capsys, monkeypatch):
    from priorlab.platform.cli import main

    store = tmp_path / "teachers"
    run_farm(scenes=select_scenes(["red"], None)[:1], objective="reconstruction",
             store_uri=str(store), overrides=TINY)
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    monkeypatch.chdir(tmp_path)
    assert main(["render", str(store / "red-sphere"), "--views", "3", "--size", "16"]) == 0
    out = capsys.readouterr().out
    assert "psnr_mean" in out and (tmp_path / "runs/renders/red-sphere/contact_sheet.png").is_file()
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before


def test_render_of_a_damaged_teacher_names_the_file(tmp_path, capsys):
    from priorlab.platform.cli import main

    (tmp_path / "store" / "red-sphere").mkdir(parents=True)
    (tmp_path / "store" / "red-sphere" / "meta.json").write_text("{not json")
    assert main(["render", str(tmp_path / "store" / "red-sphere")]) == 2
    assert "meta.json" in capsys.readouterr().err

"""The teacher store: round trips, an index that is the folders' view, damage named, isolation."""

import json
import os
import pickle

import pytest
import torch

from priorlab.methods.fields.config import FieldConfig
from priorlab.methods.fields.field import NeRFField
from priorlab.methods.fields.store import INDEX, META, MODEL, StoreError, TeacherStore
from priorlab.methods.fields.teacher import TeacherConfig

TINY = dict(n_levels=2, log2_hashmap_size=8, finest_resolution=16, hidden=16, n_samples=8,
            backend="torch")


def tiny_field(seed: int = 0) -> NeRFField:
    torch.manual_seed(seed)
    return NeRFField(FieldConfig(**TINY))


def meta_for(slug: str, psnr=25.0) -> dict:
    return {"prompt": f"a {slug.replace('-', ' ')}", "objective": "reconstruction",
            "teacher_config": TeacherConfig(steps=10), "steps": 10, "seconds": 1.5, "psnr": psnr}


def snapshot(folder) -> dict:
    """Every file under ``folder``: relative path -> (bytes, mtime_ns)."""
    out = {}
    for dirpath, _, files in os.walk(folder):
        for name in files:
            p = os.path.join(dirpath, name)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, folder)] = (fh.read(), os.stat(p).st_mtime_ns)
    return out


def test_save_then_load_gives_the_same_field(tmp_path):
    store = TeacherStore(tmp_path / "store")
    field = tiny_field()
    path = store.save("red-torus", field, meta_for("red-torus"))
    assert path == str(tmp_path / "store" / "red-torus")
    assert store.is_finished("red-torus") and store.finished() == ["red-torus"]
    loaded, meta = store.load("red-torus")
    points = torch.rand(200, 3) * 2 - 1
    a, b = field(points), loaded(points)
    assert torch.equal(a["sigma"], b["sigma"]) and torch.equal(a["rgb"], b["rgb"])
    assert meta["slug"] == "red-torus" and meta["psnr"] == 25.0 and meta["steps"] == 10
    assert meta["teacher_config"]["steps"] == 10
    assert FieldConfig(**meta["field_config"]) == field.cfg
    assert meta["finished"].endswith("+00:00")
    assert not loaded.training


def test_index_is_the_finished_folders_and_ignores_leftovers(tmp_path):
    store = TeacherStore(str(tmp_path))
    for i, slug in enumerate(["red-torus", "blue-cube", "green-sphere"]):
        store.save(slug, tiny_field(i), meta_for(slug, psnr=None if i == 2 else 20.0 + i))
    # a teacher killed mid-save: weights and a temp file, no meta.json
    (tmp_path / "pink-cone").mkdir()
    (tmp_path / "pink-cone" / MODEL).write_bytes(b"half")
    (tmp_path / "pink-cone" / f".{META}.abc.tmp").write_text("{")
    (tmp_path / "red-torus" / f".{MODEL}.dead.tmp").write_bytes(b"partial")
    df = store.rebuild_index()
    assert (tmp_path / INDEX).is_file()
    assert sorted(df["slug"]) == store.finished() == ["blue-cube", "green-sphere", "red-torus"]
    row = df.set_index("slug").loc["blue-cube"]
    assert row["prompt"] == "a blue cube" and row["steps"] == 10 and row["psnr"] == 21.0
    assert row["path"] == str(tmp_path / "blue-cube")
    assert df.set_index("slug")["psnr"].isna()["green-sphere"]
    assert not store.is_finished("pink-cone")
    with pytest.raises(StoreError, match="unfinished"):
        store.load("pink-cone")
    # the next save of the unfinished slug finishes it; index() notices without being told
    store.save("pink-cone", tiny_field(9), meta_for("pink-cone"))
    assert sorted(store.index()["slug"]) == store.finished() == [
        "blue-cube", "green-sphere", "pink-cone", "red-torus"]
    store.load("pink-cone")
    # a lost index is rebuilt
    (tmp_path / INDEX).unlink()
    assert len(store.index()) == 4 and (tmp_path / INDEX).is_file()


def test_an_empty_store_has_an_empty_index(tmp_path):
    store = TeacherStore(tmp_path / "nothing-yet")
    assert store.finished() == []
    df = store.index()
    assert len(df) == 0 and list(df.columns)[:3] == ["slug", "prompt", "objective"]


def test_truncated_weights_are_named_and_other_teachers_still_load(tmp_path):
    store = TeacherStore(tmp_path)
    store.save("red-torus", tiny_field(0), meta_for("red-torus"))
    store.save("blue-cube", tiny_field(1), meta_for("blue-cube"))
    model = tmp_path / "red-torus" / MODEL
    model.write_bytes(model.read_bytes()[:100])
    with pytest.raises(StoreError) as err:
        store.load("red-torus")
    assert str(model) in str(err.value) and "damaged" in str(err.value)
    store.load("blue-cube")
    assert store.finished() == ["blue-cube", "red-torus"]  # still finished: its meta.json is there


def test_weights_swapped_under_meta_are_detected(tmp_path):
    store = TeacherStore(tmp_path)
    store.save("red-torus", tiny_field(0), meta_for("red-torus"))
    store.save("blue-cube", tiny_field(1), meta_for("blue-cube"))
    (tmp_path / "red-torus" / MODEL).write_bytes((tmp_path / "blue-cube" / MODEL).read_bytes())
    with pytest.raises(StoreError, match="sha256"):
        store.load("red-torus")


def test_weights_that_do_not_fit_the_config_are_named(tmp_path):
    store = TeacherStore(tmp_path)
    store.save("red-torus", tiny_field(0), meta_for("red-torus"))
    meta_path = tmp_path / "red-torus" / META
    meta = json.loads(meta_path.read_text())
    meta["field_config"]["hidden"] = 32
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(StoreError) as err:
        store.load("red-torus")
    assert str(tmp_path / "red-torus" / MODEL) in str(err.value) and "field_config" in str(err.value)


def test_meta_that_is_not_json_is_named(tmp_path):
    store = TeacherStore(tmp_path)
    store.save("red-torus", tiny_field(0), meta_for("red-torus"))
    meta_path = tmp_path / "red-torus" / META
    meta_path.write_text("{not json")
    with pytest.raises(StoreError) as err:
        store.load("red-torus")
    assert str(meta_path) in str(err.value) and "not JSON" in str(err.value)
    with pytest.raises(StoreError, match="not JSON"):
        store.rebuild_index()          # a damaged teacher is reported, not silently left out


def test_missing_teacher_is_named(tmp_path):
    store = TeacherStore(tmp_path)
    with pytest.raises(StoreError, match="not in this store"):
        store.load("red-torus")


def test_unwritable_store_is_reported_and_nothing_is_created(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    before = snapshot(tmp_path)
    uri = str(tmp_path / "a-file" / "store")
    store = TeacherStore(uri)
    with pytest.raises(StoreError) as err:
        store.check_writable()
    assert uri in str(err.value) and "not writable" in str(err.value)
    with pytest.raises(StoreError):
        store.save("red-torus", tiny_field(), meta_for("red-torus"))
    assert snapshot(tmp_path) == before
    with pytest.raises(StoreError, match="is a file"):
        TeacherStore(tmp_path / "a-file").check_writable()


def test_check_writable_creates_the_root_and_leaves_no_probe(tmp_path):
    store = TeacherStore(tmp_path / "deep" / "store")
    store.check_writable()
    assert (tmp_path / "deep" / "store").is_dir()
    assert list((tmp_path / "deep" / "store").iterdir()) == []


def test_a_save_never_touches_another_slugs_folder(tmp_path):
    store = TeacherStore(tmp_path)
    store.save("red-torus", tiny_field(0), meta_for("red-torus"))
    store.rebuild_index()
    before = snapshot(tmp_path / "red-torus")
    store.save("blue-cube", tiny_field(1), meta_for("blue-cube"))
    store.save("blue-cube", tiny_field(2), meta_for("blue-cube", psnr=30.0))   # a re-save
    assert snapshot(tmp_path / "red-torus") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blue-cube", "red-torus", INDEX]
    assert sorted(p.name for p in (tmp_path / "blue-cube").iterdir()) == [META, MODEL]
    _, meta = store.load("blue-cube")
    assert meta["psnr"] == 30.0


def test_bad_slugs_and_meta_are_refused_before_anything_is_written(tmp_path):
    store = TeacherStore(tmp_path / "store")
    for slug in ["../escape", ".hidden", "a/b", "", INDEX]:
        with pytest.raises(StoreError, match="slug"):
            store.save(slug, tiny_field(), meta_for("x"))
    with pytest.raises(StoreError, match="lacks"):
        store.save("red-torus", tiny_field(), {"prompt": "a red torus"})
    with pytest.raises(StoreError, match="JSON"):
        store.save("red-torus", tiny_field(), {**meta_for("red-torus"), "extra": object()})
    assert not (tmp_path / "store").exists()


def test_a_store_pickles_as_its_uri(tmp_path):
    store = TeacherStore(tmp_path)
    store.finished()
    clone = pickle.loads(pickle.dumps(store))
    assert clone.uri == store.uri and clone._fs is None and clone.finished() == []


def test_file_uri_works_like_a_path(tmp_path):
    store = TeacherStore(f"file://{tmp_path}")
    store.check_writable()
    path = store.save("red-torus", tiny_field(), meta_for("red-torus"))
    assert path == f"file://{tmp_path}/red-torus"
    assert store.finished() == ["red-torus"] and store.index()["path"].tolist() == [path]
    store.load("red-torus")
    with pytest.raises(StoreError, match="cannot open this URI"):
        TeacherStore("nosuchscheme://bucket/x").finished()

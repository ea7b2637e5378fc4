"""The split lists packaged with priorlab (priorlab.data.split_files): intact, complete, shipped.

None of these tests needs a data root: they are what a fresh machine has.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import hashlib
import io
import tomllib
from collections import Counter
from importlib import resources
from pathlib import Path

import pytest

from priorlab.data.cifar import read_fewshot_split
from priorlab.data.omniglot import read_split
from priorlab.data.split_files import (
    SPLIT_LISTS,
    PackagedSplitError,
    packaged_split_bytes,
    read_fss1000_split,
    split_text,
)

REPO = Path(__file__).resolve().parents[2]
PACKAGE_DIR = Path(str(resources.files("priorlab.data").joinpath("splits")))


@pytest.fixture
def fresh_packaged_cache():
    packaged_split_bytes.cache_clear()
    yield
    packaged_split_bytes.cache_clear()


def test_every_packaged_list_matches_its_published_digest(fresh_packaged_cache):
    for relpath, entry in SPLIT_LISTS.items():
        raw = packaged_split_bytes(relpath)
        assert hashlib.sha256(raw).hexdigest() == entry.sha256, relpath
        stored = (PACKAGE_DIR / entry.packaged).read_bytes()
        if entry.packaged.endswith(".gz"):
            assert gzip.decompress(stored) == raw and len(stored) < len(raw) / 5
        else:
            assert stored == raw


def test_packaged_folder_holds_exactly_the_registered_lists():
    on_disk = {p.relative_to(PACKAGE_DIR).as_posix() for p in PACKAGE_DIR.rglob("*") if p.is_file()}
    assert on_disk == {e.packaged for e in SPLIT_LISTS.values()} | {"README.md"}


def test_pyproject_package_data_ships_every_packaged_file():
    """The wheel and an editable install carry what setuptools' package-data globs match."""
    with open(REPO / "pyproject.toml", "rb") as fh:
        package_data = tomllib.load(fh)["tool"]["setuptools"]["package-data"]
    pkg = PACKAGE_DIR.parent
    shipped = {p for pattern in package_data["priorlab.data"] for p in pkg.glob(pattern)}
    wanted = {p for p in PACKAGE_DIR.rglob("*") if p.is_file()}
    assert wanted and wanted <= shipped, sorted(str(p) for p in wanted - shipped)


def test_damaged_packaged_copy_is_an_error_that_says_reinstall(monkeypatch, fresh_packaged_cache):
    relpath = "splits/cifar-fs/test.json"
    monkeypatch.setitem(SPLIT_LISTS, relpath, dataclasses.replace(SPLIT_LISTS[relpath], sha256="0" * 64))
    with pytest.raises(PackagedSplitError) as info:
        packaged_split_bytes(relpath)
    msg = str(info.value)
    assert "0" * 64 in msg and "Reinstall priorlab" in msg and relpath in msg
    monkeypatch.setitem(SPLIT_LISTS, relpath, dataclasses.replace(SPLIT_LISTS[relpath], packaged="cifar-fs/nope.json"))
    with pytest.raises(PackagedSplitError, match="cannot be read"):
        packaged_split_bytes(relpath)


def test_unknown_list_names_the_known_ones():
    with pytest.raises(ValueError, match="splits/cifar-fs/test.json"):
        split_text("/nonexistent", "splits/cifar-fs/tst.json")


def test_data_root_copy_wins_over_the_packaged_one(tmp_path):
    text, origin = split_text(tmp_path, "fss1000/splits/val.txt")
    assert "packaged" in origin and len(text.splitlines()) == 240
    own = tmp_path / "fss1000" / "splits" / "val.txt"
    own.parent.mkdir(parents=True)
    own.write_text("abacus\nzucchini\n")
    assert split_text(tmp_path, "fss1000/splits/val.txt") == ("abacus\nzucchini\n", str(own))
    assert read_fss1000_split(tmp_path, "val") == ["abacus", "zucchini"]


# --------------------------------------------------------------------------- published facts


def test_omniglot_vinyals_split_from_the_package(tmp_path):
    splits = {s: read_split(tmp_path, s) for s in ("train", "val", "test", "trainval")}
    chars = {s: {name for name, _ in e} for s, e in splits.items()}
    assert [len(chars[s]) for s in ("train", "val", "test")] == [1028, 172, 423]
    assert all(len(splits[s]) == 4 * len(chars[s]) for s in splits)
    assert chars["trainval"] == chars["train"] | chars["val"]
    assert not (chars["train"] & chars["test"]) and not (chars["val"] & chars["test"])
    assert not (tmp_path / "omniglot").exists(), "reading a split creates nothing"


def test_cifar_fs_and_fc100_from_the_package(tmp_path):
    fs = {s: read_fewshot_split(tmp_path, "cifar-fs", s) for s in ("train", "val", "test")}
    assert [len(fs[s]) for s in ("train", "val", "test")] == [64, 16, 20]
    classes = [c for s in fs.values() for _, c in s]
    assert len(set(classes)) == 100, "the three splits partition CIFAR-100's 100 classes"
    fc = {s: read_fewshot_split(tmp_path, "fc100", s) for s in ("train", "val", "test")}
    assert [len(fc[s]) for s in ("train", "val", "test")] == [12, 4, 4]
    assert len(set(sum(fc.values(), []))) == 20, "and FC100 partitions its 20 superclasses"


def test_miniimagenet_csv_from_the_package(tmp_path):
    labels = {}
    for split in ("train", "val", "test"):
        text, _ = split_text(tmp_path, f"splits/miniimagenet/{split}.csv")
        rows = list(csv.DictReader(io.StringIO(text)))
        counts = Counter(r["label"] for r in rows)
        assert set(counts.values()) == {600}
        assert all(r["filename"].startswith(r["label"]) and r["filename"].endswith(".jpg") for r in rows)
        labels[split] = set(counts)
    assert [len(labels[s]) for s in ("train", "val", "test")] == [64, 16, 20]
    assert not (labels["train"] & labels["val"]) and not (labels["train"] & labels["test"])


def test_fss1000_split_from_the_package(tmp_path):
    names = {s: read_fss1000_split(tmp_path, s) for s in ("trn", "val", "test")}
    assert [len(names[s]) for s in ("trn", "val", "test")] == [520, 240, 240]
    assert len(set(sum(names.values(), []))) == 1000
    assert not any("\r" in n or " " in n for n in sum(names.values(), [])), "CRLF ends are stripped"
    with pytest.raises(ValueError, match="trn, val, test"):
        read_fss1000_split(tmp_path, "train")


"""CIFAR loaders on small tarballs written in the canonical python format (CIFAR is not here)."""

from __future__ import annotations

import io
import json
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from priorlab.data.cifar import fewshot_classes, load_cifar, read_fewshot_split
from priorlab.data.episodes import OnlineEpisodeSampler
from priorlab.data.root import MissingDataError

SHARED_SPLITS = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "splits"


def _add(tar, name, obj):
    raw = pickle.dumps(obj, protocol=2)
    info = tarfile.TarInfo(name)
    info.size = len(raw)
    tar.addfile(info, io.BytesIO(raw))


def _images(labels, seed):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (len(labels), 3 * 32 * 32), dtype=np.uint8)
    data[:, 0] = labels  # the red value of pixel (0, 0) carries the label, to check alignment
    return data


@pytest.fixture
def cifar_root(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIORLAB_CACHE_DIR", str(tmp_path / "cache"))
    splits = tmp_path / "splits"
    for bench in ("cifar-fs", "fc100"):
        (splits / bench).mkdir(parents=True)
        for split in ("train", "val", "test"):
            (splits / bench / f"{split}.json").write_text((SHARED_SPLITS / bench / f"{split}.json").read_text())
    pairs = sum((json.loads((splits / "cifar-fs" / f"{s}.json").read_text())
                 for s in ("train", "val", "test")), [])
    fine = sorted(c for _, c in pairs)
    coarse = sorted({s for s, _ in pairs})
    coarse_of = {c: coarse.index(s) for s, c in pairs}
    (tmp_path / "cifar").mkdir()
    with tarfile.open(tmp_path / "cifar" / "cifar-100-python.tar.gz", "w:gz") as tar:
        for split, per_class, seed in (("train", 3, 0), ("test", 1, 1)):
            labels = np.repeat(np.arange(100), per_class)
            _add(tar, f"cifar-100-python/{split}", {
                b"data": _images(labels, seed), b"fine_labels": labels.tolist(),
                b"coarse_labels": [coarse_of[fine[l]] for l in labels]})
        _add(tar, "cifar-100-python/meta", {b"fine_label_names": [n.encode() for n in fine],
                                            b"coarse_label_names": [n.encode() for n in coarse]})
    with tarfile.open(tmp_path / "cifar" / "cifar-10-python.tar.gz", "w:gz") as tar:
        for i in range(1, 6):
            labels = np.arange(10)
            _add(tar, f"cifar-10-batches-py/data_batch_{i}", {b"data": _images(labels, i), b"labels": labels.tolist()})
        _add(tar, "cifar-10-batches-py/test_batch", {b"data": _images(np.arange(10), 9), b"labels": list(range(10))})
        _add(tar, "cifar-10-batches-py/batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)]})
    return tmp_path


def test_cifar100_layout_labels_and_cache(cifar_root):
    data = load_cifar(cifar_root, "cifar100", "train")
    assert data.images.shape == (300, 32, 32, 3) and data.images.dtype == np.uint8
    assert np.array_equal(data.images[:, 0, 0, 0], data.labels)  # CHW rows -> HWC correctly
    assert len(data.label_names) == 100 and len(data.coarse_names) == 20
    again = load_cifar(cifar_root, "cifar100", "train")  # from the .npz cache
    assert np.array_equal(again.images, data.images) and again.label_names == data.label_names
    assert list((cifar_root / "cache").rglob("*.npz"))


def test_cifar10_concatenates_five_batches(cifar_root):
    data = load_cifar(cifar_root, "cifar10", "train")
    assert data.images.shape == (50, 32, 32, 3) and data.coarse_labels is None
    assert load_cifar(cifar_root, "cifar10", "test").labels.tolist() == list(range(10))


def test_fewshot_splits_are_disjoint_and_sized(cifar_root):
    fs = {s: fewshot_classes(cifar_root, "cifar-fs", s) for s in ("train", "val", "test")}
    assert [len(fs[s]) for s in ("train", "val", "test")] == [64, 16, 20]
    fc = {s: fewshot_classes(cifar_root, "fc100", s) for s in ("train", "val", "test")}
    assert [len(fc[s]) for s in ("train", "val", "test")] == [60, 20, 20]
    for split_sets in (fs, fc):
        names = [set(c.class_names) for c in split_sets.values()]
        assert not (names[0] & names[1]) and not (names[0] & names[2]) and not (names[1] & names[2])
    c = fs["test"]
    assert c.n_samples_per_class == 4  # 3 train + 1 test images per class in the fixture
    img = c.get(0, np.arange(2))
    assert img.shape == (2, 3, 32, 32)
    sampler = OnlineEpisodeSampler(c, n_way=5, n_shot=2)
    ep = sampler.sample(3)
    assert ep.x.shape == (10, 3, 32, 32)


def test_missing_and_bad_names(tmp_path):
    with pytest.raises(MissingDataError, match="priorlab data download cifar100"):
        load_cifar(tmp_path, "cifar100", "train")
    with pytest.raises(ValueError, match="cifar10"):
        load_cifar(tmp_path, "cifar1000", "train")
    with pytest.raises(ValueError, match="cifar-fs"):
        read_fewshot_split(tmp_path, "mini", "train")

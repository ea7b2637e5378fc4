"""CIFAR loaders on small tarballs written in the canonical python format (CIFAR is not here).

The CIFAR-FS / FC100 split lists are the copies packaged with priorlab (no data root needed).
"""

from __future__ import annotations

import logging
import os
import threading

import numpy as np
import pytest

from priorlab.data import cifar as cifar_module
from priorlab.data.cifar import fewshot_classes, load_cifar, read_fewshot_split
from priorlab.data.episodes import OnlineEpisodeSampler
from priorlab.data.root import MissingDataError


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


def test_splits_come_from_the_data_root_when_present(cifar_root):
    assert not (cifar_root / "splits").exists()
    packaged = read_fewshot_split(cifar_root, "fc100", "val")
    assert len(packaged) == 4
    own = cifar_root / "splits" / "fc100" / "val.json"
    own.parent.mkdir(parents=True)
    own.write_text('["fish", "flowers"]')
    assert read_fewshot_split(cifar_root, "fc100", "val") == ["fish", "flowers"]
    assert len(fewshot_classes(cifar_root, "fc100", "val")) == 10  # 2 superclasses x 5 classes
    own.write_text("[not json")
    with pytest.raises(ValueError, match=r"val\.json is not valid JSON"):
        read_fewshot_split(cifar_root, "fc100", "val")


def _cache_files(root):
    return sorted((root / "cache" / "cifar100").iterdir())


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing_key"])
def test_unreadable_cache_is_logged_and_rebuilt(cifar_root, caplog, damage):
    first = load_cifar(cifar_root, "cifar100", "train")
    (cache,) = _cache_files(cifar_root)
    if damage == "garbage":
        cache.write_bytes(b"not an npz")
    elif damage == "truncated":
        cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
    else:
        np.savez(cache, images=first.images)  # a valid npz without the labels
    with caplog.at_level(logging.WARNING, logger="priorlab.data.cifar"):
        again = load_cifar(cifar_root, "cifar100", "train")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(cache) in warnings[0] and "unreadable" in warnings[0]
    np.testing.assert_array_equal(again.images, first.images)
    np.testing.assert_array_equal(again.coarse_labels, first.coarse_labels)
    assert _cache_files(cifar_root) == [cache], "rebuilt in place, no temporary left behind"
    with np.load(cache) as z:  # and the rewritten cache is whole
        np.testing.assert_array_equal(z["labels"], first.labels)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="priorlab.data.cifar"):
        load_cifar(cifar_root, "cifar100", "train")
    assert not caplog.records, "a good cache loads silently"


def test_cache_writes_go_through_unique_temporaries(cifar_root, monkeypatch):
    renames = []
    real_replace = os.replace

    def record(src, dst):
        renames.append((os.fspath(src), os.fspath(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(cifar_module.os, "replace", record)
    load_cifar(cifar_root, "cifar100", "train")
    (cache,) = _cache_files(cifar_root)
    cache.unlink()
    load_cifar(cifar_root, "cifar100", "train")
    (src1, dst1), (src2, dst2) = renames
    assert dst1 == dst2 == str(cache)
    assert src1 != src2, "each writer must use its own temporary file"
    assert os.path.dirname(src1) == os.path.dirname(str(cache)), "same directory: an atomic rename"


def test_concurrent_loaders_leave_one_whole_cache(cifar_root):
    results, errors = [], []

    def work():
        try:
            results.append(load_cifar(cifar_root, "cifar100", "test"))
        except Exception as err:  # reported below; a thread's exception is otherwise lost
            errors.append(err)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(np.array_equal(r.images, results[0].images) for r in results)
    (cache,) = _cache_files(cifar_root)
    with np.load(cache) as z:
        np.testing.assert_array_equal(z["images"], results[0].images)

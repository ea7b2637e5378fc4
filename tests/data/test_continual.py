"""Continual tasks (priorlab.data.continual, thesis Sec. 2.4.3 and App. A.2) on a tiny fake dataset.

Each fake image encodes where it came from: pixel [0, 0] = class index, [0, 1] = drawing index.
One test reads a few real Omniglot characters from the data root.
"""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from priorlab.data.continual import ContinualBatch, ContinualTask, ContinualTaskSampler
from priorlab.data.episodes import episode_seed


class FakeClasses:
    n_samples_per_class = 20

    def __init__(self, n_classes: int = 30, size: int = 6):
        self.n, self.size = n_classes, size

    def __len__(self) -> int:
        return self.n

    def get(self, class_idx, sample_idx):
        sample_idx = np.asarray(sample_idx)
        out = np.zeros(sample_idx.shape + (self.size, self.size), dtype=np.uint8)
        out[..., 0, 0] = class_idx
        out[..., 0, 1] = sample_idx
        return out


def origin(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 1, H, W) fake images -> (class, drawing) of each."""
    return x[:, 0, 0, 0].astype(int), x[:, 0, 0, 1].astype(int)


def test_blocked_support_shapes_and_subtask_structure():
    task = ContinualTaskSampler(FakeClasses(), n_subtasks=4, n_shot=3, n_query=2, n_labels=6).sample(11)
    assert isinstance(task, ContinualTask) and task.seed == 11
    assert task.support_x.shape == (12, 1, 6, 6) and task.support_x.dtype == np.uint8
    assert task.query_x.shape == (8, 1, 6, 6) and task.query_x.dtype == np.uint8
    for a in (task.support_y, task.query_y, task.query_subtask):
        assert a.dtype == np.int64
    cls, _ = origin(task.support_x)
    # subtask i = samples 3i..3i+2, all of one class, with one label
    np.testing.assert_array_equal(cls, np.repeat(task.classes, 3))
    np.testing.assert_array_equal(task.support_y, np.repeat(task.labels, 3))
    assert len(set(task.classes)) == 4 and len(set(task.labels)) == 4
    assert task.labels.min() >= 0 and task.labels.max() < 6


@pytest.mark.parametrize("order", ["blocked", "shuffled"])
def test_queries_are_unseen_drawings_of_the_support_classes(order):
    sampler = ContinualTaskSampler(FakeClasses(), n_subtasks=5, n_shot=5, n_query=3, n_labels=8, order=order)
    for seed in range(5):
        task = sampler.sample(seed)
        s_cls, s_draw = origin(task.support_x)
        q_cls, q_draw = origin(task.query_x)
        assert set(q_cls) == set(s_cls)
        label_of = dict(zip(s_cls, task.support_y))
        for c in set(s_cls):
            assert not set(q_draw[q_cls == c]) & set(s_draw[s_cls == c])     # disjoint drawings
            assert (q_cls == c).sum() == 3 and (s_cls == c).sum() == 5
            assert len(set(s_draw[s_cls == c])) == 5
        np.testing.assert_array_equal(task.query_y, [label_of[c] for c in q_cls])
        # query_subtask = position of the query's class in the stream (first appearance)
        first = {c: int(np.flatnonzero(s_cls == c)[0]) for c in set(s_cls)}
        stream = sorted(first, key=first.get)
        np.testing.assert_array_equal(task.query_subtask, [stream.index(c) for c in q_cls])
        np.testing.assert_array_equal(task.classes, stream)


def test_shuffled_order_interleaves_the_subtasks():
    blocked = ContinualTaskSampler(FakeClasses(), 4, n_shot=5, n_query=2, order="blocked")
    shuffled = ContinualTaskSampler(FakeClasses(), 4, n_shot=5, n_query=2, order="shuffled")
    switches = lambda y: int((np.diff(y) != 0).sum())  # noqa: E731
    assert all(switches(blocked.sample(s).support_y) == 3 for s in range(10))
    assert np.mean([switches(shuffled.sample(s).support_y) for s in range(10)]) > 8


def test_labels_are_drawn_from_the_label_space_per_task():
    sampler = ContinualTaskSampler(FakeClasses(), n_subtasks=3, n_shot=1, n_query=1, n_labels=10)
    labels = np.stack([sampler.sample(s).labels for s in range(200)])
    assert set(labels[:, 0]) == set(range(10))        # any label can go to the first subtask
    assert all(len(set(row)) == 3 for row in labels)
    assert ContinualTaskSampler(FakeClasses(), 3).n_labels == 3


def test_deterministic_per_seed_and_batch_matches_single_tasks():
    sampler = ContinualTaskSampler(FakeClasses(), n_subtasks=3, n_shot=2, n_query=2, n_labels=5)
    a, b, c = sampler.sample(7), sampler.sample(7), sampler.sample(8)
    for f in ContinualBatch._fields:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert not np.array_equal(a.support_x, c.support_x)
    seeds = [episode_seed(1, i) for i in range(3)]
    batch = sampler.sample_batch(seeds)
    sx, sy, qx, qy, qs = batch
    assert sx.shape == (3, 6, 1, 6, 6) and sy.shape == (3, 6) and qx.shape == (3, 6, 1, 6, 6)
    assert qy.shape == qs.shape == (3, 6)
    for i, s in enumerate(seeds):
        task = sampler.sample(s)
        for f in ContinualBatch._fields:
            np.testing.assert_array_equal(getattr(batch, f)[i], getattr(task, f))
    with pytest.raises(ValueError, match="at least one seed"):
        sampler.sample_batch([])


@pytest.mark.parametrize("kwargs,err,match", [
    (dict(n_subtasks=0), ValueError, "n_subtasks must be >= 1"),
    (dict(n_subtasks=2, n_shot=0), ValueError, "n_shot must be >= 1"),
    (dict(n_subtasks=2, n_query=0), ValueError, "n_query must be >= 1"),
    (dict(n_subtasks=31), ValueError, "30 classes"),
    (dict(n_subtasks=5, n_labels=4), ValueError, "n_labels >= 5"),
    (dict(n_subtasks=5, n_shot=16, n_query=5), ValueError, "at most 4"),
    (dict(n_subtasks=5, order="random"), ValueError, "blocked"),
    (dict(n_subtasks=2.5), TypeError, "n_subtasks must be an int"),
])
def test_invalid_arguments(kwargs, err, match):
    with pytest.raises(err, match=match):
        ContinualTaskSampler(FakeClasses(), **kwargs)


def test_negative_seed_is_rejected():
    with pytest.raises(ValueError, match="seed"):
        ContinualTaskSampler(FakeClasses(), 2).sample(-1)


def test_real_omniglot_characters(data_root):
    """A few real characters of the val split (decoded here, not the whole dataset)."""
    from priorlab.data.omniglot import (
        OMNIGLOT_ZIPS, OmniglotClasses, OmniglotImages, _decode_png, _list_characters, read_split,
    )

    wanted = sorted({name for name, _ in read_split(data_root, "val")})[:6]
    found: dict[str, np.ndarray] = {}
    for z in OMNIGLOT_ZIPS:
        path = data_root / "omniglot" / z
        with zipfile.ZipFile(path) as zf:
            for name, entries in _list_characters(zf, path).items():
                if name in wanted:
                    found[name] = np.stack([_decode_png(zf.read(e), 28) for e in entries])
    assert sorted(found) == wanted
    images = OmniglotImages(images=np.stack([found[n] for n in wanted]), names=wanted)
    classes = OmniglotClasses.from_split(images, [(n, k) for n in wanted for k in range(4)])
    sampler = ContinualTaskSampler(classes, n_subtasks=5, n_shot=5, n_query=5, n_labels=20)
    task = sampler.sample(episode_seed(0, 3))
    assert task.support_x.shape == (25, 1, 28, 28) and task.query_x.shape == (25, 1, 28, 28)
    assert task.support_x.max() == 255                                  # ink is there
    flat = lambda x: {im.tobytes() for im in x}  # noqa: E731
    assert not flat(task.support_x) & flat(task.query_x)              # no support image reused
    for i, cls in enumerate(task.classes):                            # each image is its class's
        char, k = classes.character_of(int(cls)), classes.rotation_of(int(cls))
        drawings = flat(np.rot90(images.images[char], k, axes=(1, 2))[:, None])
        assert flat(task.support_x[5 * i:5 * i + 5]) <= drawings
        assert flat(task.query_x[task.query_subtask == i]) <= drawings

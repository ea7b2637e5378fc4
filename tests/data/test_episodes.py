"""Online few-shot episodes (priorlab.data.episodes, thesis Sec. 2.3.1) on a tiny fake dataset.

Each fake image encodes where it came from: pixel [0, 0] = class index, [0, 1] = drawing index.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from priorlab.data.episodes import Episode, OnlineEpisodeSampler, episode_seed
from priorlab.data.omniglot import OmniglotClasses, OmniglotImages


class FakeClasses:
    n_samples_per_class = 20

    def __init__(self, n_classes: int = 30, size: int = 6):
        self.n = n_classes
        self.size = size

    def __len__(self) -> int:
        return self.n

    def get(self, class_idx, sample_idx):
        sample_idx = np.asarray(sample_idx)
        out = np.zeros(sample_idx.shape + (self.size, self.size), dtype=np.uint8)
        out[..., 0, 0] = class_idx
        out[..., 0, 1] = sample_idx
        return out


def _origin(ep: Episode) -> tuple[np.ndarray, np.ndarray]:
    return ep.x[:, 0, 0, 0].astype(int), ep.x[:, 0, 0, 1].astype(int)


def test_episode_seed_is_deterministic_and_63_bit():
    assert episode_seed(3, 7) == episode_seed(3, 7)
    seeds = {episode_seed(b, i) for b in range(5) for i in range(200)}
    assert len(seeds) == 1000
    assert all(0 <= s < 2**63 for s in seeds)
    assert episode_seed(0, 1) != episode_seed(1, 0)
    with pytest.raises(ValueError, match="base_seed"):
        episode_seed(-1, 0)


def test_shapes_and_dtypes():
    ep = OnlineEpisodeSampler(FakeClasses(), n_way=5, n_shot=3).sample(11)
    assert ep.x.shape == (15, 1, 6, 6) and ep.x.dtype == np.uint8
    assert ep.y.shape == (15,) and ep.y.dtype == np.int64
    assert ep.seed == 11


def test_same_seed_same_episode_different_seed_different():
    sampler = OnlineEpisodeSampler(FakeClasses(), n_way=5, n_shot=4)
    a, b = sampler.sample(123), sampler.sample(123)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    # a fresh sampler (another worker) agrees too: the episode depends on the seed only
    c = OnlineEpisodeSampler(FakeClasses(), n_way=5, n_shot=4).sample(123)
    np.testing.assert_array_equal(a.x, c.x)
    d = sampler.sample(124)
    assert not (np.array_equal(a.x, d.x) and np.array_equal(a.y, d.y))


@pytest.mark.parametrize("n_way,n_shot", [(2, 1), (5, 1), (5, 10), (20, 20)])
def test_class_and_label_structure(n_way, n_shot):
    sampler = OnlineEpisodeSampler(FakeClasses(), n_way=n_way, n_shot=n_shot)
    for seed in range(20):
        ep = sampler.sample(episode_seed(0, seed))
        cls, drawing = _origin(ep)
        counts = Counter(cls.tolist())
        assert len(counts) == n_way and set(counts.values()) == {n_shot}
        assert sorted(set(ep.y.tolist())) == list(range(n_way))
        for c in counts:  # one label per class, distinct drawings within a class
            assert len(set(ep.y[cls == c].tolist())) == 1
            assert len(set(drawing[cls == c].tolist())) == n_shot
        assert ep.classes is not None
        np.testing.assert_array_equal(ep.classes[ep.y], cls)


def test_labels_are_permuted_across_episodes():
    sampler = OnlineEpisodeSampler(FakeClasses(n_classes=5), n_way=5, n_shot=2)
    # all 5 classes are always chosen, so only the label permutation can change the mapping
    mappings = {tuple(sampler.sample(s).classes.tolist()) for s in range(50)}
    assert len(mappings) > 10


def test_sequence_is_shuffled():
    sampler = OnlineEpisodeSampler(FakeClasses(), n_way=5, n_shot=5)
    grouped = 0
    firsts = Counter()
    for s in range(200):
        y = sampler.sample(s).y
        grouped += int(np.count_nonzero(np.diff(y)) == 4)  # 4 label changes = 5 blocks
        firsts[int(y[0])] += 1
    assert grouped == 0, "samples must be interleaved, not presented class by class"
    assert set(firsts) == set(range(5)) and min(firsts.values()) > 15


def test_sample_batch_matches_single_episodes():
    sampler = OnlineEpisodeSampler(FakeClasses(), n_way=3, n_shot=2)
    seeds = [episode_seed(9, i) for i in range(4)]
    x, y = sampler.sample_batch(seeds)
    assert x.shape == (4, 6, 1, 6, 6) and x.dtype == np.uint8
    assert y.shape == (4, 6) and y.dtype == np.int64
    for i, s in enumerate(seeds):
        ep = sampler.sample(s)
        np.testing.assert_array_equal(x[i], ep.x)
        np.testing.assert_array_equal(y[i], ep.y)
    with pytest.raises(ValueError, match="at least one seed"):
        sampler.sample_batch([])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(n_way=1, n_shot=1), "n_way must be >= 2"),
        (dict(n_way=5, n_shot=0), "n_shot must be >= 1"),
        (dict(n_way=31, n_shot=1), "30 classes"),
        (dict(n_way=5, n_shot=21), "only 20"),
    ],
)
def test_invalid_configurations(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OnlineEpisodeSampler(FakeClasses(), **kwargs)


def test_negative_seed_is_rejected():
    with pytest.raises(ValueError, match="seed"):
        OnlineEpisodeSampler(FakeClasses(), n_way=2, n_shot=1).sample(-5)


def test_works_with_omniglot_classes_and_rotations():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(3, 20, 8, 8), dtype=np.uint8)
    data = OmniglotImages(images=base, names=["A/character01", "A/character02", "B/character01"])
    classes = OmniglotClasses.from_split(data, [(n, k) for n in data.names for k in range(4)])
    sampler = OnlineEpisodeSampler(classes, n_way=6, n_shot=3)
    ep = sampler.sample(5)
    assert ep.x.shape == (18, 1, 8, 8)
    for t in range(18):  # every image is some drawing of its class, rotated by the class's k
        c = int(ep.classes[ep.y[t]])
        char, k = classes.character_of(c), classes.rotation_of(c)
        candidates = np.rot90(base[char], k, axes=(1, 2))
        assert any(np.array_equal(ep.x[t, 0], cand) for cand in candidates)

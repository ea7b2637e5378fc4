"""Episode sampling for the online few-shot protocol (Babu, TTIC 2025, Ch. 2 Sec. 2.3.1).

A k-way N-shot online task is a stream of ``T = k * N`` images: ``k`` classes are drawn, ``N``
distinct drawings of each, the labels ``0..k-1`` are assigned to the classes by a fresh random
permutation (so a label carries no meaning across episodes), and the ``T`` samples are shuffled
uniformly. The model sees ``x_t`` together with ``y_{t-1}`` (App. A.1, Fig. A.1); that shift is
the model's business, this module returns the aligned pairs ``(x_t, y_t)``.

An episode is a pure function of its seed: ``sampler.sample(seed)`` always returns the same
images in the same order. ``episode_seed(base_seed, i)`` gives well-separated seeds for episode
``i`` of a run, so data-parallel workers and resumed runs agree on every episode without
sharing state.

Usage::

    from priorlab.data.omniglot import load_omniglot_split
    from priorlab.data.episodes import OnlineEpisodeSampler, episode_seed
    sampler = OnlineEpisodeSampler(load_omniglot_split(root, "train"), n_way=5, n_shot=10)
    ep = sampler.sample(episode_seed(0, 123))               # ep.x (50, 1, 28, 28) uint8, ep.y (50,)
    x, y = sampler.sample_batch([episode_seed(0, i) for i in range(16)])   # (16, 50, 1, 28, 28)
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Iterable, Protocol

import numpy as np

__all__ = ["episode_seed", "Episode", "ClassSource", "OnlineEpisodeSampler"]


def _nonneg_int(value, what: str) -> int:
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an int, got {type(value).__name__} {value!r}") from None
    if v < 0:
        raise ValueError(f"{what} must be >= 0, got {v}")
    return v


def episode_seed(base_seed: int, index: int) -> int:
    """A deterministic 63-bit seed for episode ``index`` of a run seeded with ``base_seed``."""
    ss = np.random.SeedSequence([_nonneg_int(base_seed, "base_seed"), _nonneg_int(index, "index")])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


class ClassSource(Protocol):
    """What a sampler needs from a dataset split (``OmniglotClasses`` is one)."""

    n_samples_per_class: int

    def __len__(self) -> int: ...

    def get(self, class_idx: int, sample_idx: np.ndarray | int) -> np.ndarray: ...


@dataclass
class Episode:
    """One online few-shot task."""

    x: np.ndarray
    """uint8, (T, 1, H, W): the images in presentation order."""
    y: np.ndarray
    """int64, (T,): episode-local labels in [0, n_way)."""
    seed: int
    """The seed that produced this episode (``sampler.sample(seed)`` reproduces it)."""
    classes: np.ndarray | None = None
    """int64, (n_way,): ``classes[label]`` is the dataset class index behind that label."""


class OnlineEpisodeSampler:
    """Samples k-way N-shot online episodes (Sec. 2.3.1) from a ``ClassSource``."""

    def __init__(self, classes: ClassSource, n_way: int, n_shot: int):
        n_way, n_shot = operator.index(n_way), operator.index(n_shot)
        if n_way < 2:
            raise ValueError(f"n_way must be >= 2 (a task needs at least two classes), got {n_way}")
        if n_shot < 1:
            raise ValueError(f"n_shot must be >= 1, got {n_shot}")
        if n_way > len(classes):
            raise ValueError(
                f"n_way={n_way} is larger than the {len(classes)} classes available in this "
                f"split; lower n_way or use a larger split."
            )
        per_class = int(classes.n_samples_per_class)
        if n_shot > per_class:
            raise ValueError(
                f"n_shot={n_shot} needs that many distinct drawings per class, but each class "
                f"has only {per_class}; lower n_shot to at most {per_class}."
            )
        self.classes = classes
        self.n_way = n_way
        self.n_shot = n_shot

    @property
    def length(self) -> int:
        """Episode length T = n_way * n_shot."""
        return self.n_way * self.n_shot

    def sample(self, seed: int) -> Episode:
        seed = _nonneg_int(seed, "seed")
        rng = np.random.default_rng(seed)
        chosen = rng.choice(len(self.classes), size=self.n_way, replace=False)
        labels = rng.permutation(self.n_way)  # chosen[i] gets label labels[i]

        xs, ys = [], []
        for cls, label in zip(chosen, labels):
            drawings = rng.choice(self.classes.n_samples_per_class, size=self.n_shot, replace=False)
            imgs = np.asarray(self.classes.get(int(cls), drawings))
            if imgs.dtype != np.uint8:
                raise TypeError(f"classes.get must return uint8 images, got {imgs.dtype}")
            if imgs.ndim == 3:  # (n_shot, H, W) -> (n_shot, 1, H, W)
                imgs = imgs[:, None]
            if imgs.ndim != 4 or imgs.shape[0] != self.n_shot:
                raise ValueError(
                    f"classes.get({int(cls)}, <{self.n_shot} indices>) must return "
                    f"({self.n_shot}, H, W) or ({self.n_shot}, C, H, W), got {imgs.shape}"
                )
            xs.append(imgs)
            ys.append(np.full(self.n_shot, label, dtype=np.int64))

        order = rng.permutation(self.length)
        x = np.concatenate(xs)[order]
        y = np.concatenate(ys)[order]
        by_label = np.empty(self.n_way, dtype=np.int64)
        by_label[labels] = chosen
        return Episode(x=x, y=y, seed=seed, classes=by_label)

    def sample_batch(self, seeds: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        """Stack episodes: x uint8 (B, T, C, H, W) (C = 1 for Omniglot), y int64 (B, T)."""
        episodes = [self.sample(s) for s in seeds]
        if not episodes:
            raise ValueError("sample_batch needs at least one seed")
        return np.stack([e.x for e in episodes]), np.stack([e.y for e in episodes])


@dataclass
class FewShotTask:
    """A standard (batch) N-way K-shot task for MAML (thesis Sec. 3.3.1): support + query."""

    x_support: np.ndarray  # uint8 (N*K, C, H, W)
    y_support: np.ndarray  # int64 (N*K,)
    x_query: np.ndarray    # uint8 (N*Q, C, H, W)
    y_query: np.ndarray    # int64 (N*Q,)
    seed: int


class FewShotTaskSampler:
    """N-way K-shot tasks with Q query images per class; a task is a pure function of its seed.

    Classes and drawings are disjoint between support and query; labels are permuted per task.
    """

    def __init__(self, classes: ClassSource, n_way: int, k_shot: int, n_query: int):
        if n_way < 2 or k_shot < 1 or n_query < 1:
            raise ValueError(f"need n_way >= 2, k_shot >= 1, n_query >= 1; got {n_way}, {k_shot}, {n_query}")
        if n_way > len(classes):
            raise ValueError(f"n_way={n_way} but the split has only {len(classes)} classes")
        if k_shot + n_query > classes.n_samples_per_class:
            raise ValueError(
                f"k_shot + n_query = {k_shot + n_query} exceeds the {classes.n_samples_per_class} "
                "images per class")
        self.classes, self.n_way, self.k_shot, self.n_query = classes, n_way, k_shot, n_query

    def sample(self, seed: int) -> FewShotTask:
        seed = _nonneg_int(seed, "seed")
        rng = np.random.default_rng(seed)
        chosen = rng.choice(len(self.classes), size=self.n_way, replace=False)
        sx, sy, qx, qy = [], [], [], []
        for label, cls in enumerate(chosen):
            idx = rng.choice(self.classes.n_samples_per_class, size=self.k_shot + self.n_query,
                             replace=False)
            imgs = np.asarray(self.classes.get(int(cls), idx))
            if imgs.ndim == 3:
                imgs = imgs[:, None]
            sx.append(imgs[: self.k_shot])
            qx.append(imgs[self.k_shot:])
            sy.append(np.full(self.k_shot, label, dtype=np.int64))
            qy.append(np.full(self.n_query, label, dtype=np.int64))
        s_order = rng.permutation(self.n_way * self.k_shot)
        q_order = rng.permutation(self.n_way * self.n_query)
        return FewShotTask(np.concatenate(sx)[s_order], np.concatenate(sy)[s_order],
                           np.concatenate(qx)[q_order], np.concatenate(qy)[q_order], seed)

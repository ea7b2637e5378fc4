"""Online few-shot continual-learning tasks (Babu, TTIC 2025, Sec. 2.4.3 and App. A.2).

A continual task is ``n`` subtasks, each ONE class with ``n_shot`` drawings (Sec. 2.4.3 follows
Javed & White: a subtask is a single class concept). The support stream shows subtask 1's
samples, then subtask 2's, ... (``order="blocked"``); App. A.2 (Table A.1) uses the same
support/query machinery with the ``n * n_shot`` support samples shuffled instead
(``order="shuffled"``, an ordinary k-way N-shot online stream). After the support stream comes
a query set of ``n_query`` further drawings of every subtask's class, drawings never shown in
the support; the loss and the accuracy are measured on the query set only.

Labels are shuffled across tasks: the ``n`` classes get ``n`` distinct labels drawn at random
from a fixed label space ``0..n_labels-1`` (``n_labels`` = the longest task length a model will
see, so a classifier has ``n_labels`` outputs whatever the curriculum's current length).

As in :mod:`priorlab.data.episodes`, a task is a pure function of its seed::

    from priorlab.data.continual import ContinualTaskSampler
    from priorlab.data.episodes import episode_seed
    sampler = ContinualTaskSampler(load_omniglot_split(root, "train"), n_subtasks=10,
                                   n_shot=5, n_query=5, n_labels=20)
    task = sampler.sample(episode_seed(0, 7))   # task.support_x (50, 1, 28, 28) uint8, ...
    batch = sampler.sample_batch([episode_seed(0, i) for i in range(16)])
    sx, sy, qx, qy, q_subtask = batch           # (16, 50, 1, H, W), (16, 50), (16, 50, ...), ...

``query_subtask`` is the position (0-based) of a query sample's class in the support stream:
for blocked order, its subtask index; for shuffled order, the rank of the class's first
appearance in the stream. The returned arrays are aligned pairs ``(x_t, y_t)``: shifting
labels one step late (the online protocol) is the model's business.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Iterable, NamedTuple

import numpy as np

from priorlab.data.episodes import ClassSource, _nonneg_int

__all__ = ["ORDERS", "ContinualTask", "ContinualBatch", "ContinualTaskSampler"]

ORDERS = ("blocked", "shuffled")


@dataclass
class ContinualTask:
    """One continual task: an ordered support stream and a query set over the same classes."""

    support_x: np.ndarray
    """uint8 (n * n_shot, C, H, W), in presentation order."""
    support_y: np.ndarray
    """int64 (n * n_shot,): labels in [0, n_labels)."""
    query_x: np.ndarray
    """uint8 (n * n_query, C, H, W), in a random order (the models treat queries independently)."""
    query_y: np.ndarray
    """int64 (n * n_query,)."""
    query_subtask: np.ndarray
    """int64 (n * n_query,): position of the query's class in the support stream (0-based)."""
    classes: np.ndarray
    """int64 (n,): dataset class of subtask i (in stream order)."""
    labels: np.ndarray
    """int64 (n,): label of subtask i."""
    seed: int


class ContinualBatch(NamedTuple):
    """Stacked tasks; unpacks as ``sx, sy, qx, qy, q_subtask``."""

    support_x: np.ndarray      # uint8 (B, n * n_shot, C, H, W)
    support_y: np.ndarray      # int64 (B, n * n_shot)
    query_x: np.ndarray        # uint8 (B, n * n_query, C, H, W)
    query_y: np.ndarray        # int64 (B, n * n_query)
    query_subtask: np.ndarray  # int64 (B, n * n_query)


def _positive(value, what: str, minimum: int = 1) -> int:
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an int, got {type(value).__name__} {value!r}") from None
    if v < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {v}")
    return v


class ContinualTaskSampler:
    """Samples continual tasks (Sec. 2.4.3; App. A.2 with ``order="shuffled"``) from a ``ClassSource``.

    ``n_labels`` defaults to ``n_subtasks`` (labels are then a permutation of 0..n-1).
    """

    def __init__(self, classes: ClassSource, n_subtasks: int, n_shot: int = 5, n_query: int = 5,
                 n_labels: int | None = None, order: str = "blocked"):
        n_subtasks = _positive(n_subtasks, "n_subtasks")
        n_shot = _positive(n_shot, "n_shot")
        n_query = _positive(n_query, "n_query")
        n_labels = n_subtasks if n_labels is None else _positive(n_labels, "n_labels")
        if order not in ORDERS:
            raise ValueError(f"order={order!r}: choose one of {list(ORDERS)} (blocked: subtask by "
                             "subtask, Sec. 2.4.3; shuffled: all samples interleaved, App. A.2)")
        if n_labels < n_subtasks:
            raise ValueError(f"n_labels={n_labels} is smaller than n_subtasks={n_subtasks}: every "
                             f"subtask needs its own label; use n_labels >= {n_subtasks}")
        if n_subtasks > len(classes):
            raise ValueError(f"n_subtasks={n_subtasks} is larger than the {len(classes)} classes of "
                             "this split; lower n_subtasks or use a larger split")
        per_class = int(classes.n_samples_per_class)
        if n_shot + n_query > per_class:
            raise ValueError(
                f"n_shot + n_query = {n_shot + n_query} distinct drawings are needed per class "
                f"(query drawings are never shown in the support), but each class has only "
                f"{per_class}; lower n_query to at most {per_class - n_shot}")
        self.classes = classes
        self.n_subtasks, self.n_shot, self.n_query = n_subtasks, n_shot, n_query
        self.n_labels, self.order = n_labels, order

    @property
    def support_length(self) -> int:
        return self.n_subtasks * self.n_shot

    @property
    def query_length(self) -> int:
        return self.n_subtasks * self.n_query

    def _images(self, cls: int, drawings: np.ndarray) -> np.ndarray:
        imgs = np.asarray(self.classes.get(cls, drawings))
        if imgs.dtype != np.uint8:
            raise TypeError(f"classes.get must return uint8 images, got {imgs.dtype}")
        if imgs.ndim == 3:  # (k, H, W) -> (k, 1, H, W)
            imgs = imgs[:, None]
        if imgs.ndim != 4 or imgs.shape[0] != len(drawings):
            raise ValueError(f"classes.get({cls}, <{len(drawings)} indices>) must return "
                             f"({len(drawings)}, H, W) or ({len(drawings)}, C, H, W), got {imgs.shape}")
        return imgs

    def sample(self, seed: int) -> ContinualTask:
        seed = _nonneg_int(seed, "seed")
        rng = np.random.default_rng(seed)
        n, shot, q = self.n_subtasks, self.n_shot, self.n_query
        chosen = rng.choice(len(self.classes), size=n, replace=False).astype(np.int64)
        labels = rng.permutation(self.n_labels)[:n].astype(np.int64)
        sx, qx = [], []
        for cls in chosen:
            drawings = rng.choice(self.classes.n_samples_per_class, size=shot + q, replace=False)
            imgs = self._images(int(cls), drawings)
            sx.append(imgs[:shot])
            qx.append(imgs[shot:])
        support_x = np.concatenate(sx)                          # blocked: subtask by subtask
        support_y = np.repeat(labels, shot)
        if self.order == "shuffled":
            perm = rng.permutation(n * shot)
            support_x, support_y = support_x[perm], support_y[perm]
            # Subtask i of a shuffled stream: the i-th class to appear in it.
            order = np.argsort([np.flatnonzero(support_y == lab)[0] for lab in labels])
            chosen, labels = chosen[order], labels[order]
            qx = [qx[i] for i in order]
        query_x = np.concatenate(qx)
        query_y = np.repeat(labels, q)
        query_subtask = np.repeat(np.arange(n, dtype=np.int64), q)
        qperm = rng.permutation(n * q)
        return ContinualTask(support_x=support_x, support_y=support_y.astype(np.int64),
                             query_x=query_x[qperm], query_y=query_y[qperm].astype(np.int64),
                             query_subtask=query_subtask[qperm], classes=chosen, labels=labels,
                             seed=seed)

    def sample_batch(self, seeds: Iterable[int]) -> ContinualBatch:
        tasks = [self.sample(s) for s in seeds]
        if not tasks:
            raise ValueError("sample_batch needs at least one seed")
        return ContinualBatch(*(np.stack([getattr(t, f) for t in tasks]) for f in ContinualBatch._fields))

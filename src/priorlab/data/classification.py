"""Omniglot as a plain classification data set (issue 3's CPU-scale design ablations).

The CIFAR tables of thesis Sec. 3.4.1 need CIFAR, which is not on the project's machines; the
hyper-design study therefore classifies Omniglot characters (character x rotation classes of a
Vinyals split): for every class the first ``20 - test_per_class`` drawings train, the rest test.

    (x_tr, y_tr), (x_te, y_te) = omniglot_classification(root, "train", n_classes=100)
"""

from __future__ import annotations

import os

import numpy as np

from priorlab.data.omniglot import load_omniglot_split


def omniglot_classification(data_root: str | os.PathLike, split: str = "train", *,
                            n_classes: int | None = None, test_per_class: int = 5,
                            image_size: int = 28, seed: int = 0):
    """((x_train, y_train), (x_test, y_test)); x uint8 (N, 1, H, W), y int64.

    ``n_classes`` classes are drawn with ``seed`` (all classes of the split when None)."""
    classes = load_omniglot_split(data_root, split, image_size, progress=False)
    per = classes.n_samples_per_class
    if not 1 <= test_per_class < per:
        raise ValueError(f"test_per_class={test_per_class} must be in 1..{per - 1}")
    chosen = np.arange(len(classes))
    if n_classes is not None:
        if not 2 <= n_classes <= len(classes):
            raise ValueError(f"n_classes={n_classes} must be in 2..{len(classes)}")
        chosen = np.sort(np.random.default_rng(seed).choice(len(classes), n_classes, replace=False))
    n_train = per - test_per_class
    xs = np.stack([classes.get(int(c), np.arange(per)) for c in chosen])[:, :, None]  # (C, per, 1, H, W)
    labels = np.repeat(np.arange(len(chosen)), per).reshape(len(chosen), per)
    train = (xs[:, :n_train].reshape(-1, 1, image_size, image_size), labels[:, :n_train].reshape(-1))
    test = (xs[:, n_train:].reshape(-1, 1, image_size, image_size), labels[:, n_train:].reshape(-1))
    return train, test

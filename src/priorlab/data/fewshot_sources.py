"""The class sources of the online few-shot protocol (thesis Sec. 2.3.1, App. A.1.1).

Omniglot (Vinyals split, 28x28, rotations as extra classes) and CIFAR-FS (CIFAR-100's
64/16/20-class partition of Bertinetto et al., 32x32 RGB) behind one call, so the memory method,
its trainable and ``priorlab eval`` read either with the same code:

    classes = load_episode_classes(root, "cifar_fs", "val", image_size=32)
    sampler = OnlineEpisodeSampler(classes, n_way=5, n_shot=10)     # images (T, 3, 32, 32)

CIFAR-100 is not on the project's CPU machines; tests read small tarballs written in its format.
"""

from __future__ import annotations

import os

from priorlab.data.cifar import fewshot_classes
from priorlab.data.omniglot import load_omniglot_split

EPISODE_DATASETS = {"omniglot": 1, "cifar_fs": 3}
"""Dataset name -> image channels."""
CIFAR_SIZE = 32


def load_episode_classes(data_root: str | os.PathLike, dataset: str, split: str, image_size: int,
                         *, progress: bool = False):
    """The classes of ``split`` (train / val / test) of ``dataset`` as an episode ClassSource."""
    if dataset == "omniglot":
        return load_omniglot_split(data_root, split, image_size, progress=progress)
    if dataset == "cifar_fs":
        if image_size != CIFAR_SIZE:
            raise ValueError(f"image_size={image_size}: CIFAR-FS images are {CIFAR_SIZE}x{CIFAR_SIZE}; "
                             f"set image_size={CIFAR_SIZE} with dataset=cifar_fs")
        return fewshot_classes(data_root, "cifar-fs", split)
    raise ValueError(f"dataset={dataset!r}: choose one of {sorted(EPISODE_DATASETS)}")

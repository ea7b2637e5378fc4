"""scikit-learn's bundled handwritten digits as a few-shot meta-test domain.

Issue 3's CPU-scale analogue of thesis Table 3.7 ("train on one data set, test on another"):
meta-train on Omniglot, meta-test on these digits. The 1,797 images (8x8, grey levels 0-16,
ink high) ship inside scikit-learn, so nothing is downloaded. They are upsampled to
``image_size`` (bilinear) and scaled to uint8 0-255 with ink high, like the Omniglot loader.

    digits = DigitsClasses(image_size=28)     # 10 classes, an episode ClassSource
"""

from __future__ import annotations

import numpy as np
from PIL import Image


class DigitsClasses:
    def __init__(self, image_size: int = 28):
        from sklearn.datasets import load_digits

        data = load_digits()
        images = np.clip(data.images / 16.0 * 255.0, 0, 255).astype(np.uint8)  # (N, 8, 8)
        if image_size != 8:
            images = np.stack([np.asarray(Image.fromarray(im).resize(
                (image_size, image_size), Image.BILINEAR)) for im in images])
        self.images = images
        self.class_names = [str(d) for d in range(10)]
        self._index = [np.flatnonzero(data.target == d) for d in range(10)]
        self.n_samples_per_class = min(len(ix) for ix in self._index)
        self.image_size = image_size

    def __len__(self) -> int:
        return 10

    def get(self, class_idx: int, sample_idx) -> np.ndarray:
        """uint8 (..., size, size), ink high."""
        return self.images[self._index[class_idx][sample_idx]]

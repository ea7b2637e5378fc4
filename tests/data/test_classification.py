import numpy as np
import pytest

from priorlab.data.classification import omniglot_classification


def test_omniglot_classification_split_per_class(data_root):
    (xtr, ytr), (xte, yte) = omniglot_classification(data_root, "train", n_classes=10, test_per_class=5)
    assert xtr.shape == (150, 1, 28, 28) and xte.shape == (50, 1, 28, 28) and xtr.dtype == np.uint8
    assert np.bincount(ytr).tolist() == [15] * 10 and np.bincount(yte).tolist() == [5] * 10
    train_imgs = {x.tobytes() for x in xtr}
    assert not any(x.tobytes() in train_imgs for x in xte)  # different drawings
    again = omniglot_classification(data_root, "train", n_classes=10, test_per_class=5)
    assert np.array_equal(again[0][0], xtr)
    with pytest.raises(ValueError, match="test_per_class"):
        omniglot_classification(data_root, "train", n_classes=10, test_per_class=20)

import numpy as np
import pytest

from priorlab.data.digits import DigitsClasses
from priorlab.data.episodes import FewShotTaskSampler


@pytest.fixture(scope="module")
def digits():
    return DigitsClasses(image_size=28)


def test_digits_upsampled_ink_high(digits):
    assert len(digits) == 10 and digits.n_samples_per_class >= 170
    x = digits.get(3, np.arange(5))
    assert x.shape == (5, 28, 28) and x.dtype == np.uint8
    assert x.mean() < 128 and x.max() > 200  # mostly background, bright ink


def test_fewshot_task_is_a_function_of_its_seed_and_disjoint(digits):
    s = FewShotTaskSampler(digits, n_way=5, k_shot=2, n_query=3)
    a, b, c = s.sample(1), s.sample(1), s.sample(2)
    assert np.array_equal(a.x_support, b.x_support) and np.array_equal(a.y_query, b.y_query)
    assert not np.array_equal(a.x_support, c.x_support)
    assert a.x_support.shape == (10, 1, 28, 28) and a.x_query.shape == (15, 1, 28, 28)
    assert np.bincount(a.y_support).tolist() == [2] * 5 and np.bincount(a.y_query).tolist() == [3] * 5
    # no query image is also a support image
    sup = {x.tobytes() for x in a.x_support}
    assert not any(x.tobytes() in sup for x in a.x_query)


def test_fewshot_sampler_validates(digits):
    with pytest.raises(ValueError, match="images per class"):
        FewShotTaskSampler(digits, 5, 100, 100)
    with pytest.raises(ValueError, match="only 10 classes"):
        FewShotTaskSampler(digits, 20, 1, 1)

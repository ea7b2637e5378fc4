"""MiniImageNet and PACS loaders on tiny images written in the published layouts."""

import numpy as np
import pytest
from PIL import Image

from priorlab.data.episodes import OnlineEpisodeSampler
from priorlab.data.images import (PACS_CLASSES, PACS_DOMAINS, MiniImageNetClasses, leave_one_domain_out,
                                  load_pacs)
from priorlab.data.root import MissingDataError


def _img(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((10, 12, 3), value, dtype=np.uint8)).save(path)


def test_miniimagenet_split_csv_and_images(tmp_path):
    (tmp_path / "splits" / "miniimagenet").mkdir(parents=True)
    rows = ["filename,label"]
    for c in range(6):
        for i in range(3):
            name = f"n0{c}_{i:03d}.jpg"
            rows.append(f"{name},n0{c}")
            _img(tmp_path / "miniimagenet" / "images" / name, 40 * c)
    (tmp_path / "splits" / "miniimagenet" / "test.csv").write_text("\n".join(rows) + "\n")
    mini = MiniImageNetClasses(tmp_path, "test", image_size=8)
    assert len(mini) == 6 and mini.n_samples_per_class == 3
    x = mini.get(2, np.array([0, 1]))
    assert x.shape == (2, 3, 8, 8) and x.dtype == np.uint8 and abs(int(x.mean()) - 80) <= 2
    ep = OnlineEpisodeSampler(mini, n_way=5, n_shot=2).sample(0)
    assert ep.x.shape == (10, 3, 8, 8)
    with pytest.raises(MissingDataError):
        MiniImageNetClasses(tmp_path, "train")


def test_pacs_domains_and_leave_one_out(tmp_path):
    for d, dom in enumerate(PACS_DOMAINS):
        for c, cls in enumerate(PACS_CLASSES[:3]):
            _img(tmp_path / "pacs" / dom / cls / f"{c}.jpg", 10 * d + c)
    train, test = leave_one_domain_out("sketch")
    assert test == ["sketch"] and "sketch" not in train and len(train) == 3
    ds = load_pacs(tmp_path, train, image_size=6)
    assert len(ds) == 9 and set(ds.domains.tolist()) == {0, 1, 2}
    x, y = ds[4]
    assert x.shape == (3, 6, 6) and y == ds.labels[4]
    with pytest.raises(ValueError, match="domains"):
        load_pacs(tmp_path, ["paintings"])
    with pytest.raises(MissingDataError):
        load_pacs(tmp_path / "nowhere", ["photo"])

"""Online few-shot segmentation data (priorlab.data.fss1000, priorlab.data.segmentation; Sec. 2.4.4,
App. A.4): the FSS-1000 loader on the real five-pair fixture of the data root and on tiny fixtures
written in its layout, the Omniglot compositing on small synthetic strokes, and the episode sampler.

The real fixture (``<data root>/fss1000/eiffel_tower``, a class that is in none of the published
splits) is found through the data root priorlab resolves ($PRIORLAB_DATA_DIR, which
tests/conftest.py points at ../shared/datasets where that exists); only the tests that read it are
skipped where it is absent.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from priorlab.data import omniglot as og
from priorlab.data.fss1000 import Fss1000Classes, Fss1000MissingError
from priorlab.data.omniglot import OmniglotClasses, OmniglotImages, read_split
from priorlab.data.root import MissingDataError, resolve_data_root
from priorlab.data.segmentation import (
    OMNIGLOT_SOURCE_SIZE,
    OmniglotSegmentationClasses,
    OnlineSegmentationSampler,
    load_segmentation_source,
    save_episode_png,
)
from priorlab.data.split_files import read_fss1000_split

FIXTURE_CLASS = "eiffel_tower"


@pytest.fixture(scope="module")
def real_fss_root() -> Path:
    root = resolve_data_root()
    if not (root / "fss1000" / FIXTURE_CLASS).is_dir():
        pytest.skip(f"the FSS-1000 fixture {root}/fss1000/{FIXTURE_CLASS} is not in this data root")
    return root


def _write_fss_class(root: Path, name: str, n: int, size: int = 112, mask_max: int = 255) -> None:
    """Pair i (1-based): a flat image of grey level 20*i; its mask a rectangle of width 8*i px."""
    folder = root / "fss1000" / name
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, n + 1):
        Image.new("RGB", (size, size), (20 * i, 20 * i, 20 * i)).save(folder / f"{i}.jpg", quality=100)
        mask = np.zeros((size, size, 3), dtype=np.uint8)
        mask[16:48, 16:16 + 8 * i] = mask_max
        Image.fromarray(mask).save(folder / f"{i}.png")


# --------------------------------------------------------------------------- FSS-1000


def test_fss_real_fixture(real_fss_root):
    src = Fss1000Classes(real_fss_root, "train", classes=[FIXTURE_CLASS])
    assert len(src) == 1 and src.class_name(0) == FIXTURE_CLASS
    assert src.n_samples(0) == src.n_samples_per_class == 5
    for s in range(5):
        image, mask = src.get(0, s, None)
        assert image.shape == (3, 56, 56) and image.dtype == np.uint8
        assert mask.shape == (56, 56) and mask.dtype == np.uint8
        assert set(np.unique(mask)) == {0, 1}  # binary, neither empty nor full
    # at the native size nothing is resampled: the mask is the png's, binarised (0/1 masks here)
    native = Fss1000Classes(real_fss_root, "train", 224, classes=[FIXTURE_CLASS])
    png = np.asarray(Image.open(real_fss_root / "fss1000" / FIXTURE_CLASS / "1.png"))
    np.testing.assert_array_equal(native.get(0, 0)[1], (png.max(axis=-1) > 0).astype(np.uint8))
    with pytest.raises(IndexError):
        src.get(0, 5)


def test_fss_real_fixture_sampler(real_fss_root):
    src = Fss1000Classes(real_fss_root, "test", classes=[FIXTURE_CLASS])
    ep = OnlineSegmentationSampler(src, n_targets=5, n_distractors=0).sample(0)
    assert ep.x.shape == (5, 3, 56, 56) and ep.is_target.all()
    assert sorted(ep.sample_idx) == list(range(5))
    with pytest.raises(ValueError, match="n_targets=6"):
        OnlineSegmentationSampler(src, n_targets=6, n_distractors=0)
    with pytest.raises(ValueError, match="second class"):
        OnlineSegmentationSampler(src, n_targets=2, n_distractors=2)


def test_fss_missing_classes_error(tmp_path):
    with pytest.raises(Fss1000MissingError) as info:
        Fss1000Classes(tmp_path, "val")
    msg = str(info.value)
    assert "240 of the 240" in msg and "'val'" in msg
    assert "HKUSTCV/FSS-1000" in msg and str(tmp_path / "fss1000") in msg and "allow_missing" in msg
    assert isinstance(info.value, MissingDataError)
    again = pickle.loads(pickle.dumps(info.value))
    assert str(again) == msg
    with pytest.raises(Fss1000MissingError):  # allow_missing with nothing present is still an error
        Fss1000Classes(tmp_path, "val", allow_missing=True)


def test_fss_tiny_fixture_layout_order_resize_and_missing(tmp_path):
    val = read_fss1000_split(tmp_path, "val")  # the packaged list
    _write_fss_class(tmp_path, val[1], 10)                 # 0/255 masks, as released
    _write_fss_class(tmp_path, val[0], 3, mask_max=1)      # 0/1 masks, as the fixture here
    with pytest.raises(Fss1000MissingError, match=f"{len(val) - 2} of the {len(val)}"):
        Fss1000Classes(tmp_path, "val")
    src = Fss1000Classes(tmp_path, "val", allow_missing=True)
    assert [src.class_name(i) for i in range(len(src))] == val[:2]  # split order
    assert len(src.missing_classes) == len(val) - 2
    assert (src.n_samples(0), src.n_samples(1), src.n_samples_per_class) == (3, 10, 3)
    for c in range(2):
        for s in range(src.n_samples(c)):
            image, mask = src.get(c, s)
            i = s + 1  # pairs are ordered by number: 1, 2, ..., 10 (not 1, 10, 2)
            assert image.shape == (3, 56, 56) and abs(int(image.mean()) - 20 * i) <= 2
            expect = np.zeros((56, 56), dtype=np.uint8)
            expect[8:24, 8:8 + 4 * i] = 1  # the 112 px rectangle at half size
            np.testing.assert_array_equal(mask, expect)


def test_fss_split_names_and_pairs(tmp_path):
    trn = read_fss1000_split(tmp_path, "trn")
    _write_fss_class(tmp_path, trn[0], 2, size=20)
    a = Fss1000Classes(tmp_path, "train", 10, allow_missing=True)
    b = Fss1000Classes(tmp_path, "trn", 10, allow_missing=True)
    assert a.class_names == b.class_names == [trn[0]] and a.get(0, 1)[0].shape == (3, 10, 10)
    with pytest.raises(ValueError, match="unknown FSS-1000 split"):
        Fss1000Classes(tmp_path, "training")
    (tmp_path / "fss1000" / trn[0] / "2.png").unlink()
    with pytest.raises(ValueError, match="matching"):
        Fss1000Classes(tmp_path, "train", allow_missing=True)


# --------------------------------------------------------------------------- Omniglot composite


@pytest.fixture(scope="module")
def strokes() -> OmniglotClasses:
    """Six synthetic 'characters' x 20 drawings: random thick polylines, ink = 255."""
    rng = np.random.default_rng(0)
    base = np.zeros((6, 20, 56, 56), dtype=np.uint8)
    for c in range(6):
        for d in range(20):
            img = Image.new("L", (56, 56), 0)
            pts = [tuple(p) for p in rng.uniform(8, 48, (4, 2))]
            ImageDraw.Draw(img).line(pts, fill=255, width=4)
            base[c, d] = np.asarray(img)
    return OmniglotClasses(base, np.arange(6), np.zeros(6, dtype=int),
                           [f"Alpha/character{c:02d}/rot000" for c in range(6)])


def test_composite_mask_is_exactly_the_painted_pixels(strokes):
    src = OmniglotSegmentationClasses(strokes, 40, textures=["constant"])
    for seed in range(8):
        image, mask = src.get(seed % 6, seed, np.random.default_rng(seed))
        assert image.shape == (3, 40, 40) and image.dtype == np.uint8 and mask.dtype == np.uint8
        m = mask.astype(bool)
        assert set(np.unique(mask)) == {0, 1}
        background = image[:, ~m]
        assert (background == background[:, :1]).all()  # one flat colour off the object
        differs = (image != background[:, :1, None]).any(axis=0)
        np.testing.assert_array_equal(differs, m)  # and every object pixel differs from it


def test_composite_textured_object_and_determinism(strokes):
    src = OmniglotSegmentationClasses(strokes, 56)
    for seed in range(10):
        image, mask = src.get(seed % 6, seed, np.random.default_rng(seed))
        area = int(mask.sum())
        assert 20 <= area < 0.5 * mask.size  # an object, not a trace, not the whole image
        assert image[:, ~mask.astype(bool)].std() > 0  # the background is not flat
        again = src.get(seed % 6, seed, np.random.default_rng(seed))
        np.testing.assert_array_equal(image, again[0])
        np.testing.assert_array_equal(mask, again[1])
    a = src.get(0, 0, np.random.default_rng(1))
    b = src.get(0, 0, np.random.default_rng(2))
    assert not np.array_equal(a[0], b[0])
    with pytest.raises(IndexError):
        src.get(0, 20, np.random.default_rng(0))
    with pytest.raises(ValueError, match="textures"):
        OmniglotSegmentationClasses(strokes, 56, textures=["plaid"])


def test_omniglot_source_splits_are_class_disjoint(tmp_path, monkeypatch):
    names = sorted({n for s in ("train", "val", "test") for n, _ in read_split(tmp_path, s)})
    sizes = []

    def fake_images(data_root, image_size=28, *, progress=True):
        sizes.append(image_size)
        return OmniglotImages(np.zeros((len(names), 20, 4, 4), dtype=np.uint8), names)

    monkeypatch.setattr(og, "load_omniglot_images", fake_images)
    chars = {}
    for split in ("train", "val", "test"):
        src = load_segmentation_source("omniglot", tmp_path, split, image_size=56)
        assert src.image_size == 56 and src.n_samples_per_class == 20
        chars[split] = {src.class_name(i).rsplit("/", 1)[0] for i in range(len(src))}
    assert sizes == [OMNIGLOT_SOURCE_SIZE] * 3
    assert not chars["train"] & chars["val"] and not chars["train"] & chars["test"]
    assert not chars["val"] & chars["test"]
    with pytest.raises(ValueError, match="unknown segmentation source"):
        load_segmentation_source("pascal", tmp_path, "train")


# --------------------------------------------------------------------------- sampler


@pytest.fixture(scope="module")
def composite(strokes) -> OmniglotSegmentationClasses:
    return OmniglotSegmentationClasses(strokes, 24)


def test_sampler_episode_structure(composite):
    sampler = OnlineSegmentationSampler(composite, n_targets=9, n_distractors=9)
    patterns = set()
    for seed in range(4):
        ep = sampler.sample(seed)
        assert sampler.length == 18
        assert ep.x.shape == (18, 3, 24, 24) and ep.x.dtype == np.uint8
        assert ep.label.shape == ep.object_mask.shape == (18, 24, 24)
        assert ep.label.dtype == ep.object_mask.dtype == np.uint8 and ep.is_target.dtype == bool
        assert ep.is_target.sum() == 9 and (~ep.is_target).sum() == 9
        assert ep.target_class != ep.distractor_class
        assert (ep.class_idx[ep.is_target] == ep.target_class).all()
        assert (ep.class_idx[~ep.is_target] == ep.distractor_class).all()
        for who in (ep.is_target, ~ep.is_target):  # distinct drawings within each class
            assert len(set(ep.sample_idx[who])) == who.sum()
        assert (ep.label[~ep.is_target] == 0).all()
        np.testing.assert_array_equal(ep.label[ep.is_target], ep.object_mask[ep.is_target])
        assert (ep.object_mask.sum(axis=(1, 2)) > 0).all()  # distractors have objects too
        patterns.add(tuple(ep.is_target))
    assert len(patterns) > 1  # the order of targets and distractors is shuffled


def test_sampler_without_distractors_and_determinism(composite):
    sampler = OnlineSegmentationSampler(composite, n_targets=4, n_distractors=0)
    ep = sampler.sample(7)
    assert ep.is_target.all() and ep.distractor_class == -1 and len(ep.x) == 4
    np.testing.assert_array_equal(ep.label, ep.object_mask)
    again = sampler.sample(7)
    for field in ("x", "label", "object_mask", "is_target", "class_idx", "sample_idx"):
        np.testing.assert_array_equal(getattr(ep, field), getattr(again, field))
    assert not np.array_equal(sampler.sample(8).x, ep.x)
    x, label, obj, is_t = OnlineSegmentationSampler(composite, 2, 2).sample_batch([3, 4])
    assert x.shape == (2, 4, 3, 24, 24) and label.shape == obj.shape == (2, 4, 24, 24)
    assert is_t.shape == (2, 4) and is_t.dtype == bool
    np.testing.assert_array_equal(x[1], OnlineSegmentationSampler(composite, 2, 2).sample(4).x)


def test_sampler_validates(composite):
    with pytest.raises(ValueError, match="n_targets=21"):
        OnlineSegmentationSampler(composite, n_targets=21, n_distractors=0)
    with pytest.raises(ValueError, match="n_targets >= 1"):
        OnlineSegmentationSampler(composite, n_targets=0)
    with pytest.raises(ValueError, match="seed"):
        OnlineSegmentationSampler(composite, 2, 2).sample(-1)
    with pytest.raises(ValueError, match="at least one seed"):
        OnlineSegmentationSampler(composite, 2, 2).sample_batch([])


def test_sampler_uneven_class_sizes(tmp_path):
    val = read_fss1000_split(tmp_path, "val")
    _write_fss_class(tmp_path, val[0], 10, size=16)
    _write_fss_class(tmp_path, val[1], 3, size=16)
    src = Fss1000Classes(tmp_path, "val", 8, allow_missing=True)
    for n_t, n_d, target in ((5, 3, 0), (3, 5, 1)):  # only one class can be the target
        sampler = OnlineSegmentationSampler(src, n_t, n_d)
        for seed in range(5):
            ep = sampler.sample(seed)
            assert (ep.target_class, ep.distractor_class) == (target, 1 - target)


def test_save_episode_png(composite, tmp_path):
    ep = OnlineSegmentationSampler(composite, 3, 2).sample(0)
    path = save_episode_png(ep, tmp_path / "sub" / "ep.png", scale=2, columns=3)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        assert im.width > 3 * 48 and im.height > 2 * 2 * 48

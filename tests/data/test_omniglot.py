"""Omniglot loading (priorlab.data.omniglot): small synthetic zips for the logic, the real data
(App. A.1.1: 1623 characters x 20, 28x28, Vinyals split, 90-degree rotations) for the facts.

The real data root is the one priorlab resolves ($PRIORLAB_DATA_DIR, which tests/conftest.py
points at ../shared/datasets where that exists, else ~/.cache/priorlab); `make test` fetches
Omniglot into it first. It may be read-only, so every decode writes its cache under a temporary
PRIORLAB_CACHE_DIR.
"""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from priorlab.data import omniglot as og
from priorlab.data.omniglot import (
    OMNIGLOT_ZIPS,
    SPLITS,
    MissingDataError,
    OmniglotClasses,
    OmniglotImages,
    load_omniglot_images,
    load_omniglot_split,
    read_split,
)
from priorlab.data.root import CACHE_ENV_VAR, ENV_VAR, resolve_data_root

# --------------------------------------------------------------------------- synthetic zips


def _png(box: tuple[int, int, int, int], size: int = 105) -> bytes:
    """A 1-bit Omniglot-style PNG: white background, a black (ink) rectangle."""
    im = Image.new("1", (size, size), 1)
    ImageDraw.Draw(im).rectangle(box, fill=0)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _write_zip(path: Path, top: str, chars: dict[str, int]) -> None:
    """chars: "Alphabet/characterNN" -> number of drawings. Drawing j has ink at rows 5j..5j+4."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{top}/", b"")
        for name, n in chars.items():
            for j in reversed(range(n)):  # stored out of order on purpose
                zf.writestr(f"{top}/{name}/0001_{j + 1:02d}.png", _png((0, 5 * j, 104, 5 * j + 4)))


@pytest.fixture
def tiny_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "root"
    _write_zip(root / "omniglot" / OMNIGLOT_ZIPS[0], "images_background",
               {"Beta/character02": 20, "Beta/character01": 20})
    _write_zip(root / "omniglot" / OMNIGLOT_ZIPS[1], "images_evaluation", {"Alpha/character01": 20})
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "cache"))
    return root


def test_tiny_decode_layout_order_and_ink(tiny_root):
    data = load_omniglot_images(tiny_root, image_size=105, progress=False)
    assert data.names == ["Alpha/character01", "Beta/character01", "Beta/character02"]
    assert data.index == {n: i for i, n in enumerate(data.names)}
    assert data.images.shape == (3, 20, 105, 105) and data.images.dtype == np.uint8
    for j in range(20):  # drawings ordered by file name; ink is 255 exactly where drawn
        rows = np.flatnonzero(data.images[0, j].max(axis=1))
        assert rows.tolist() == list(range(5 * j, 5 * j + 5))
        assert set(np.unique(data.images[0, j])) == {0, 255}


def test_tiny_resize_keeps_ink_fraction(tiny_root):
    data = load_omniglot_images(tiny_root, image_size=28, progress=False)
    assert data.images.shape == (3, 20, 28, 28)
    ink = 5 * 105 / 105**2  # the box filter is an area average: mean intensity is preserved
    assert abs(data.images.mean() / 255 - ink) < 0.01


def test_wrong_number_of_drawings_is_an_error(tmp_path, monkeypatch):
    root = tmp_path / "root"
    _write_zip(root / "omniglot" / OMNIGLOT_ZIPS[0], "images_background", {"Beta/character01": 19})
    _write_zip(root / "omniglot" / OMNIGLOT_ZIPS[1], "images_evaluation", {"Alpha/character01": 20})
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "cache"))
    with pytest.raises(ValueError, match=r"Beta/character01.*19 drawings, expected 20"):
        load_omniglot_images(root, progress=False)


def test_unexpected_zip_layout_is_an_error(tmp_path, monkeypatch):
    root = tmp_path / "root"
    _write_zip(root / "omniglot" / OMNIGLOT_ZIPS[0], "wrong_top", {"Beta/character01": 20})
    _write_zip(root / "omniglot" / OMNIGLOT_ZIPS[1], "images_evaluation", {"Alpha/character01": 20})
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="images_background/<Alphabet>"):
        load_omniglot_images(root, progress=False)


def test_tiny_cache_reused_and_rebuilt_when_corrupt(tiny_root, tmp_path, monkeypatch):
    first = load_omniglot_images(tiny_root, progress=False)
    (cache,) = (tmp_path / "cache" / "omniglot").glob("*.npz")
    assert "28px" in cache.name and og.CACHE_VERSION in cache.name

    def boom(*args, **kwargs):
        raise AssertionError("decoded again although a valid cache exists")

    with monkeypatch.context() as m:
        m.setattr(og, "_decode_all", boom)
        again = load_omniglot_images(tiny_root, progress=False)
    np.testing.assert_array_equal(again.images, first.images)
    assert again.names == first.names

    cache.write_bytes(b"garbage")
    rebuilt = load_omniglot_images(tiny_root, progress=False)
    np.testing.assert_array_equal(rebuilt.images, first.images)
    with np.load(cache) as npz:  # and the cache was rewritten
        np.testing.assert_array_equal(npz["images"], first.images)


def test_cache_rebuilt_when_zip_changes(tiny_root):
    load_omniglot_images(tiny_root, progress=False)
    _write_zip(tiny_root / "omniglot" / OMNIGLOT_ZIPS[1], "images_evaluation",
               {"Alpha/character01": 20, "Alpha/character02": 20})
    assert len(load_omniglot_images(tiny_root, progress=False)) == 4


def test_missing_zips_error_names_files_root_and_command(tmp_path):
    with pytest.raises(MissingDataError) as info:
        load_omniglot_images(tmp_path)
    msg = str(info.value)
    for z in OMNIGLOT_ZIPS:
        assert str(tmp_path / "omniglot" / z) in msg
    assert str(tmp_path) in msg
    assert "priorlab data download omniglot" in msg and "--data-dir" in msg and ENV_VAR in msg
    assert not (tmp_path / "omniglot").exists(), "a failed load must not create folders"


def test_read_split_errors(tmp_path):
    with pytest.raises(ValueError) as info:
        read_split(tmp_path, "training")
    assert all(s in str(info.value) for s in SPLITS)
    bad = tmp_path / "omniglot" / "splits" / "vinyals" / "test.txt"
    bad.parent.mkdir(parents=True)
    bad.write_text("Alpha/character01/rot000\nAlpha/character01/rot045\n")
    with pytest.raises(ValueError, match=f"{bad}:2"):
        read_split(tmp_path, "test")


def test_split_from_the_data_root_else_packaged(tmp_path):
    packaged = read_split(tmp_path, "val")  # no split file in this root: the packaged copy
    assert len(packaged) == 172 * 4 and packaged[:2] == [("Hebrew/character01", 0), ("Hebrew/character01", 1)]
    own = tmp_path / "omniglot" / "splits" / "vinyals" / "val.txt"
    own.parent.mkdir(parents=True)
    own.write_text("Alpha/character01/rot270\n\nBeta/character02/rot000\n")
    assert read_split(tmp_path, "val") == [("Alpha/character01", 3), ("Beta/character02", 0)]


def test_split_with_tiny_zips_from_the_data_root(tiny_root):
    own = tiny_root / "omniglot" / "splits" / "vinyals" / "train.txt"
    own.parent.mkdir(parents=True)
    own.write_text("Beta/character02/rot090\nAlpha/character01/rot000\n")
    classes = load_omniglot_split(tiny_root, "train", image_size=105, progress=False)
    assert classes.class_names == ["Beta/character02/rot090", "Alpha/character01/rot000"]
    # the packaged Vinyals split names real characters, which the tiny zips do not have
    with pytest.raises(ValueError, match="not among the 3 decoded"):
        load_omniglot_split(tiny_root, "val", image_size=105, progress=False)


def test_from_split_unknown_character(tiny_root):
    data = load_omniglot_images(tiny_root, progress=False)
    with pytest.raises(ValueError, match="Gamma/character01"):
        OmniglotClasses.from_split(data, [("Gamma/character01", 0)])


def test_get_rotates_counter_clockwise_and_copies():
    base = np.zeros((1, 20, 4, 4), dtype=np.uint8)
    base[0, :, 0, 3] = 255  # top-right pixel
    data = OmniglotImages(images=base, names=["A/character01"])
    classes = OmniglotClasses.from_split(data, [("A/character01", k) for k in range(4)])
    assert len(classes) == 4 and classes.n_samples_per_class == 20
    assert classes.class_names[1] == "A/character01/rot090"
    assert classes.get(1, 0)[0, 0] == 255  # a quarter turn CCW moves top-right to top-left
    assert classes.get(2, 0)[3, 0] == 255
    assert classes.get(3, 0)[3, 3] == 255
    assert classes.get(1, np.arange(3)).shape == (3, 4, 4)
    classes.get(0, 0)[...] = 7
    assert base.max() == 255 and base[0, 0, 1, 1] == 0, "get must not hand out views of the base"
    with pytest.raises(IndexError):
        classes.get(4, 0)


# --------------------------------------------------------------------------- real Omniglot


@pytest.fixture(scope="session")
def real_root() -> Path:
    root = resolve_data_root()
    missing = [z for z in OMNIGLOT_ZIPS if not (root / "omniglot" / z).is_file()]
    if missing:
        pytest.fail(f"real Omniglot zips {missing} not under {root}/omniglot: run "
                    f"`priorlab data download omniglot` (`make test` does) or set {ENV_VAR}")
    return root


@pytest.fixture(scope="session")
def real_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("omniglot_cache")


@pytest.fixture(scope="session")
def real_images(real_root, real_cache) -> OmniglotImages:
    with pytest.MonkeyPatch.context() as m:
        m.setenv(CACHE_ENV_VAR, str(real_cache))
        start = time.perf_counter()
        data = load_omniglot_images(real_root)
        print(f"\ndecoded Omniglot in {time.perf_counter() - start:.1f} s")
    return data


@pytest.fixture
def use_real_cache(real_cache, real_images, monkeypatch):
    monkeypatch.setenv(CACHE_ENV_VAR, str(real_cache))


def test_real_all_characters(real_images):
    assert real_images.images.shape == (1623, 20, 28, 28)
    assert real_images.images.dtype == np.uint8
    names = real_images.names
    assert names == sorted(set(names))
    assert len({n.split("/")[0] for n in names}) == 50
    assert real_images.index[names[100]] == 100


def test_real_ink_is_high(real_images):
    imgs = real_images.images
    assert imgs.max() == 255 and imgs.min() == 0
    assert imgs.mean() < 64, "background must be 0: ink covers a small part of each drawing"
    # every drawing has some ink, and its border is (almost) background
    assert (imgs.reshape(len(imgs) * 20, -1).max(axis=1) > 128).all()
    assert imgs[:, :, 0, :].mean() < imgs.mean()


def test_real_cache_reused(real_root, real_images, use_real_cache, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("decoded again although the cache exists")

    monkeypatch.setattr(og, "_decode_all", boom)
    again = load_omniglot_images(real_root)
    np.testing.assert_array_equal(again.images, real_images.images)
    assert again.names == real_images.names


def test_real_vinyals_split_sizes_and_disjointness(real_root, real_images):
    splits = {s: read_split(real_root, s) for s in SPLITS}
    assert {s: len(e) for s, e in splits.items()} == {
        "train": 1028 * 4, "val": 172 * 4, "test": 423 * 4, "trainval": 1200 * 4,
    }
    chars = {s: {name for name, _ in e} for s, e in splits.items()}
    assert len(chars["train"]) == 1028 and len(chars["val"]) == 172 and len(chars["test"]) == 423
    assert not chars["train"] & chars["val"]
    assert not chars["train"] & chars["test"]
    assert not chars["val"] & chars["test"]
    assert chars["trainval"] == chars["train"] | chars["val"]
    assert chars["train"] | chars["val"] | chars["test"] == set(real_images.names)
    for s in ("train", "val", "test"):
        assert {k for _, k in splits[s]} == {0, 1, 2, 3}


def test_real_splits_equal_the_packaged_copies(real_root, tmp_path):
    for s in SPLITS:  # tmp_path holds no split files: read_split falls back to the package
        assert og.split_path(real_root, s).is_file(), "`priorlab data download omniglot` puts it there"
        assert read_split(real_root, s) == read_split(tmp_path, s), s


def test_real_rotation_classes(real_root, use_real_cache):
    train = load_omniglot_split(real_root, "train")
    assert len(train) == 1028 * 4 and train.n_samples_per_class == 20
    by_name = {n: i for i, n in enumerate(train.class_names)}
    name = train.class_names[0].rsplit("/", 1)[0]
    c0 = by_name[f"{name}/rot000"]
    for k in (1, 2, 3):
        ck = by_name[f"{name}/rot{90 * k:03d}"]
        np.testing.assert_array_equal(train.get(ck, 3), np.rot90(train.get(c0, 3), k))
        assert not np.array_equal(train.get(ck, 3), train.get(c0, 3))
        idx = np.array([0, 7, 19])
        got = train.get(ck, idx)
        assert got.shape == (3, 28, 28) and got.dtype == np.uint8
        np.testing.assert_array_equal(got, np.rot90(train.get(c0, idx), k, axes=(1, 2)))

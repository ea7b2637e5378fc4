"""Data root and cache resolution (priorlab.data.root) and the downloader (priorlab.data.download).

No test here sends traffic off the machine: downloads use file:// URLs or a refused loopback port.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import urllib.request
import zipfile
from pathlib import Path

import pytest

from priorlab.data import download as dl
from priorlab.data.download import (
    DATASETS,
    ChecksumError,
    DownloadError,
    InvalidFileError,
    RemoteFile,
    download_dataset,
    fetch,
)
from priorlab.data.root import (
    CACHE_ENV_VAR,
    ENV_VAR,
    MissingDataError,
    resolve_cache_dir,
    resolve_data_root,
)

_PROXY_VARS = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.delenv(CACHE_ENV_VAR, raising=False)
    return home


@pytest.fixture
def real_data_root() -> Path:
    root = resolve_data_root(os.environ.get(ENV_VAR) or "/work/shared/datasets")
    if not (root / "omniglot" / "splits" / "vinyals" / "train.txt").is_file():
        pytest.fail(f"the real Omniglot data is not under {root}; set {ENV_VAR} to a data root")
    return root


# --------------------------------------------------------------------------- data root


def test_default_root_is_home_cache(home):
    assert resolve_data_root() == (home / ".cache" / "priorlab").resolve()
    assert not (home / ".cache").exists(), "resolving must not create anything"


def test_env_beats_default(home, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "from_env"))
    assert resolve_data_root() == (tmp_path / "from_env").resolve()
    assert resolve_data_root("") == (tmp_path / "from_env").resolve()


def test_cli_beats_env(home, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "from_env"))
    assert resolve_data_root(tmp_path / "from_cli") == (tmp_path / "from_cli").resolve()
    assert resolve_data_root(str(tmp_path / "from_cli")) == (tmp_path / "from_cli").resolve()


def test_relative_paths_become_absolute_against_cwd(home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    got = resolve_data_root("some/rel")
    assert got.is_absolute() and got == tmp_path.resolve() / "some" / "rel"
    monkeypatch.setenv(ENV_VAR, "../shared/datasets")
    got = resolve_data_root()
    assert got.is_absolute() and got == tmp_path.resolve().parent / "shared" / "datasets"


# --------------------------------------------------------------------------- cache dir


def test_cache_env_wins(home, tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "cache_env"))
    got = resolve_cache_dir(tmp_path / "root", "omniglot")
    assert got == (tmp_path / "cache_env" / "omniglot").resolve() and got.is_dir()
    assert not (tmp_path / "root").exists()


def test_cache_in_writable_root(home, tmp_path):
    got = resolve_cache_dir(tmp_path / "root", "omniglot")
    assert got == (tmp_path / "root" / "omniglot" / "cache").resolve() and got.is_dir()
    assert list(got.iterdir()) == [], "the write probe must not leave files behind"


def test_cache_falls_back_to_home_for_read_only_root(home, tmp_path):
    root = tmp_path / "ro_root"
    (root / "omniglot").mkdir(parents=True)
    (root / "omniglot").chmod(0o555)
    try:
        got = resolve_cache_dir(root, "omniglot")
        assert got == (home / ".cache" / "priorlab" / "cache" / "omniglot").resolve()
        assert got.is_dir()
        assert not (root / "omniglot" / "cache").exists()
    finally:
        (root / "omniglot").chmod(0o755)


def test_cache_dir_rejects_path_like_dataset(home, tmp_path):
    with pytest.raises(ValueError, match="plain folder name"):
        resolve_cache_dir(tmp_path, "../escape")


# --------------------------------------------------------------------------- missing data


def test_missing_data_error_tells_how_to_fix(tmp_path):
    files = [tmp_path / "omniglot" / "a.zip", tmp_path / "omniglot" / "b.zip"]
    err = MissingDataError("omniglot", tmp_path, files)
    msg = str(err)
    for f in files:
        assert str(f) in msg
    assert str(tmp_path) in msg
    assert "priorlab data download omniglot" in msg
    assert "--data-dir" in msg and ENV_VAR in msg
    assert isinstance(err, FileNotFoundError)
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == msg and again.missing == err.missing


# --------------------------------------------------------------------------- fetch


@pytest.fixture
def no_proxy(monkeypatch):
    for var in _PROXY_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def source(tmp_path):
    src = tmp_path / "src" / "payload.bin"
    src.parent.mkdir()
    src.write_bytes(os.urandom(300_000))
    return src


def test_fetch_file_url_success(tmp_path, source):
    data = source.read_bytes()
    remote = RemoteFile(name="payload", url=source.as_uri(), relpath="ds/sub/payload.bin",
                        md5=hashlib.md5(data).hexdigest())
    dest_dir = tmp_path / "root"
    paths = fetch([remote], dest_dir, progress=False)
    assert paths == [(dest_dir / "ds" / "sub" / "payload.bin").resolve()]
    assert paths[0].read_bytes() == data
    assert sorted(p.name for p in paths[0].parent.iterdir()) == ["payload.bin"], "no temp file left"


def test_fetch_sha256_preferred(tmp_path, source):
    data = source.read_bytes()
    remote = RemoteFile(name="payload", url=source.as_uri(), relpath="p.bin",
                        md5="0" * 32, sha256=hashlib.sha256(data).hexdigest())
    (path,) = fetch([remote], tmp_path / "root", progress=False)
    assert path.read_bytes() == data


def test_fetch_checksum_mismatch_leaves_nothing(tmp_path, source):
    remote = RemoteFile(name="payload", url=source.as_uri(), relpath="ds/payload.bin",
                        sha256="ab" * 32)
    with pytest.raises(ChecksumError) as info:
        fetch([remote], tmp_path / "root", progress=False)
    msg = str(info.value)
    assert "ab" * 32 in msg, "message must show the expected digest"
    assert hashlib.sha256(source.read_bytes()).hexdigest() in msg, "and the one received"
    assert isinstance(info.value, DownloadError)
    assert list((tmp_path / "root" / "ds").iterdir()) == []


def test_fetch_unreachable_url_explains(tmp_path, no_proxy):
    url = "http://127.0.0.1:9/x"  # discard port: refused at once, never leaves the machine
    remote = RemoteFile(name="x", url=url, relpath="ds/x.zip")
    dest = (tmp_path / "root" / "ds" / "x.zip").resolve()
    with pytest.raises(DownloadError) as info:
        fetch([remote], tmp_path / "root", progress=False)
    msg = str(info.value)
    assert url in msg and str(dest) in msg and "by hand" in msg
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_fetch_keeps_existing_unless_forced(tmp_path, source):
    remote = RemoteFile(name="payload", url=source.as_uri(), relpath="p.bin")
    dest = tmp_path / "root" / "p.bin"
    dest.parent.mkdir()
    dest.write_bytes(b"mine")
    fetch([remote], tmp_path / "root", progress=False)
    assert dest.read_bytes() == b"mine"
    fetch([remote], tmp_path / "root", force=True, progress=False)
    assert dest.read_bytes() == source.read_bytes()


def test_fetch_rejects_broken_existing_zip(tmp_path, source):
    remote = RemoteFile(name="z", url=source.as_uri(), relpath="z.zip", zip_top_folder="z")
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "z.zip").write_bytes(b"not a zip")
    with pytest.raises(InvalidFileError, match="not a readable zip"):
        fetch([remote], tmp_path / "root", progress=False)
    with zipfile.ZipFile(tmp_path / "root" / "z.zip", "w") as zf:
        zf.writestr("other/file.png", b"")
    with pytest.raises(InvalidFileError, match="under 'z/'"):
        fetch([remote], tmp_path / "root", progress=False)


# --------------------------------------------------------------------------- registry


def test_download_dataset_unknown_name_lists_known(tmp_path):
    with pytest.raises(ValueError) as info:
        download_dataset("omniglott", tmp_path)
    assert "omniglott" in str(info.value) and "omniglot" in str(info.value).replace("omniglott", "")


def test_omniglot_registry_layout():
    files = DATASETS["omniglot"]
    assert {f.relpath for f in files} == {
        "omniglot/images_background.zip",
        "omniglot/images_evaluation.zip",
        *(f"omniglot/splits/vinyals/{s}.txt" for s in ("train", "val", "test", "trainval")),
    }
    md5 = {f.relpath: f.md5 for f in files}
    assert md5["omniglot/images_background.zip"] == "68d2efa1b9178cc56df9314c21c6e718"
    assert md5["omniglot/images_evaluation.zip"] == "6b91aef0f799c5bb55b94e3f2daec811"
    for f in files:
        assert f.url.startswith("https://raw.githubusercontent.com/")
        assert f.md5 or f.sha256


def test_split_checksums_match_local_copies(real_data_root):
    for f in DATASETS["omniglot"]:
        if f.sha256:
            got = hashlib.sha256((real_data_root / f.relpath).read_bytes()).hexdigest()
            assert got == f.sha256, f.relpath


def test_download_dataset_accepts_present_files_offline(tmp_path, real_data_root, monkeypatch):
    root = tmp_path / "root"
    for f in DATASETS["omniglot"]:
        (root / f.relpath).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(real_data_root / f.relpath, root / f.relpath)

    def no_network(*args, **kwargs):
        raise AssertionError("download_dataset must not touch the network for present files")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(dl.urllib.request, "urlopen", no_network)
    paths = download_dataset("omniglot", root, progress=False)
    assert paths == [(root / f.relpath).resolve() for f in DATASETS["omniglot"]]

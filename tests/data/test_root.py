"""Data root and cache resolution (priorlab.data.root) and the downloader (priorlab.data.download).

No test here sends traffic off the machine: downloads use file:// URLs or a refused loopback port.
The real data root is the one the test session resolves (see tests/conftest.py); `make test`
fills it with `priorlab data download omniglot` first.
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
    MIRROR_ENV_VAR,
    ChecksumError,
    Digest,
    DownloadError,
    InvalidFileError,
    MirrorError,
    RemoteFile,
    download_dataset,
    fetch,
    resolve_mirror,
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


@pytest.fixture(autouse=True)
def no_mirror(monkeypatch):
    """A mirror set by whoever runs the tests must not redirect these tests' downloads."""
    monkeypatch.delenv(MIRROR_ENV_VAR, raising=False)


@pytest.fixture
def real_data_root() -> Path:
    root = resolve_data_root()
    missing = [f.relpath for f in DATASETS["omniglot"] if not (root / f.relpath).is_file()]
    if missing:
        pytest.fail(f"the real Omniglot data is not under {root} (missing {missing}): run "
                    f"`priorlab data download omniglot` (`make test` does) or set {ENV_VAR}")
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


def _snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    return {str(p): (p.stat().st_mode, p.stat().st_size, p.stat().st_mtime_ns)
            for p in [root, *root.rglob("*")]}


def test_download_dataset_accepts_present_files_offline(tmp_path, real_data_root, monkeypatch):
    """What CI's `make test` does: the data step on a read-only data root that holds everything."""
    root = tmp_path / "root"
    for f in DATASETS["omniglot"]:
        (root / f.relpath).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(real_data_root / f.relpath, root / f.relpath)
    for p in sorted([root, *root.rglob("*")], reverse=True):
        p.chmod(0o555 if p.is_dir() else 0o444)

    def no_network(*args, **kwargs):
        raise AssertionError("download_dataset must not touch the network for present files")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(dl.urllib.request, "urlopen", no_network)
    before = _snapshot(root)  # compared, not trusted to permissions: tests may run as root
    try:
        paths = download_dataset("omniglot", root, progress=False)
        assert paths == [(root / f.relpath).resolve() for f in DATASETS["omniglot"]]
        assert _snapshot(root) == before, "a data root that has every file must not be written"
    finally:
        for p in [root, *root.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)


# --------------------------------------------------------------------------- accepted digests


def test_omniglot_zips_accept_canonical_and_the_documented_rezip():
    for f in DATASETS["omniglot"][:2]:
        accepted = f.accepted()
        assert [d.algorithm for d in accepted] == ["md5", "sha256"]
        assert accepted[0].hexdigest == f.md5 and f.url in accepted[0].origin
        assert "re-zip" in accepted[1].origin and "shared" in accepted[1].origin
    for f in DATASETS["omniglot"][2:]:  # the split lists: one published digest, no alternates
        assert [d.algorithm for d in f.accepted()] == ["sha256"]


def test_fetch_accepts_an_alternate_digest_and_lists_all_on_mismatch(tmp_path, source):
    data = source.read_bytes()
    alt = Digest("sha256", hashlib.sha256(data).hexdigest(), "a re-packed copy")
    remote = RemoteFile(name="p", url=source.as_uri(), relpath="p.bin", md5="0" * 32, alternates=(alt,))
    (path,) = fetch([remote], tmp_path / "ok", progress=False)
    assert path.read_bytes() == data
    other = RemoteFile(name="p", url=source.as_uri(), relpath="p.bin", md5="0" * 32,
                       alternates=(Digest("sha256", "ab" * 32, "a re-packed copy"),))
    with pytest.raises(ChecksumError) as info:
        fetch([other], tmp_path / "bad", progress=False)
    msg = str(info.value)
    assert "0" * 32 in msg and "ab" * 32 in msg and "a re-packed copy" in msg and "canonical" in msg
    assert hashlib.md5(data).hexdigest() in msg and hashlib.sha256(data).hexdigest() in msg
    assert not (tmp_path / "bad" / "p.bin").exists()


# --------------------------------------------------------------------------- mirror


def test_resolve_mirror(monkeypatch, tmp_path):
    assert resolve_mirror() is None
    monkeypatch.setenv(MIRROR_ENV_VAR, "")
    assert resolve_mirror() is None
    monkeypatch.setenv(MIRROR_ENV_VAR, "https://mirror.example/data/")
    assert resolve_mirror() == "https://mirror.example/data"
    assert resolve_mirror("file:///srv/data") == "file:///srv/data", "an explicit mirror wins"
    with pytest.raises(MirrorError) as info:
        resolve_mirror(str(tmp_path))
    assert tmp_path.as_uri() in str(info.value), "a bare path gets its file:// spelling"
    monkeypatch.setenv(MIRROR_ENV_VAR, "ftp://mirror.example/data")
    with pytest.raises(MirrorError, match=MIRROR_ENV_VAR):
        resolve_mirror()
    with pytest.raises(MirrorError, match="three slashes"):
        resolve_mirror("file://srv/data")
    assert issubclass(MirrorError, DownloadError)  # so the CLI reports it as a one-line error


@pytest.fixture
def mirror(tmp_path, source):
    """A folder laid out like a data root, holding payload.bin at ds/payload.bin."""
    m = tmp_path / "mirror"
    (m / "ds" / "with space").mkdir(parents=True)
    shutil.copyfile(source, m / "ds" / "payload.bin")
    shutil.copyfile(source, m / "ds" / "with space" / "payload.bin")
    return m


def test_fetch_from_a_mirror_ignores_the_canonical_url(tmp_path, source, mirror, monkeypatch, no_proxy):
    data = source.read_bytes()
    canonical = "http://127.0.0.1:9/canonical"  # refused at once if it were used
    files = [RemoteFile(name="a", url=canonical, relpath="ds/payload.bin", md5=hashlib.md5(data).hexdigest()),
             RemoteFile(name="b", url=canonical, relpath="ds/with space/payload.bin",
                        sha256=hashlib.sha256(data).hexdigest())]
    monkeypatch.setenv(MIRROR_ENV_VAR, mirror.as_uri())
    paths = fetch(files, tmp_path / "root", progress=False)
    assert [p.read_bytes() for p in paths] == [data, data]
    assert paths[1] == (tmp_path / "root" / "ds" / "with space" / "payload.bin").resolve()


def test_mirror_download_is_still_verified(tmp_path, mirror):
    remote = RemoteFile(name="a", url="http://127.0.0.1:9/x", relpath="ds/payload.bin", sha256="ab" * 32)
    with pytest.raises(ChecksumError, match="ab" * 32):
        fetch([remote], tmp_path / "root", progress=False, mirror=mirror.as_uri())
    assert list((tmp_path / "root" / "ds").iterdir()) == []


def test_mirror_without_the_file_explains(tmp_path, mirror):
    remote = RemoteFile(name="a", url="https://example.org/canonical.zip", relpath="ds/missing.zip")
    with pytest.raises(DownloadError) as info:
        fetch([remote], tmp_path / "root", progress=False, mirror=mirror.as_uri())
    msg = str(info.value)
    assert f"{mirror.as_uri()}/ds/missing.zip" in msg and MIRROR_ENV_VAR in msg
    assert "https://example.org/canonical.zip" in msg, "and says how to use the canonical address"


def test_omniglot_through_a_mirror_into_an_empty_root(tmp_path, real_data_root, monkeypatch):
    """Offline clusters and CI: the real Omniglot files, copied from a data root used as a mirror."""
    monkeypatch.setenv(MIRROR_ENV_VAR, real_data_root.as_uri())
    root = tmp_path / "empty-root"
    paths = download_dataset("omniglot", root, progress=False)
    for f, path in zip(DATASETS["omniglot"], paths):
        data = path.read_bytes()
        assert data == (real_data_root / f.relpath).read_bytes()
        digests = {"md5": hashlib.md5(data).hexdigest(), "sha256": hashlib.sha256(data).hexdigest()}
        assert any(digests[d.algorithm] == d.hexdigest for d in f.accepted()), f.relpath
    assert sorted(p.name for p in (root / "omniglot").iterdir()) == [
        "images_background.zip", "images_evaluation.zip", "splits"], "no temporary left behind"

    from priorlab.data.omniglot import load_omniglot_split, split_path

    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "cache"))  # decode these zips, not a cache
    val = load_omniglot_split(root, "val", progress=False)
    assert split_path(root, "val").is_file() and len(val) == 172 * 4
    assert val.get(0, 0).shape == (28, 28) and val.get(0, 0).max() == 255

"""The cluster path: shared storage (``remote_storage``), Ray Jobs submission (``jobs``, ``cli_jobs``).

Unit tests need no Ray: ``mirror``/``pull`` run against ``file://`` URIs and a pyarrow
``SubTreeFileSystem`` standing in for a bucket; the Jobs client is checked against a tiny HTTP
server on 127.0.0.1 that plays the dashboard. The one integration test starts its own Ray head
(``ray start --head --block`` on 127.0.0.1, own temp dir, own token: nothing else on the machine
can attach to it, and stopping it touches only its own processes), submits a tiny sweep from a
client process that exits right after submitting, and checks that the sweep finished without it.

Run: ``python -m pytest tests/platform/test_jobs.py -q`` (``-m 'not integration'``: unit only).
"""

from __future__ import annotations

import http.server
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from priorlab.platform import jobs, remote_storage
from priorlab.platform.jobs import JobsError
from priorlab.platform.remote_storage import StorageError

RUNS = ["--runs-dir", "/shared/runs"]


# ---- shared storage ------------------------------------------------------------------------------

def make_experiment(root: Path) -> Path:
    """An experiment folder as a sweep leaves it (a few of its files)."""
    exp = root / "exp"
    (exp / "train_runs" / "train_a" / "checkpoint_000002").mkdir(parents=True)
    (exp / "study.json").write_text(json.dumps({"study": "memory-label-injection"}))
    pd.DataFrame({"trial_id": ["a", "b"], "eval/acc_1shot": [0.4, 0.5]}).to_parquet(exp / "results.parquet")
    (exp / "train_runs" / "train_a" / "checkpoint_000002" / "model.safetensors").write_bytes(os.urandom(5000))
    return exp


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_mirror_to_a_file_uri_copies_the_tree_then_only_what_changed(tmp_path, monkeypatch):
    exp = make_experiment(tmp_path / "local")
    (exp / ".results.parquet.x1.tmp").write_bytes(b"half a parquet")      # a writer in flight
    target = (tmp_path / "bucket" / "runs" / "exp").as_uri()              # file:///...
    first = remote_storage.mirror(exp, target)
    copied = tmp_path / "bucket" / "runs" / "exp"
    want = {k: v for k, v in tree(exp).items() if not k.endswith(".tmp")}
    assert tree(copied) == want
    assert sorted(first.copied) == sorted(want) and first.bytes == sum(map(len, want.values()))
    # deepest first: the checkpoint is published before the results row that names it
    assert first.copied[0].startswith("train_runs/") and first.copied[-1] in ("results.parquet", "study.json")

    again = remote_storage.mirror(exp, target)
    assert again.copied == [] and sorted(again.skipped) == sorted(want)
    monkeypatch.setattr(remote_storage, "_LOOKUPS", 1)      # many files: one listing instead
    assert remote_storage.mirror(exp, target).copied == []

    time.sleep(0.05)                         # a later mtime than the first copy
    pd.DataFrame({"trial_id": ["a"]}).to_parquet(exp / "results.parquet")
    (copied / "left-by-ray.json").write_text("{}")   # the destination's own files stay
    third = remote_storage.mirror(exp, target)
    assert third.copied == ["results.parquet"]
    assert pd.read_parquet(copied / "results.parquet")["trial_id"].tolist() == ["a"]
    assert (copied / "left-by-ray.json").is_file()


def test_mirror_and_pull_through_a_subtree_filesystem(tmp_path):
    """A SubTreeFileSystem rooted at a folder behaves like a bucket: paths have no leading /."""
    exp = make_experiment(tmp_path / "local")
    (tmp_path / "store").mkdir()
    bucket = pafs.SubTreeFileSystem(str(tmp_path / "store"), pafs.LocalFileSystem())
    remote_storage.mirror(exp, "bucket/runs/exp", filesystem=bucket)
    assert remote_storage.exists("bucket/runs/exp/results.parquet", filesystem=bucket)
    assert tree(tmp_path / "store" / "bucket" / "runs" / "exp") == tree(exp)

    back = tmp_path / "pulled"
    report = remote_storage.pull("bucket/runs/exp", back, filesystem=bucket)
    assert tree(back) == tree(exp) and len(report.copied) == 3
    assert remote_storage.pull("bucket/runs/exp", back, filesystem=bucket).copied == []
    # one file pulled lands under its own name
    remote_storage.pull("bucket/runs/exp/study.json", tmp_path / "one", filesystem=bucket)
    assert (tmp_path / "one" / "study.json").read_bytes() == (exp / "study.json").read_bytes()


def test_resuming_needs_only_the_top_level_files(tmp_path):
    exp = make_experiment(tmp_path / "local")
    remote = (tmp_path / "bucket" / "runs").as_uri()
    remote_storage.mirror(exp, remote_storage.join(remote, "exp"))
    assert remote_storage.list_folder(remote) == ["exp"]
    assert remote_storage.list_folder(remote_storage.join(remote, "nothing")) == []
    staged = remote_storage.pull(remote_storage.join(remote, "exp"), tmp_path / "staging",
                                 include=remote_storage.top_level)
    assert sorted(staged.copied) == ["results.parquet", "study.json"]
    assert not (tmp_path / "staging" / "train_runs").exists()


def test_join_and_is_uri_keep_uris_uris():
    assert remote_storage.join("s3://b/runs/", "exp", "study.json") == "s3://b/runs/exp/study.json"
    assert remote_storage.join("/shared/runs", "exp") == "/shared/runs/exp"
    assert remote_storage.is_uri("gs://b/x") and remote_storage.is_uri("file:///x")
    assert not remote_storage.is_uri("/shared/runs") and not remote_storage.is_uri("runs")


class _Local(pafs.FileSystemHandler):
    """A local filesystem as a pyarrow Python filesystem, whose reads can be made to fail
    half-way or to find the file deleted (as a sweep deleting an old checkpoint would)."""

    def __init__(self, fail_after: int | None = None, vanish: str | None = None):
        self.fs, self.fail_after, self.vanish = pafs.LocalFileSystem(), fail_after, vanish

    def get_type_name(self):
        return "flaky-local"

    def normalize_path(self, path):
        return path

    def equals(self, other):
        return self is other

    def get_file_info(self, paths):
        return self.fs.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.fs.get_file_info(selector)

    def create_dir(self, path, recursive):
        self.fs.create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        self.fs.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self.fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        raise OSError("not in a test")

    def delete_file(self, path):
        self.fs.delete_file(path)

    def move(self, src, dest):
        self.fs.move(src, dest)

    def copy_file(self, src, dest):
        self.fs.copy_file(src, dest)

    def open_input_file(self, path):
        return self.fs.open_input_file(path)

    def open_output_stream(self, path, metadata):
        return self.fs.open_output_stream(path)

    def open_append_stream(self, path, metadata):
        return self.fs.open_append_stream(path)

    def open_input_stream(self, path):
        if self.vanish and path.endswith(self.vanish):
            os.unlink(path)
            return self.fs.open_input_stream(path)          # raises: the file is gone
        data = Path(path).read_bytes()
        fail_after = self.fail_after

        class Half:
            closed, pos = False, 0

            def read(self, n=-1):
                if fail_after is not None and self.pos >= fail_after:
                    raise OSError("connection reset by peer (test)")
                n = len(data) if n is None or n < 0 else n
                chunk = data[self.pos:self.pos + n]
                self.pos += len(chunk)
                return chunk

            def close(self):
                self.closed = True

        return pa.PythonFile(Half(), mode="r")


def test_a_copy_that_fails_half_way_leaves_nothing_at_the_destination(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    (src / "results.parquet").write_bytes(os.urandom(10_000))
    monkeypatch.setattr(remote_storage, "CHUNK", 1000)       # so the copy takes several writes
    flaky = pafs.PyFileSystem(_Local(fail_after=3000))
    with pytest.raises(StorageError, match="results.parquet"):
        remote_storage.pull(str(src), tmp_path / "dest", filesystem=flaky)
    dest = tmp_path / "dest"
    assert not (dest / "results.parquet").exists()             # never a partial file ...
    assert list(dest.iterdir()) == []                          # ... nor its temporary
    report = remote_storage.pull(str(src), dest, filesystem=pafs.PyFileSystem(_Local()))
    assert report.copied == ["results.parquet"]
    assert (dest / "results.parquet").read_bytes() == (src / "results.parquet").read_bytes()


def test_a_file_deleted_while_copying_is_reported_not_fatal(tmp_path):
    exp = make_experiment(tmp_path / "local")
    flaky = pafs.PyFileSystem(_Local(vanish="model.safetensors"))
    report = remote_storage.pull(str(exp), tmp_path / "dest", filesystem=flaky)
    assert report.vanished == ["train_runs/train_a/checkpoint_000002/model.safetensors"]
    assert sorted(report.copied) == ["results.parquet", "study.json"]


def test_storage_errors_name_the_path_and_the_fix(tmp_path):
    with pytest.raises(StorageError, match="does not exist"):
        remote_storage.pull((tmp_path / "nothing").as_uri(), tmp_path / "d")
    with pytest.raises(StorageError, match="not a folder"):
        remote_storage.mirror(tmp_path / "nothing", (tmp_path / "t").as_uri())
    with pytest.raises(StorageError, match="pyarrow cannot open"):
        remote_storage.pull("nosuchscheme://b/x", tmp_path / "d")
    exp = make_experiment(tmp_path / "local")
    with pytest.raises(StorageError, match="into itself"):
        remote_storage.mirror(exp, exp / "copy")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(StorageError, match="is a file"):
        remote_storage.pull(str(exp), tmp_path / "afile")


def test_pull_command_copies_and_says_what_it_did(tmp_path, capsys):
    from priorlab.platform.cli_jobs import main

    exp = make_experiment(tmp_path / "local")
    assert main(["pull", exp.as_uri(), str(tmp_path / "here")]) == 0
    assert "3 file(s) copied" in capsys.readouterr().out
    assert tree(tmp_path / "here") == tree(exp)
    assert main(["pull", (tmp_path / "gone").as_uri(), str(tmp_path / "here")]) == 2
    assert "does not exist" in capsys.readouterr().err


# ---- what a job runs ------------------------------------------------------------------------------

SWEEP = ["sweep", "memory-label-injection", "--samples", "1", "channels=4", "report_shots=[1,2]"]


def test_a_submittable_command_becomes_an_entrypoint_that_reads_back():
    argv = jobs.check_command(["--", *SWEEP, *RUNS])
    assert argv == [*SWEEP, *RUNS]
    entry = jobs.entrypoint(argv, "0.1.0")
    assert shlex.split(entry) == ["python", "-m", "priorlab.platform.jobs", "--expect-version",
                                  "0.1.0", "--", *argv]
    assert jobs._shown_command(entry) == shlex.join(["priorlab", *argv])
    assert jobs.check_command(["farm", "teachers", "--store", "s3://b/teachers", "--gpu"])[0] == "farm"


@pytest.mark.parametrize("argv, words", [
    (["report", "runs/x"], "sweep, train, farm"),
    ([], "got nothing"),
    (SWEEP, "--runs-dir"),                                          # where results go: required
    ([*SWEEP, "--runs-dir", "runs"], "absolute path"),              # relative: the head's cwd
    ([*SWEEP, *RUNS, "--data-dir", "data"], "--data-dir data"),
    ([*SWEEP, *RUNS, "--address", "auto"], "drop --address"),
    ([*SWEEP, *RUNS, "--no-wait"], "--no-wait"),                     # submit's own option, misplaced
    (["farm", "teachers", "--scenes", "torus"], "--store"),
])
def test_commands_a_job_cannot_run_are_refused_before_submitting(argv, words):
    with pytest.raises(JobsError, match=words.replace("[", r"\[")):
        jobs.check_command(argv)


def test_the_job_entrypoint_refuses_another_priorlab_version(capsys):
    assert jobs.main(["--expect-version", "0.0.0-other", "--", "studies"]) == 2
    err = capsys.readouterr().err
    assert f"runs priorlab {jobs.installed_version()}" in err and "0.0.0-other" in err


def test_env_pairs_parse_and_bad_ones_are_named():
    assert jobs.parse_env(["PRIORLAB_DATA_DIR=/d", "A=b=c"]) == {"PRIORLAB_DATA_DIR": "/d", "A": "b=c"}
    with pytest.raises(JobsError, match="'oops'"):
        jobs.parse_env(["oops"])


def test_submit_and_jobs_commands_fail_in_one_line_before_any_work(capsys, clean_env):
    from priorlab.platform.cli_jobs import main

    assert main(["submit", "--address", f"http://127.0.0.1:{_free_port()}", "--", *SWEEP]) == 2
    err = capsys.readouterr().err
    assert err.startswith("priorlab: error:") and "--runs-dir" in err and err.count("\n") == 1
    assert main(["jobs", "list", "--address", f"http://127.0.0.1:{_free_port()}"]) == 2
    assert "no Ray dashboard answers" in capsys.readouterr().err


# ---- reaching the cluster -------------------------------------------------------------------------

@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN",
                 "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))     # no ~/.ray/auth_token of anyone's
    return monkeypatch


def test_address_priority_flag_then_api_server_then_ray_address(clean_env):
    with pytest.raises(JobsError, match="--address"):
        jobs.resolve_address(None)
    clean_env.setenv("RAY_ADDRESS", "http://a:8265")
    assert jobs.resolve_address(None) == "http://a:8265"
    clean_env.setenv("RAY_API_SERVER_ADDRESS", "http://b:8265/")
    assert jobs.resolve_address(None) == "http://b:8265"
    assert jobs.resolve_address("http://c:8265") == "http://c:8265"


def test_token_is_read_as_ray_reads_it(clean_env, tmp_path):
    assert jobs.auth_headers() == {}
    default = tmp_path / "home" / ".ray" / "auth_token"
    default.parent.mkdir(parents=True)
    default.write_text("from-home\n")
    assert jobs.auth_headers() == {"Authorization": "Bearer from-home"}
    (tmp_path / "tok").write_text("from-path")
    clean_env.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "tok"))
    assert jobs.auth_headers() == {"Authorization": "Bearer from-path"}
    clean_env.setenv("RAY_AUTH_TOKEN", "from-env")
    assert jobs.auth_headers() == {"Authorization": "Bearer from-env"}
    clean_env.setenv("RAY_AUTH_MODE", "disabled")
    assert jobs.auth_headers() == {}
    clean_env.delenv("RAY_AUTH_MODE")
    clean_env.delenv("RAY_AUTH_TOKEN")
    clean_env.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    with pytest.raises(JobsError, match="RAY_AUTH_TOKEN_PATH"):
        jobs.auth_headers()


class _Dashboard(http.server.BaseHTTPRequestHandler):
    """Plays a Ray dashboard's /api/version; 401 unless the right bearer token comes with it."""

    token = "right"
    seen: list = []

    def do_GET(self):  # noqa: N802 - http.server's name
        self.seen.append((self.path, self.headers.get("Authorization")))
        if self.headers.get("Authorization") != f"Bearer {self.token}":
            self.send_response(401)
            self.end_headers()
            self.wfile.write(b"Unauthorized: Missing authentication token")
            return
        body = json.dumps({"ray_version": "2.60.0", "version": "4", "ray_commit": "x"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def dashboard():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Dashboard)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Dashboard.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _free_port() -> int:
    """A port nothing listens on (free when asked; the OS may hand it out again later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_client_sends_the_token_and_the_flag_wins_over_ray_address(clean_env, dashboard):
    clean_env.setenv("RAY_AUTH_TOKEN", "right")
    clean_env.setenv("RAY_ADDRESS", f"http://127.0.0.1:{_free_port()}")   # Ray's client would obey this
    jobs.connect(dashboard)
    assert ("/api/version", "Bearer right") in _Dashboard.seen
    assert os.environ["RAY_ADDRESS"].startswith("http://127.0.0.1:")       # restored afterwards


def test_a_refused_token_says_where_to_get_the_right_one(clean_env, dashboard):
    clean_env.setenv("RAY_AUTH_TOKEN", "wrong")
    with pytest.raises(JobsError, match="ray get-auth-token"):
        jobs.connect(dashboard)


def test_nothing_listening_says_to_forward_the_dashboard(clean_env):
    with pytest.raises(JobsError, match="ray dashboard cluster.yaml"):
        jobs.connect(f"http://127.0.0.1:{_free_port()}")


def test_a_dead_proxy_in_the_way_is_named(clean_env, dashboard):
    # scripts/offline-env.sh sets HTTP_PROXY to a closed loopback port; a head outside NO_PROXY
    # would then be asked through it
    clean_env.setenv("HTTP_PROXY", f"http://127.0.0.1:{_free_port()}")
    clean_env.setenv("http_proxy", os.environ["HTTP_PROXY"])
    clean_env.setenv("NO_PROXY", "")
    clean_env.setenv("no_proxy", "")
    with pytest.raises(JobsError, match="add 127.0.0.1 to NO_PROXY"):
        jobs.connect(dashboard)


# ---- integration: a sweep submitted to a head that outlives its client ---------------------------

class LocalHead:
    """``ray start --head --block`` on 127.0.0.1 with its own temp dir and token.

    ``--block`` keeps the ``ray start`` process as the parent of the node's processes; SIGTERM to
    it makes Ray stop exactly those (``ray stop`` would stop every Ray on the machine)."""

    def __init__(self, num_cpus: int = 2):
        self.tmp = Path(tempfile.mkdtemp(prefix="plh-", dir="/tmp"))   # short: socket paths < 107
        self.token_path = self.tmp / "auth_token"
        self.token_path.write_text(uuid.uuid4().hex)
        self.token_path.chmod(0o600)
        self.dashboard_port = _free_port()
        self.url = f"http://127.0.0.1:{self.dashboard_port}"
        from priorlab.platform.runtime import OFFLINE_ENV

        venv_bin = str(Path(sys.executable).parent)
        self.env = {
            **os.environ, **OFFLINE_ENV,
            "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",  # `python` of the job
            "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_path),
            # Ray's switch that keeps a 127.0.0.1 node IP (and so loopback-only servers)
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "DASHBOARD_METRIC_PORT": "0", "AUTOSCALER_METRIC_PORT": "0",
            "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
            "GLOO_SOCKET_IFNAME": "lo", "PYTHONUNBUFFERED": "1",   # ray start's log as it happens
        }
        for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN"):
            self.env.pop(name, None)
        cmd = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
               "--node-ip-address", "127.0.0.1", "--port", str(_free_port()),
               "--dashboard-host", "127.0.0.1", "--dashboard-port", str(self.dashboard_port),
               "--dashboard-agent-listen-port", str(_free_port()),
               "--ray-client-server-port", str(_free_port()),
               "--num-cpus", str(num_cpus), "--temp-dir", str(self.tmp), "--disable-usage-stats"]
        self.log = open(self.tmp / "ray-start.log", "w")
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def started(self, timeout_s: float = 180.0) -> bool:
        """Whether the node came up. ``ray start`` gives the raylet a fixed 30 s to register with
        the GCS and gives up otherwise, which a machine busy with other work can exceed."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if "will now block forever" in (self.tmp / "ray-start.log").read_text(errors="replace"):
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.5)
        return False

    @classmethod
    def start(cls, attempts: int = 2) -> "LocalHead":
        for _ in range(attempts):
            head = cls()
            if head.started():
                return head
            head.stop()
        pytest.fail(f"ray start failed {attempts} times (its log is printed above)")

    def client(self, timeout_s: float = 150.0):
        """A Jobs client once the dashboard answers (seconds on an idle machine, more on a busy one)."""
        deadline = time.monotonic() + timeout_s
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("RAY_AUTH_TOKEN_PATH", str(self.token_path))
            mp.delenv("RAY_AUTH_TOKEN", raising=False)
            while True:
                if self.proc.poll() is not None:
                    pytest.fail(f"ray start exited ({self.proc.returncode}): "
                                f"{(self.tmp / 'ray-start.log').read_text()[-3000:]}")
                try:
                    return jobs.connect(self.url)
                except JobsError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)

    def stop(self) -> None:
        # What the head said, for a failing test's report (pytest shows it only then).
        print(f"ray start: {'running' if self.proc.poll() is None else self.proc.returncode}")
        for log in [self.tmp / "ray-start.log",
                    *sorted(self.tmp.glob("session_2*/logs/ray_process_exit.log")),
                    *sorted(self.tmp.glob("session_2*/logs/dashboard.err")),
                    *sorted(self.tmp.glob("session_2*/logs/dashboard.log"))]:
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-2500:]}")
        try:
            procs = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            procs = []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:   # a test head need not shut down gracefully
                self.proc.kill()
                self.proc.wait(timeout=10)
        _, alive = psutil.wait_procs(procs, timeout=5)
        for p in alive:                        # ours only: descendants of our `ray start`
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.mark.integration
def test_submitted_sweep_runs_on_after_its_client_exits(tmp_path, data_root):
    head = LocalHead.start()
    try:
        client = head.client()
        runs = tmp_path / "runs"
        job_id = f"priorlab-test-{uuid.uuid4().hex[:8]}"
        # Every key the study searches is pinned: one trial (seed 0), 2 steps.
        sweep = ["sweep", "memory-label-injection", "--samples", "1", "--max-iters", "2",
                 "--stream", "local", "--runs-dir", str(runs), "--name", "exp",
                 "--data-dir", str(data_root), "label_injection=first", "lr=0.01", "channels=4",
                 "lstm_hidden=16", "n_shot=3", "report_shots=[1,2]", "meta_batch=2",
                 "eval_episodes=4", "eval_every=2"]
        client_env = {k: v for k, v in head.env.items() if k != "RAY_AUTH_MODE"}
        submitted = subprocess.run(
            [sys.executable, "-m", "priorlab.platform.cli_jobs", "submit", "--address", head.url,
             "--no-wait", "--job-id", job_id, "--", *sweep],
            env=client_env, capture_output=True, text=True, timeout=120)
        # The client has exited. The job must not have finished yet (it runs for tens of seconds),
        # so what follows happens without any client.
        print(f"client: {submitted.returncode}\n{submitted.stdout}\n{submitted.stderr[-3000:]}")
        state_at_exit = jobs.status(client, job_id)
        assert submitted.returncode == 0, submitted.stderr
        assert f"job:    {job_id}" in submitted.stdout and "priorlab jobs logs" in submitted.stdout
        assert state_at_exit in ("PENDING", "RUNNING"), state_at_exit

        final = jobs.wait(client, job_id, timeout_s=240, poll_s=1.0)
        log = jobs.logs(client, job_id)
        assert final == "SUCCEEDED", log[-4000:]
        info = jobs.job_info(client, job_id)
        assert info["command"].startswith("priorlab sweep memory-label-injection")
        assert info["metadata"]["priorlab_version"] == jobs.installed_version()
        df = pd.read_parquet(runs / "exp" / "results.parquet")
        assert len(df) == 1 and df["status"].tolist() == ["TERMINATED"], df.T
        assert df["config/label_injection"].tolist() == ["first"] and int(df["config/seed"][0]) == 0
        assert pd.read_parquet(runs / "exp" / "history.parquet")["step"].tolist() == [2]
        assert "nothing left to search" in log
    finally:
        head.stop()

"""`priorlab dashboard`: ablation dashboards of sweeps, served on 127.0.0.1 or exported to one file.

    priorlab dashboard runs/memory-label-injection-20261127-101500 [more ...] [--port 8050]
    priorlab dashboard memory-baselines-20261127-0930 --runs-dir runs --export report.html

Per experiment folder (one sweep of one study): the ablation table at equal budget (each value
of each ``group_by`` key and each combination: mean, 95% t-interval, n), strip/box plots per
choice, parallel coordinates of the sweep, learning curves from history.parquet, parameter
importances (fANOVA), the failed trials with the end of their error files and the best trials
with their checkpoints and PNG renders. Everything comes from the Study's fields and the
parquet columns (``platform.dashboard_data``), so any study's metric works.

The server (``http.server.ThreadingHTTPServer``) reads the folders again whenever their files
change: a trial that lands in results.parquet appears on reload. It serves plotly.js from the
plotly wheel at ``/plotly.min.js``; an export inlines it, so the file has no network reference.
The sweep writes ``EXPERIMENT/dashboard.html`` at its end with :func:`write_dashboard`.

    from priorlab.platform.dashboard import write_dashboard, serve_dashboard
    write_dashboard([Path("runs/exp")], Path("runs/exp/dashboard.html"))
    serve_dashboard([Path("runs/exp")], port=8050)      # until Ctrl-C

See docs/dashboard.md.
"""

from __future__ import annotations

import mimetypes
import os
import tempfile
import threading
from functools import lru_cache
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from priorlab.platform.dashboard_data import (DashboardError, _is_experiment, allowed_roots,
                                              resolve_experiments)
from priorlab.platform.dashboard_page import (ExperimentPage, ExportLinks, ServedLinks,
                                              build_experiment_page, render_page)
from priorlab.platform.results import HISTORY, RESULTS
from priorlab.platform.report import STUDY_FILE

__all__ = ["DashboardError", "write_dashboard", "serve_dashboard", "make_server",
           "resolve_experiments", "render_dashboard"]


@lru_cache(maxsize=1)
def plotly_js() -> str:
    """plotly.js as shipped inside the plotly wheel (never fetched)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _check(experiments) -> list[Path]:
    paths = [Path(p) for p in experiments]
    if not paths:
        raise DashboardError("no experiment given: pass one or more experiment folders")
    for path in paths:
        if not path.is_dir() or not _is_experiment(path):
            raise DashboardError(f"{path} is not a priorlab experiment (no {STUDY_FILE} or {RESULTS});"
                                 " pass the folder printed by `priorlab sweep`")
    return paths


def render_dashboard(experiments, *, live: bool = False) -> str:
    """The page of ``experiments`` as one HTML string (self-contained unless ``live``)."""
    paths = _check(experiments)
    pages = [build_experiment_page(p, i) for i, p in enumerate(paths)]
    if live:
        return render_page(pages, ServedLinks(), '<script src="/plotly.min.js"></script>', live=True)
    return render_page(pages, ExportLinks(), f"<script>{plotly_js()}</script>", live=False)


def write_dashboard(experiments: list[Path], out: Path) -> Path:
    """Write the dashboard of ``experiments`` to ``out`` as one self-contained HTML file
    (plotly.js inlined, no network reference); atomically, so a reader never sees half a page."""
    out = Path(out)
    text = render_dashboard(experiments, live=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


# ----------------------------------------------------------------------------- server

def _signature(path: Path) -> tuple:
    """Changes whenever a file the page reads changes (a new trial, a new report)."""
    out = []
    for name in (STUDY_FILE, RESULTS, HISTORY):
        try:
            st = (path / name).stat()
            out.append((st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


class DashboardServer(ThreadingHTTPServer):
    """Serves the live dashboard of fixed experiment folders; see :func:`make_server`."""

    daemon_threads = True

    def __init__(self, experiments: list[Path], host: str, port: int):
        self.experiments = experiments
        self._cache: dict[int, tuple[tuple, ExperimentPage]] = {}
        self._lock = threading.Lock()
        try:
            super().__init__((host, port), _Handler)
        except OSError as err:
            raise DashboardError(f"cannot listen on {host}:{port} ({err.strerror}): another server "
                                 "uses it; stop it or pass another --port") from None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def pages(self) -> list[ExperimentPage]:
        """Each experiment's summary, recomputed only when its files changed."""
        out = []
        with self._lock:
            for i, path in enumerate(self.experiments):
                sig = _signature(path)
                cached = self._cache.get(i)
                if cached is None or cached[0] != sig:
                    cached = (sig, build_experiment_page(path, i))
                    self._cache[i] = cached
                out.append(cached[1])
        return out

    def allowed(self, path: Path) -> bool:
        """Only the experiments' own files: the folders, checkpoints and error files they name."""
        path = path.resolve()
        for page in self.pages():
            roots = allowed_roots(page.exp) if page.exp is not None else [page.path.resolve()]
            if any(path == r or path.is_relative_to(r) for r in roots):
                return True
        return False


class _Handler(BaseHTTPRequestHandler):
    server: DashboardServer

    def log_message(self, format, *args):  # noqa: A002 - quiet: one line per request is noise
        pass

    def _send(self, status: int, body: bytes, ctype: str, cache: str = "no-store") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.end_headers()
        self.wfile.write(body)

    def _text(self, status: int, text: str) -> None:
        self._send(status, text.encode(), "text/plain; charset=utf-8")

    def do_GET(self):  # noqa: N802 - http.server's name
        url = urlsplit(self.path)
        if url.path in ("/", "/index.html"):
            pages = self.server.pages()
            page = render_page(pages, ServedLinks(), '<script src="/plotly.min.js"></script>',
                               live=True)
            self._send(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8")
        elif url.path == "/plotly.min.js":
            self._send(HTTPStatus.OK, plotly_js().encode(), "text/javascript; charset=utf-8",
                       cache="max-age=3600")
        elif url.path == "/file":
            self._file(parse_qs(url.query).get("path", [""])[0])
        elif url.path == "/favicon.ico":
            self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
        else:
            self._text(HTTPStatus.NOT_FOUND, f"no page {url.path}; the dashboard is at /")

    def _file(self, raw: str) -> None:
        path = Path(raw)
        if not raw or not path.is_absolute() or not self.server.allowed(path):
            self._text(HTTPStatus.FORBIDDEN, "only files of the dashboard's experiments are served")
        elif path.is_dir():
            import html

            items = sorted(path.iterdir())
            links = "".join(f'<li><a href="{html.escape(ServedLinks().href(p))}">{html.escape(p.name)}'
                            f"{'/' if p.is_dir() else ''}</a></li>" for p in items)
            body = (f"<!DOCTYPE html><meta charset=\"utf-8\"><title>{html.escape(path.name)}</title>"
                    f"<h1>{html.escape(str(path))}</h1><ul>{links or '<li>(empty)</li>'}</ul>")
            self._send(HTTPStatus.OK, body.encode(), "text/html; charset=utf-8")
        elif path.is_file():
            ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            if ctype.startswith("text/") or path.suffix in (".txt", ".log", ".json", ".yaml", ".md"):
                ctype = "text/plain; charset=utf-8"
            self._send(HTTPStatus.OK, path.read_bytes(), ctype)
        else:
            self._text(HTTPStatus.NOT_FOUND, f"{path} is not there (any more)")


def make_server(experiments, host: str = "127.0.0.1", port: int = 8050) -> DashboardServer:
    """A bound server (port 0: any free port; ``.url`` says which); call ``serve_forever()``."""
    return DashboardServer(_check(experiments), host, port)


def serve_dashboard(experiments, host: str = "127.0.0.1", port: int = 8050) -> None:
    """Serve the live dashboard until Ctrl-C (KeyboardInterrupt), then close the socket."""
    server = make_server(experiments, host, port)
    names = ", ".join(Path(p).name for p in server.experiments)
    print(f"dashboard of {names} at {server.url} (reload to see new trials); Ctrl-C stops it",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopping the dashboard", flush=True)
    finally:
        server.server_close()

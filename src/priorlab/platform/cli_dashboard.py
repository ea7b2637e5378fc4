"""`priorlab dashboard`: serve or export the ablation dashboard of sweeps (docs/dashboard.md).

    priorlab dashboard runs/memory-label-injection-20261127-101500 [--port 8050] [--host 127.0.0.1]
    priorlab dashboard memory-label-injection-20261127-101500 other-exp --runs-dir runs
    priorlab dashboard EXPERIMENT ... --export report.html     # one self-contained HTML file
    priorlab dashboard                                          # every experiment under --runs-dir

EXPERIMENT is a folder or a name under ``--runs-dir`` (default ``runs``). The server binds to
127.0.0.1 unless ``--host`` says otherwise and runs until Ctrl-C (or SIGTERM).
"""

from __future__ import annotations

import signal
from pathlib import Path

from priorlab.platform.dashboard_data import DashboardError, resolve_experiments

__all__ = ["DashboardError", "add_parsers", "cmd_dashboard"]


def add_parsers(sub) -> None:
    db = sub.add_parser("dashboard", help="ablation dashboards of sweeps in the browser, live on "
                                          "127.0.0.1 or exported to one HTML file (docs/dashboard.md)")
    db.add_argument("experiments", nargs="*", metavar="EXPERIMENT",
                    help="experiment folders or names under --runs-dir (default: all of them)")
    db.add_argument("--runs-dir", default="runs",
                    help="where experiment names are looked up (default: ./runs)")
    db.add_argument("--port", type=int, default=8050)
    db.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    db.add_argument("--export", default=None, metavar="FILE.html",
                    help="write the page to this self-contained HTML file instead of serving it")


def cmd_dashboard(args) -> int:
    from priorlab.platform.dashboard import serve_dashboard, write_dashboard

    experiments = resolve_experiments(args.experiments, args.runs_dir)
    if args.export:
        out = write_dashboard(experiments, Path(args.export))
        print(f"dashboard of {len(experiments)} experiment(s) written to {out} "
              f"({out.stat().st_size / 1e6:.1f} MB, self-contained)")
        return 0

    def stop(signum, _frame):
        raise KeyboardInterrupt

    # Ctrl-C, and `kill` (SIGTERM) too, stop it cleanly, also when started in the background
    # (where a shell leaves SIGINT ignored)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    serve_dashboard(experiments, host=args.host, port=args.port)
    return 0


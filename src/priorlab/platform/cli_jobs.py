"""The cluster commands of `priorlab`: submit work as Ray Jobs, watch it, pull results (docs/cluster.md).

    priorlab submit [--address URL] [--no-wait] [--env KEY=VALUE] [--job-id ID] -- \\
        sweep STUDY ... --runs-dir /shared/runs            (or: train ..., farm teachers ... --store URI)
    priorlab jobs list | status JOB | logs JOB [--follow] | stop JOB   [--address URL]
    priorlab pull SOURCE DEST        an experiment or teacher store from shared storage to DEST

`python -m priorlab.platform.cli_jobs ...` runs the same commands without the rest of the CLI.

``submit`` returns once the cluster has the job with ``--no-wait``; otherwise it prints the job's
output until it ends (Ctrl-C stops watching, not the job) and exits 0 if it succeeded, 1 if not.
The job runs on the cluster's head (``jobs.py``): the machine that submitted it may go away.
Addresses and tokens: see ``priorlab.platform.jobs``.
"""

from __future__ import annotations

import argparse
import sys


def user_errors() -> tuple[type[Exception], ...]:
    """The errors of these commands that `priorlab` prints as one line (exit status 2)."""
    from priorlab.platform.jobs import JobsError
    from priorlab.platform.remote_storage import StorageError

    return (JobsError, StorageError)


def _add_address(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", default=None,
                   help="the cluster's Jobs API: its dashboard URL, e.g. http://127.0.0.1:8265 "
                        "while `ray dashboard cluster.yaml` runs (default: $RAY_API_SERVER_ADDRESS, "
                        "then $RAY_ADDRESS)")


def add_parsers(sub) -> None:
    sb = sub.add_parser("submit", help="run a sweep, training or teacher farm on a Ray cluster as a "
                                       "Ray Job that outlives this command (docs/cluster.md)")
    _add_address(sb)
    sb.add_argument("--no-wait", action="store_true",
                    help="return once the cluster has the job (default: print its output until it ends)")
    sb.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="an environment variable for the job, e.g. PRIORLAB_DATA_DIR=/shared/data "
                         "(repeatable)")
    sb.add_argument("--job-id", default=None, help="the job's id (default: priorlab-<command>-<time>-<hex>)")
    sb.add_argument("priorlab_args", nargs=argparse.REMAINDER, metavar="-- COMMAND ...",
                    help="the priorlab command to run: sweep, train or farm, with its options; "
                         "paths absolute on the cluster or URIs")

    jb = sub.add_parser("jobs", help="the jobs on a Ray cluster: list, status, logs, stop")
    jsub = jb.add_subparsers(dest="jobs_command", required=True)
    jl = jsub.add_parser("list", help="every job on the cluster, oldest first")
    _add_address(jl)
    for name, text in (("status", "a job's status and what it runs"),
                       ("logs", "a job's output so far"),
                       ("stop", "stop a running job (its finished trials stay)")):
        jp = jsub.add_parser(name, help=text)
        jp.add_argument("job_id", metavar="JOB")
        _add_address(jp)
        if name == "logs":
            jp.add_argument("--follow", action="store_true",
                            help="keep printing until the job ends (Ctrl-C stops watching only)")

    pl = sub.add_parser("pull", help="copy an experiment folder or a teacher store from shared "
                                     "storage (s3://, gs://, file://, a path) to this machine")
    pl.add_argument("source", help="e.g. s3://bucket/runs/memory-label-injection-20261206-101500")
    pl.add_argument("dest", help="a local folder (created if needed; files already there and "
                                 "unchanged are skipped)")
    pl.add_argument("--all", dest="only_changed", action="store_false",
                    help="copy every file again, changed or not")


def cmd_submit(args) -> int:
    from priorlab.platform import jobs

    argv = jobs.check_command(args.priorlab_args)   # before any connection: mistakes fail here
    env = jobs.parse_env(args.env)
    client = jobs.connect(args.address)
    job_id = jobs.submit(client, argv, env=env, job_id=args.job_id)
    address = args.address or ""
    print(jobs.follow_hint(job_id, address), flush=True)
    if args.no_wait:
        return 0
    print(f"[priorlab] following {job_id}; Ctrl-C stops watching, not the job", flush=True)
    return _follow(client, job_id)


def _follow(client, job_id: str) -> int:
    from priorlab.platform import jobs

    try:
        final = jobs.follow_logs(client, job_id)
    except KeyboardInterrupt:
        print(f"\n[priorlab] stopped watching; {job_id} keeps running on the cluster "
              f"(`priorlab jobs stop {job_id}` stops it)", file=sys.stderr)
        return 130
    print(f"[priorlab] job {job_id}: {final}", flush=True)
    return 0 if final == "SUCCEEDED" else 1


def cmd_jobs(args) -> int:
    from priorlab.platform import jobs

    client = jobs.connect(args.address)
    if args.jobs_command == "list":
        rows = jobs.jobs_table(client)
        if not rows:
            print("no jobs on this cluster")
            return 0
        width = max(len(r["id"]) for r in rows)
        print(f"{'JOB':<{width}}  {'STATUS':<9}  {'STARTED':<19}  COMMAND")
        for r in rows:
            print(f"{r['id']:<{width}}  {r['status']:<9}  {r['start']:<19}  {r['command']}")
        return 0
    if args.jobs_command == "status":
        info = jobs.job_info(client, args.job_id)
        for key in ("id", "status", "start", "end", "command", "message"):
            if info[key]:
                print(f"{key + ':':<9} {info[key]}")
        return 0
    if args.jobs_command == "logs":
        if args.follow:
            return _follow(client, args.job_id)
        sys.stdout.write(jobs.logs(client, args.job_id))
        return 0
    stopped = jobs.stop(client, args.job_id)
    print(f"{args.job_id}: {'stop requested' if stopped else 'had already ended'} "
          f"(`priorlab jobs status {args.job_id}`)")
    return 0


def cmd_pull(args) -> int:
    from priorlab.platform.remote_storage import pull

    report = pull(args.source, args.dest, only_changed=args.only_changed)
    print(f"{len(report.copied)} file(s) copied ({report.bytes / 1e6:.1f} MB), "
          f"{len(report.skipped)} unchanged, into {args.dest}")
    if report.vanished:
        print(f"{len(report.vanished)} file(s) were deleted at the source while pulling (a running "
              "sweep replacing old checkpoints); pull again once it has finished")
    return 0


HANDLERS = {"submit": cmd_submit, "jobs": cmd_jobs, "pull": cmd_pull}


def main(argv: list[str] | None = None) -> int:
    """``python -m priorlab.platform.cli_jobs submit|jobs|pull ...``: these commands on their own
    (the same parsers and handlers that ``priorlab`` wires in)."""
    parser = argparse.ArgumentParser(prog="priorlab", description=__doc__.split("\n")[0])
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    try:
        return HANDLERS[args.command](args)
    except user_errors() as err:
        print(f"priorlab: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The `priorlab` command line (the platform's front door).

    priorlab sweep memory-label-injection [key=value ...] [--samples N] [--max-iters N]
                  [--workers-per-trial N] [--address auto] [--resume] [--name NAME]
    priorlab report runs/<experiment>
    priorlab eval <checkpoint-dir> --episodes 1000
    priorlab data download omniglot
    priorlab studies

Data root: --data-dir > PRIORLAB_DATA_DIR > ~/.cache/priorlab. Cluster: --address auto or
RAY_ADDRESS; otherwise a local Ray is started. Errors a user can fix print one clear line
and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from priorlab.data.download import DownloadError, InvalidFileError, download_dataset
from priorlab.data.root import MissingDataError, resolve_data_root
from priorlab.methods.checkpoint import CheckpointError, read_meta
from priorlab.methods.configuration import ConfigError, parse_overrides
from priorlab.platform.report import ReportError
from priorlab.platform.studies import STUDIES, UnknownStudyError

USER_ERRORS = (ConfigError, UnknownStudyError, MissingDataError, ReportError, CheckpointError,
               DownloadError, InvalidFileError, FileExistsError)

# checkpoint method tag -> "module:function" evaluating it (loaded lazily)
EVALUATORS = {"memory": "priorlab.methods.memory.evaluation:evaluate_checkpoint",
              "hyper-maml": "priorlab.methods.hyper.meta:evaluate_checkpoint"}


def _add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None,
                   help="data root (default: $PRIORLAB_DATA_DIR, else ~/.cache/priorlab)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="priorlab", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    sw = sub.add_parser("sweep", help="run a Ray Tune + Optuna sweep of a study")
    sw.add_argument("study", help=f"one of: {', '.join(sorted(STUDIES))}")
    sw.add_argument("overrides", nargs="*", metavar="key=value",
                    help="fix config fields (e.g. channels=16 n_shot=10)")
    sw.add_argument("--samples", type=int, default=None, help="number of trials")
    sw.add_argument("--max-iters", type=int, default=None, help="length of each trial (the study's iterations or epochs field)")
    sw.add_argument("--workers-per-trial", type=int, default=1, help="Ray Train workers per trial")
    sw.add_argument("--cpus-per-worker", type=float, default=None)
    sw.add_argument("--gpu", action="store_true", help="one GPU per worker")
    sw.add_argument("--address", default=None, help="Ray cluster address ('auto' on a head node)")
    sw.add_argument("--resume", action="store_true", help="continue an interrupted sweep")
    sw.add_argument("--name", default=None, help="experiment folder name under --runs-dir")
    sw.add_argument("--runs-dir", default="runs", help="where experiments go (default: ./runs)")
    sw.add_argument("--seed", type=int, default=0, help="searcher seed")
    _add_data_dir(sw)

    rp = sub.add_parser("report", help="summarise an experiment: table + PNG plot")
    rp.add_argument("experiment")

    ev = sub.add_parser("eval", help="k-shot accuracies of a checkpoint on held-out episodes")
    ev.add_argument("checkpoint")
    ev.add_argument("--episodes", type=int, default=1000)
    ev.add_argument("--split", default="test")
    _add_data_dir(ev)

    da = sub.add_parser("data", help="data sets")
    dsub = da.add_subparsers(dest="data_command", required=True)
    dl = dsub.add_parser("download", help="fetch a data set's canonical files into the data root")
    dl.add_argument("name")
    dl.add_argument("--force", action="store_true", help="re-download files already present")
    _add_data_dir(dl)

    sub.add_parser("studies", help="list the studies")
    return parser


def cmd_sweep(args) -> int:
    from priorlab.platform.sweep import run_sweep

    outcome = run_sweep(
        args.study, overrides=parse_overrides(args.overrides),
        data_root=resolve_data_root(args.data_dir), runs_dir=Path(args.runs_dir),
        name=args.name, samples=args.samples, max_iters=args.max_iters,
        workers_per_trial=args.workers_per_trial, cpus_per_worker=args.cpus_per_worker,
        use_gpu=args.gpu, address=args.address, resume=args.resume, seed=args.seed,
    )
    print()
    print(outcome.report_text)
    print()
    print(f"experiment:  {outcome.experiment}")
    print(f"results:     {outcome.experiment / 'results.parquet'}")
    print(f"plot:        {outcome.plot_path}")
    print(f"checkpoints: {outcome.experiment / 'train_runs'}")
    print(f"re-print with `priorlab report {outcome.experiment}`")
    return 130 if outcome.interrupted else 0


def cmd_report(args) -> int:
    from priorlab.platform.report import build_report

    report = build_report(args.experiment)
    print(report.text)
    print(f"\ntable: {report.csv_path}\nplot:  {report.plot_path}")
    if report.tables_path is not None:
        print(f"thesis tables: {report.tables_path}")
    if report.curves_path is not None:
        print(f"curves: {report.curves_path}")
    return 0


def cmd_eval(args) -> int:
    import importlib

    meta = read_meta(args.checkpoint)
    if meta["method"] not in EVALUATORS:
        raise CheckpointError(f"no evaluator for {meta['method']!r} checkpoints yet")
    module, fn = EVALUATORS[meta["method"]].split(":")
    metrics = getattr(importlib.import_module(module), fn)(
        args.checkpoint, resolve_data_root(args.data_dir), episodes=args.episodes, split=args.split)
    n = int(metrics.get("eval/episodes", metrics.get("eval/tasks", args.episodes)))
    print(f"{meta['method']} checkpoint at step {int(metrics['step'])}, {n} {args.split} episodes")
    if "eval/acc_0shot" in metrics:  # online episodes: accuracy at each shot
        print(f"{'shot':>4}  {'accuracy':>8}  {'95% CI':>8}")
        k = 0
        while f"eval/acc_{k}shot" in metrics:
            print(f"{k:>4}  {metrics[f'eval/acc_{k}shot']:8.4f}  ±{metrics[f'eval/acc_{k}shot_ci95']:.4f}")
            k += 1
        return 0
    keys = sorted(k for k in metrics if k.startswith(("eval/", "diag/")) and not k.endswith("_ci95")
                  and k not in ("eval/tasks", "eval/episodes"))
    width = max(len(k) for k in keys) if keys else 6
    print(f"{'metric':<{width}}  {'value':>8}  {'95% CI':>8}")
    for k in keys:
        ci = metrics.get(f"{k}_ci95")
        print(f"{k:<{width}}  {metrics[k]:8.4f}  " + (f"±{ci:.4f}" if ci is not None else ""))
    return 0


def cmd_data(args) -> int:
    root = resolve_data_root(args.data_dir)
    paths = download_dataset(args.name, root, force=args.force)
    print(f"{args.name}: {len(paths)} files under {root}")
    return 0


def cmd_studies(args) -> int:
    from priorlab.platform.studies import get_study

    for name in sorted(STUDIES):
        print(f"{name:28s} {get_study(name).description}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may come after options; anything else unknown is an error.
    stray = [e for e in extra if e.startswith("-") or "=" not in e or args.command != "sweep"]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    handler = {"sweep": cmd_sweep, "report": cmd_report, "eval": cmd_eval, "data": cmd_data,
               "studies": cmd_studies}[args.command]
    from priorlab.platform.runtime import RuntimeUnavailable
    from priorlab.platform.sweep import SweepError

    try:
        return handler(args)
    except (*USER_ERRORS, RuntimeUnavailable, SweepError) as err:
        print(f"priorlab: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

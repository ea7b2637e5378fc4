"""The `priorlab` command line (the platform's front door).

    priorlab sweep memory-label-injection [key=value ...] [--samples N] [--max-iters N]
                  [--workers-per-trial N] [--address auto] [--resume] [--name NAME]
    priorlab train memory-label-injection [key=value ...] [--name NAME]
    priorlab report runs/<experiment>
    priorlab eval <checkpoint | run folder | experiment> --episodes 1000
    priorlab data download omniglot
    priorlab studies
    priorlab scenes list [--seed S] [--attributes] [--filter WORDS ...]
    priorlab farm teachers [--scenes WORDS ... | --prompts FILE] [--objective reconstruction]
                  [--steps N] [--store URI] [--address auto] [key=value ...]
    priorlab render <store>/<slug> [--views 8] [--out DIR]
    priorlab generate "a red torus" --checkpoint CKPT [--views 8] [--size 64] [--out DIR]
    priorlab finetune "a red capsule" --checkpoint CKPT [--target-psnr 25] [--compare]
    priorlab score CHECKPOINT --smiles FILE|-
    priorlab molecules conformers bace [--limit N] | sample CHECKPOINT [--n 64]
    priorlab dashboard [EXPERIMENT ...] [--port 8050] [--runs-dir runs] [--export FILE.html]
    priorlab submit [--address URL] [--no-wait] -- sweep STUDY ... --runs-dir /shared/runs
    priorlab jobs list | status JOB | logs JOB [--follow] | stop JOB
    priorlab pull SOURCE DEST
    priorlab reproduce [TARGET] [--budget smoke|cpu|paper] [--dry-run] [key=value ...]

Data root: --data-dir > PRIORLAB_DATA_DIR > ~/.cache/priorlab. Cluster: --address auto or
RAY_ADDRESS; otherwise a local Ray is started. Errors a user can fix print one clear line
and exit with status 2; a sweep or run with failed trials exits with status 1 (after writing
everything it has), an interrupted one with 130.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from priorlab.data.download import DownloadError, InvalidFileError, download_dataset
from priorlab.data.root import MissingDataError, resolve_data_root
from priorlab.data.sdf import SceneError
from priorlab.data.split_files import PackagedSplitError
from priorlab.methods.checkpoint import CheckpointError, read_meta
from priorlab.methods.configuration import ConfigError, parse_overrides
from priorlab.methods.fields.store import StoreError
from priorlab.platform import cli_dashboard, cli_jobs, cli_molecules, cli_reproduce, cli_serve
from priorlab.platform.report import ReportError
from priorlab.platform.studies import STUDIES, UnknownStudyError

USER_ERRORS = (ConfigError, UnknownStudyError, MissingDataError, ReportError, CheckpointError,
               DownloadError, InvalidFileError, FileExistsError, PackagedSplitError, SceneError,
               StoreError)

# checkpoint method tag -> "module:function" evaluating it (loaded lazily)
EVALUATORS = {"memory": "priorlab.methods.memory.evaluation:evaluate_checkpoint",
              "memory-continual": "priorlab.methods.memory.continual_loop:evaluate_checkpoint",
              "memory-segmentation": "priorlab.methods.memory.segmentation_loop:evaluate_checkpoint",
              "hyper-maml": "priorlab.methods.hyper.meta:evaluate_checkpoint",
              "fields-hyper": "priorlab.methods.fields.distill:evaluate_checkpoint",
              "fields-seg": "priorlab.methods.fields.segfields:evaluate_checkpoint",
              "molecules-pretrain": "priorlab.methods.molecules.pretrain:evaluate_checkpoint",
              "molecules-scorer": "priorlab.methods.molecules.scorer:evaluate_checkpoint"}


def _add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None,
                   help="data root (default: $PRIORLAB_DATA_DIR, else ~/.cache/priorlab)")


def _add_launch_options(p: argparse.ArgumentParser, unit: str, *, workers_flag: str,
                        runs_help: str) -> None:
    """What `sweep` and `train` share: the study, overrides, resources, where runs go."""
    p.add_argument("study", help=f"one of: {', '.join(sorted(STUDIES))}")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config fields (e.g. channels=16 n_shot=10)")
    p.add_argument("--max-iters", type=int, default=None,
                   help=f"length of each {unit} (the study's iterations or epochs field)")
    p.add_argument(workers_flag, type=int, default=1, help=f"Ray Train workers per {unit} (data parallel)")
    p.add_argument("--cpus-per-worker", type=float, default=None)
    p.add_argument("--gpu", action="store_true", help="one GPU per worker")
    p.add_argument("--stream", choices=("ray_data", "local"), default=None,
                   help="how episode studies feed training: `ray_data` (default) streams them "
                        "through Ray Data; `local` samples the same episodes inside each worker "
                        "(faster with several trials on a 2-core machine; benchmarks/RESULTS.md)")
    p.add_argument("--address", default=None, help="Ray cluster address ('auto' on a head node)")
    p.add_argument("--runs-dir", default="runs", help=runs_help)
    _add_run_options(p)
    _add_data_dir(p)


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-failures", type=int, default=None,
                   help="worker failures a run recovers from by restarting from its latest "
                        "checkpoint (default 2; 0 = none, -1 = no limit)")
    p.add_argument("--verbose", action="store_true",
                   help="also show Ray's own log lines (by default they go to the session's log files)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="priorlab", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    sw = sub.add_parser("sweep", help="run a Ray Tune + Optuna sweep of a study")
    _add_launch_options(sw, "trial", workers_flag="--workers-per-trial",
                        runs_help="where experiments go (default: ./runs)")
    sw.add_argument("--samples", type=int, default=None, help="number of trials")
    sw.add_argument("--resume", action="store_true", help="continue an interrupted sweep")
    sw.add_argument("--name", default=None, help="experiment folder name under --runs-dir")
    sw.add_argument("--seed", type=int, default=0, help="searcher seed")
    sw.add_argument("--wandb", action="store_true",
                    help="also log every trial to Weights & Biases (offline under EXPERIMENT/wandb "
                         "unless WANDB_API_KEY is set; docs/platform.md)")
    sw.add_argument("--wandb-project", default=None, help="W&B project (default: $WANDB_PROJECT or priorlab)")

    tr = sub.add_parser("train", help="one run of a study's method (no sweep), resumable by --name")
    _add_launch_options(tr, "run", workers_flag="--workers",
                        runs_help="runs go to RUNS_DIR/train/NAME (default: ./runs)")
    tr.add_argument("--name", default=None, help="run folder name under RUNS_DIR/train; rerun to resume")

    rp = sub.add_parser("report", help="summarise an experiment: table + PNG plot")
    rp.add_argument("experiment")

    ev = sub.add_parser("eval", help="k-shot accuracies of a checkpoint on held-out episodes")
    ev.add_argument("checkpoint", help="a checkpoint folder, a trial's run folder (its latest "
                    "checkpoint) or an experiment folder (its best finished trial)")
    ev.add_argument("--episodes", type=int, default=1000,
                    help="episodes (memory, MAML); molecules generated (molecules-pretrain: "
                         "try 256, 500 denoising steps each batch of 64)")
    ev.add_argument("--split", default="test")
    _add_data_dir(ev)

    da = sub.add_parser("data", help="data sets")
    dsub = da.add_subparsers(dest="data_command", required=True)
    from priorlab.data.download import MIRROR_HELP

    dl = dsub.add_parser("download", help="fetch a data set's canonical files into the data root",
                         epilog=MIRROR_HELP)
    dl.add_argument("name")
    dl.add_argument("--force", action="store_true", help="re-download files already present")
    _add_data_dir(dl)

    sub.add_parser("studies", help="list the studies")

    sc = sub.add_parser("scenes", help="the analytic scene family of HyperFields (docs/fields.md)")
    ssub = sc.add_subparsers(dest="scenes_command", required=True)
    sl = ssub.add_parser("list", help="one line per scene: slug and prompt")
    sl.add_argument("--seed", type=int, default=0, help="picks patterns and attribute colours")
    sl.add_argument("--attributes", action="store_true",
                    help="also the shape x attribute scenes (striped, checkered, ...)")
    sl.add_argument("--filter", nargs="+", default=None, metavar="WORDS",
                    help="keep scenes matching these shape / colour / attribute words "
                         "(any of each kind named, all kinds named)")

    fa = sub.add_parser("farm", help="fit teacher NeRFs on Ray into a teacher store (docs/fields.md)")
    fsub = fa.add_subparsers(dest="farm_command", required=True)
    ft = fsub.add_parser("teachers", help="one teacher per scene or prompt; re-runs skip finished ones")
    ft.add_argument("overrides", nargs="*", metavar="key=value",
                    help="teacher recipe fields (TeacherConfig: n_levels=12 lr=0.01 ...)")
    which = ft.add_mutually_exclusive_group()
    which.add_argument("--scenes", nargs="+", default=None, metavar="WORDS",
                       help="scenes of the family matching these words (default: all)")
    which.add_argument("--prompts", default=None, metavar="FILE", help="one prompt per line")
    ft.add_argument("--attributes", action="store_true", help="include the shape x attribute scenes")
    ft.add_argument("--seed", type=int, default=0, help="the scene family's seed")
    ft.add_argument("--objective", choices=("reconstruction", "sds"), default="reconstruction")
    ft.add_argument("--sd-model", default="", metavar="PATH",
                    help="sds: a local Stable Diffusion 1.x/2.x diffusers folder (never downloaded)")
    ft.add_argument("--steps", type=int, default=None, help="optimisation steps per teacher")
    ft.add_argument("--store", default="runs/teachers",
                    help="teacher store: a local path or a pyarrow filesystem URI (s3://...)")
    ft.add_argument("--address", default=None, help="Ray cluster address ('auto' on a head node)")
    ft.add_argument("--cpus-per-teacher", type=float, default=1.0)
    ft.add_argument("--gpu", action="store_true", help="one GPU per teacher")
    ft.add_argument("--max-retries", type=int, default=2,
                    help="re-runs of a teacher whose worker died (killed, lost node)")
    ft.add_argument("--verbose", action="store_true", help="also show Ray's own log lines")

    rd = sub.add_parser("render", help="a teacher's turntable PNGs and a contact sheet beside the ground truth")
    rd.add_argument("teacher", help="a teacher folder of a store: <store>/<slug>")
    rd.add_argument("--views", type=int, default=8)
    rd.add_argument("--size", type=int, default=64)
    rd.add_argument("--out", default=None, help="output folder (default: runs/renders/<slug>)")

    ge = sub.add_parser("generate", help="a NeRF from a prompt in one forward pass of a HyperFields "
                                         "checkpoint: weights, turntable PNGs (docs/fields.md)")
    ge.add_argument("prompt", help='e.g. "a red torus" (words the family never saw still generate)')
    ge.add_argument("--checkpoint", required=True,
                    help="a fields-hyper checkpoint folder (runs/train/<name>/checkpoints/checkpoint_...)")
    _nerf_output_options(ge, "runs/generated/<prompt slug>")

    fi = sub.add_parser("finetune", help="fine-tune HyperFields to an out-of-distribution scene of the "
                                         "family until a target PSNR; writes what generate writes")
    fi.add_argument("prompt", help='a scene of the family, e.g. "a red capsule" (priorlab scenes list)')
    fi.add_argument("--checkpoint", required=True, help="a fields-hyper checkpoint folder")
    fi.add_argument("--target-psnr", type=float, default=25.0)
    fi.add_argument("--max-steps", type=int, default=2000)
    fi.add_argument("--compare", action="store_true",
                    help="also fit (S) a NeRF from scratch and (P) from the zero-shot NeRF (Sec. 4.4.3)")
    fi.add_argument("--sd-model", default="", metavar="PATH",
                    help="fine-tune with score distillation from this local Stable Diffusion folder "
                         "(any prompt, e.g. one outside the scene family; never downloaded)")
    fi.add_argument("--sds-steps", type=int, default=2000,
                    help="SDS steps with --sd-model (the thesis: at most 2k)")
    fi.add_argument("--sd-render-size", type=int, default=512,
                    help="side of the image the VAE encodes with --sd-model (SD's 512)")
    _nerf_output_options(fi, "runs/finetuned/<slug>")
    cli_molecules.add_parsers(sub, _add_data_dir)
    cli_serve.add_parsers(sub)
    cli_dashboard.add_parsers(sub)
    cli_jobs.add_parsers(sub)
    cli_reproduce.add_parsers(sub)
    return parser


def _nerf_output_options(parser, default_out: str) -> None:
    """What `generate` and `finetune` write: turntable PNGs, the weights and optionally a mesh."""
    parser.add_argument("--views", type=int, default=8, help="turntable views")
    parser.add_argument("--size", type=int, default=64, help="turntable resolution")
    parser.add_argument("--out", default=None, help=f"output folder (default: {default_out})")
    parser.add_argument("--mesh", action="store_true",
                        help="also write <out>/mesh.ply (marching cubes of the density)")
    parser.add_argument("--mesh-resolution", type=int, default=128,
                        help="grid cells per side for --mesh (8..512)")
    parser.add_argument("--mesh-threshold", type=float, default=None,
                        help="density of the surface for --mesh (default: stable-dreamfusion's 10)")


def _prompt_slug(prompt: str) -> str:
    """The default output folder name of a prompt ("a Red torus!" -> "a-red-torus")."""
    import re

    return re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-") or "scene"


def _write_nerf(field, out: Path, args, scene, meta: dict) -> dict:
    """Turntable + contact sheet (beside the ground truth when ``scene`` is one of the family), the
    NeRF as a teacher-store entry, and with ``--mesh`` a PLY; prints where they went."""
    from priorlab.methods.fields.store import TeacherStore
    from priorlab.methods.fields.turntable import render_teacher

    made = render_teacher(field, field.cfg, out, n_views=args.views, size=args.size, scene=scene)
    TeacherStore(out.parent).save(out.name, field, {"psnr": made.get("psnr_mean"), **meta})
    print(f"weights:       {out / 'model.safetensors'} (a NeRFField; `priorlab render {out}`)")
    print(f"contact sheet: {made['contact_sheet']}")
    if args.mesh:
        from priorlab.methods.fields.mesh import extract_mesh, write_ply

        mesh = extract_mesh(field, resolution=args.mesh_resolution, threshold=args.mesh_threshold)
        made["mesh"] = write_ply(mesh, out / "mesh.ply")
        print(f"mesh:          {made['mesh']} ({len(mesh.vertices)} vertices, {len(mesh.faces)} faces)")
    return made


def _local_runs_dir(runs_dir: str) -> Path:
    """--runs-dir as a local folder; a URI is refused rather than turned into a folder named
    'gs:' or 's3:' (Path would read it so)."""
    from priorlab.platform.remote_storage import is_uri
    from priorlab.platform.sweep import SweepError

    if is_uri(runs_dir):
        raise SweepError(
            f"--runs-dir {runs_dir}: sweeps and trainings write to a folder, not yet to a URI. On a "
            "cluster give a folder every node mounts (e.g. --runs-dir /shared/runs on NFS/EFS) and "
            "copy results back with `priorlab pull`; teacher farms take URIs (--store s3://...)")
    return Path(runs_dir)


def cmd_sweep(args) -> int:
    from priorlab.platform.sweep import run_sweep
    from priorlab.platform.tracking import optuna_url

    outcome = run_sweep(
        args.study, overrides=parse_overrides(args.overrides),
        data_root=resolve_data_root(args.data_dir), runs_dir=_local_runs_dir(args.runs_dir),
        name=args.name, samples=args.samples, max_iters=args.max_iters,
        workers_per_trial=args.workers_per_trial, cpus_per_worker=args.cpus_per_worker,
        use_gpu=args.gpu, address=args.address, resume=args.resume, seed=args.seed,
        max_failures=args.max_failures, verbose=args.verbose, stream=args.stream,
        wandb=args.wandb, wandb_project=args.wandb_project,
    )
    print()
    print(outcome.report_text)
    print()
    print(f"experiment:  {outcome.experiment}")
    print(f"results:     {outcome.experiment / 'results.parquet'}")
    print(f"plot:        {outcome.plot_path}")
    print(f"checkpoints: {outcome.experiment / 'train_runs'}")
    print(f"optuna:      optuna-dashboard {optuna_url(outcome.experiment)}")
    if outcome.dashboard_path is not None:
        print(f"dashboard:   {outcome.dashboard_path}  (live: priorlab dashboard {outcome.experiment})")
    print(f"re-print with `priorlab report {outcome.experiment}`")
    _print_log_dir(args.verbose)
    if outcome.interrupted:
        return 130
    if outcome.failed:
        print(f"priorlab: {outcome.failed} trial(s) failed (see above); exit status 1", file=sys.stderr)
        return 1
    return 0


def _print_log_dir(verbose: bool) -> None:
    from priorlab.platform.runtime import log_dir

    where = log_dir()
    if where and not verbose:
        print(f"Ray's own logs: {where} (--verbose shows them on the console)")


def cmd_train(args) -> int:
    from priorlab.platform.train import run_train

    outcome = run_train(
        args.study, overrides=parse_overrides(args.overrides),
        data_root=resolve_data_root(args.data_dir), runs_dir=_local_runs_dir(args.runs_dir), name=args.name,
        max_iters=args.max_iters, workers=args.workers, cpus_per_worker=args.cpus_per_worker,
        use_gpu=args.gpu, address=args.address, max_failures=args.max_failures,
        verbose=args.verbose, stream=args.stream,
    )
    print()
    keys = sorted(k for k in outcome.metrics if not k.startswith("time/"))
    width = max((len(k) for k in keys), default=6)
    for k in keys:
        v = outcome.metrics[k]
        print(f"{k:<{width}}  {v:.4f}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    print()
    print(f"run folder:  {outcome.run_dir}")
    print(f"checkpoints: {outcome.run_dir / 'checkpoints'}")
    print(f"evaluate:    priorlab eval {outcome.run_dir}")
    print(f"resume:      rerun with --name {outcome.run_dir.name}")
    _print_log_dir(args.verbose)
    if outcome.failed:
        print(f"priorlab: the run failed; traceback in {outcome.error_file or outcome.run_dir / 'tune'}",
              file=sys.stderr)
        return 1
    return 0


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

    from priorlab.platform.locate import locate_checkpoint

    located = locate_checkpoint(args.checkpoint)
    print(f"[priorlab] evaluating the {located.how}", file=sys.stderr)
    meta = read_meta(located.checkpoint)
    if meta["method"] not in EVALUATORS:
        raise CheckpointError(f"no evaluator for {meta['method']!r} checkpoints yet "
                              f"(evaluators: {sorted(EVALUATORS)})")
    module, fn = EVALUATORS[meta["method"]].split(":")
    metrics = getattr(importlib.import_module(module), fn)(
        located.checkpoint, resolve_data_root(args.data_dir), episodes=args.episodes, split=args.split)
    n = int(metrics.get("eval/episodes", metrics.get("eval/tasks", metrics.get("eval/scenes", args.episodes))))
    unit = "scenes" if "eval/scenes" in metrics else "episodes"     # HyperFields: scenes, one pass each
    if meta["method"].startswith("molecules-"):    # test molecules scored, or molecules generated
        unit = "molecules" if meta["method"] == "molecules-scorer" else "generated molecules"
    print(f"{meta['method']} checkpoint at step {int(metrics['step'])}, {n} {args.split} {unit}")
    if "eval/acc_0shot" in metrics:  # online episodes: accuracy at each shot
        print(f"{'shot':>4}  {'accuracy':>8}  {'95% CI':>8}")
        k = 0
        while f"eval/acc_{k}shot" in metrics:
            print(f"{k:>4}  {metrics[f'eval/acc_{k}shot']:8.4f}  ±{metrics[f'eval/acc_{k}shot_ci95']:.4f}")
            k += 1
        return 0
    keys = sorted(k for k in metrics if k.startswith(("eval/", "diag/")) and not k.endswith("_ci95")
                  and k not in ("eval/tasks", "eval/episodes", "eval/scenes"))
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


def cmd_scenes(args) -> int:
    from priorlab.data.scenes import filter_scenes, scene_family

    scenes = scene_family(seed=args.seed, attributes=args.attributes)
    if args.filter:
        scenes = filter_scenes(scenes, args.filter)
    width = max((len(s.slug) for s in scenes), default=0)
    for s in scenes:
        print(f"{s.slug:<{width}}  {s.prompt}")
    print(f"{len(scenes)} scenes")
    return 0


def cmd_farm(args) -> int:
    from priorlab.platform.farm import run_farm, select_scenes, summary

    scenes = select_scenes(args.scenes, args.prompts, seed=args.seed, attributes=args.attributes)
    outcome = run_farm(scenes=scenes, objective=args.objective, store_uri=args.store,
                       overrides=parse_overrides(args.overrides), steps=args.steps,
                       address=args.address, cpus_per_teacher=args.cpus_per_teacher,
                       use_gpu=args.gpu, max_retries=args.max_retries, seed=args.seed,
                       verbose=args.verbose, sd_model=args.sd_model)
    print(summary(outcome))
    print(f"index: {args.store.rstrip('/')}/teachers.parquet; look at one with "
          f"`priorlab render {args.store.rstrip('/')}/<slug>`")
    return 1 if outcome.failed else 0


def cmd_render(args) -> int:
    from priorlab.data.scenes import parse_scene
    from priorlab.methods.fields.store import TeacherStore
    from priorlab.methods.fields.turntable import render_teacher

    folder = args.teacher.rstrip("/")
    store_uri, _, slug = folder.rpartition("/")
    field, meta = TeacherStore(store_uri or ".").load(slug)
    scene = parse_scene(meta["slug"], seed=int(meta.get("scene_seed", 0)))
    out = Path(args.out) if args.out else Path("runs") / "renders" / slug   # never inside the store
    made = render_teacher(field, field.cfg, out, n_views=args.views, size=args.size, scene=scene)
    for key, value in made.items():
        if key == "psnr":
            value = " ".join(f"{v:.2f}" for v in value) + " dB (held-out views of the orbit)"
        elif key == "psnr_mean":
            value = f"{value:.2f} dB"
        print(f"{key}: {value}")
    return 0


def cmd_generate(args) -> int:
    import time

    from priorlab.data.scenes import VIEW_FOV_DEG, parse_scene, view_cameras
    from priorlab.methods.fields.generate import GenerateError, generate_nerf, load_hyperfields

    if args.views < 1 or args.size < 1:
        raise GenerateError(f"--views {args.views} and --size {args.size} must be >= 1")
    model, cfg, encoder = load_hyperfields(args.checkpoint)
    slug = _prompt_slug(args.prompt)
    out = Path(args.out) if args.out else Path("runs") / "generated" / slug
    c2w, _, _ = view_cameras(args.views, orbit=True, elevation=(20.0, 20.0))  # the turntable's
    started = time.perf_counter()
    field = generate_nerf(model, encoder, args.prompt, c2w, args.size, VIEW_FOV_DEG)
    seconds = time.perf_counter() - started
    try:
        scene = parse_scene(args.prompt)     # ground truth beside it when the family has the scene
    except SceneError:
        scene = None
    print(f"generated in {seconds:.2f} s (one forward pass of the hypernetwork)")
    made = _write_nerf(field, out, args, scene, {
        "prompt": args.prompt.strip(), "objective": "hyperfields", "teacher_config": cfg,
        "steps": 0, "seconds": seconds, "checkpoint": str(Path(args.checkpoint).resolve()),
        "text_encoder": encoder.name})
    if scene is not None:
        print(f"PSNR vs the exact views of {scene.slug}: {made['psnr_mean']:.2f} dB")
    return 0


def cmd_finetune(args) -> int:
    import json

    from tqdm import tqdm

    from priorlab.data.scenes import parse_scene
    from priorlab.methods.fields.finetune import FinetuneConfig, compare_finetuning, finetune_hyperfields
    from priorlab.methods.fields.generate import GenerateError, load_hyperfields

    try:
        scene = parse_scene(args.prompt)
    except SceneError as err:
        if not args.sd_model:
            raise GenerateError(
                f"{err}. Without ground truth, fine-tuning needs score distillation: pass "
                "--sd-model PATH (a local Stable Diffusion diffusers folder), or choose a scene of the "
                "family (`priorlab scenes list --attributes`)") from None
        scene = None
    if args.sd_model:
        return _finetune_sds(args, scene)
    model, _cfg, encoder = load_hyperfields(args.checkpoint)
    cfg = FinetuneConfig(target_psnr=args.target_psnr, max_steps=args.max_steps)
    out = Path(args.out) if args.out else Path("runs") / "finetuned" / scene.slug
    bar = tqdm(total=args.max_steps, desc=f"finetune {scene.slug}", unit="step")

    def progress(step, row):
        bar.n = step
        bar.set_postfix_str(f"{row['eval/psnr']:.2f} dB")
        bar.refresh()

    curve, field = finetune_hyperfields(model, encoder, scene, cfg, on_eval=progress)
    bar.close()
    last = curve[-1]
    reached = last["eval/psnr"] >= cfg.target_psnr
    print(f"{'reached' if reached else 'did NOT reach'} {cfg.target_psnr} dB: "
          f"{last['eval/psnr']:.2f} dB held-out after {int(last['step'])} steps, {last['seconds']:.1f} s "
          f"(zero-shot start: {curve[0]['eval/psnr']:.2f} dB)")
    _write_nerf(field, out, args, scene, {
        "prompt": scene.prompt, "objective": "hyperfields-finetune", "teacher_config": cfg,
        "steps": int(last["step"]), "seconds": last["seconds"], "psnr": last["eval/psnr"],
        "curve": curve, "checkpoint": str(Path(args.checkpoint).resolve())})
    if args.compare:
        rows = compare_finetuning(model, encoder, scene, cfg, arms=("scratch", "pretrained"))
        rows.insert(0, {"arm": "hyperfields", "reached": reached,
                        "steps": int(last["step"]) if reached else None,
                        "seconds": last["seconds"] if reached else None,
                        "start_psnr": curve[0]["eval/psnr"], "end_psnr": last["eval/psnr"]})
        for r in rows:
            took = (f"{r['steps']} steps, {r['seconds']:.1f} s" if r["reached"]
                    else f"not reached in {cfg.max_steps} steps")
            print(f"  {r['arm']:<12} start {r['start_psnr']:.2f} dB, end {r['end_psnr']:.2f} dB: {took}")
        (out / "compare.json").write_text(json.dumps(rows, indent=2, default=float))
    return 0


def _finetune_sds(args, scene) -> int:
    """`priorlab finetune PROMPT --sd-model PATH`: SDS fine-tuning of HyperFields on any prompt."""
    import time

    from tqdm import tqdm

    from priorlab.data.scenes import VIEW_FOV_DEG, view_cameras
    from priorlab.methods.fields.finetune import FinetuneConfig, finetune_hyperfields_sds
    from priorlab.methods.fields.generate import generate_nerf, load_hyperfields
    from priorlab.methods.fields.sds import SDSConfig, StableDiffusionGuidance, check_model_path

    check_model_path(args.sd_model)                 # a clear error before the models load
    model, _cfg, encoder = load_hyperfields(args.checkpoint)
    guidance = StableDiffusionGuidance(SDSConfig(model_path=args.sd_model, render_size=args.sd_render_size))
    slug = _prompt_slug(args.prompt)
    out = Path(args.out) if args.out else Path("runs") / "finetuned" / slug
    bar = tqdm(total=args.sds_steps, desc=f"sds finetune {slug}", unit="step")

    def progress(step, loss):
        bar.update(1)
        bar.set_postfix_str(f"loss {loss:.4g}")

    cfg = FinetuneConfig()
    started = time.perf_counter()
    tuned, losses = finetune_hyperfields_sds(model, encoder, args.prompt, guidance, cfg, args.sds_steps,
                                             on_step=progress)
    seconds = time.perf_counter() - started
    bar.close()
    c2w, _, _ = view_cameras(args.views, orbit=True, elevation=(20.0, 20.0))
    field = generate_nerf(tuned, encoder, args.prompt, c2w, args.size, VIEW_FOV_DEG)
    print(f"{len(losses)} SDS steps from {args.sd_model}; last loss {losses[-1]:.4g}")
    made = _write_nerf(field, out, args, scene, {
        "prompt": args.prompt.strip(), "objective": "hyperfields-finetune-sds", "teacher_config": cfg,
        "steps": len(losses), "seconds": seconds, "sd_model": str(Path(args.sd_model).resolve()),
        "losses": losses,
        "checkpoint": str(Path(args.checkpoint).resolve())})
    if scene is not None:
        print(f"PSNR vs the exact views of {scene.slug}: {made['psnr_mean']:.2f} dB")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may come after options; anything else unknown is an error.
    stray = [e for e in extra if e.startswith("-") or "=" not in e
             or args.command not in ("sweep", "train", "farm", "reproduce")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    handler = {"sweep": cmd_sweep, "train": cmd_train, "report": cmd_report, "eval": cmd_eval,
               "data": cmd_data, "studies": cmd_studies, "scenes": cmd_scenes, "farm": cmd_farm,
               "render": cmd_render, "generate": cmd_generate,
               "finetune": cmd_finetune, "serve": cli_serve.cmd_serve, "dashboard": cli_dashboard.cmd_dashboard, "reproduce": cli_reproduce.cmd_reproduce, **cli_molecules.HANDLERS, **cli_jobs.HANDLERS}[args.command]
    # Progress lines (Tune's status table) reach a log file as they are printed, not in blocks.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    from priorlab.platform.runtime import RuntimeUnavailable
    from priorlab.platform.sweep import SweepError
    from priorlab.platform.farm import FarmError
    from priorlab.platform.train import TrainError
    from priorlab.methods.fields.generate import GenerateError
    from priorlab.data.shapenet import ShapeNetError
    from priorlab.methods.fields.mesh import MeshError
    from priorlab.methods.fields.text import TextEncoderError

    try:
        return handler(args)
    except (*USER_ERRORS, RuntimeUnavailable, SweepError, TrainError, FarmError, GenerateError,
            MeshError, ShapeNetError, TextEncoderError, cli_serve.ServeError, cli_dashboard.DashboardError, cli_reproduce.ReproduceError,
            *cli_molecules.user_errors(), *cli_jobs.user_errors()) as err:
        print(f"priorlab: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

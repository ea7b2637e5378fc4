"""Shared plumbing for Ray Train trainables: resources, run names, checkpoints in storage.

Every method's trainable takes a flat config dict whose keys are either fields of the method's
``*Config`` dataclass or the platform keys below (never both), so Tune search spaces are
written in config field names.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterator

import ray.train
import torch

from priorlab.methods.checkpoint import META, load_checkpoint


@dataclass
class RunResources:
    """How a training run is laid on the cluster (platform keys of a trainable config)."""

    workers: int = 1
    """Data-parallel Ray Train workers (gloo on CPU, nccl when use_gpu)."""
    cpus_per_worker: float = 0.7
    """CPU share of each worker; on 2 cores keep workers * cpus + data_cpus per trial <= 2."""
    data_cpus: float = 0.25
    """CPU share of the Ray Data episode maker (a whole CPU deadlocks 2-core machines)."""
    use_gpu: bool = False
    data_root: str = ""
    """Absolute data root (resolved by the CLI: --data-dir > PRIORLAB_DATA_DIR > ~/.cache/priorlab)."""
    storage_path: str = ""
    """Where Ray Train keeps this run's checkpoints (absolute)."""
    run_name: str = ""
    """A stable name: re-running with the same name resumes from the latest checkpoint."""
    stream: str = "ray_data"
    """`ray_data`: episodes streamed by Ray Data; `local`: the same sampler inside each worker
    (benchmarks/stream.py compares the two)."""
    max_failures: int = 2
    """Worker-group failures (a killed or crashed worker, a lost node) a run recovers from by
    restarting its workers from the latest checkpoint; 0: none, -1: no limit. A deterministic
    error in the training code fails again on every retry, so keep this small."""

    @classmethod
    def keys(cls) -> set[str]:
        return {f.name for f in fields(cls)}

    def scaling_config(self) -> "ray.train.ScalingConfig":
        return ray.train.ScalingConfig(
            num_workers=self.workers,
            use_gpu=self.use_gpu,
            resources_per_worker={"CPU": self.cpus_per_worker, **({"GPU": 1} if self.use_gpu else {})},
        )


def split_config(config: dict[str, Any], method_keys: set[str]) -> tuple[dict, RunResources]:
    """Split a flat trainable config into method overrides and RunResources."""
    platform = RunResources.keys()
    unknown = sorted(set(config) - method_keys - platform)
    if unknown:
        raise ValueError(
            f"unknown trainable config key(s) {unknown}; method keys: {sorted(method_keys)}; "
            f"platform keys: {sorted(platform)}"
        )
    method = {k: v for k, v in config.items() if k in method_keys}
    resources = RunResources(**{k: v for k, v in config.items() if k in platform})
    return method, resources


def worker_setup(config: dict[str, Any], config_cls: type, batch_field: str):
    """The prologue of every ``train_fn_per_worker``: the method config, the run resources and
    the world size, with torch's threads matched to the worker's CPU share and the batch
    checked to split evenly across workers."""
    from priorlab.methods.configuration import config_from_dict

    overrides, res = split_config(config, {f.name for f in fields(config_cls)})
    cfg = config_from_dict(config_cls, overrides)
    torch.set_num_threads(max(1, round(res.cpus_per_worker)))
    world = ray.train.get_context().get_world_size()
    batch = getattr(cfg, batch_field)
    if batch % world:
        raise ValueError(f"{batch_field}={batch} must be divisible by workers={world}")
    return cfg, res, world


def start_early(iterator: Iterator[Any]) -> Iterator[Any]:
    """The same items, the first one fetched at once in a background thread, so that a slow
    start (a Ray Data pipeline spinning up) overlaps with whatever the caller does next."""
    box: dict[str, Any] = {}

    def fetch_first() -> None:
        try:
            box["item"] = next(iterator)
        except BaseException as err:  # noqa: BLE001 - re-raised in the consumer below
            box["error"] = err

    thread = threading.Thread(target=fetch_first, name="priorlab-first-batch", daemon=True)
    thread.start()

    def items() -> Iterator[Any]:
        thread.join()
        if "error" in box:
            if isinstance(box["error"], StopIteration):
                return
            raise box["error"]
        yield box["item"]
        yield from iterator

    return items()


def checkpoint_dir_name(step: int) -> str:
    return f"checkpoint_{step:09d}"


def latest_saved_step(run_dir: Path) -> int:
    """Highest step among complete checkpoints under a Train run directory (0 if none)."""
    best = 0
    if run_dir.is_dir():
        for meta in run_dir.glob("checkpoint_*/" + META):
            try:
                best = max(best, int(json.loads(meta.read_text())["step"]))
            except (ValueError, KeyError, OSError):
                continue
    return best


def restore_from_train_checkpoint(method: str):
    """The latest checkpoint Ray Train hands this worker (None on a fresh start)."""
    ckpt = ray.train.get_checkpoint()
    if ckpt is None:
        return None
    with ckpt.as_directory() as d:
        return load_checkpoint(d, method=method)


def resume_fit(fit, method: str) -> int:
    """Load the latest checkpoint (if any) into ``fit``, an object with ``load_train_state(model,
    optimizer, state)`` and ``step`` (a teacher or HyperFields fit); returns the step it starts at."""
    restored = restore_from_train_checkpoint(method)
    if restored is not None:
        state = restored.train_state or {}
        fit.load_train_state(restored.model_state, state.get("optimizer"), state)
        print(f"[priorlab] resumed at step {fit.step}")
    return fit.step


def fit_saver(method: str, fit, cfg, model):
    """``save(folder, metrics=None)`` for ``report_with_checkpoint``: ``model``'s weights,
    ``fit.optimizer``, ``fit.train_state()`` and the config, at ``fit.step``; ``fit.spec()`` too
    where the fit has one (what rebuilds its model besides the config)."""
    from priorlab.methods.checkpoint import save_checkpoint
    from priorlab.methods.configuration import config_to_dict

    def save(folder, metrics=None):
        return save_checkpoint(folder, method=method, step=fit.step, config=config_to_dict(cfg),
                               model=model, optimizer=fit.optimizer, metrics=metrics,
                               extra_state=fit.train_state(),
                               spec=fit.spec() if hasattr(fit, "spec") else None)
    return save


def with_absolute_path(config: dict[str, Any], key: str, default: str = "") -> dict[str, Any]:
    """``config`` with the local path under ``key`` (``default`` when absent) made absolute in the
    folder the command was started in: trials and workers start in other folders. Empty values
    and URIs (``s3://...``) are left as they are."""
    value = str(config.get(key, default) or "")
    if value and "://" not in value and not os.path.isabs(value):
        config = {**config, key: os.path.abspath(value)}
    return config


def run_stepped_fit(fit, cfg, method: str) -> None:
    """The worker loop of a step-at-a-time fit (``methods.fields.stepfit.StepFit``: HyperFields,
    HyperSegmentationFields): resume from the latest checkpoint, ``train_step`` until
    ``cfg.steps`` or ``cfg.max_seconds``, and every ``cfg.eval_every`` steps and at the end report
    ``fit.evaluate()`` with the mean training loss and a checkpoint."""
    start = resume_fit(fit, method)
    save = fit_saver(method, fit, cfg, fit.model)
    losses: list[float] = []
    while fit.step < cfg.steps:
        losses.append(fit.train_step())
        last = fit.step == cfg.steps or fit.out_of_time()
        if fit.step % cfg.eval_every == 0 or last:
            row = {"step": float(fit.step), "train/loss": sum(losses) / len(losses),
                   **fit.evaluate(), "seconds": fit.seconds, "train/start_step": float(start)}
            losses = []
            report_with_checkpoint(row, save, fit.step)
            if last:
                break


def report_with_checkpoint(metrics: dict[str, float], save, step: int) -> None:
    """ray.train.report with a checkpoint written by ``save(dir)`` on rank 0 only; the reported
    metrics are also kept in the checkpoint's meta.json (so a checkpoint says how good it was)."""
    rank = ray.train.get_context().get_world_rank()
    metrics = {**metrics, "time/report_unix": time.time()}
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = None
        if rank == 0:
            folder = Path(tmp) / "ckpt"
            save(folder)
            meta = json.loads((folder / META).read_text())
            meta["metrics"] = {**meta.get("metrics", {}), **metrics}
            (folder / META).write_text(json.dumps(meta, indent=2, default=float))
            checkpoint = ray.train.Checkpoint.from_directory(str(folder))
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=checkpoint_dir_name(step))


def torch_trainer(train_fn, config: dict[str, Any], res: RunResources, *, datasets=None,
                  callbacks: list | None = None, process_group: bool | None = None):
    """The trainer every method uses: its resources, a stable run name (so a rerun with the
    same name resumes from the latest checkpoint), the two newest checkpoints kept, and
    ``res.max_failures`` worker-group restarts, each resuming from the latest checkpoint.

    ``process_group``: whether the workers need torch.distributed (DDP, DeepSpeed). None = only
    with more than one worker: a single worker then skips the process-group set-up (a TCPStore
    and gloo rendezvous, ~3 s of every trial's fixed cost on a 2-core machine).
    """
    from ray.train.torch import TorchTrainer
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    if process_group is None:
        process_group = res.workers > 1
    trainer_cls = TorchTrainer if process_group else DataParallelTrainer
    return trainer_cls(
        train_fn, train_loop_config=config, scaling_config=res.scaling_config(),
        run_config=ray.train.RunConfig(
            name=res.run_name or None, storage_path=res.storage_path or None,
            callbacks=callbacks or [], checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            failure_config=ray.train.FailureConfig(max_failures=res.max_failures)),
        datasets=datasets or {},
    )


def fit_in_tune(build_trainer, config: dict[str, Any]) -> None:
    """Body of every ``train_driver_fn``: build the trial's Ray Train trainer and forward its reports
    to Tune (Train V2 + Tune: the Trainer runs inside a Tune function trainable)."""
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    config = dict(config)
    if not config.get("run_name"):
        config["run_name"] = f"train_{ray.tune.get_context().get_trial_id()}"
    build_trainer(config, callbacks=[TuneReportCallback()]).fit()


def one_worker_only(family: str):
    """A ``check`` for :func:`build_method_trainer`: the method's learner is not data-parallel."""
    def check(cfg, res: RunResources) -> None:
        if res.workers != 1:
            raise ValueError(f"workers={res.workers}: {family} runs on one worker each; run more "
                             "trials in parallel instead (priorlab sweep --samples N)")
    return check


def build_method_trainer(train_fn, config_cls: type, config: dict[str, Any],
                         callbacks: list | None = None, check=None, process_group=None):
    """The ``build_trainer`` of every method: the config is checked in the driver (not in every
    worker), ``check(cfg, resources)`` adds method-specific checks, then the trainer;
    ``process_group(cfg, resources)`` says whether the workers need torch.distributed (default:
    only with more than one worker)."""
    from priorlab.methods.configuration import config_from_dict

    overrides, res = split_config(config, {f.name for f in fields(config_cls)})
    cfg = config_from_dict(config_cls, overrides)
    if check is not None:
        check(cfg, res)
    if not res.data_root:
        raise ValueError("data_root must be set (the CLI resolves it; pass an absolute path)")
    return torch_trainer(train_fn, config, res, callbacks=callbacks,
                         process_group=process_group(cfg, res) if process_group else None)

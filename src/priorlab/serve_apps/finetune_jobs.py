"""Fine-tune jobs of the text2nerf app: out-of-distribution prompts (thesis Sec. 4.4.3, Fig. 4.8)
fine-tuned in the background, outliving the replica that accepted them.

``POST /v1/finetune`` hands the request to a :class:`JobBoard`, a detached, named Ray actor
(one per jobs folder) that Serve replicas find by name. The board runs each job as a Ray task
that it owns (so a replica that dies takes nothing with it), takes the task's progress reports,
and keeps every job's record in ``<jobs_dir>/<id>/job.json``; the result (turntable PNGs, the
NeRF as safetensors, ``result.json``) lands in ``<jobs_dir>/<id>/result/`` and is moved into
place whole. A board that is restarted (``max_restarts``) reads the records back and starts
again the jobs that had not finished, so no accepted job is lost. In a cluster, ``jobs_dir``
must be on storage every node sees.

What a job fits:
- a prompt of the procedural family (``priorlab scenes list``): HyperFields fine-tuned on the
  scene's exact views until ``target_psnr`` or ``max_steps`` (``fields.finetune.finetune_hyperfields``);
- any other prompt: score distillation from a local Stable Diffusion (``sd_model`` given to the
  app), ``max_steps`` steps (``finetune_hyperfields_sds``). Without one such a prompt is refused
  when it is submitted, with the reason.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import ray

NAMESPACE = "priorlab-serve"
JOB_ID = re.compile(r"^[0-9a-f]{12}$")
FINISHED = ("succeeded", "failed")


def board_name(jobs_dir: str | os.PathLike) -> str:
    """The board's actor name: one board per jobs folder."""
    folder = str(Path(jobs_dir).expanduser().resolve())
    return "text2nerf-jobs-" + hashlib.sha256(folder.encode()).hexdigest()[:12]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_json_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, default=float)
    os.replace(tmp, path)


def run_finetune_job(job_id: str, jobs_dir: str, checkpoint: str, request: dict[str, Any],
                     objective: str, sd_model: str | None, board: str) -> dict[str, Any]:
    """The job itself (run as a Ray task by the board): fine-tune, render, write the result."""
    import torch

    from priorlab.data.scenes import VIEW_FOV_DEG, parse_scene, view_cameras
    from priorlab.methods.fields.finetune import (FinetuneConfig, finetune_hyperfields,
                                                  finetune_hyperfields_sds)
    from priorlab.methods.fields.generate import generate_nerf, load_hyperfields
    from priorlab.methods.fields.store import nerf_to_bytes
    from priorlab.methods.fields.turntable import orbit_pngs

    actor = ray.get_actor(board, namespace=NAMESPACE)
    torch.manual_seed(0)
    model, _cfg, encoder = load_hyperfields(checkpoint)
    max_steps, started = int(request["max_steps"]), time.perf_counter()
    cfg = FinetuneConfig(target_psnr=float(request["target_psnr"]), max_steps=max_steps,
                         eval_every=max(1, min(50, max_steps)))
    if objective == "reconstruction":
        scene = parse_scene(request["prompt"])

        def on_eval(step: int, row: dict) -> None:
            actor.progress.remote(job_id, step, max_steps, psnr=row["eval/psnr"])

        curve, field = finetune_hyperfields(model, encoder, scene, cfg, on_eval=on_eval)
        last = curve[-1]
        summary = {"steps": int(last["step"]), "psnr": last["eval/psnr"],
                   "start_psnr": curve[0]["eval/psnr"],
                   "reached_target": bool(last["eval/psnr"] >= cfg.target_psnr)}
    else:
        from priorlab.methods.fields.sds import SDSConfig, StableDiffusionGuidance

        guidance = StableDiffusionGuidance(SDSConfig(model_path=sd_model))

        def on_step(step: int, loss: float) -> None:
            if step % max(1, max_steps // 100) == 0 or step == max_steps:
                actor.progress.remote(job_id, step, max_steps, loss=loss)

        tuned, losses = finetune_hyperfields_sds(model, encoder, request["prompt"], guidance, cfg,
                                                 max_steps, on_step=on_step)
        c2w, _, _ = view_cameras(int(request["views"]), orbit=True, elevation=(20.0, 20.0))
        field = generate_nerf(tuned, encoder, request["prompt"], c2w, int(request["resolution"]),
                              VIEW_FOV_DEG)
        summary = {"steps": len(losses), "psnr": None, "last_loss": losses[-1], "reached_target": None}
    pngs = orbit_pngs(field, field.cfg, int(request["views"]), int(request["resolution"]))
    summary.update(objective=objective, seconds=time.perf_counter() - started,
                   views=len(pngs), resolution=int(request["resolution"]))
    job_dir = Path(jobs_dir) / job_id
    tmp = Path(tempfile.mkdtemp(prefix=".result.", dir=job_dir))
    for i, data in enumerate(pngs):
        (tmp / f"view_{i:02d}.png").write_bytes(data)
    (tmp / "model.safetensors").write_bytes(nerf_to_bytes(field, prompt=request["prompt"],
                                                          objective=objective))
    _write_json_atomic(tmp / "result.json", summary)
    final = job_dir / "result"
    if final.exists():                       # an earlier attempt of this job finished: replace it
        shutil.rmtree(final)
    os.replace(tmp, final)
    return summary


# A worker that dies mid-job (OOM, a lost node) runs the job again once.
_finetune_task = ray.remote(max_retries=1)(run_finetune_job)


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class JobBoard:
    """Accepted fine-tune jobs: records on disk, tasks owned here, progress from the tasks."""

    def __init__(self, jobs_dir: str, checkpoint: str, sd_model: str | None,
                 task_options: dict[str, Any]):
        self.dir = Path(jobs_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint, self.sd_model, self.task_options = checkpoint, sd_model, task_options
        self.name = board_name(jobs_dir)
        self.jobs: dict[str, dict[str, Any]] = {}
        self.watchers: dict[str, asyncio.Task] = {}
        self.resumed = False
        for path in sorted(self.dir.glob("*/job.json")):
            try:
                record = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue                       # a damaged record is left on disk for a person
            if isinstance(record, dict) and JOB_ID.match(str(record.get("id", ""))):
                self.jobs[record["id"]] = record

    def _save(self, record: dict[str, Any]) -> None:
        _write_json_atomic(self.dir / record["id"] / "job.json", record)

    def _resume(self) -> None:
        """Once per (re)start: jobs accepted but not finished are started again."""
        if self.resumed:
            return
        self.resumed = True
        for record in self.jobs.values():
            if record["status"] not in FINISHED:
                record["status"], record["note"] = "queued", "restarted after the job board restarted"
                self._launch(record)

    def _launch(self, record: dict[str, Any]) -> None:
        record["attempts"] = int(record.get("attempts", 0)) + 1
        self._save(record)
        ref = _finetune_task.options(**self.task_options).remote(
            record["id"], str(self.dir), self.checkpoint, record["request"], record["objective"],
            self.sd_model, self.name)
        self.watchers[record["id"]] = asyncio.get_running_loop().create_task(self._watch(record, ref))

    async def _watch(self, record: dict[str, Any], ref) -> None:
        try:
            summary = await ref
        except Exception as err:                                  # noqa: BLE001 - reported in the record
            cause = getattr(err, "cause", None) or err
            lines = [line for line in str(cause).strip().splitlines() if line.strip()]
            record.update(status="failed", finished=_now(),
                          error=f"{type(cause).__name__}: {lines[-1] if lines else ''}"[:2000])
        else:
            record.update(status="succeeded", finished=_now(), result=summary)
            record["progress"]["step"] = summary["steps"]
            record["progress"]["fraction"] = 1.0
        self._save(record)

    async def submit(self, request: dict[str, Any], objective: str) -> dict[str, Any]:
        self._resume()
        job_id = uuid.uuid4().hex[:12]
        record = {"id": job_id, "status": "queued", "prompt": request["prompt"],
                  "objective": objective, "request": request, "created": _now(),
                  "started": None, "finished": None, "error": None, "result": None,
                  "progress": {"step": 0, "max_steps": int(request["max_steps"]), "fraction": 0.0,
                               "psnr": None, "loss": None}}
        self.jobs[job_id] = record
        self._launch(record)
        return record

    async def progress(self, job_id: str, step: int, total: int, psnr: float | None = None,
                       loss: float | None = None) -> None:
        record = self.jobs.get(job_id)
        if record is None or record["status"] in FINISHED:
            return
        if record["status"] == "queued":
            record.update(status="running", started=_now())
        record["progress"].update(step=int(step), max_steps=int(total),
                                  fraction=round(min(1.0, step / max(1, total)), 4))
        if psnr is not None:
            record["progress"]["psnr"] = float(psnr)
        if loss is not None:
            record["progress"]["loss"] = float(loss)
        self._save(record)

    async def get(self, job_id: str) -> dict[str, Any] | None:
        self._resume()
        return self.jobs.get(job_id)

    async def ids(self) -> list[str]:
        self._resume()
        return list(self.jobs)


def get_board(jobs_dir: str, checkpoint: str, sd_model: str | None, task_options: dict[str, Any]):
    """The board of ``jobs_dir``: the running one, or a new detached one."""
    return JobBoard.options(name=board_name(jobs_dir), namespace=NAMESPACE, lifetime="detached",
                            get_if_exists=True).remote(str(Path(jobs_dir).resolve()), checkpoint,
                                                       sd_model, task_options)


def read_result(jobs_dir: str | os.PathLike, job_id: str, want: list[str]) -> dict[str, Any]:
    """A finished job's files for the answer: base64 PNG views and/or the NeRF's safetensors."""
    import base64

    folder = Path(jobs_dir) / job_id / "result"
    if not (folder / "result.json").is_file():
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(folder))
    out: dict[str, Any] = {}
    if "png" in want:
        out["views"] = [base64.b64encode(p.read_bytes()).decode()
                        for p in sorted(folder.glob("view_*.png"))]
    if "weights" in want:
        out["weights"] = base64.b64encode((folder / "model.safetensors").read_bytes()).decode()
        out["weights_format"] = "safetensors (priorlab.methods.fields.store.nerf_from_bytes)"
    return out

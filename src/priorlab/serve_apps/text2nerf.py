"""text2nerf: HyperFields as an HTTP service (thesis Ch. 4; zero-shot generation Sec. 4.4.1,
Fig. 4.4; amortisation Sec. 4.4.7; out-of-distribution fine-tuning Sec. 4.4.3, Fig. 4.8).

A text prompt becomes a NeRF in one forward pass of the dynamic hypernetwork (Eq. 4.4-4.5); the
service renders its turntable and/or returns its weights. Endpoints::

    POST /v1/generate   {"prompt": "a red torus", "views": 4, "resolution": 128,
                         "return": ["png", "weights"]}
                        -> {"prompt", "views": [base64 PNG, ...], "weights": base64 safetensors,
                            "timing": {"queue_s", "condition_s", "generate_s", "render_s",
                                       "total_s", "batch_size"}}
    POST /v1/finetune   {"prompt", "max_steps", "target_psnr", "views", "resolution", "return"}
                        -> 202 {"id", "status": "queued", ...}   (see finetune_jobs.py)
    GET  /v1/jobs/{id}  -> status, progress and, when it succeeded, the result
    GET  /v1/info       model, checkpoint and its sha256, text encoder, device, limits
    GET  /healthz

Prompts that arrive together are conditioned together: ``@serve.batch`` collects them (at most
``max_batch_size``, waiting at most ``batch_wait_timeout_s``) for one pass of the frozen text
encoder and the hypernetwork's text transformer; each prompt's NeRF is then generated on its own
views' sample points (``generate.scene_nerf``) and rendered. A prompt that fails inside a batch
(too many tokens) gets its own 422 and never fails the others; a client that hangs up
mid-batch takes only its own request with it.

Run it::

    priorlab serve text2nerf --checkpoint runs/train/hf/checkpoints/checkpoint_000002000
    curl -s 127.0.0.1:8000/v1/generate -d '{"prompt": "a red torus"}'

or on a cluster: ``serve deploy serve.yaml`` (the typed builder below is its import path).
"""


import asyncio
import base64
from pathlib import Path
from typing import Any, Literal

import torch
from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve import Application

from priorlab.serve_apps.common import (AppArgs, Autoscaling, RequestError, Timer, checked_app_args,
                                        error_response, internal_error, isolate_failures,
                                        pick_device, read_body, validate, verified_checkpoint,
                                        within)

MAX_RESOLUTION = 512


class Text2NerfArgs(AppArgs):
    """What ``build_text2nerf_app`` takes (``serve deploy`` args, ``priorlab serve`` flags)."""

    checkpoint: str = Field(description="a fields-hyper checkpoint folder (priorlab train fields-distillation)")
    text_encoder: str | None = Field(None, description="a local text-encoder folder instead of "
                                     "the checkpoint's")
    autoscaling: Autoscaling = Autoscaling()
    replica_cpus: float = Field(1.0, gt=0)
    replica_gpus: float = Field(0.0, ge=0)
    max_views: int = Field(16, ge=1)
    max_resolution: int = Field(MAX_RESOLUTION, ge=8, le=MAX_RESOLUTION)
    jobs_dir: str = Field("runs/serve/text2nerf-jobs", description="fine-tune job records and "
                          "results (shared storage on a cluster)")
    sd_model: str | None = Field(None, description="a local Stable Diffusion folder: fine-tunes "
                                 "of prompts outside the procedural family use SDS with it")
    finetune_cpus: float = Field(1.0, gt=0)
    finetune_gpus: float = Field(0.0, ge=0)
    max_finetune_steps: int = Field(5000, ge=1)
    occupancy_resolution: int = Field(32, ge=0, le=256, description="cells per side of the "
                                      "occupancy grid measured for each generated NeRF, whose "
                                      "empty cells rendering skips (0: evaluate every sample)")


Output = Literal["png", "weights"]


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    prompt: str = Field(min_length=1, max_length=1000)
    views: int | None = Field(None, ge=1, description="default 4 (or the server's max_views if lower)")
    resolution: int | None = Field(None, ge=8, le=MAX_RESOLUTION,
                                   description="default 128 (or the server's max_resolution if lower)")
    outputs: list[Output] = Field(default_factory=lambda: ["png"], alias="return", min_length=1)


class FinetuneRequest(GenerateRequest):
    max_steps: int = Field(500, ge=1)
    target_psnr: float = Field(25.0, gt=0, le=100)


def _check_limits(req: GenerateRequest, args: Text2NerfArgs) -> None:
    """The server's limits; fills in the defaults (4 views at 128, or less where the server
    allows less)."""
    if req.views is None:
        req.views = min(4, args.max_views)
    if req.resolution is None:
        req.resolution = min(128, args.max_resolution)
    if req.views > args.max_views:
        raise RequestError(422, f"views: must be at most {args.max_views} on this server (got "
                                f"{req.views})", "views")
    if req.resolution > args.max_resolution:
        raise RequestError(422, f"resolution: must be at most {args.max_resolution} on this server "
                                f"(got {req.resolution})", "resolution")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


api = FastAPI(title="priorlab text2nerf", description="HyperFields: text -> NeRF (thesis Ch. 4)")


@serve.deployment(name="Text2Nerf")
@serve.ingress(api)
class Text2Nerf:
    def __init__(self, args: dict[str, Any]):
        from priorlab.methods.fields.generate import load_hyperfields
        from priorlab.methods.fields.text import TextEncoder
        from priorlab.serve_apps.finetune_jobs import get_board

        self.args = Text2NerfArgs.model_validate(args)
        folder, self.sha256 = verified_checkpoint(self.args.checkpoint, self.args.expected_sha256)
        self.checkpoint = str(folder)
        self.device = pick_device(self.args.device)
        encoder = TextEncoder(self.args.text_encoder, device=self.device) if self.args.text_encoder else None
        self.model, self.cfg, self.encoder = load_hyperfields(folder, encoder)
        if encoder is None and self.device != "cpu":
            self.encoder = TextEncoder(self.cfg.text_encoder or None, device=self.device)
        self.model.to(self.device)
        self.condition_batch.set_max_batch_size(self.args.max_batch_size)
        self.condition_batch.set_batch_wait_timeout_s(self.args.batch_wait_timeout_s)
        self.render_lock = asyncio.Semaphore(1)        # one render at a time: they share the cores
        self.board = get_board(self.args.jobs_dir, self.checkpoint, self.args.sd_model,
                               {"num_cpus": self.args.finetune_cpus, "num_gpus": self.args.finetune_gpus})

    # ---- batched conditioning ---------------------------------------------------------------

    def _condition(self, prompts: list[str]) -> list[Any]:
        from priorlab.methods.fields.generate import GenerateError, check_prompt

        checked: list[Any] = []
        for p in prompts:
            try:
                checked.append(check_prompt(p, self.encoder))
            except GenerateError as err:
                checked.append(RequestError(422, f"prompt: {err}", "prompt"))

        def run(batch: list[str]) -> list:
            with torch.no_grad():
                tokens, mask = self.encoder.encode(batch)
                return list(self.model.condition(tokens.to(self.device), mask.to(self.device)))

        good = [p for p in checked if isinstance(p, str)]
        cts = iter(isolate_failures(run, good) if good else [])
        out = [p if isinstance(p, RequestError) else next(cts) for p in checked]
        return [internal_error(x, "conditioning this prompt") if isinstance(x, Exception)
                and not isinstance(x, RequestError) else x for x in out]

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def condition_batch(self, prompts: list[str]) -> list[Any]:
        n = len(prompts)
        outs = await asyncio.to_thread(self._condition, prompts)
        return [(out, n) for out in outs]

    # ---- generation -----------------------------------------------------------------------

    def _generate(self, ct, req: GenerateRequest) -> dict[str, Any]:
        from priorlab.data.scenes import VIEW_FOV_DEG, view_cameras
        from priorlab.methods.fields.generate import scene_nerf
        from priorlab.methods.fields.store import nerf_to_bytes
        from priorlab.methods.fields.turntable import orbit_pngs

        timer, out = Timer(), {}
        c2w, _, _ = view_cameras(req.views, orbit=True, elevation=(20.0, 20.0))
        field = scene_nerf(self.model, ct, c2w.to(self.device), req.resolution, VIEW_FOV_DEG,
                           occupancy_resolution=self.args.occupancy_resolution)
        out["generate_s"] = timer()
        if "png" in req.outputs:
            out["views"] = [_b64(b) for b in orbit_pngs(field, field.cfg, req.views, req.resolution)]
        out["render_s"] = round(timer() - out["generate_s"], 6)
        if "weights" in req.outputs:
            out["weights"] = _b64(nerf_to_bytes(field, prompt=req.prompt, checkpoint_sha256=self.sha256))
            out["weights_format"] = "safetensors (priorlab.methods.fields.store.nerf_from_bytes)"
        return out

    async def _generate_answer(self, req: GenerateRequest) -> dict[str, Any]:
        timer = Timer()
        ct, batch_size = await self.condition_batch(req.prompt)
        if isinstance(ct, RequestError):
            raise ct
        condition_s = timer()
        async with self.render_lock:
            queue_s = timer() - condition_s
            made = await asyncio.to_thread(self._generate, ct, req)
        timing = {"queue_s": round(queue_s, 6), "condition_s": condition_s,
                  "generate_s": made.pop("generate_s"), "render_s": made.pop("render_s"),
                  "total_s": timer(), "batch_size": batch_size}
        return {"prompt": req.prompt, **made, "timing": timing}

    @api.post("/v1/generate")
    async def generate(self, request: Request):
        try:
            req = validate(GenerateRequest, await read_body(request, self.args.max_body_bytes))
            _check_limits(req, self.args)
            return await within(self.args.request_timeout_s, self._generate_answer(req), "generation")
        except RequestError as err:
            return error_response(err)

    # ---- fine-tune jobs -------------------------------------------------------------------

    def _objective(self, prompt: str) -> str:
        from priorlab.data.scenes import parse_scene
        from priorlab.data.sdf import SceneError

        try:
            parse_scene(prompt)
            return "reconstruction"
        except SceneError as err:
            if self.args.sd_model:
                return "sds"
            raise RequestError(422, f"prompt: {err}. It has no exact views to fine-tune on, and "
                                    "this server has no Stable Diffusion model for score "
                                    "distillation: choose a prompt of the procedural family, or "
                                    "start the server with --sd-model PATH", "prompt") from None

    @api.post("/v1/finetune", status_code=202)
    async def finetune(self, request: Request):
        from fastapi.responses import JSONResponse

        try:
            req = validate(FinetuneRequest, await read_body(request, self.args.max_body_bytes))
            _check_limits(req, self.args)
            if req.max_steps > self.args.max_finetune_steps:
                raise RequestError(422, f"max_steps: must be at most {self.args.max_finetune_steps} "
                                        f"on this server (got {req.max_steps})", "max_steps")
            objective = self._objective(req.prompt.strip())
            body = req.model_dump(by_alias=True)
            body["prompt"] = req.prompt.strip()
            record = await self.board.submit.remote(body, objective)
            return JSONResponse(self._job_view(record), status_code=202)
        except RequestError as err:
            return error_response(err)

    def _job_view(self, record: dict[str, Any]) -> dict[str, Any]:
        from priorlab.serve_apps.finetune_jobs import read_result

        view = {k: record.get(k) for k in ("id", "status", "prompt", "objective", "created",
                                            "started", "finished", "progress", "error", "attempts")}
        view["links"] = {"self": f"/v1/jobs/{record['id']}"}
        if record["status"] == "succeeded":
            try:
                files = read_result(self.args.jobs_dir, record["id"], record["request"]["return"])
            except OSError as err:
                raise RequestError(410, f"job {record['id']} finished, but its result files are gone "
                                        f"from {self.args.jobs_dir} ({err.strerror}): submit it again",
                                   "job_id") from None
            view["result"] = {**record["result"], **files}
        return view

    @api.get("/v1/jobs/{job_id}")
    async def job(self, job_id: str):
        from priorlab.serve_apps.finetune_jobs import JOB_ID

        try:
            if not JOB_ID.match(job_id):
                raise RequestError(404, f"job id {job_id!r} is not one this server gives out (12 hex "
                                        "digits, from POST /v1/finetune)", "job_id")
            record = await self.board.get.remote(job_id)
            if record is None:
                raise RequestError(404, f"no job {job_id} on this server (jobs folder "
                                        f"{self.args.jobs_dir})", "job_id")
            return self._job_view(record)
        except RequestError as err:
            return error_response(err)

    # ---- about ----------------------------------------------------------------------------

    @api.get("/v1/info")
    async def info(self):
        from priorlab.methods.fields.generate import METHOD

        hcfg = self.model.cfg
        return {"app": "text2nerf", "method": METHOD,
                "model": f"HyperFields ({'dynamic' if hcfg.dynamic else 'static'} hypernetwork, "
                         f"{sum(p.numel() for p in self.model.parameters()):,} parameters)",
                "checkpoint": self.checkpoint, "checkpoint_sha256": self.sha256,
                "text_encoder": self.encoder.name, "device": self.device,
                "field": {"n_samples": self.model.field_cfg.n_samples,
                          "occupancy_resolution": self.args.occupancy_resolution},
                **self.args.described(max_views=self.args.max_views,
                                      max_resolution=self.args.max_resolution,
                                      max_finetune_steps=self.args.max_finetune_steps),
                "finetune_objectives": ["reconstruction"] + (["sds"] if self.args.sd_model else [])}

    @api.get("/healthz")
    async def healthz(self):
        return {"status": "ok"}


def build_text2nerf_app(args: Text2NerfArgs) -> Application:
    """The text2nerf application (``serve run priorlab.serve_apps.text2nerf:build_text2nerf_app
    checkpoint=...``, ``serve deploy serve.yaml``, ``priorlab serve text2nerf``)."""
    from priorlab.methods.fields.generate import METHOD

    args = checked_app_args(args, Text2NerfArgs, METHOD, "priorlab train fields-distillation")
    # replicas may start in another working directory: paths are fixed where the app is built
    args = args.model_copy(update={"jobs_dir": str(Path(args.jobs_dir).expanduser().resolve())})
    options = {"num_cpus": args.replica_cpus, "num_gpus": args.replica_gpus}
    return Text2Nerf.options(autoscaling_config=args.autoscaling.as_config(), ray_actor_options=options,
                             max_ongoing_requests=max(8, 2 * args.max_batch_size)).bind(
        args.model_dump())

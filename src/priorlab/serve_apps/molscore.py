"""molscore: a trained molecule scorer as an HTTP service (thesis Ch. 5, Sec. 5.3.4: features of
a molecule -> an MLP head -> a binding / property score).

The checkpoint is one written by ``priorlab train molecules-features`` (``MoleculeScorer``): its
feature recipe (ECFP, the MiDi-style diffusion model's features, ChemBERTa, or a concatenation)
and its head. The app is three deployments composed through ``DeploymentHandle``::

    Molscore (FastAPI ingress: validation, limits)
      -> MoleculeFeaturizer (CPU: SMILES parsing, conformers, features; batched)
      -> MoleculeHead       (the MLP head, on a GPU when the replica has one; batched)

Both inner deployments use ``@serve.batch``: the molecules of the requests that arrive together
are featurised in one call and scored in one forward pass. Each has an ``autoscaling_config``
(``min_replicas``, ``max_replicas``, ``target_ongoing_requests``).

    POST /v1/score  {"smiles": ["CCO", "not a smiles"], "task": "Class"}
                    -> {"task": "Class", "results": [{"input": "CCO", "score": 0.41},
                                                     {"input": "not a smiles", "error": "unparseable: ..."}],
                        "timing": {...}}
    GET  /v1/info   checkpoint, sha256, feature set, data set, tasks, device, limits
    GET  /healthz

At most ``max_smiles`` (1000) SMILES per request; every input gets one entry, in order, and an
invalid SMILES gets its own error without failing the others. ``task`` is one of the tasks the
head was trained on (``GET /v1/info``), or omitted for the first.

    priorlab serve molscore --checkpoint runs/molecules-bace/.../checkpoint_000000001
"""


import asyncio
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from priorlab.serve_apps.common import (AppArgs, Autoscaling, RequestError, Timer, checked_app_args,
                                        error_response, internal_error, isolate_failures,
                                        pick_device, read_body, validate, verified_checkpoint,
                                        within)

MAX_SMILES = 1000


class MolscoreArgs(AppArgs):
    """What ``build_molscore_app`` takes (``serve deploy`` args, ``priorlab serve`` flags)."""

    checkpoint: str = Field(description="a molecules-scorer checkpoint folder")
    max_body_bytes: int = Field(1_000_000, ge=256)
    max_batch_size: int = Field(32, ge=1, description="requests per batch in each inner deployment "
                                "(1: no batching)")
    batch_wait_timeout_s: float = Field(0.002, ge=0, description="longest wait for a batch to "
                                        "fill; under load, requests that arrive while a batch runs "
                                        "form the next one anyway")
    max_smiles: int = Field(MAX_SMILES, ge=1, le=MAX_SMILES)
    max_heavy_atoms: int = Field(150, ge=1)
    ingress_cpus: float = Field(0.1, gt=0)
    featurizer_cpus: float = Field(1.0, gt=0)
    scorer_cpus: float = Field(0.1, gt=0)
    scorer_gpus: float = Field(0.0, ge=0)
    featurizer_autoscaling: Autoscaling = Autoscaling()
    scorer_autoscaling: Autoscaling = Autoscaling()


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    smiles: list[str] = Field(min_length=1)
    task: str | None = None


def _load(args: MolscoreArgs):
    from priorlab.methods.molecules.scorer import MoleculeScorer

    folder, digest = verified_checkpoint(args.checkpoint, args.expected_sha256)
    return MoleculeScorer.load(folder), digest


@serve.deployment(name="MoleculeFeaturizer")
class MoleculeFeaturizer:
    """SMILES -> feature rows (parsing, conformers, the feature recipe), batched over requests."""

    def __init__(self, args: dict[str, Any]):
        self.args = MolscoreArgs.model_validate(args)
        self.scorer, _ = _load(self.args)
        self.featurize.set_max_batch_size(self.args.max_batch_size)
        self.featurize.set_batch_wait_timeout_s(self.args.batch_wait_timeout_s)

    def _featurize(self, requests: list[list[str]]) -> list[tuple[np.ndarray, list]]:
        flat = [s for r in requests for s in r]
        X, errors = self.scorer.featurize(flat, max_heavy_atoms=self.args.max_heavy_atoms)
        out, start = [], 0
        for r in requests:
            out.append((X[start:start + len(r)], errors[start:start + len(r)]))
            start += len(r)
        return out

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def featurize(self, requests: list[list[str]]) -> list:
        """(X, errors) per request, or the exception that request's molecules raised."""
        return await asyncio.to_thread(isolate_failures, self._featurize, requests)


@serve.deployment(name="MoleculeHead")
class MoleculeHead:
    """Feature rows -> scores: one forward pass of the MLP head for a batch of requests."""

    def __init__(self, args: dict[str, Any]):
        from priorlab.methods.molecules.head import predict

        self.args = MolscoreArgs.model_validate(args)
        self.scorer, _ = _load(self.args)
        self.device = pick_device(self.args.device)
        self.head = self.scorer.head.to(self.device).eval()
        self._predict = predict
        self.predict.set_max_batch_size(self.args.max_batch_size)
        self.predict.set_batch_wait_timeout_s(self.args.batch_wait_timeout_s)

    def _scores(self, items: list[tuple[np.ndarray, int]]) -> list[np.ndarray]:
        X = np.concatenate([x for x, _ in items])
        P = self._predict(self.head, X) if len(X) else np.zeros((0, self.head.n_tasks), np.float32)
        out, start = [], 0
        for x, column in items:
            out.append(P[start:start + len(x), column])
            start += len(x)
        return out

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def predict(self, items: list[tuple[np.ndarray, int]]) -> list:
        # one small forward pass: cheaper inline than a thread hop
        return isolate_failures(self._scores, items)

    def where(self) -> str:
        return self.device

    def tasks(self) -> list[str]:
        return list(self.scorer.task_names)


api = FastAPI(title="priorlab molscore", description="molecule scores from a trained scorer (thesis Ch. 5)")


@serve.deployment(name="Molscore")
@serve.ingress(api)
class Molscore:
    def __init__(self, featurizer: DeploymentHandle, head: DeploymentHandle, args: dict[str, Any]):
        from priorlab.methods.checkpoint import read_meta

        self.args = MolscoreArgs.model_validate(args)
        self.featurizer, self.head = featurizer, head
        folder, self.sha256 = verified_checkpoint(self.args.checkpoint, self.args.expected_sha256)
        meta = read_meta(folder)
        self.checkpoint, self.config = str(folder), meta["config"]
        self.task_names: list[str] | None = None          # asked of the head on first use

    async def _tasks(self) -> list[str]:
        if self.task_names is None:
            self.task_names = await self.head.tasks.remote()
        return self.task_names

    def _column(self, task: str | None) -> tuple[int, str | None]:
        if task is None:
            return 0, self.task_names[0] if self.task_names else None
        if not self.task_names:
            raise RequestError(422, f"task: this scorer's checkpoint records no task names (an older "
                                    "one): leave task out to get its first task", "task")
        if task not in self.task_names:
            raise RequestError(422, f"task: {task!r} is not a task of this scorer; it predicts "
                                    f"{self.task_names} (trained on {self.config.get('dataset')})",
                               "task")
        return self.task_names.index(task), task

    async def _score(self, req: ScoreRequest) -> dict[str, Any]:
        timer = Timer()
        await self._tasks()
        column, task = self._column(req.task)
        got = await self.featurizer.featurize.remote(req.smiles)
        if isinstance(got, Exception):
            raise internal_error(got, "featurising these molecules")
        X, errors = got
        featurize_s = timer()
        good = [i for i, e in enumerate(errors) if e is None]
        scores = await self.head.predict.remote((X[good], column)) if good else []
        if isinstance(scores, Exception):
            raise internal_error(scores, "scoring these molecules")
        results: list[dict[str, Any]] = [{"input": s, "error": e} for s, e in zip(req.smiles, errors)]
        for i, value in zip(good, scores):
            results[i] = {"input": req.smiles[i], "score": float(value)}
        return {"task": task, "n_scored": len(good), "n_errors": len(results) - len(good),
                "results": results,
                "timing": {"featurize_s": featurize_s, "score_s": round(timer() - featurize_s, 6),
                           "total_s": timer()}}

    @api.post("/v1/score")
    async def score(self, request: Request):
        try:
            req = validate(ScoreRequest, await read_body(request, self.args.max_body_bytes))
            if len(req.smiles) > self.args.max_smiles:
                raise RequestError(422, f"smiles: at most {self.args.max_smiles} per request (got "
                                        f"{len(req.smiles)}); split them over several requests", "smiles")
            return await within(self.args.request_timeout_s, self._score(req), "scoring")
        except RequestError as err:
            return error_response(err)

    @api.get("/v1/info")
    async def info(self):
        from priorlab.methods.molecules.scorer import METHOD

        return {"app": "molscore", "method": METHOD, "checkpoint": self.checkpoint,
                "checkpoint_sha256": self.sha256, "feature_set": self.config.get("feature_set"),
                "dataset": self.config.get("dataset"), "tasks": await self._tasks(),
                "model": f"{self.config.get('feature_set')} features -> MLP head",
                "device": await self.head.where.remote(),
                **self.args.described(max_smiles=self.args.max_smiles)}

    @api.get("/healthz")
    async def healthz(self):
        return {"status": "ok"}


def build_molscore_app(args: MolscoreArgs) -> Application:
    """The molscore application (``serve run priorlab.serve_apps.molscore:build_molscore_app
    checkpoint=...``, ``serve deploy serve.yaml``, ``priorlab serve molscore``)."""
    from priorlab.methods.molecules.scorer import METHOD

    args = checked_app_args(args, MolscoreArgs, METHOD, "priorlab train molecules-features")
    plain = args.model_dump()
    featurizer = MoleculeFeaturizer.options(
        autoscaling_config=args.featurizer_autoscaling.as_config(),
        max_ongoing_requests=max(64, 2 * args.max_batch_size),   # a full batch and the next
        ray_actor_options={"num_cpus": args.featurizer_cpus}).bind(plain)
    head = MoleculeHead.options(
        autoscaling_config=args.scorer_autoscaling.as_config(),
        max_ongoing_requests=max(64, 2 * args.max_batch_size),
        ray_actor_options={"num_cpus": args.scorer_cpus, "num_gpus": args.scorer_gpus}).bind(plain)
    return Molscore.options(max_ongoing_requests=256,
                            ray_actor_options={"num_cpus": args.ingress_cpus}).bind(
        featurizer, head, plain)


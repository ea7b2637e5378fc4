"""Training HyperFields: NeRF distillation (thesis Sec. 4.3.2, Algorithm 3, Eq. 4.6) and the
"no NeRF distillation" baseline of Fig. 4.10, as one fit whose state can be checkpointed.

Algorithm 3: each step samples ``n_prompts`` prompts (3 in the thesis) and one camera for each,
renders the prompt's teacher NeRF (Stage 1, the teacher store of ``store.py``) and HyperFields
conditioned on the prompt from that camera, and minimises

    L_d = Σ_i (I_i - I'_i)^2                                                       (Eq. 4.6)

summed over the prompts, each image's squared error averaged over its pixels. On a CPU a
step renders ``rays_per_prompt`` random pixels of each camera's ``image_size`` view rather
than the whole image; every scene's batch means (Eq. 4.4) are taken over its own rays' samples
(``renderer.render_batch``), as at inference over one view.

``objective="direct"`` is the baseline of Fig. 4.10: the same hypernetwork trained on the
teachers' own objective over all prompts instead of on the teachers. For the reconstruction
teachers of this repository that objective is the photometric loss on each scene's exact
training views (``teacher.scene_views``); the thesis' baseline trains on SDS, which needs a local
Stable Diffusion and is not built for the hypernetwork (docs/fields.md).

What is packed (``split``): ``zero-shot`` trains on the seen prompts of Sec. 4.4.1's colour x
shape grid (``scenes.zero_shot_split``: 9 shapes x 8 colours, 3 colours held out per shape) and
evaluates on both; ``pack`` trains on the first ``pack_size`` scenes of the seeded shuffle of
the whole family with attributes (the packing sweep of Fig. 4.9 / Sec. 4.5, 4 -> 100 scenes).

Evaluation generates every scene's NeRF in one forward pass (``generate.py``: its weights fixed
on the sample points of the evaluation views), renders it from ``eval_views`` fixed cameras at
``eval_size`` and scores
it against the analytic ground truth: PSNR and SSIM per split (seen / unseen) and, for seen
scenes with a teacher, PSNR against the teacher. ``evaluate_zero_shot`` adds the retrieval
analogue of Table 4.1 over every scene of the grid.

    cfg = DistillConfig(teachers="runs/teachers", steps=2000)
    fit = DistillFit(cfg)
    while fit.step < cfg.steps:
        fit.train_step()
    metrics = fit.evaluate()            # {"seen/psnr": ..., "unseen/psnr": ..., ...}
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from priorlab.data.scenes import (VIEW_FOV_DEG, Scene, parse_scene, render_views, scene_family,
                                  view_cameras, zero_shot_split)
from priorlab.methods.configuration import ConfigError, check_bounds
from priorlab.methods.fields.cameras import get_rays
from priorlab.methods.fields.config import FieldConfig
from priorlab.methods.fields.generate import MAX_REFERENCE_POINTS, scene_nerf
from priorlab.methods.fields.hyper import HyperFields, HyperFieldsConfig
from priorlab.methods.fields.metrics import (image_similarity, psnr_per_image, retrieval_topk,
                                             ssim)
from priorlab.methods.fields.renderer import render_batch, render_image, render_rays
from priorlab.methods.fields.stepfit import StepFit
from priorlab.methods.fields.teacher import TeacherConfig, training_rays
from priorlab.methods.fields.text import TextEncoder

OBJECTIVES = ("distill", "direct")
SPLITS = ("zero-shot", "pack")
EVAL_SEED = 2_000_003        # evaluation cameras: never a teacher's training or held-out pose
RETRIEVAL_KS = (1, 3, 5, 10)


class DistillError(ValueError):
    """Bad distillation input (missing teachers, an empty pack)."""


@dataclass
class DistillConfig:
    # --- what is packed ---
    split: Literal["zero-shot", "pack"] = "zero-shot"
    """`zero-shot`: the seen prompts of Sec. 4.4.1's grid (45 of 72); `pack`: ``pack_size``
    scenes of the family with attributes (Fig. 4.9's packing)."""
    split_seed: int = 0
    """Seed of the held-out colours (zero-shot) or of the shuffle (pack)."""
    n_held_out: int = 3
    """Colours held out per shape (zero-shot; 3 in the thesis)."""
    pack_size: int = 8
    """Scenes packed with ``split=pack`` (the family with attributes has 116)."""
    scenes: str = ""
    """Pack exactly these scenes instead (prompts or slugs separated by ";", e.g. "a red
    sphere;blue-cube"); nothing is held out."""
    scene_seed: int = 0
    """Seed of the scene family (patterns, second colours), as the teachers' ``scene_seed``."""
    objective: Literal["distill", "direct"] = "distill"
    """`distill`: Eq. 4.6 against the teachers; `direct`: the teachers' own objective (Fig. 4.10)."""
    teachers: str = "runs/teachers"
    """Teacher store URI (``priorlab farm teachers --store``); needed by `distill`."""
    text_encoder: str = ""
    """Local folder of a BERT / T5 / CLIP text model; empty = the bundled MiniLM."""
    # --- the hypernetwork (HyperFieldsConfig; App. B.1) ---
    dynamic: bool = True
    """Weights from CT and the activations (Eq. 4.5); False: from CT alone (Fig. 4.9)."""
    adain: bool = True
    weight_mode: str = "direct"
    model_dim: int = 256
    transformer_layers: int = 6
    n_heads: int = 12
    head_dim: int = 16
    hyper_hidden: int = 64
    # --- the generated NeRF (FieldConfig; the MLP is App. B.1's 6 x 64) ---
    n_levels: int = 12
    log2_hashmap_size: int = 17
    """The hash grid is shared by every scene, so it gets a larger table than one teacher's."""
    finest_resolution: int = 256
    n_samples: int = 48
    # --- training (Algorithm 3) ---
    n_prompts: int = 3
    """Prompts per step (3 in Algorithm 3)."""
    rays_per_prompt: int = 1024
    image_size: int = 64
    """Resolution of the cameras whose pixels a step samples (the teachers' 64x64)."""
    lr: float = 1e-4
    """Adam learning rate of the hypernetwork (App. B.1)."""
    grid_lr: float = 1e-2
    """Adam learning rate of the shared hash grid (Instant-NGP's)."""
    steps: int = 2000
    eval_every: int = 250
    eval_views: int = 4
    eval_size: int = 32
    eval_scenes: int = 8
    """Scenes per split scored at each evaluation (0 = all); ``evaluate_zero_shot`` scores all."""
    seed: int = 0
    max_seconds: float = 0.0
    """Wall-clock budget (0: none); the fit stops at the first evaluation after it."""

    def validate(self) -> None:
        check_bounds(self, at_least_1=("pack_size", "model_dim", "transformer_layers", "n_heads",
                                       "head_dim", "hyper_hidden", "n_levels", "log2_hashmap_size",
                                       "finest_resolution", "n_samples", "n_prompts",
                                       "rays_per_prompt", "image_size", "steps", "eval_every",
                                       "eval_views", "eval_size"),
                     non_negative=("n_held_out", "eval_scenes", "max_seconds"),
                     positive=("lr", "grid_lr"))
        for name, allowed in (("split", SPLITS), ("objective", OBJECTIVES)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}={getattr(self, name)!r}: choose one of {list(allowed)}")
        if self.eval_size < 11:
            raise ConfigError(f"eval_size={self.eval_size} must be >= 11 (SSIM's 11x11 window)")
        self.hyper_config(1).validate()

    def hyper_config(self, text_dim: int) -> HyperFieldsConfig:
        return HyperFieldsConfig(text_dim=text_dim, model_dim=self.model_dim,
                                 n_layers=self.transformer_layers, n_heads=self.n_heads,
                                 head_dim=self.head_dim, hyper_hidden=self.hyper_hidden,
                                 dynamic=self.dynamic, adain=self.adain, weight_mode=self.weight_mode)

    def field_config(self) -> FieldConfig:
        cfg = FieldConfig(n_levels=self.n_levels, log2_hashmap_size=self.log2_hashmap_size,
                          finest_resolution=self.finest_resolution, n_samples=self.n_samples)
        cfg.validate()
        return cfg


def packed_scenes(cfg: DistillConfig) -> tuple[list[Scene], list[Scene]]:
    """(trained, held out) scenes of ``cfg``: the zero-shot split, or a pack and nothing held out."""
    if cfg.scenes.strip():
        listed = [parse_scene(p.strip(), seed=cfg.scene_seed) for p in cfg.scenes.split(";") if p.strip()]
        return list({s.slug: s for s in listed}.values()), []
    if cfg.split == "zero-shot":
        return zero_shot_split(cfg.split_seed, cfg.n_held_out)
    family = scene_family(cfg.scene_seed, attributes=True)
    if cfg.pack_size > len(family):
        raise ConfigError(f"pack_size={cfg.pack_size}: the family with attributes has "
                          f"{len(family)} scenes")
    order = list(range(len(family)))
    random.Random(f"pack:{cfg.split_seed}").shuffle(order)
    return [family[i] for i in sorted(order[:cfg.pack_size])], []


def eval_views(scene: Scene, cfg: DistillConfig) -> dict[str, torch.Tensor]:
    """The exact renders every generated scene is scored against (the same cameras for all)."""
    return render_views(scene, cfg.eval_views, cfg.eval_size, seed=EVAL_SEED)


@torch.no_grad()
def generate_views(model: HyperFields, ct: torch.Tensor, c2w: torch.Tensor, size: int,
                   fov_deg: float | torch.Tensor, fcfg: FieldConfig,
                   max_points: int = MAX_REFERENCE_POINTS) -> torch.Tensor:
    """Views (V, size, size, 3) of the scene conditioned on ``ct`` (model_dim,): the NeRF it
    generates in one forward pass on (at most ``max_points`` of) these views' sample points
    (``generate.export_nerf``)."""
    was = model.training
    model.eval()
    field = scene_nerf(model, ct, c2w, size, fov_deg, max_points)
    model.train(was)
    return render_image(field, c2w, size, size, fov_deg, fcfg)["rgb"]


class DistillFit(StepFit):
    """One HyperFields fit (Algorithm 3 or the direct baseline), a step at a time, with the state
    a checkpoint needs to resume it exactly (``train_state`` / ``load_train_state``)."""

    def __init__(self, cfg: DistillConfig, *, encoder: TextEncoder | None = None, store=None,
                 rank: int = 0, world: int = 1, wrap=None):
        """``rank`` / ``world``: this worker's share of each step's prompts under data-parallel
        training (``wrap``: e.g. ``ray.train.torch.prepare_model``, which wraps the student in
        DistributedDataParallel); one worker by default."""
        cfg.validate()
        if cfg.n_prompts % world:
            raise ConfigError(f"n_prompts={cfg.n_prompts} must be divisible by workers={world}")
        self.rank, self.world = rank, world
        self.cfg, self.fcfg = cfg, cfg.field_config()
        self.train_scenes, self.held_out = packed_scenes(cfg)
        if not self.train_scenes:
            raise DistillError(f"nothing to train on: split={cfg.split!r} gave no scenes")
        self.encoder = encoder or TextEncoder(cfg.text_encoder or None)
        torch.manual_seed(cfg.seed)
        self.model = HyperFields(cfg.hyper_config(self.encoder.dim), self.fcfg)
        self.student = Student(self.model)
        if wrap is not None:
            self.student = wrap(self.student)
        self.optimizer = torch.optim.Adam(self.model.param_groups(cfg.lr, cfg.grid_lr),
                                          betas=(0.9, 0.99), eps=1e-15)
        self.tokens, self.mask = self.encoder.encode([s.prompt for s in self.train_scenes])
        self.teachers: list = []
        self.train_rays: list = []
        if cfg.objective == "distill":
            self.teachers = load_teachers(self.train_scenes, store if store is not None else cfg.teachers)
        else:
            self.train_rays = [_scene_rays(s, cfg) for s in self.train_scenes]
        self.background = torch.tensor(self.fcfg.background, dtype=torch.float32)
        self.step = 0
        self.seconds = 0.0
        self._eval_cache: dict[str, dict[str, torch.Tensor]] = {}

    # --- one step of Algorithm 3 ---
    def _batch(self, idx: list[int], g: torch.Generator
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rays (n, R, 3) and target colours (n, R, 3) of the chosen prompts."""
        cfg, n = self.cfg, len(idx)
        if cfg.objective == "direct":
            parts = []
            for i in idx:
                origins, dirs, colours = self.train_rays[i]
                pick = torch.randint(0, origins.shape[0], (cfg.rays_per_prompt,), generator=g)
                parts.append((origins[pick], dirs[pick], colours[pick]))
            return tuple(torch.stack(p) for p in zip(*parts))
        c2w, _, _ = view_cameras(n, seed=int(torch.randint(0, 2 ** 31 - 1, (1,), generator=g)))
        origins, dirs = get_rays(c2w, cfg.image_size, cfg.image_size, VIEW_FOV_DEG)     # (n, H, W, 3)
        origins, dirs = origins.reshape(n, -1, 3), dirs.reshape(n, -1, 3)
        pick = torch.stack([torch.randperm(origins.shape[1], generator=g)[:cfg.rays_per_prompt]
                            for _ in range(n)])                                 # (n, R)
        origins = torch.gather(origins, 1, pick[..., None].expand(-1, -1, 3))
        dirs = torch.gather(dirs, 1, pick[..., None].expand(-1, -1, 3))
        with torch.no_grad():                                                   # I_i (line 5)
            colours = torch.stack([
                render_rays(self.teachers[i], origins[k], dirs[k], self.teachers[i].cfg,
                            background=self.background, occupancy=self.teachers[i].occupancy)["rgb"]
                for k, i in enumerate(idx)])
        return origins, dirs, colours

    def train_step(self) -> float:
        """One step of Algorithm 3 on this worker's share of the step's prompts."""
        started = time.perf_counter()
        cfg = self.cfg
        n = min(cfg.n_prompts, len(self.train_scenes))
        chosen = torch.randperm(len(self.train_scenes), generator=self._generator())[:n].tolist()
        per = max(1, n // self.world)
        idx = chosen[self.rank * per:(self.rank + 1) * per] or chosen[:1]
        g = self._generator(self.rank + 1)
        origins, dirs, target = self._batch(idx, g)
        out = render_batch(lambda pts: self.student(self.tokens[idx], self.mask[idx], pts),
                           origins, dirs, self.fcfg, training=True, generator=g,
                           background=self.background)
        loss = distillation_loss(out["rgb"], target)                            # Eq. 4.6
        self.optimizer.zero_grad(set_to_none=True)
        # Eq. 4.6 sums over the step's prompts; data-parallel training averages the workers'
        # gradients, so each worker's share of the sum is scaled by the number of workers
        (loss * self.world).backward()
        self.optimizer.step()
        self.step += 1
        self.seconds += time.perf_counter() - started
        return float(loss.detach())

    # --- evaluation ---
    def _truth(self, scene: Scene) -> dict[str, torch.Tensor]:
        if scene.slug not in self._eval_cache:
            self._eval_cache[scene.slug] = eval_views(scene, self.cfg)
        return self._eval_cache[scene.slug]

    def conditioning(self, scenes: list[Scene]) -> torch.Tensor:
        with torch.no_grad():
            return self.model.condition(*self.encoder.encode([s.prompt for s in scenes]))

    def evaluate(self, limit: int | None = None) -> dict[str, float]:
        """Mean PSNR / SSIM against ground truth per split (``limit`` scenes each, default
        ``cfg.eval_scenes``, 0 = all) and, for trained scenes with a teacher, PSNR against it."""
        started = time.perf_counter()
        limit = self.cfg.eval_scenes if limit is None else limit
        metrics: dict[str, float] = {}
        for name, scenes in (("seen", self.train_scenes), ("unseen", self.held_out)):
            scenes = scenes[:limit] if limit else scenes
            if not scenes:
                continue
            rows = self.score(scenes)
            metrics[f"{name}/psnr"] = sum(r["psnr"] for r in rows) / len(rows)
            metrics[f"{name}/ssim"] = sum(r["ssim"] for r in rows) / len(rows)
            if name == "seen" and self.teachers:
                metrics["seen/psnr_vs_teacher"] = sum(r["psnr_vs_teacher"] for r in rows) / len(rows)
        if "unseen/psnr" in metrics:
            metrics["gap/psnr"] = metrics["seen/psnr"] - metrics["unseen/psnr"]
        self.seconds += time.perf_counter() - started
        return metrics

    def score(self, scenes: list[Scene]) -> list[dict]:
        """Per scene: PSNR and SSIM of the generated views against the exact ones (and against
        the scene's teacher where this fit has one), plus the generated views themselves."""
        cts = self.conditioning(scenes)
        teacher_of = {s.slug: t for s, t in zip(self.train_scenes, self.teachers)}
        rows = []
        for scene, ct in zip(scenes, cts):
            truth = self._truth(scene)
            row = {"slug": scene.slug, **score_views(self.model, ct, truth, self.cfg.eval_size)}
            if scene.slug in teacher_of:
                if "teacher_rgb" not in truth:               # teachers are fixed: render once
                    teacher = teacher_of[scene.slug]
                    with torch.no_grad():
                        truth["teacher_rgb"] = render_image(
                            teacher, truth["c2w"], self.cfg.eval_size, self.cfg.eval_size,
                            truth["fov_deg"], teacher.cfg, occupancy=teacher.occupancy)["rgb"]
                ref = truth["teacher_rgb"]
                row["psnr_vs_teacher"] = float(psnr_per_image(row["views"], ref).mean())
            rows.append(row)
        return rows


class Student(nn.Module):
    """HyperFields as one module whose forward conditions and evaluates, so that a
    DistributedDataParallel wrapper sees the whole step: (tokens (B, T, D), mask (B, T),
    points (B, N, 3)) -> {"sigma": (B, N), "rgb": (B, N, 3)}."""

    def __init__(self, model: HyperFields):
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, points: torch.Tensor):
        return self.model(points, self.model.condition(tokens, mask))


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Eq. 4.6: Σ over prompts of each image's mean squared error; (n, R, 3) each."""
    return ((student - teacher) ** 2).mean(dim=tuple(range(1, student.dim()))).sum()


def missing_teachers(scenes: list[Scene], store) -> list[Scene]:
    """The scenes that have no finished teacher in ``store`` (a ``TeacherStore``)."""
    have = set(store.finished())
    return [s for s in scenes if s.slug not in have]


def load_teachers(scenes: list[Scene], store) -> list:
    """The teacher NeRF of every scene from a ``TeacherStore`` (or its URI), in eval mode; a
    clear error lists the scenes without one and the farm command that makes them."""
    from priorlab.methods.fields.store import TeacherStore

    store = store if isinstance(store, TeacherStore) else TeacherStore(store)
    missing = missing_teachers(scenes, store)
    if missing:
        shown = ", ".join(s.slug for s in missing[:8]) + (" ..." if len(missing) > 8 else "")
        raise DistillError(
            f"{len(missing)} of {len(scenes)} scenes have no teacher in {store.uri}: {shown}. "
            f"Fit them first: priorlab farm teachers --store {store.uri} --scenes "
            + " ".join(sorted({s.shape for s in missing})))
    teachers = []
    for scene in scenes:
        field, _ = store.load(scene.slug)
        field.eval()
        for p in field.parameters():
            p.requires_grad_(False)
        teachers.append(field)
    return teachers


def _scene_rays(scene: Scene, cfg: DistillConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A scene's training rays and exact colours: the views its teacher was fitted on."""
    return training_rays(scene, TeacherConfig(image_size=cfg.image_size, scene_seed=cfg.scene_seed))


def evaluate_zero_shot(fit: DistillFit, ks=RETRIEVAL_KS) -> tuple[list[dict], dict[str, float]]:
    """Sec. 4.4.1 / Table 4.1 on every scene of the grid: per-scene rows (slug, split, PSNR,
    SSIM, rank) and a summary with mean PSNR / SSIM and top-k retrieval per split.

    Retrieval: each generated scene's views are compared with the exact views of all scenes of
    the grid (seen and unseen) over the same cameras (similarity = -MSE, ``image_similarity``);
    a hit at k means its own prompt's scene is among the k most similar.
    """
    scenes = fit.train_scenes + fit.held_out
    rows = fit.score(scenes)
    generated = torch.stack([r.pop("views") for r in rows])                     # (Q, V, H, W, 3)
    truth = torch.stack([fit._truth(s)["rgb"] for s in scenes])                 # (K, V, H, W, 3)
    sim = image_similarity(generated, truth)
    hits = retrieval_topk(sim, torch.arange(len(scenes)), ks)
    n_seen = len(fit.train_scenes)
    summary: dict[str, float] = {}
    for i, row in enumerate(rows):
        row["split"] = "seen" if i < n_seen else "unseen"
        for k in ks:
            row[f"top{k}"] = bool(hits[k][i])
    for split in ("seen", "unseen"):
        mine = [r for r in rows if r["split"] == split]
        if not mine:
            continue
        summary[f"{split}/psnr"] = sum(r["psnr"] for r in mine) / len(mine)
        summary[f"{split}/ssim"] = sum(r["ssim"] for r in mine) / len(mine)
        for k in ks:
            summary[f"{split}/top{k}"] = sum(r[f"top{k}"] for r in mine) / len(mine)
    summary["n_scenes"] = float(len(scenes))
    summary["chance/top1"] = 1.0 / len(scenes)
    return rows, summary


def score_views(model: HyperFields, ct: torch.Tensor, truth: dict[str, torch.Tensor],
                size: int) -> dict:
    """The scene of CT generated in one forward pass and rendered from ``truth``'s cameras
    (``eval_views``): its views and their PSNR and SSIM against the exact ones."""
    views = generate_views(model, ct, truth["c2w"], size, truth["fov_deg"], model.field_cfg)
    return {"views": views, "psnr": float(psnr_per_image(views, truth["rgb"]).mean()),
            "ssim": float(ssim(views, truth["rgb"]).mean())}


def evaluate_checkpoint(path, data_root=None, *, episodes: int = 600, split: str = "test",
                        progress: bool = True) -> dict[str, float]:
    """`priorlab eval` for fields-hyper checkpoints: PSNR and SSIM against the exact views of the
    unseen (zero-shot, ``split=test``) or the trained (``split=train``) scenes, at most
    ``episodes`` of them, each generated in one forward pass; ± a 95% t-interval over scenes."""
    from priorlab.methods.checkpoint import read_meta
    from priorlab.methods.fields.generate import load_hyperfields
    from priorlab.methods.fields.stepfit import interval_metrics

    if split not in ("test", "train"):
        raise ConfigError(f"--split {split}: fields-hyper checkpoints are scored on their unseen "
                          "prompts (test) or their trained ones (train)")
    model, cfg, encoder = load_hyperfields(path)
    trained, unseen = packed_scenes(cfg)
    scenes = (unseen if split == "test" else trained)[:episodes]
    if not scenes:
        raise ConfigError(f"this checkpoint holds no {split} scenes (split={cfg.split!r} holds none "
                          "out): use --split train")
    with torch.no_grad():
        cts = model.condition(*encoder.encode([s.prompt for s in scenes]))
    rows = [score_views(model, ct, eval_views(scene, cfg), cfg.eval_size) for scene, ct in zip(scenes, cts)]
    return {**interval_metrics(rows, ("psnr", "ssim")), "eval/scenes": float(len(scenes)),
            "step": float(read_meta(path)["step"])}


__all__ = ["DistillConfig", "DistillError", "DistillFit", "distillation_loss", "evaluate_checkpoint",
           "evaluate_zero_shot", "generate_views", "load_teachers", "packed_scenes", "score_views"]

"""HyperSegmentationFields: HyperFields conditioned on a handful of posed views of a novel scene,
generating a NeRF whose MLP also outputs a feature field, segmented into parts (thesis Sec.
4.4.8, Fig. 4.11).

Sec. 4.4.8 extends HyperFields "to generate NeRF MLPs that also generate a feature field along
with a radiance field", trained over many scenes so that "when the hypernetwork is presented with
a few views of a novel scene" it generates the NeRF "in a forward pass". The thesis gives no
further detail; the readings here:

- Conditioning (in place of text, Fig. 4.3): ``ViewEncoder``, a small CNN over each context view
  with its camera rays as extra channels (RGB, unit ray direction, camera origin / radius: 9
  channels per pixel, so the pose is part of the input), pooled to ``token_grid``² tokens per
  view. The tokens of all views go through HyperFields' Transformer to CT, and the dynamic
  hypernetwork (Eq. 4.2-4.5) generates the NeRF MLP from CT, as for text. The encoder is trained
  with the rest (no frozen image model is available here).
- Feature field: the generated MLP's output layer has ``feature_dim`` more channels
  (``FieldConfig.feature_dim``), composited along rays like colour (no background). A shared
  linear classifier without bias maps rendered features to ``n_parts`` part logits; compositing
  is linear, so its argmax is the same for features scaled by a ray's opacity. A pixel whose
  rendered opacity is below 0.5 is background (label 0).
- Training (direct, on many scenes): each step takes ``n_scenes`` training scenes, encodes their
  context views, renders ``rays_per_scene`` random pixels of their target views, and minimises
  the colour's squared error + ``opacity_weight`` x the opacity's squared error against the
  exact mask + ``seg_weight`` x the cross-entropy of the part logits on foreground pixels.
- Evaluation: each scene's NeRF is generated in one forward pass from its context views, fixed on
  the sample points of ``eval_views`` *novel* cameras (``generate.scene_nerf``) and rendered
  from them: PSNR of colour, mIoU over the scene's parts (``metrics.part_iou``, ShapeNet's
  per-shape convention), foreground IoU, for training ("seen") and novel scenes. Beside it, the
  mIoU of a reference that knows the true mask and paints it with the scene's most frequent
  part (``miou_majority``): what a field without part information would reach.

Scenes: ``source=procedural`` (``data.part_scenes``: chairs, tables, vases, lamps and mugs in
random colours, patterns and yaw, exact part labels) runs anywhere; ``source=shapenet`` reads the
ShapeNet part benchmark (``data.shapenet``) from ``shapenet_root`` where a user has it.

    fit = SegFieldsFit(SegFieldsConfig(steps=2000))
    while fit.step < fit.cfg.steps:
        fit.train_step()
    metrics = fit.evaluate()       # {"novel/miou": ..., "novel/psnr": ..., "seen/miou": ...}
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from priorlab.data.scenes import VIEW_FOV_DEG, VIEW_RADIUS, render_views
from priorlab.methods.configuration import ConfigError, check_bounds
from priorlab.methods.fields.cameras import get_rays
from priorlab.methods.fields.config import FieldConfig
from priorlab.methods.fields.generate import scene_nerf
from priorlab.methods.fields.hyper import HyperFields, HyperFieldsConfig
from priorlab.methods.fields.metrics import part_iou, psnr_per_image
from priorlab.methods.fields.renderer import render_batch, render_image
from priorlab.methods.fields.stepfit import StepFit

SOURCES = ("procedural", "shapenet")
BACKGROUND_OPACITY = 0.5
VIEW_SEEDS = {"context": 11, "target": 23, "eval": 2_000_029}


class SegFieldsError(ConfigError):
    """Bad segmentation-fields input (no scenes, labels beyond the classifier, a bad view set)."""


@dataclass
class SegFieldsConfig:
    # --- scenes ---
    source: Literal["procedural", "shapenet"] = "procedural"
    """`procedural`: ``data.part_scenes`` (exact labels, runs anywhere); `shapenet`: the ShapeNet
    part benchmark under ``shapenet_root`` (``data.shapenet``)."""
    n_train_scenes: int = 40
    n_novel_scenes: int = 10
    split_seed: int = 0
    shapes: str = "chair;table;vase;lamp;mug"
    """Procedural shapes with parts, separated by ";"."""
    shapenet_root: str = ""
    """Folder of ShapeNet's part benchmark (shapenetcore_partanno_segmentation_benchmark_v0_normal)."""
    shapenet_categories: str = ""
    """ShapeNet categories to use, separated by ";" (e.g. "Chair;Mug"); empty = all."""
    n_parts: int = 12
    """Part classes the classifier predicts (labels 1..n_parts; 0 is the background). The
    procedural family has 12; a ShapeNet category has at most 6."""
    # --- views ---
    context_views: int = 4
    """The handful of posed views a scene is generated from."""
    context_size: int = 32
    target_views: int = 12
    """Views of each training scene whose pixels supervise the generated field."""
    target_size: int = 32
    eval_views: int = 4
    """Novel cameras (neither context nor target) every scene is scored from."""
    eval_size: int = 32
    # --- the model ---
    encoder_width: int = 64
    token_dim: int = 128
    token_grid: int = 4
    feature_dim: int = 16
    dynamic: bool = True
    adain: bool = True
    model_dim: int = 128
    transformer_layers: int = 4
    n_heads: int = 8
    head_dim: int = 16
    hyper_hidden: int = 64
    n_levels: int = 8
    log2_hashmap_size: int = 16
    finest_resolution: int = 128
    n_samples: int = 32
    # --- training ---
    n_scenes: int = 4
    """Scenes per step."""
    rays_per_scene: int = 512
    seg_weight: float = 0.1
    opacity_weight: float = 0.1
    lr: float = 5e-4
    """Adam learning rate of the encoder, Transformer, MLP_i and classifier."""
    grid_lr: float = 1e-2
    steps: int = 2000
    eval_every: int = 250
    eval_scenes: int = 0
    """Scenes per split scored at each evaluation (0 = all)."""
    seed: int = 0
    max_seconds: float = 0.0

    def validate(self) -> None:
        check_bounds(self, at_least_1=("n_train_scenes", "n_parts", "context_views", "context_size",
                                       "target_views", "target_size", "eval_views", "eval_size",
                                       "encoder_width", "token_dim", "token_grid", "feature_dim",
                                       "model_dim", "transformer_layers", "n_heads", "head_dim",
                                       "hyper_hidden", "n_levels", "log2_hashmap_size",
                                       "finest_resolution", "n_samples", "n_scenes",
                                       "rays_per_scene", "steps", "eval_every"),
                     non_negative=("n_novel_scenes", "eval_scenes", "max_seconds", "seg_weight",
                                   "opacity_weight"),
                     positive=("lr", "grid_lr"))
        if self.source not in SOURCES:
            raise ConfigError(f"source={self.source!r}: choose one of {list(SOURCES)}")
        if self.source == "shapenet" and not self.shapenet_root:
            raise ConfigError("source=shapenet needs shapenet_root=<folder of ShapeNet's part "
                              "benchmark>; or use source=procedural")
        if self.context_size < 8:
            raise ConfigError(f"context_size={self.context_size} must be >= 8 (the view encoder "
                              "halves it twice)")
        self.hyper_config().validate()
        self.field_config()
        check_parts(self)

    def hyper_config(self) -> HyperFieldsConfig:
        return HyperFieldsConfig(text_dim=self.token_dim, model_dim=self.model_dim,
                                 n_layers=self.transformer_layers, n_heads=self.n_heads,
                                 head_dim=self.head_dim, hyper_hidden=self.hyper_hidden,
                                 dynamic=self.dynamic, adain=self.adain)

    def field_config(self) -> FieldConfig:
        cfg = FieldConfig(n_levels=self.n_levels, log2_hashmap_size=self.log2_hashmap_size,
                          finest_resolution=self.finest_resolution, n_samples=self.n_samples,
                          feature_dim=self.feature_dim)
        cfg.validate()
        return cfg


class ViewEncoder(nn.Module):
    """Posed views -> tokens: RGB (B, V, H, W, 3) and cameras c2w (B, V, 4, 4) -> (B, V * g², D).

    Each pixel carries its colour, its ray's unit direction and the camera origin / VIEW_RADIUS;
    three 3x3 convolutions (stride 2, 2, 1) and an adaptive average pool to g x g tokens."""

    def __init__(self, width: int, token_dim: int, grid: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(9, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, token_dim, 3, padding=1), nn.AdaptiveAvgPool2d(grid))

    def forward(self, rgb: torch.Tensor, c2w: torch.Tensor, fov_deg: float | torch.Tensor) -> torch.Tensor:
        if rgb.dim() != 5 or rgb.shape[-1] != 3 or c2w.shape != (*rgb.shape[:2], 4, 4):
            raise ValueError(f"views of shape {tuple(rgb.shape)} with cameras {tuple(c2w.shape)}: "
                             "expected (B, V, H, W, 3) and (B, V, 4, 4)")
        b, v, h, w, _ = rgb.shape
        origins, dirs = get_rays(c2w.reshape(-1, 4, 4), h, w, fov_deg)          # (BV, H, W, 3)
        x = torch.cat([rgb.reshape(-1, h, w, 3), dirs, origins / VIEW_RADIUS], -1)
        tokens = self.net(x.permute(0, 3, 1, 2))                               # (BV, D, g, g)
        return tokens.flatten(2).transpose(1, 2).reshape(b, -1, tokens.shape[1])


class HyperSegFields(nn.Module):
    """View encoder + HyperFields (with a feature head in the generated MLP) + part classifier."""

    def __init__(self, cfg: SegFieldsConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = ViewEncoder(cfg.encoder_width, cfg.token_dim, cfg.token_grid)
        self.hyper = HyperFields(cfg.hyper_config(), cfg.field_config())
        self.classifier = nn.Linear(cfg.feature_dim, cfg.n_parts, bias=False)

    def condition(self, rgb: torch.Tensor, c2w: torch.Tensor, fov_deg: float | torch.Tensor) -> torch.Tensor:
        """CT (B, model_dim) of B scenes' context views (B, V, H, W, 3) and cameras (B, V, 4, 4)."""
        tokens = self.encoder(rgb, c2w, fov_deg)
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool)
        return self.hyper.condition(tokens, mask)

    def forward(self, points: torch.Tensor, ct: torch.Tensor) -> dict[str, torch.Tensor]:
        """Points (B, N, 3), CT (B, model_dim) -> sigma, rgb and features (B, N, feature_dim)."""
        return self.hyper(points, ct)

    def segment(self, features: torch.Tensor, opacity: torch.Tensor) -> torch.Tensor:
        """Labels (...) from rendered features (..., F) and opacity (...): 0 where the opacity is
        below ``BACKGROUND_OPACITY``, else 1 + the argmax of the part logits."""
        parts = self.classifier(features).argmax(-1) + 1
        return torch.where(opacity >= BACKGROUND_OPACITY, parts, torch.zeros_like(parts))

    def param_groups(self, lr: float, grid_lr: float) -> list[dict]:
        groups = self.hyper.param_groups(lr, grid_lr)
        rest = next(g for g in groups if g["name"] == "hypernetwork")
        rest["params"] = rest["params"] + list(self.encoder.parameters()) + list(self.classifier.parameters())
        return groups


def load_scenes(cfg: SegFieldsConfig) -> tuple[list, list]:
    """(training, novel) scenes: ``part_scenes.part_scene_split`` or ShapeNet's train / test."""
    if cfg.source == "procedural":
        from priorlab.data.part_scenes import part_scene_split

        shapes = [s.strip() for s in cfg.shapes.split(";") if s.strip()]
        return part_scene_split(cfg.split_seed, cfg.n_train_scenes, cfg.n_novel_scenes, shapes)
    from priorlab.data.shapenet import ShapeNetParts

    cats = [c.strip() for c in cfg.shapenet_categories.split(";") if c.strip()] or None
    train = ShapeNetParts(cfg.shapenet_root, split="train", categories=cats)
    test = ShapeNetParts(cfg.shapenet_root, split="test", categories=cats)
    return ([train[i] for i in range(min(cfg.n_train_scenes, len(train)))],
            [test[i] for i in range(min(cfg.n_novel_scenes, len(test)))])


def check_parts(cfg: SegFieldsConfig) -> None:
    """A SegFieldsError unless ``n_parts`` covers the largest part label the configured scenes
    can carry (``PART_CLASSES`` of the procedural shapes; K of a ShapeNet category). Cheap (it
    renders nothing), so ``SegFieldsConfig.validate`` runs it: the CLI refuses a bad run before
    Ray starts."""
    if cfg.source == "procedural":
        from priorlab.data.sdf import PART_CLASSES, shape_parts

        shapes = [s.strip() for s in cfg.shapes.split(";") if s.strip()]
        top = max((PART_CLASSES.index(p) for s in shapes for p in shape_parts(s)), default=0)
    else:
        from priorlab.data.shapenet import ShapeNetParts

        cats = [c.strip() for c in cfg.shapenet_categories.split(";") if c.strip()] or None
        data = ShapeNetParts(cfg.shapenet_root, split="train", categories=cats)
        top = max((data.num_parts(c) for c in data.categories), default=0)
    if top > cfg.n_parts:
        raise SegFieldsError(f"the scenes have part labels up to {top} but n_parts={cfg.n_parts}: "
                             f"set n_parts={top}")


def scene_views(scene, kind: str, n_views: int, size: int) -> dict[str, torch.Tensor]:
    """A scene's ``kind`` views (context / target / eval) with labels, from cameras seeded by the
    scene's slug and the kind, so the three sets never share a camera."""
    seed = (zlib.crc32(scene.slug.encode()) + VIEW_SEEDS[kind]) % (2 ** 31)
    return render_views(scene, n_views, size, seed=seed, labels=True)


def generate_segmented(model: HyperSegFields, context: dict[str, torch.Tensor], c2w: torch.Tensor,
                       size: int, fov_deg: float | torch.Tensor = VIEW_FOV_DEG) -> dict[str, torch.Tensor]:
    """One forward pass: a scene's context views ({"rgb": (V, H, W, 3), "c2w": (V, 4, 4),
    "fov_deg"}) -> its NeRF with a feature field, rendered from cameras ``c2w`` (N, 4, 4) at
    ``size``: "rgb", "opacity", "features" and "labels" (N, size, size)."""
    was = model.training
    model.eval()
    with torch.no_grad():
        ct = model.condition(context["rgb"][None], context["c2w"][None], context["fov_deg"])[0]
        field = scene_nerf(model.hyper, ct, c2w, size, fov_deg)
        out = render_image(field, c2w, size, size, fov_deg, field.cfg)
        out["labels"] = model.segment(out["features"], out["opacity"])
    model.train(was)
    return out


class SegFieldsFit(StepFit):
    """One HyperSegmentationFields fit, a step at a time, resumable (``stepfit.StepFit``)."""

    def __init__(self, cfg: SegFieldsConfig):
        cfg.validate()
        self.cfg, self.fcfg = cfg, cfg.field_config()
        self.train_scenes, self.novel_scenes = load_scenes(cfg)
        if not self.train_scenes:
            raise SegFieldsError(f"no training scenes from source={cfg.source!r}")
        torch.manual_seed(cfg.seed)
        self.model = HyperSegFields(cfg)
        self.optimizer = torch.optim.Adam(self.model.param_groups(cfg.lr, cfg.grid_lr),
                                          betas=(0.9, 0.99), eps=1e-15)
        self.context = {s.slug: scene_views(s, "context", cfg.context_views, cfg.context_size)
                        for s in self.train_scenes + self.novel_scenes}
        self.targets = []
        for s in self.train_scenes:
            v = scene_views(s, "target", cfg.target_views, cfg.target_size)
            origins, dirs = get_rays(v["c2w"], cfg.target_size, cfg.target_size, v["fov_deg"])
            self.targets.append({"origins": origins.reshape(-1, 3), "dirs": dirs.reshape(-1, 3),
                                 "rgb": v["rgb"].reshape(-1, 3), "opacity": v["opacity"].reshape(-1),
                                 "labels": v["labels"].reshape(-1)})
        self.background = torch.tensor(self.fcfg.background, dtype=torch.float32)
        self.step, self.seconds = 0, 0.0
        self._eval_cache: dict[str, dict[str, torch.Tensor]] = {}

    def _context(self, scenes: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        views = [self.context[s.slug] for s in scenes]
        return (torch.stack([v["rgb"] for v in views]), torch.stack([v["c2w"] for v in views]),
                views[0]["fov_deg"])

    def train_step(self) -> float:
        started = time.perf_counter()
        cfg = self.cfg
        g = self._generator()
        n = min(cfg.n_scenes, len(self.train_scenes))
        idx = torch.randperm(len(self.train_scenes), generator=g)[:n].tolist()
        picks = [torch.randint(0, self.targets[i]["rgb"].shape[0], (cfg.rays_per_scene,), generator=g)
                 for i in idx]
        batch = {k: torch.stack([self.targets[i][k][p] for i, p in zip(idx, picks)])
                 for k in ("origins", "dirs", "rgb", "opacity", "labels")}
        ct = self.model.condition(*self._context([self.train_scenes[i] for i in idx]))
        out = render_batch(lambda pts: self.model(pts, ct), batch["origins"], batch["dirs"], self.fcfg,
                           training=True, generator=g, background=self.background)
        loss = segfield_loss(self.model, out, batch, cfg)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        self.seconds += time.perf_counter() - started
        return float(loss.detach())

    def _truth(self, scene) -> dict[str, torch.Tensor]:
        if scene.slug not in self._eval_cache:
            self._eval_cache[scene.slug] = scene_views(scene, "eval", self.cfg.eval_views, self.cfg.eval_size)
        return self._eval_cache[scene.slug]

    def score(self, scenes: list) -> list[dict]:
        """Per scene: PSNR, mIoU over its parts, foreground IoU and the majority reference, of its
        NeRF generated from its context views and rendered from novel cameras."""
        rows = []
        for scene in scenes:
            truth = self._truth(scene)
            out = generate_segmented(self.model, self.context[scene.slug], truth["c2w"],
                                     self.cfg.eval_size, truth["fov_deg"])
            labels = truth["labels"]
            parts = [int(c) for c in labels.unique().tolist() if c != 0]
            counts = torch.bincount(labels[labels > 0], minlength=self.cfg.n_parts + 1)
            majority = torch.where(labels > 0, counts.argmax(), torch.zeros_like(labels))
            rows.append({
                "slug": scene.slug,
                "psnr": float(psnr_per_image(out["rgb"], truth["rgb"]).mean()),
                "miou": _mean(part_iou(out["labels"], labels, parts)),
                "fg_iou": part_iou((out["labels"] > 0).long(), (labels > 0).long(), [1])[1],
                "miou_majority": _mean(part_iou(majority, labels, parts)),
                "labels": out["labels"], "rgb": out["rgb"]})
        return rows

    def evaluate(self, limit: int | None = None) -> dict[str, float]:
        started = time.perf_counter()
        limit = self.cfg.eval_scenes if limit is None else limit
        metrics: dict[str, float] = {}
        for name, scenes in (("seen", self.train_scenes), ("novel", self.novel_scenes)):
            scenes = scenes[:limit] if limit else scenes
            if not scenes:
                continue
            rows = self.score(scenes)
            for key in ("psnr", "miou", "fg_iou", "miou_majority"):
                metrics[f"{name}/{key}"] = sum(r[key] for r in rows) / len(rows)
        self.seconds += time.perf_counter() - started
        return metrics


def segfield_loss(model: HyperSegFields, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor],
                  cfg: SegFieldsConfig) -> torch.Tensor:
    """Colour MSE + opacity_weight x opacity MSE + seg_weight x part cross-entropy (foreground)."""
    loss = F.mse_loss(out["rgb"], batch["rgb"])
    if cfg.opacity_weight:
        loss = loss + cfg.opacity_weight * F.mse_loss(out["opacity"], batch["opacity"])
    fg = batch["labels"] > 0
    if cfg.seg_weight and bool(fg.any()):
        logits = model.classifier(out["features"][fg])
        loss = loss + cfg.seg_weight * F.cross_entropy(logits, batch["labels"][fg] - 1)
    return loss


def evaluate_checkpoint(path, data_root=None, *, episodes: int = 600, split: str = "test",
                        progress: bool = True) -> dict[str, float]:
    """`priorlab eval` for fields-seg checkpoints: part mIoU, foreground IoU, PSNR and the
    majority reference over the novel scenes (``split=test``) or the training scenes
    (``split=train``), at most ``episodes`` of them, ± a 95% t-interval over scenes."""
    from priorlab.methods.checkpoint import load_checkpoint
    from priorlab.methods.configuration import config_from_dict
    from priorlab.methods.fields.stepfit import interval_metrics

    if split not in ("test", "train"):
        raise ConfigError(f"--split {split}: fields-seg checkpoints are scored on their novel scenes "
                          "(test) or their training scenes (train)")
    ckpt = load_checkpoint(path, method="fields-seg")
    fit = SegFieldsFit(config_from_dict(SegFieldsConfig, ckpt.config))
    fit.model.load_state_dict(ckpt.model_state)
    scenes = (fit.novel_scenes if split == "test" else fit.train_scenes)[:episodes]
    if not scenes:
        raise ConfigError(f"this checkpoint has no {split} scenes (n_novel_scenes=0?): use --split train")
    metrics = interval_metrics(fit.score(scenes), ("miou", "fg_iou", "psnr", "miou_majority"))
    return {**metrics, "eval/scenes": float(len(scenes)), "step": float(ckpt.step)}


def _mean(values: dict[int, float]) -> float:
    return sum(values.values()) / len(values) if values else float("nan")


__all__ = ["HyperSegFields", "SegFieldsConfig", "SegFieldsError", "SegFieldsFit", "ViewEncoder",
           "check_parts", "evaluate_checkpoint", "generate_segmented", "load_scenes", "scene_views", "segfield_loss"]

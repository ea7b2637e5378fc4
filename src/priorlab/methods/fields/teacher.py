"""Reconstruction teachers: a NeRF fitted by photometric loss to analytic renders of one scene.

Thesis Ch. 4, Fig. 4.2 Stage 1 (one teacher NeRF per prompt, later distilled into the
hypernetwork, Sec. 4.3.3) and App. B.1 (the teacher's architecture: hash grid + the 6 x 64 MLP,
``FieldConfig``). The thesis fits its teachers with score distillation (Eq. 4.1); a
``reconstruction`` teacher instead fits rendered views of a procedural scene whose every view
is known exactly (``priorlab.data.scenes``), so its quality is measured as held-out PSNR.

The fit is a pure function of (scene, config): the training views (``n_train_views`` random
poses from ``seed``), the held-out views (``n_test_views`` poses from another seed), the ray
batches (a generator seeded from ``seed``) and the initial weights all follow from them.

    cfg = TeacherConfig(steps=300, image_size=32)
    result = fit_reconstruction(parse_scene("a red sphere"), cfg)
    result.metrics["eval/psnr"], result.field      # held-out PSNR (dB), the fitted NeRFField

Each step draws ``rays_per_step`` rays uniformly from all training pixels and minimises the
mean squared error of their rendered colour (``renderer.render_rays``, stratified samples with
jitter; with ``occupancy_resolution`` > 0 only the samples in cells of the field's occupancy
grid are evaluated, the grid re-measured every ``occupancy_every`` steps). Adam with Instant-NGP's betas (0.9, 0.99) and eps 1e-15; the hash tables take ``lr``,
the MLP ``lr * mlp_lr_scale``.

``TeacherFit`` holds one fit's state (weights, optimiser, ray generator, step, seconds) so the
Ray Train trainable (``trainables/fields_teacher.py``) can checkpoint and resume it exactly.

``fit_sds`` is the thesis' own objective (Eq. 4.1): the same NeRF, optimiser and loop trained by
score distillation from a scene's prompt through a local Stable Diffusion
(``methods/fields/sds.py``), one random DreamFusion camera per step at ``image_size``; its
evaluations report held-out PSNR against that scene's exact renders.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch

from priorlab.data.scenes import Scene, render_views
from priorlab.methods.configuration import ConfigError, check_bounds
from priorlab.methods.fields.cameras import get_rays
from priorlab.methods.fields.config import FieldConfig
from priorlab.methods.fields.field import NeRFField
from priorlab.methods.fields.occupancy import update_occupancy
from priorlab.methods.fields.renderer import render_image, render_rays

TEST_SEED_OFFSET = 1_000_003  # held-out poses never coincide with training poses

# The recipe teachers use unless overridden: benchmarks/fields_teacher.py's reduced grid
# for 64x64 views (RESULTS.md, issue 8 benchmark 2).
FARM_RECIPE = dict(image_size=64, n_levels=12, log2_hashmap_size=15, finest_resolution=256,
                   n_samples=96, rays_per_step=1024, n_train_views=32, n_test_views=4,
                   occupancy_resolution=32, eval_every=50, steps=800, stop_at_psnr=25.0)


@dataclass
class TeacherConfig:
    # --- the recipe the `fields-teacher-recipe` study sweeps ---
    n_levels: int = 16
    """Hash-grid levels (``FieldConfig.n_levels``)."""
    log2_hashmap_size: int = 19
    """log2 of the entries per hash-grid level."""
    finest_resolution: int = 2048
    """Finest hash-grid resolution; 64x64 views rarely need more than ~256."""
    n_samples: int = 64
    """Stratified samples per ray."""
    lr: float = 1e-2
    """Adam learning rate of the hash tables (Instant-NGP's 1e-2)."""
    mlp_lr_scale: float = 0.1
    """The MLP's learning rate relative to ``lr``."""
    occupancy_resolution: int = 0
    """Cells per side of the field's occupancy grid (empty-space skipping, ``occupancy.py``);
    0 = none, every sample is evaluated."""
    occupancy_every: int = 8
    """Steps between occupancy-grid updates."""
    occupancy_decay: float = 0.8
    """Per update, the remembered density of a cell is multiplied by this before the new
    measurement is maxed in (lower: empty space is culled sooner)."""
    occupancy_alpha: float = 0.01
    """A cell is empty when its density gives a sample of mean spacing less than this opacity
    (or is below the mean density of all cells)."""
    # --- what is fitted ---
    scene: str = "a red sphere"
    """The procedural scene (a prompt or slug of ``data.scenes``) of the trainable and the study
    (the farm sets it per teacher); ``fit_reconstruction`` takes a ``Scene`` directly."""
    scene_seed: int = 0
    """Seed of the scene family (patterns, second colours)."""
    # --- the fit ---
    steps: int = 2000
    rays_per_step: int = 1024
    image_size: int = 64
    """Square training and held-out views, pixels per side."""
    n_train_views: int = 32
    n_test_views: int = 8
    eval_every: int = 500
    """Steps between held-out evaluations (and the last step)."""
    seed: int = 0
    stop_at_psnr: float = 0.0
    """Stop at the first evaluation whose held-out PSNR (dB) reaches this (0: never); the farm
    stops its teachers once they are good enough."""
    max_seconds: float = 0.0
    """Wall-clock budget of the fit (0: none): the fit stops at the first evaluation after it, so
    recipes can be compared at equal time (the `fields-teacher-recipe` study). Not exact: the
    steps done in a budget depend on the machine and its load."""

    def validate(self) -> None:
        check_bounds(self, at_least_1=("n_levels", "log2_hashmap_size", "finest_resolution",
                                       "n_samples", "steps", "rays_per_step", "image_size",
                                       "n_train_views", "n_test_views", "eval_every",
                                       "occupancy_every"),
                     positive=("lr", "mlp_lr_scale", "occupancy_alpha"),
                     non_negative=("occupancy_resolution", "occupancy_decay", "stop_at_psnr"))
        if self.occupancy_decay >= 1.0 or self.occupancy_alpha >= 1.0:
            raise ConfigError(f"occupancy_decay={self.occupancy_decay} and occupancy_alpha="
                              f"{self.occupancy_alpha} must be below 1 (e.g. 0.8 and 0.01)")

    def field_config(self) -> FieldConfig:
        cfg = FieldConfig(n_levels=self.n_levels, log2_hashmap_size=self.log2_hashmap_size,
                          finest_resolution=self.finest_resolution, n_samples=self.n_samples,
                          occupancy_resolution=self.occupancy_resolution)
        cfg.validate()
        return cfg


@dataclass
class TeacherResult:
    field: NeRFField
    metrics: dict[str, float]
    curve: list[dict[str, float]]
    """One row per evaluation: step, train/loss, eval/psnr, seconds."""


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Peak signal-to-noise ratio (dB) of images in [0, 1]."""
    mse = float(torch.mean((pred - target) ** 2))
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)


def scene_views(scene: Scene, cfg: TeacherConfig, split: str) -> dict[str, torch.Tensor]:
    """The exact renders a teacher trains on (``train``) or is judged on (``test``)."""
    if split == "train":
        return render_views(scene, cfg.n_train_views, cfg.image_size, seed=cfg.seed)
    if split == "test":
        return render_views(scene, cfg.n_test_views, cfg.image_size, seed=cfg.seed + TEST_SEED_OFFSET)
    raise ValueError(f"split={split!r}: choose 'train' or 'test'")


def training_rays(scene: Scene, cfg: TeacherConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every pixel ray of the scene's training views and its exact colour: origins, unit
    directions and colours, each (V * H * W, 3)."""
    views = scene_views(scene, cfg, "train")
    origins, dirs = get_rays(views["c2w"], cfg.image_size, cfg.image_size, views["fov_deg"])
    return origins.reshape(-1, 3), dirs.reshape(-1, 3), views["rgb"].reshape(-1, 3)


@torch.no_grad()
def evaluate_teacher(field: NeRFField, views: dict[str, torch.Tensor], fcfg: FieldConfig) -> float:
    """Held-out PSNR (dB) over all pixels of ``views`` (from ``scene_views(..., "test")``)."""
    field.eval()
    out = render_image(field, views["c2w"], views["rgb"].shape[1], views["rgb"].shape[2],
                       views["fov_deg"], fcfg, occupancy=field.occupancy)
    field.train()
    return psnr(out["rgb"], views["rgb"])


def build_optimizer(field: NeRFField, cfg: TeacherConfig) -> torch.optim.Adam:
    grid = [p for n, p in field.named_parameters() if n.startswith("grid.")]
    rest = [p for n, p in field.named_parameters() if not n.startswith("grid.")]
    groups = [{"params": grid, "lr": cfg.lr}, {"params": rest, "lr": cfg.lr * cfg.mlp_lr_scale}]
    return torch.optim.Adam([g for g in groups if g["params"]], betas=(0.9, 0.99), eps=1e-15)


class TeacherFit:
    """The state of one teacher fit, one step at a time (the loop of ``fit_reconstruction``,
    ``fit_sds`` and the Ray Train trainable, which checkpoints and resumes it exactly).

    Without ``guidance`` a step is the photometric loss on random training rays; with a
    ``sds.StableDiffusionGuidance`` it is an SDS step (Eq. 4.1) on the scene's prompt from one
    random DreamFusion camera. Either way the held-out views of ``scene`` give ``evaluate``.
    """

    def __init__(self, scene: Scene, cfg: TeacherConfig, guidance=None,
                 field: NeRFField | None = None):
        """``field``: start from this NeRF (its own ``FieldConfig`` then replaces the recipe's
        grid, samples and occupancy keys), e.g. a NeRF HyperFields generated, instead of a
        fresh one."""
        cfg.validate()
        self.scene, self.cfg, self.guidance = scene, cfg, guidance
        torch.manual_seed(cfg.seed)
        self.field = NeRFField(cfg.field_config()) if field is None else field.train()
        self.fcfg = self.field.cfg
        self.optimizer = build_optimizer(self.field, cfg)
        self.test_views = scene_views(scene, cfg, "test")
        if guidance is None:
            self.origins, self.dirs, self.colours = training_rays(scene, cfg)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.background = torch.tensor(self.fcfg.background, dtype=torch.float32)
        self.step = 0
        self.seconds = 0.0
        """Wall seconds spent in ``train_step`` and ``evaluate`` (carried across resumes)."""

    def train_step(self) -> float:
        started = time.perf_counter()
        loss = self._sds_step() if self.guidance is not None else self._photometric_step()
        self.step += 1
        if self.fcfg.occupancy_resolution and self.step % self.cfg.occupancy_every == 0:
            update_occupancy(self.field, decay=self.cfg.occupancy_decay,
                             alpha=self.cfg.occupancy_alpha, n_samples=self.fcfg.n_samples,
                             generator=self.generator)
        self.seconds += time.perf_counter() - started
        return loss

    def _photometric_step(self) -> float:
        idx = torch.randint(0, self.origins.shape[0], (self.cfg.rays_per_step,), generator=self.generator)
        out = render_rays(self.field, self.origins[idx], self.dirs[idx], self.fcfg, training=True,
                          generator=self.generator, background=self.background,
                          occupancy=self.field.occupancy)
        loss = torch.mean((out["rgb"] - self.colours[idx]) ** 2)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def _sds_step(self) -> float:
        from priorlab.methods.fields.sds import sds_step
        from priorlab.methods.fields.views import sample_cameras

        cameras = sample_cameras(1, generator=self.generator)
        return sds_step(self.field, self.fcfg, self.guidance, cameras, self.scene.prompt,
                        self.optimizer, image_size=self.cfg.image_size, generator=self.generator)

    def evaluate(self) -> float:
        started = time.perf_counter()
        value = evaluate_teacher(self.field, self.test_views, self.fcfg)
        self.seconds += time.perf_counter() - started
        return value

    def out_of_time(self) -> bool:
        return self.cfg.max_seconds > 0 and self.seconds >= self.cfg.max_seconds

    def train_state(self) -> dict:
        """What besides the weights and the optimiser a checkpoint needs to resume exactly."""
        return {"step": self.step, "seconds": self.seconds, "generator": self.generator.get_state()}

    def load_train_state(self, model_state: dict, optimizer_state: dict | None, state: dict) -> None:
        self.field.load_state_dict(model_state)
        if optimizer_state is not None:
            self.optimizer.load_state_dict(optimizer_state)
        self.step = int(state.get("step", 0))
        self.seconds = float(state.get("seconds", 0.0))
        if "generator" in state:
            self.generator.set_state(state["generator"])


def run_fit(fit: TeacherFit, *, on_eval: Callable[[int, dict[str, float]], None] | None = None,
            stop_at_psnr: float | None = None) -> list[dict[str, float]]:
    """Train ``fit`` from its current step to ``cfg.steps`` (or its time budget), evaluating
    every ``eval_every`` steps and at the end; returns the evaluation rows. ``stop_at_psnr``
    (default ``cfg.stop_at_psnr``): stop at the first evaluation that reaches it."""
    cfg, curve, losses = fit.cfg, [], []
    if stop_at_psnr is None and cfg.stop_at_psnr > 0:
        stop_at_psnr = cfg.stop_at_psnr
    while fit.step < cfg.steps:
        losses.append(fit.train_step())
        last = fit.step == cfg.steps or fit.out_of_time()
        if fit.step % cfg.eval_every == 0 or last:
            row = {"step": float(fit.step), "train/loss": sum(losses) / len(losses),
                   "eval/psnr": fit.evaluate(), "seconds": fit.seconds}
            losses = []
            curve.append(row)
            if on_eval is not None:
                on_eval(fit.step, row)
            if last or (stop_at_psnr is not None and row["eval/psnr"] >= stop_at_psnr):
                break
    return curve


def fit_reconstruction(scene: Scene, cfg: TeacherConfig, *,
                       on_eval: Callable[[int, dict[str, float]], None] | None = None,
                       stop_at_psnr: float | None = None) -> TeacherResult:
    """Fit a NeRF to ``scene``'s training views for ``cfg.steps`` steps; PSNR on held-out views.

    ``on_eval(step, metrics)`` is called after every evaluation (progress, reports).
    ``stop_at_psnr``: stop at the first evaluation whose held-out PSNR reaches it (dB).
    """
    fit = TeacherFit(scene, cfg)
    curve = run_fit(fit, on_eval=on_eval, stop_at_psnr=stop_at_psnr)
    return TeacherResult(field=fit.field, metrics=dict(curve[-1]), curve=curve)


def fit_sds(scene: Scene, cfg: TeacherConfig, guidance, *,
            on_eval: Callable[[int, dict[str, float]], None] | None = None) -> TeacherResult:
    """Fit a NeRF to ``scene``'s prompt by score distillation (Eq. 4.1) with ``guidance`` (a
    ``sds.StableDiffusionGuidance``) for ``cfg.steps`` steps; ``eval/psnr`` on the scene's
    held-out views."""
    fit = TeacherFit(scene, cfg, guidance)
    curve = run_fit(fit, on_eval=on_eval)
    return TeacherResult(field=fit.field, metrics=dict(curve[-1]), curve=curve)

"""Out-of-distribution fine-tuning (thesis Sec. 4.4.3, Fig. 4.8; App. B.3): how many steps and
seconds a prompt with an unseen shape and/or attribute needs to reach a target quality when
starting from HyperFields, against the two baselines of Sec. 4.4.3:

- ``hyperfields``: the whole HyperFields model (hypernetwork and shared grid), conditioned on
  the new prompt, trained on the prompt's objective; scored through the NeRF it generates
  (``generate.export_nerf`` on the held-out views' sample points);
- ``scratch`` (S): a NeRF fitted from a random initialisation (the teacher recipe);
- ``pretrained`` (P): a NeRF that starts as HyperFields' zero-shot output for the prompt. The
  thesis pre-trains a DreamFusion NeRF to that output; here the exported NeRF *is* that output
  (same grid, the generated MLP weights), so (P) starts from it exactly.

The objective of the comparison is the reconstruction teachers' photometric loss on the
scene's exact training views (the procedural family gives OOD scenes with ground truth:
``scenes.ood_scenes``), so every arm is scored by held-out PSNR on the same views every
``eval_every`` steps and stops at the first evaluation at or above ``target_psnr``.

Prompts outside the family have no exact views: ``finetune_hyperfields_sds`` fine-tunes the
whole model on the prompt with score distillation (Eq. 4.1; the thesis' fine-tuning), from a
local Stable Diffusion (``sds.StableDiffusionGuidance``): each step renders one random
DreamFusion camera at ``image_size`` from HyperFields conditioned on the prompt (one field call
for the whole view, so the dynamic weights are those of that view, Eq. 4.4) and takes an SDS
step on the hypernetwork and the shared grid. There is no ground truth to stop at; it runs
``steps`` steps.

    rows = compare_finetuning(model, encoder, parse_scene("a red capsule"), FinetuneConfig())
    model2, losses = finetune_hyperfields_sds(model, encoder, "a plaid teapot", guidance, cfg, 2000)
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, replace
from typing import Callable

import torch

from priorlab.data.scenes import Scene
from priorlab.methods.configuration import check_bounds, config_from_dict
from priorlab.methods.fields.generate import scene_nerf
from priorlab.methods.fields.hyper import HyperFields
from priorlab.methods.fields.renderer import render_batch, render_image
from priorlab.methods.fields.teacher import (FARM_RECIPE, TeacherConfig, TeacherFit, psnr, run_fit,
                                             scene_views, training_rays)
from priorlab.methods.fields.text import TextEncoder

ARMS = ("hyperfields", "scratch", "pretrained")


@dataclass
class FinetuneConfig:
    target_psnr: float = 25.0
    """Held-out PSNR (dB) an arm must reach."""
    max_steps: int = 2000
    """Steps before an arm gives up (the thesis: HyperFields needs at most 2k)."""
    eval_every: int = 50
    rays_per_step: int = 1024
    image_size: int = 64
    n_train_views: int = 32
    n_test_views: int = 4
    lr: float = 1e-4
    """Adam learning rate of the hypernetwork (``hyperfields`` arm; App. B.1)."""
    grid_lr: float = 1e-2
    """Adam learning rate of the hash grid (every arm)."""
    n_samples: int = 0
    """Samples per ray of the HyperFields and (P) arms; 0 = the checkpoint's (its distillation
    budget, e.g. 32), while (S) uses the farm's recipe (96). Set 96 to render every arm alike."""
    seed: int = 0

    def validate(self) -> None:
        check_bounds(self, at_least_1=("max_steps", "eval_every", "rays_per_step", "image_size",
                                       "n_train_views", "n_test_views"),
                     non_negative=("n_samples",), positive=("target_psnr", "lr", "grid_lr"))

    def teacher_config(self, recipe: dict | None = None) -> TeacherConfig:
        """The (S) / (P) fit: the farm's recipe with this config's budget and views."""
        return config_from_dict(TeacherConfig, {
            **FARM_RECIPE, **(recipe or {}), "steps": self.max_steps, "eval_every": self.eval_every,
            "rays_per_step": self.rays_per_step, "image_size": self.image_size,
            "n_train_views": self.n_train_views, "n_test_views": self.n_test_views,
            "lr": self.grid_lr, "seed": self.seed, "stop_at_psnr": self.target_psnr})


def finetune_hyperfields(model: HyperFields, encoder: TextEncoder, scene: Scene, cfg: FinetuneConfig,
                         on_eval: Callable[[int, dict], None] | None = None):
    """Fine-tune a copy of ``model`` on ``scene``; returns (curve rows, the generated NeRF)."""
    cfg.validate()
    model = _with_samples(model, cfg.n_samples).train()
    tcfg = cfg.teacher_config()
    origins, dirs, colours = training_rays(scene, tcfg)
    test = scene_views(scene, tcfg, "test")
    tokens, mask = encoder.encode([scene.prompt])
    optimizer = torch.optim.Adam(model.param_groups(cfg.lr, cfg.grid_lr), betas=(0.9, 0.99), eps=1e-15)
    g = torch.Generator().manual_seed(cfg.seed)
    background = torch.tensor(model.field_cfg.background, dtype=torch.float32)
    size = test["rgb"].shape[1]

    def generated():
        with torch.no_grad():
            ct = model.condition(tokens, mask)[0]
        return scene_nerf(model, ct, test["c2w"], size, test["fov_deg"])

    def evaluate(step: int, seconds: float, loss: float | None) -> dict:
        field = generated()
        with torch.no_grad():
            views = render_image(field, test["c2w"], size, size, test["fov_deg"], field.cfg)["rgb"]
        row = {"step": float(step), "eval/psnr": psnr(views, test["rgb"]), "seconds": seconds,
               "train/loss": loss}
        if on_eval is not None:
            on_eval(step, row)
        return row

    curve = [evaluate(0, 0.0, None)]                     # the zero-shot starting point
    seconds, losses = 0.0, []
    for step in range(1, cfg.max_steps + 1):
        if curve[-1]["eval/psnr"] >= cfg.target_psnr:
            break
        started = time.perf_counter()
        idx = torch.randint(0, origins.shape[0], (cfg.rays_per_step,), generator=g)
        ct = model.condition(tokens, mask)
        out = render_batch(lambda pts: model(pts, ct), origins[idx][None], dirs[idx][None],
                           model.field_cfg, training=True, generator=g, background=background)
        loss = torch.mean((out["rgb"][0] - colours[idx]) ** 2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        seconds += time.perf_counter() - started
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            started = time.perf_counter()
            curve.append(evaluate(step, seconds, sum(losses) / len(losses)))
            seconds += time.perf_counter() - started
            curve[-1]["seconds"] = seconds
            losses = []
    return curve, generated()


def _with_samples(model: HyperFields, n_samples: int) -> HyperFields:
    """A copy of ``model`` whose NeRFs are rendered (and exported) with ``n_samples`` per ray
    (0: unchanged); the weights do not depend on it."""
    model = copy.deepcopy(model)
    if n_samples:
        model.field_cfg = replace(model.field_cfg, n_samples=n_samples)
    return model


def finetune_nerf(scene: Scene, cfg: FinetuneConfig, field=None,
                  on_eval: Callable[[int, dict], None] | None = None):
    """(S) with ``field=None``, (P) with HyperFields' zero-shot NeRF: a reconstruction fit of
    ``scene`` until the target; returns (curve rows, the NeRF)."""
    fit = TeacherFit(scene, cfg.teacher_config(), field=field)
    curve = [{"step": 0.0, "eval/psnr": fit.evaluate(), "seconds": fit.seconds,
              "train/loss": None}]
    if on_eval is not None:
        on_eval(0, curve[0])
    if curve[0]["eval/psnr"] < cfg.target_psnr:
        curve += run_fit(fit, on_eval=on_eval)
    return curve, fit.field


def compare_finetuning(model: HyperFields, encoder: TextEncoder, scene: Scene, cfg: FinetuneConfig,
                       arms=ARMS) -> list[dict]:
    """One row per arm: steps and seconds to ``target_psnr`` (None if not reached), the PSNR at
    the start and at the end, and the curve."""
    rows = []
    model = _with_samples(model, cfg.n_samples)
    for arm in arms:
        if arm == "hyperfields":
            curve, _ = finetune_hyperfields(model, encoder, scene, cfg)
        elif arm == "scratch":
            curve, _ = finetune_nerf(scene, cfg)
        elif arm == "pretrained":
            with torch.no_grad():
                ct = model.condition(*encoder.encode([scene.prompt]))[0]
            test = scene_views(scene, cfg.teacher_config(), "test")
            curve, _ = finetune_nerf(scene, cfg, field=scene_nerf(model, ct, test["c2w"],
                                                                  test["rgb"].shape[1], test["fov_deg"]))
        else:
            raise ValueError(f"arm {arm!r}: choose from {list(ARMS)}")
        hit = next((r for r in curve if r["eval/psnr"] >= cfg.target_psnr), None)
        rows.append({"scene": scene.slug, "arm": arm, "reached": hit is not None,
                     "steps": None if hit is None else int(hit["step"]),
                     "seconds": None if hit is None else hit["seconds"],
                     "start_psnr": curve[0]["eval/psnr"], "end_psnr": curve[-1]["eval/psnr"],
                     "curve": curve})
    return rows


def finetune_hyperfields_sds(model: HyperFields, encoder: TextEncoder, prompt: str, guidance,
                             cfg: FinetuneConfig, steps: int, image_size: int = 64,
                             on_step: Callable[[int, float], None] | None = None
                             ) -> tuple[HyperFields, list[float]]:
    """SDS fine-tuning of a copy of ``model`` on ``prompt`` (any text) for ``steps`` steps with
    ``guidance`` (a ``sds.StableDiffusionGuidance``); returns (the fine-tuned model, losses)."""
    from priorlab.methods.fields.generate import check_prompt
    from priorlab.methods.fields.sds import sds_step
    from priorlab.methods.fields.views import sample_cameras

    cfg.validate()
    if steps < 1 or image_size < 8:
        raise ValueError(f"steps={steps} must be >= 1 and image_size={image_size} >= 8")
    prompt = check_prompt(prompt, encoder)
    model = copy.deepcopy(model).train()
    tokens, mask = encoder.encode([prompt])
    optimizer = torch.optim.Adam(model.param_groups(cfg.lr, cfg.grid_lr), betas=(0.9, 0.99), eps=1e-15)
    g = torch.Generator().manual_seed(cfg.seed)
    fcfg = replace(model.field_cfg, chunk=max(model.field_cfg.chunk, image_size * image_size))
    losses = []
    for step in range(1, steps + 1):
        ct = model.condition(tokens, mask)[0]
        losses.append(sds_step(model.scene_field(ct), fcfg, guidance, sample_cameras(1, generator=g),
                               prompt, optimizer, image_size=image_size, generator=g))
        if on_step is not None:
            on_step(step, losses[-1])
    return model.eval(), losses

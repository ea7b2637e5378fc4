"""Training and evaluation of online few-shot segmentation (thesis Sec. 2.4.4, Table 2.2, App. A.4.3).

Episodes come from a sampler with ``sample_batch(seeds) -> (x uint8 (B, T, 3, H, W), label uint8
(B, T, H, W), object_mask uint8 (B, T, H, W), is_target bool (B, T))`` (``priorlab.data.segmentation``):
``label`` is the object mask of a target and zeros for a distractor, aligned with ``x``; the
models shift it by one step themselves (``segmentation.shift_labels``).

* Loss (App. A.4.3, following FSS-1000): MSE between sigmoid(logits) and the binary label,
  averaged over the pixels of a step, summed over the T steps, averaged over the episodes
  (the memory loop's convention, with MSE in place of cross-entropy).
* Curriculum (Sec. 2.4.4): iterations 0..curriculum_steps-1 train on episodes without
  distractors, later ones with them (:func:`distractors_on`). The CL U-Net trains with Adam 1e-3
  on meta-batches of 4 episodes throughout.
* Fine-tuned CNN baseline (App. A.4.3): MAML pre-training on episodes without distractors, outer
  Adam 1e-3, inner SGD 1e-2. The thesis says only "MAML pre-trained on online few-shot
  segmentation with no distractors"; our reading is the online one, train as you test: the
  inner loop walks through the episode, predicting step t with the weights adapted on the
  labels of steps < t, then taking ``maml_inner_steps`` SGD steps on (x_t, label_t); the outer
  loss is the sum of those predictions' losses (the first with the meta-learned weights).
  Evaluation fine-tunes the same way (:func:`online_finetune_logits`, SGD ``finetune_lr``, batch
  of one image) on episodes with distractors, never touching the pre-trained weights.
* Metrics (Table 2.2), per episode then mean and 95% interval over episodes
  (``loop.mean_ci95``): a pixel is foreground when sigmoid(logit) > 0.5.
  ``eval/iou_{k}shot``: IoU of the prediction with the object mask on the (k+1)-th target
  image; ``eval/mask_{k}shot``: fraction of the object pixels of the (k+1)-th distractor
  predicted as background. ``eval/iou_mean`` / ``eval/mask_mean``: the same averaged over every
  k >= 1 of an episode (all target / distractor images but the first; our choice: the thesis
  reports only k = 1 and 6). An empty union counts as IoU 1; a distractor without object
  pixels is left out.

    learner = SegmentationLearner(SegmentationConfig(model="cl_unet", injection_layer=9), "cuda")
    batches = curriculum_batches(plain_sampler, distractor_sampler, learner.cfg)
    train(learner, batches, evaluate_fn=lambda l: evaluate_segmentation(l, val_sampler, seeds, l.cfg),
          report=lambda metrics, save: print(metrics))
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from priorlab.data.episodes import episode_seed
from priorlab.methods.checkpoint import LoadedCheckpoint, load_for_eval, restore_training, save_checkpoint
from priorlab.methods.configuration import config_to_dict
from priorlab.methods.maml import MAML, MAMLLearner
from priorlab.methods.memory.loop import mean_ci95
from priorlab.methods.memory.segmentation import SegmentationConfig, build_segmentation_model

METHOD = "memory-segmentation"
TEST_SEED = 20_250_103  # evaluation episodes fixed across checkpoints


class SegmentationSource(Protocol):
    def sample_batch(self, seeds: Iterable[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]: ...


def to_inputs(x, label, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images -> float in [0, 1]; labels (any nonzero = object) -> float {0, 1}."""
    x = torch.as_tensor(x).to(device)
    x = x.to(torch.float32).div_(255.0) if x.dtype == torch.uint8 else x.to(torch.float32)
    return x, (torch.as_tensor(label).to(device) > 0).to(torch.float32)


def segmentation_loss(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """MSE of sigmoid(logits) vs the label: mean over pixels, sum over steps, mean over episodes.
    logits, label: (B, T, H, W)."""
    err = (torch.sigmoid(logits) - label).pow(2)
    return err.mean((-2, -1)).sum(1).mean()


def distractors_on(cfg: SegmentationConfig, step: int) -> bool:
    """Whether iteration ``step`` (0-based) trains with distractors: after ``curriculum_steps``
    iterations for the CL U-Net; never for the MAML-pretrained CNN (App. A.4.3)."""
    return cfg.model == "cl_unet" and cfg.n_distractors > 0 and step >= cfg.curriculum_steps


# --------------------------------------------------------------------------------------------
# the fine-tuned CNN baseline: online SGD, MAML pre-training


def online_finetune_logits(maml: MAML | nn.Module, x: torch.Tensor, label: torch.Tensor,
                           lr: float, steps: int = 1) -> torch.Tensor:
    """Online fine-tuning (the baseline's evaluation): per episode, predict x_t with the current
    weights, then take ``steps`` SGD steps (lr ``lr``) on (x_t, label_t) alone. The prediction of
    step t depends on labels < t only; the model's own weights are never changed.

    x (B, T, C, H, W), label (B, T, H, W) -> logits (B, T, H, W), detached."""
    maml = maml if isinstance(maml, MAML) else MAML(maml, lr)
    out = torch.empty(label.shape, device=label.device)
    with torch.enable_grad():
        for b in range(x.shape[0]):
            learner = MAMLLearner(maml, {n: p.detach().requires_grad_(True)
                                         for n, p in maml.module.named_parameters()})
            for t in range(x.shape[1]):
                logits = learner(x[b, t:t + 1])
                out[b, t] = logits[0].detach()
                if t == x.shape[1] - 1:
                    break
                for s in range(steps):
                    if s > 0:
                        logits = learner(x[b, t:t + 1])
                    learner.adapt(F.mse_loss(torch.sigmoid(logits), label[b, t:t + 1]), lr=lr,
                                  keep_graph=False)
                    learner.params = {n: p.detach().requires_grad_(True) for n, p in learner.params.items()}
    return out


def maml_online_loss(maml: MAML, x: torch.Tensor, label: torch.Tensor, steps: int = 1) -> torch.Tensor:
    """The outer loss of one episode (our online reading of the MAML pre-training): the sum over
    t of the MSE of the prediction of x_t by the weights adapted, with the inner SGD steps, on the
    labels of steps < t. x (T, C, H, W), label (T, H, W); differentiable w.r.t. the model."""
    learner = maml.clone()
    total = x.new_zeros(())
    for t in range(x.shape[0]):
        loss = F.mse_loss(torch.sigmoid(learner(x[t:t + 1])), label[t:t + 1])
        total = total + loss
        if t == x.shape[0] - 1:
            break
        for s in range(steps):
            if s > 0:
                loss = F.mse_loss(torch.sigmoid(learner(x[t:t + 1])), label[t:t + 1])
            learner.adapt(loss)
    return total


# --------------------------------------------------------------------------------------------
# metrics


def kshot_scores(foreground: torch.Tensor, object_mask: torch.Tensor, is_target: torch.Tensor,
                 k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-episode k-shot IoU (on the (k+1)-th target) and masking score (on the (k+1)-th
    distractor: fraction of its object pixels predicted background); nan where the episode has
    no such image (or the distractor has no object pixel).

    foreground, object_mask: (B, T, H, W) bool/0-1; is_target (B, T) bool -> (iou (B,), mask (B,))"""
    fg, obj, is_target = foreground.bool(), object_mask.bool(), is_target.bool()
    iou = torch.full((fg.shape[0],), float("nan"), dtype=torch.float64)
    mask = iou.clone()
    for b in range(fg.shape[0]):
        targets = torch.nonzero(is_target[b]).flatten()
        distractors = torch.nonzero(~is_target[b]).flatten()
        if k < len(targets):
            t = int(targets[k])
            union = int((fg[b, t] | obj[b, t]).sum())
            iou[b] = int((fg[b, t] & obj[b, t]).sum()) / union if union else 1.0
        if k < len(distractors):
            t = int(distractors[k])
            n_obj = int(obj[b, t].sum())
            if n_obj:
                mask[b] = int((~fg[b, t] & obj[b, t]).sum()) / n_obj
    return iou, mask


def segmentation_metrics(logits: torch.Tensor, object_mask: torch.Tensor, is_target: torch.Tensor,
                         shots: list[int]) -> dict[str, float]:
    """``eval/iou_{k}shot``, ``eval/mask_{k}shot`` (+ ``_ci95``) for k in ``shots``, and
    ``eval/iou_mean`` / ``eval/mask_mean`` (+ ``_ci95``) over k >= 1; logits (B, T, H, W)."""
    fg = logits.detach().cpu() > 0                       # sigmoid(logit) > 0.5
    obj, is_target = torch.as_tensor(object_mask).cpu(), torch.as_tensor(is_target).cpu()
    per_k = {k: kshot_scores(fg, obj, is_target, k) for k in range(max(fg.shape[1], max(shots) + 1))}
    metrics: dict[str, float] = {"eval/episodes": float(fg.shape[0])}

    def put(name, values):
        values = values.numpy()
        mean, ci = mean_ci95(values[~np.isnan(values)])
        metrics[name], metrics[f"{name}_ci95"] = mean, ci

    for k in shots:
        put(f"eval/iou_{k}shot", per_k[k][0])
        put(f"eval/mask_{k}shot", per_k[k][1])
    for i, name in ((0, "iou"), (1, "mask")):
        later = [per_k[k][i] for k in per_k if k >= 1]
        if later:
            put(f"eval/{name}_mean", torch.stack(later, 1).nanmean(1))
        else:
            metrics[f"eval/{name}_mean"] = metrics[f"eval/{name}_mean_ci95"] = float("nan")
    return metrics


def predict_logits(model: nn.Module, cfg: SegmentationConfig, x: torch.Tensor,
                   label: torch.Tensor) -> torch.Tensor:
    """Evaluation-time logits (B, T, H, W): the CL U-Net's forward pass (no gradient), or the
    CNN's online fine-tuning from its pre-trained weights."""
    if cfg.model == "cl_unet":
        with torch.no_grad():
            return model(x, label)
    return online_finetune_logits(model, x, label, cfg.finetune_lr, cfg.maml_inner_steps)


def evaluate_segmentation(model_or_learner, sampler: SegmentationSource, seeds: list[int],
                          cfg: SegmentationConfig | None = None, *, batch_size: int = 16,
                          device: torch.device | str | None = None) -> dict[str, float]:
    """Metrics of :func:`segmentation_metrics` over the episodes ``seeds`` of ``sampler``
    (episodes with distractors, from held-out classes)."""
    learner = model_or_learner if isinstance(model_or_learner, SegmentationLearner) else None
    model = learner.model if learner is not None else model_or_learner
    cfg = cfg or (learner.cfg if learner is not None else model.cfg)
    device = torch.device(device or (learner.device if learner is not None
                                     else next(model.parameters()).device))
    was_training = model.training
    model.eval()
    logits, masks, targets = [], [], []
    for start in range(0, len(seeds), batch_size):
        x, label, obj, is_target = sampler.sample_batch(seeds[start:start + batch_size])
        xs, ys = to_inputs(x, label, device)
        logits.append(predict_logits(model, cfg, xs, ys).cpu())
        masks.append(torch.as_tensor(obj))
        targets.append(torch.as_tensor(is_target))
    model.train(was_training)
    return segmentation_metrics(torch.cat(logits), torch.cat(masks), torch.cat(targets),
                                list(cfg.report_shots))


# --------------------------------------------------------------------------------------------
# learner, checkpoints, loop


class SegmentationLearner:
    """Model + optimiser + step counter (+ the MAML wrapper of the CNN): what a checkpoint restores."""

    def __init__(self, cfg: SegmentationConfig, device: torch.device | str = "cpu"):
        cfg.validate()
        self.cfg = cfg
        self.device = torch.device(device)
        torch.manual_seed(cfg.seed)
        self.model = build_segmentation_model(cfg).to(self.device)
        self.maml = (MAML(self.model, cfg.inner_lr, first_order=cfg.maml_first_order)
                     if cfg.model == "finetune_cnn" else None)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.step = 0

    @property
    def bare_model(self) -> nn.Module:
        return self.model

    def train_step(self, x: torch.Tensor, label: torch.Tensor) -> float:
        """One iteration on a meta-batch (float x (B, T, C, H, W), label (B, T, H, W)); the loss."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        if self.maml is None:
            loss = segmentation_loss(self.model(x, label), label)
            loss.backward()
            value = float(loss.detach())
        else:
            value = 0.0
            for b in range(x.shape[0]):     # one inner loop (clone) per episode
                loss = maml_online_loss(self.maml, x[b], label[b], self.cfg.maml_inner_steps)
                (loss / x.shape[0]).backward()
                value += float(loss.detach()) / x.shape[0]
        self.optimizer.step()
        self.step += 1
        return value

    def predict(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """Evaluation logits (B, T, H, W) (see :func:`predict_logits`)."""
        return predict_logits(self.model, self.cfg, x, label)

    def save(self, directory, metrics: dict[str, Any] | None = None):
        return save_checkpoint(directory, method=METHOD, step=self.step, config=config_to_dict(self.cfg),
                               model=self.model, optimizer=self.optimizer, metrics=metrics)

    def restore(self, ckpt: LoadedCheckpoint) -> None:
        restore_training(self.model, self.optimizer, ckpt)
        self.step = ckpt.step


def load_segmentation_model(path: str | Path) -> tuple[nn.Module, SegmentationConfig, int]:
    """(model in eval mode, its config, its step) from a ``memory-segmentation`` checkpoint."""
    return load_for_eval(path, METHOD, SegmentationConfig, build_segmentation_model)


def evaluate_checkpoint(path: str | Path, data_root: Path, *, episodes: int = 1000, split: str = "test",
                        batch_size: int = 16, seed: int = TEST_SEED, progress: bool = True) -> dict[str, float]:
    """`priorlab eval` of a segmentation checkpoint: Table 2.2's metrics on ``episodes`` episodes
    with distractors from ``split``'s classes of the checkpoint's source (fixed seeds)."""
    from priorlab.data.segmentation import OnlineSegmentationSampler, load_segmentation_source

    model, cfg, step = load_segmentation_model(path)
    source = load_segmentation_source(cfg.source, data_root, split, cfg.image_size)
    sampler = OnlineSegmentationSampler(source, cfg.n_targets, cfg.n_distractors)
    metrics = evaluate_segmentation(model, sampler, [episode_seed(seed, i) for i in range(episodes)], cfg,
                                    batch_size=batch_size)
    metrics["step"] = float(step)
    return metrics


BatchesFn = Callable[[int, bool], tuple]
Report = Callable[[dict[str, float], "Callable[[str], Any] | None"], None]


def curriculum_batches(plain: SegmentationSource, with_distractors: SegmentationSource,
                       cfg: SegmentationConfig, base_seed: int | None = None) -> BatchesFn:
    """``batches_fn(step, distractors)``: meta-batch ``step`` from the sampler of its curriculum
    stage; episode seeds depend only on (base_seed, step), so a resumed run sees the same episodes."""
    base = cfg.seed if base_seed is None else base_seed

    def batches(step: int, distractors: bool):
        seeds = [episode_seed(base, step * cfg.meta_batch + i) for i in range(cfg.meta_batch)]
        return (with_distractors if distractors else plain).sample_batch(seeds)

    return batches


def train(learner: SegmentationLearner, batches_fn: BatchesFn, *,
          evaluate_fn: Callable[[SegmentationLearner], dict[str, float]] | None,
          report: Report, max_iters: int | None = None) -> None:
    """Run until ``max_iters`` (default cfg.max_iters), evaluating every ``cfg.eval_every``.

    ``batches_fn(step, distractors)`` returns the meta-batch of iteration ``step`` (a tuple whose
    first two items are x and label) from episodes with or without distractors, as
    :func:`distractors_on` says; ``report(metrics, save)`` is called at every evaluation with
    ``step``, ``train/loss`` (mean since the last report), ``train/distractors`` (1 when the
    latest iteration had distractors), ``train/episodes_per_s`` and ``evaluate_fn(learner)``'s
    metrics; ``save(directory)`` writes the checkpoint if the caller wants one.
    """
    cfg = learner.cfg
    max_iters = cfg.max_iters if max_iters is None else max_iters
    losses: list[float] = []
    start_step, episodes, t0 = learner.step, 0, time.perf_counter()
    while learner.step < max_iters:
        distractors = distractors_on(cfg, learner.step)
        batch = batches_fn(learner.step, distractors)
        x, label = to_inputs(batch[0], batch[1], learner.device)
        losses.append(learner.train_step(x, label))
        episodes += x.shape[0]
        if learner.step % cfg.eval_every == 0 or learner.step == max_iters:
            metrics = {
                "step": float(learner.step),
                "train/loss": float(np.mean(losses)),
                "train/distractors": float(distractors),
                "train/episodes_per_s": episodes / max(time.perf_counter() - t0, 1e-9),
                "train/start_step": float(start_step),
            }
            if evaluate_fn is not None:
                metrics.update(evaluate_fn(learner))
            report(metrics, learner.save)
            losses, episodes, t0 = [], 0, time.perf_counter()

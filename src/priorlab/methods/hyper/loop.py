"""Supervised training of (Hyper)ResNets/WRNs: the CIFAR recipe of thesis Sec. 3.4.1.

SGD (lr 0.1, momentum 0.9), step decay x0.2 at epochs 60/120/160 of 200; weight decay on plain
parameters only; for hypernetwork models the l2 penalty on generated weights
(``lambda_output_l2 * sum ||W||^2``, Table 3.2) replaces weight decay on embeddings and
hypernetworks (Sec. 3.3 "Regularizing Hypernetworks"); optional SWA over every parameter,
embeddings and hypernetworks included, with the BatchNorm update (Table 3.5). The model a
checkpoint or a Serve app should use afterwards is ``export_plain(learner.final_model())``.

The same optimisation runs plain / under DDP (``strategy="ddp"``, the trainable passes Ray's
``prepare_model`` as ``wrap``) or under DeepSpeed ZeRO (``strategy="deepspeed"``, see
:mod:`priorlab.methods.hyper.zero`), in fp32 or with the forward pass under torch.autocast
(``precision``). Checkpoints have one format whatever the strategy.

    learner = SupervisedLearner(cfg)
    for epoch in range(cfg.epochs):
        metrics = learner.train_epoch(train_loader)
    acc = evaluate(learner.final_model(train_loader), test_loader)
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import SWALR, AveragedModel, update_bn

from priorlab.methods.checkpoint import LoadedCheckpoint, save_checkpoint, set_rng_state
from priorlab.methods.configuration import ConfigError, config_to_dict
from priorlab.methods.hyper.config import HyperConfig
from priorlab.methods.hyper.hypernet import embedding_grad_ratios, output_l2, param_groups
from priorlab.methods.hyper.resnets import build_model


def _inputs(x: torch.Tensor, device) -> torch.Tensor:
    x = x.to(device)
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, device="cpu") -> float:
    """Top-1 accuracy of ``model`` (eval mode) over ``loader`` of (x, y) batches."""
    was = model.training
    model.eval()
    correct = total = 0
    for x, y in loader:
        pred = model(_inputs(x, device)).argmax(-1)
        correct += int((pred.cpu() == y).sum())
        total += len(y)
    model.train(was)
    return correct / max(total, 1)


METHOD = "hyper"

SHUFFLE, AUGMENT = 0, 1  # the random streams of an epoch (see epoch_seed)


def epoch_seed(seed: int, epoch: int, stream: int) -> int:
    """The seed of one epoch's ``stream`` (``SHUFFLE`` order, ``AUGMENT`` crops/flips/jitter): a
    pure function of (run seed, epoch, stream). Reseeding each epoch's generators with it, in an
    uninterrupted run and in one resumed from a checkpoint alike, makes a resumed run see the same
    batches without saving any generator state."""
    ss = np.random.SeedSequence([int(seed) % 2**63, int(stream), int(epoch)])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def classification_loss(logits: torch.Tensor, y: torch.Tensor, model: nn.Module,
                        lambda_output_l2: float) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy plus ``lambda_output_l2 * output_l2(model)`` (Sec. 3.3; 0 = none), and the
    two terms as metrics."""
    loss_ce = F.cross_entropy(logits, y)
    terms = {"train/loss_ce": float(loss_ce.detach())}
    loss = loss_ce
    if lambda_output_l2 > 0:
        loss_l2 = output_l2(model)
        loss = loss + lambda_output_l2 * loss_l2
        terms["train/loss_output_l2"] = float(loss_l2.detach())
    return loss, terms


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device_type: str) -> None:
    """Raise ConfigError for a precision the device cannot train in."""
    if precision == "fp16" and device_type != "cuda":
        raise ConfigError(
            f"precision=fp16 needs a CUDA device (this learner runs on {device_type!r}): CPU autocast "
            "has no fp16 GradScaler path; use precision=bf16 on CPU, or fp32")
    if precision == "bf16" and device_type not in ("cpu", "cuda"):
        raise ConfigError(f"precision=bf16 runs on cpu or cuda devices, not {device_type!r}")


@dataclass
class SupervisedLearner:
    cfg: HyperConfig
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    wrap: Callable[[nn.Module], nn.Module] | None = None
    """Optional wrapper applied after the optimiser is built (e.g. Ray Train's DDP prepare_model)."""

    def __post_init__(self):
        self.device = torch.device(self.device)
        check_precision(self.cfg.precision, self.device.type)
        deepspeed = self.cfg.strategy == "deepspeed"
        if deepspeed and self.wrap is not None:
            raise ValueError("strategy=deepspeed does its own data-parallel wrapping; pass no `wrap`")
        torch.manual_seed(self.cfg.seed)
        self.model = build_model(self.cfg).to(self.device)
        self.is_hyper = self.cfg.hyper
        groups = (param_groups(self.model, self.cfg.weight_decay) if self.is_hyper
                  else [{"params": list(self.model.parameters()), "weight_decay": self.cfg.weight_decay}])
        self.optimizer = torch.optim.SGD(groups, lr=self.cfg.lr, momentum=self.cfg.momentum)
        # The groups as built: ZeRO swaps the optimiser's own lists for flat partitions.
        self.param_lists = [list(g["params"]) for g in self.optimizer.param_groups]
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, milestones=list(self.cfg.lr_milestones), gamma=self.cfg.lr_gamma)
        self.swa_model = AveragedModel(self.model) if self.cfg.swa else None
        self.swa_scheduler = SWALR(self.optimizer, swa_lr=self.cfg.swa_lr) if self.cfg.swa else None
        # fp16 autocast needs loss scaling; under DeepSpeed its engine owns the scaler.
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.cfg.precision == "fp16" and not deepspeed)
        self.epoch = 0
        self.engine = self.zero_optimizer = None
        if deepspeed:
            from priorlab.methods.hyper import zero

            self.engine, self.zero_optimizer = zero.initialize(
                self.model, self.optimizer, self.cfg, self.device)
            self.model = self.engine
        elif self.wrap is not None:
            self.model = self.wrap(self.model)

    def _autocast(self):
        # Under DeepSpeed the engine applies autocast itself (its torch_autocast section).
        if self.cfg.precision == "fp32" or self.engine is not None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=AUTOCAST_DTYPES[self.cfg.precision])

    @property
    def bare_model(self) -> nn.Module:
        return getattr(self.model, "module", self.model)

    def checkpoint_state(self) -> tuple[dict, dict]:
        """(model state_dict, torch SGD state_dict) as a plain learner holds them.

        Under DeepSpeed this gathers the ZeRO shards and is collective: every rank calls it,
        then rank 0 passes the result to :meth:`save`."""
        if self.engine is None:
            return self.bare_model.state_dict(), self.optimizer.state_dict()
        from priorlab.methods.hyper import zero

        return zero.full_state(self.engine, self.zero_optimizer, self.param_lists,
                               self.optimizer.param_groups)

    def save(self, directory, metrics: dict | None = None,
             state: tuple[dict, dict] | None = None):
        """Write a priorlab checkpoint; ``state`` from :meth:`checkpoint_state` (gathered on every
        rank beforehand under DeepSpeed), else gathered here (single process)."""
        model_state, optimizer_state = state if state is not None else self.checkpoint_state()
        extra: dict[str, Any] = {"optimizer": optimizer_state,
                                 "scheduler": self.scheduler.state_dict(), "epoch": self.epoch}
        if self.swa_model is not None:
            extra["swa_model"] = self.swa_model.state_dict()
            extra["swa_scheduler"] = self.swa_scheduler.state_dict()
        if self.scaler.is_enabled():
            extra["grad_scaler"] = self.scaler.state_dict()
        return save_checkpoint(directory, method=METHOD, step=self.epoch,
                               config=config_to_dict(self.cfg), model=model_state,
                               metrics=metrics, extra_state=extra)

    def restore(self, ckpt: LoadedCheckpoint) -> None:
        """Resume from a checkpoint of any strategy (collective under DeepSpeed)."""
        state = ckpt.train_state or {}
        if self.engine is not None:
            from priorlab.methods.hyper import zero

            zero.load_full_state(self.engine, self.zero_optimizer, self.param_lists,
                                 ckpt.model_state, state.get("optimizer"))
        else:
            self.bare_model.load_state_dict(ckpt.model_state)
            if "optimizer" in state:
                self.optimizer.load_state_dict(state["optimizer"])
        if "optimizer" in state:
            self.scheduler.load_state_dict(state["scheduler"])
            if self.scaler.is_enabled() and "grad_scaler" in state:
                self.scaler.load_state_dict(state["grad_scaler"])
            if self.swa_model is not None and "swa_model" in state:
                self.swa_model.load_state_dict(state["swa_model"])
                self.swa_scheduler.load_state_dict(state["swa_scheduler"])
            set_rng_state(state["rng"])
        self.epoch = int(state.get("epoch", ckpt.step))

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        return classification_loss(logits, y, self.bare_model,
                                   self.cfg.lambda_output_l2 if self.is_hyper else 0.0)

    def train_epoch(self, loader: Iterable) -> dict[str, float]:
        self.model.train()
        total, correct, n, sums = 0.0, 0, 0, {}
        ratios: dict[str, float] = {}
        for i, (x, y) in enumerate(loader):
            x, y = _inputs(x, self.device), y.to(self.device)
            with self._autocast():
                logits = self.model(x)
            # The loss and the output-l2 penalty are computed in fp32, outside autocast.
            loss, terms = self.loss(logits.float(), y)
            diagnose = i == 0 and self.is_hyper  # Fig. 3.3 diagnostic, first batch of each epoch
            if self.engine is not None:
                self.engine.backward(loss)
                if diagnose:
                    from priorlab.methods.hyper import zero

                    ratios = zero.embedding_grad_ratios(
                        self.engine.module, zero.grad_scale(self.zero_optimizer))
                self.engine.step()  # also zeroes the gradients
            else:
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                if diagnose:
                    if self.scaler.is_enabled():
                        self.scaler.unscale_(self.optimizer)  # ratios of the true gradients
                    ratios = embedding_grad_ratios(self.bare_model)
                self.scaler.step(self.optimizer)  # a plain optimizer.step() unless fp16
                self.scaler.update()
            total += float(loss.detach()) * len(y)
            correct += int((logits.argmax(-1) == y).sum())
            n += len(y)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v * len(y)
        in_swa = self.cfg.swa and self.epoch >= self.cfg.swa_start_epoch
        if in_swa:
            self.swa_model.update_parameters(self.bare_model)
            self.swa_scheduler.step()
        else:
            self.scheduler.step()
        self.epoch += 1
        metrics = {"train/loss": total / max(n, 1), "train/acc": correct / max(n, 1),
                   "epoch": float(self.epoch), "lr": self.optimizer.param_groups[0]["lr"]}
        metrics.update({k: v / max(n, 1) for k, v in sums.items()})
        if ratios:
            metrics["diag/embedding_grad_ratio_median"] = float(
                torch.tensor(list(ratios.values())).median())
        return metrics

    def final_model(self, train_loader: Iterable | None = None) -> nn.Module:
        """The SWA average (BN statistics recomputed on ``train_loader``) or the current model."""
        if self.swa_model is None or self.swa_model.n_averaged.item() == 0:
            return self.bare_model
        if train_loader is None:
            raise ValueError("SWA needs the training loader to recompute BatchNorm statistics")
        update_bn(((_inputs(x, self.device)) for x, _ in train_loader), self.swa_model)
        return self.swa_model.module

"""Supervised training of (Hyper)ResNets/WRNs: the CIFAR recipe of thesis Sec. 3.4.1.

SGD (lr 0.1, momentum 0.9), step decay x0.2 at epochs 60/120/160 of 200; weight decay on plain
parameters only; for hypernetwork models the l2 penalty on generated weights
(``lambda_output_l2 * sum ||W||^2``, Table 3.2) replaces weight decay on embeddings and
hypernetworks (Sec. 3.3 "Regularizing Hypernetworks"); optional SWA over every parameter,
embeddings and hypernetworks included, with the BatchNorm update (Table 3.5). The model a
checkpoint or a Serve app should use afterwards is ``export_plain(learner.final_model())``.

    learner = SupervisedLearner(cfg)
    for epoch in range(cfg.epochs):
        metrics = learner.train_epoch(train_loader)
    acc = evaluate(learner.final_model(train_loader), test_loader)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import SWALR, AveragedModel, update_bn

from priorlab.methods.checkpoint import LoadedCheckpoint, save_checkpoint, set_rng_state
from priorlab.methods.configuration import config_to_dict
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


@dataclass
class SupervisedLearner:
    cfg: HyperConfig
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    wrap: Callable[[nn.Module], nn.Module] | None = None
    """Optional wrapper applied after the optimiser is built (e.g. Ray Train's DDP prepare_model)."""

    def __post_init__(self):
        torch.manual_seed(self.cfg.seed)
        self.model = build_model(self.cfg).to(self.device)
        self.is_hyper = self.cfg.hyper
        groups = (param_groups(self.model, self.cfg.weight_decay) if self.is_hyper
                  else [{"params": list(self.model.parameters()), "weight_decay": self.cfg.weight_decay}])
        self.optimizer = torch.optim.SGD(groups, lr=self.cfg.lr, momentum=self.cfg.momentum)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, milestones=list(self.cfg.lr_milestones), gamma=self.cfg.lr_gamma)
        self.swa_model = AveragedModel(self.model) if self.cfg.swa else None
        self.swa_scheduler = SWALR(self.optimizer, swa_lr=self.cfg.swa_lr) if self.cfg.swa else None
        self.epoch = 0
        if self.wrap is not None:
            self.model = self.wrap(self.model)

    @property
    def bare_model(self) -> nn.Module:
        return getattr(self.model, "module", self.model)

    def save(self, directory, metrics: dict | None = None):
        extra = {"scheduler": self.scheduler.state_dict(), "epoch": self.epoch}
        if self.swa_model is not None:
            extra["swa_model"] = self.swa_model.state_dict()
            extra["swa_scheduler"] = self.swa_scheduler.state_dict()
        return save_checkpoint(directory, method=METHOD, step=self.epoch,
                               config=config_to_dict(self.cfg), model=self.bare_model,
                               optimizer=self.optimizer, metrics=metrics, extra_state=extra)

    def restore(self, ckpt: LoadedCheckpoint) -> None:
        self.bare_model.load_state_dict(ckpt.model_state)
        state = ckpt.train_state or {}
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if self.swa_model is not None and "swa_model" in state:
                self.swa_model.load_state_dict(state["swa_model"])
                self.swa_scheduler.load_state_dict(state["swa_scheduler"])
            set_rng_state(state["rng"])
        self.epoch = int(state.get("epoch", ckpt.step))

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        loss_ce = F.cross_entropy(logits, y)
        terms = {"train/loss_ce": float(loss_ce.detach())}
        loss = loss_ce
        if self.is_hyper and self.cfg.lambda_output_l2 > 0:
            loss_l2 = output_l2(self.bare_model)
            loss = loss + self.cfg.lambda_output_l2 * loss_l2
            terms["train/loss_output_l2"] = float(loss_l2.detach())
        return loss, terms

    def train_epoch(self, loader: Iterable) -> dict[str, float]:
        self.model.train()
        total, correct, n, sums = 0.0, 0, 0, {}
        ratios: dict[str, float] = {}
        for i, (x, y) in enumerate(loader):
            x, y = _inputs(x, self.device), y.to(self.device)
            logits = self.model(x)
            loss, terms = self.loss(logits, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if i == 0 and self.is_hyper:
                ratios = embedding_grad_ratios(self.bare_model)  # Fig. 3.3 diagnostic
            self.optimizer.step()
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

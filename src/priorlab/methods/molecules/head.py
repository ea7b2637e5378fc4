"""The downstream MLP head on molecular feature vectors (thesis Sec. 5.3.4, Table 5.1).

"The MLP consists of two fully connected layers with non-linear activations and a final
task-specific output layer ... trained using a standard supervised loss" (Sec. 5.3.4). Here:
Linear-ReLU-Dropout twice, then Linear(n_tasks); binary cross-entropy on logits for
classification and MSE for regression, both *masked*: a missing label (nan in Y, common in
multi-task MoleculeNet files such as Tox21) contributes neither loss nor gradient. Training
keeps the weights of the best validation epoch (validation AUROC for classification, the
validation loss when no validation task has both classes, and for regression).

Inputs are standardised with the mean and standard deviation of the *training* rows only; the
statistics live in the head as buffers, so scoring new molecules applies the same transform.

    head, history = train_head(X_tr, Y_tr, X_va, Y_va, HeadConfig(seed=0), "classification")
    probs = predict(head, X_te)                      # (n, n_tasks) in [0, 1]
    torch.save(head_to_state(head), "head.pt")       # tensors + JSON-able values
    head = head_from_state(torch.load("head.pt", weights_only=True))

Rows with nan/inf features are an error naming them: drop molecules a feature set could not
featurise before training (``fingerprints.finite_rows``).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from priorlab.methods.configuration import ConfigError, check_bounds, config_from_dict

TASK_TYPES = ("classification", "regression")
STATE_FORMAT = "priorlab-molecule-head/1"


@dataclass
class HeadConfig:
    """The MLP head and its training (Sec. 5.3.4; the thesis gives no numbers, see each field)."""

    hidden: tuple[int, ...] = (256, 256)
    """Widths of the hidden layers: two, as Sec. 5.3.4 describes. 256 is wide enough for a
    768-d ChemBERTa or 2048-bit ECFP input and small for a few hundred labelled molecules."""
    dropout: float = 0.1
    """Dropout after each hidden ReLU; a light regulariser for the few-hundred-molecule regime."""
    lr: float = 1e-3
    """AdamW learning rate (Adam's usual default)."""
    weight_decay: float = 1e-5
    """AdamW decoupled weight decay."""
    epochs: int = 200
    """Maximum epochs; early stopping usually ends training well before."""
    batch_size: int = 64
    """Molecules per step (the last batch of an epoch may be smaller)."""
    patience: int = 20
    """Stop after this many epochs without a better validation value."""
    monitor: Literal["auto", "auroc", "loss"] = "auto"
    """What picks the best epoch: ``auto`` = validation AUROC for classification when some
    validation task has both classes, else the validation loss; ``loss`` always the loss."""
    standardise: bool = True
    """Standardise inputs with the training rows' mean/std (constant columns are only centred);
    regression targets are standardised the same way and predictions mapped back."""
    seed: int = 0
    """Seeds the initialisation, dropout and the shuffling: the same seed gives the same head."""

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        self.validate()

    def validate(self) -> None:
        check_bounds(self, at_least_1=("epochs", "batch_size", "patience"),
                     non_negative=("dropout", "weight_decay"), positive=("lr",))
        if not self.hidden or min(self.hidden) < 1:
            raise ConfigError(f"hidden={self.hidden}: give one or more positive widths, e.g. (256, 256)")
        if self.dropout >= 1:
            raise ConfigError(f"dropout={self.dropout} must be < 1")
        if self.monitor not in ("auto", "auroc", "loss"):
            raise ConfigError(f"monitor={self.monitor!r}: choose 'auto', 'auroc' or 'loss'")


class MLPHead(nn.Module):
    """(B, n_features) -> (B, n_tasks): logits (classification) or standardised values."""

    def __init__(self, n_features: int, n_tasks: int, config: HeadConfig | None = None,
                 task_type: str = "classification"):
        super().__init__()
        if task_type not in TASK_TYPES:
            raise ValueError(f"task_type={task_type!r}: choose one of {list(TASK_TYPES)}")
        self.config = config or HeadConfig()
        self.task_type = task_type
        self.n_features, self.n_tasks = int(n_features), int(n_tasks)
        layers: list[nn.Module] = []
        width = self.n_features
        for h in self.config.hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(self.config.dropout)]
            width = h
        layers.append(nn.Linear(width, self.n_tasks))
        self.net = nn.Sequential(*layers)
        # Buffers, not parameters: fitted once on the training rows, saved with the weights.
        self.register_buffer("x_mean", torch.zeros(self.n_features))
        self.register_buffer("x_std", torch.ones(self.n_features))
        self.register_buffer("y_mean", torch.zeros(self.n_tasks))
        self.register_buffer("y_std", torch.ones(self.n_tasks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.x_mean) / self.x_std)                      # (B, T)


@dataclass
class HeadHistory:
    """Per-epoch curves of one ``train_head`` call and which epoch was kept."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_auroc: list[float] = field(default_factory=list)
    """Mean validation AUROC over tasks with both classes (nan for regression / undefined)."""
    monitor: str = "none"
    """``val/auroc``, ``val/loss``, or ``none`` (no validation rows: the last epoch is kept)."""
    best_epoch: int = -1
    best_value: float = math.nan
    stopped_epoch: int = -1
    """The last epoch trained (early stopping may end before ``epochs - 1``)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- checks

def _check_features(X: Any, name: str, n_features: int | None = None) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"{name} has shape {X.shape}; expected (n_molecules, n_features)")
    if X.shape[0] == 0:
        raise ValueError(f"{name} has no rows")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{name} has {X.shape[1]} features; the head was built for {n_features}: "
                         "use the same feature set (and order) as in training")
    bad = np.flatnonzero(~np.isfinite(X).all(axis=1))
    if bad.size:
        raise ValueError(f"{name} has nan/inf in rows {bad[:10].tolist()}"
                         f"{' ...' if bad.size > 10 else ''} ({bad.size} rows): these molecules "
                         "failed featurisation; drop them first (fingerprints.finite_rows)")
    return X


def _check_labels(Y: Any, name: str, n_rows: int, task_type: str) -> np.ndarray:
    Y = np.asarray(Y, dtype=np.float32)
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2 or Y.shape[0] != n_rows:
        raise ValueError(f"{name} has shape {Y.shape}; expected ({n_rows},) or ({n_rows}, n_tasks) "
                         "to match the feature rows")
    if np.isinf(Y).any():
        raise ValueError(f"{name} holds inf; use nan for a missing label")
    labelled = Y[~np.isnan(Y)]
    if task_type == "classification" and not np.isin(labelled, (0.0, 1.0)).all():
        odd = sorted(set(np.unique(labelled).tolist()) - {0.0, 1.0})[:5]
        raise ValueError(f"{name} has labels {odd}: classification labels must be 0, 1 or nan "
                         "(missing); use task_type='regression' for continuous targets")
    return Y


# ----------------------------------------------------------------------------- loss

def masked_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                task_type: str = "classification") -> torch.Tensor:
    """Mean BCE-with-logits (classification) or MSE over the labelled entries only.

    ``mask`` (True = labelled) defaults to ``~isnan(target)``. Unlabelled entries change
    neither the value nor the gradient, whatever their target holds.
    """
    if mask is None:
        mask = ~torch.isnan(target)
    target = torch.where(mask, target, torch.zeros_like(target))
    if task_type == "classification":
        per = F.binary_cross_entropy_with_logits(pred, target, reduction="none")
    elif task_type == "regression":
        per = (pred - target) ** 2
    else:
        raise ValueError(f"task_type={task_type!r}: choose one of {list(TASK_TYPES)}")
    per = torch.where(mask, per, torch.zeros_like(per))
    return per.sum() / mask.sum().clamp(min=1)


# ----------------------------------------------------------------------------- training

def _fit_standardisation(head: MLPHead, X: np.ndarray, Y: np.ndarray) -> None:
    if not head.config.standardise:
        return
    std = X.std(axis=0)
    std[std < 1e-8] = 1.0  # a column constant on the training rows (an unset ECFP bit)
    head.x_mean.copy_(torch.from_numpy(X.mean(axis=0)))
    head.x_std.copy_(torch.from_numpy(std.astype(np.float32)))
    if head.task_type == "regression":
        y_std = np.nanstd(Y, axis=0)
        y_std[~(y_std > 1e-8)] = 1.0
        head.y_mean.copy_(torch.from_numpy(np.nanmean(Y, axis=0).astype(np.float32)))
        head.y_std.copy_(torch.from_numpy(y_std.astype(np.float32)))


def _choose_monitor(cfg: HeadConfig, task_type: str, Y_val: np.ndarray | None) -> str:
    from priorlab.methods.molecules.evaluation import tasks_with_both_classes

    if Y_val is None:
        return "none"
    if cfg.monitor == "loss" or task_type == "regression":
        if cfg.monitor == "auroc":
            raise ValueError("monitor='auroc' needs task_type='classification'; use 'loss' or 'auto'")
        return "val/loss"
    if tasks_with_both_classes(Y_val).any():
        return "val/auroc"
    if cfg.monitor == "auroc":
        warnings.warn("no validation task has both classes, so AUROC is undefined: early "
                      "stopping on the validation loss instead", stacklevel=3)
    return "val/loss"


def train_head(X_train: Any, Y_train: Any, X_val: Any = None, Y_val: Any = None,
               cfg: HeadConfig | None = None,
               task_type: str = "classification") -> tuple[MLPHead, HeadHistory]:
    """Train an :class:`MLPHead`; return it (best validation epoch's weights, eval mode) and
    its :class:`HeadHistory`.

    ``Y`` is (n,) or (n, n_tasks), nan = missing label. Without validation rows every epoch
    runs and the last is kept. Deterministic for a given ``cfg.seed``; the caller's global
    torch RNG is left as it was.
    """
    from priorlab.methods.molecules.evaluation import auroc

    cfg = cfg or HeadConfig()
    if task_type not in TASK_TYPES:
        raise ValueError(f"task_type={task_type!r}: choose one of {list(TASK_TYPES)}")
    X_train = _check_features(X_train, "X_train")
    Y_train = _check_labels(Y_train, "Y_train", len(X_train), task_type)
    empty = np.flatnonzero(np.isnan(Y_train).all(axis=0))
    if empty.size:
        raise ValueError(f"task(s) {empty.tolist()} have no label in the training rows; drop "
                         "those columns or choose a split that labels them")
    if (X_val is None) != (Y_val is None):
        raise ValueError("give both X_val and Y_val, or neither")
    if X_val is not None:
        X_val = _check_features(X_val, "X_val", X_train.shape[1])
        Y_val = _check_labels(Y_val, "Y_val", len(X_val), task_type)
        if Y_val.shape[1] != Y_train.shape[1]:
            raise ValueError(f"Y_val has {Y_val.shape[1]} tasks, Y_train {Y_train.shape[1]}")
    monitor = _choose_monitor(cfg, task_type, Y_val)
    history = HeadHistory(monitor=monitor)

    with torch.random.fork_rng(devices=[]):  # seeds init and dropout without touching the caller's RNG
        torch.manual_seed(cfg.seed)
        head = MLPHead(X_train.shape[1], Y_train.shape[1], cfg, task_type)
        _fit_standardisation(head, X_train, Y_train)
        shuffle = torch.Generator().manual_seed(cfg.seed)
        opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        xt = torch.from_numpy(X_train)
        yt = (torch.from_numpy(Y_train) - head.y_mean) / head.y_std          # nan stays nan
        if X_val is not None:
            xv = torch.from_numpy(X_val)
            yv = (torch.from_numpy(Y_val) - head.y_mean) / head.y_std
        best_state, since_best = None, 0
        for epoch in range(cfg.epochs):
            head.train()
            order = torch.randperm(len(xt), generator=shuffle)
            total, count = 0.0, 0
            for start in range(0, len(order), cfg.batch_size):
                idx = order[start:start + cfg.batch_size]
                yb = yt[idx]
                n_lab = int((~torch.isnan(yb)).sum())
                if n_lab == 0:  # every label of this batch missing: no signal
                    continue
                loss = masked_loss(head(xt[idx]), yb, task_type=task_type)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * n_lab
                count += n_lab
            history.train_loss.append(total / max(count, 1))
            history.stopped_epoch = epoch
            if X_val is None:
                continue
            head.eval()
            with torch.no_grad():
                out = head(xv)
                history.val_loss.append(float(masked_loss(out, yv, task_type=task_type)))
                history.val_auroc.append(
                    auroc(Y_val, torch.sigmoid(out).numpy()) if task_type == "classification"
                    else math.nan)
            value = history.val_auroc[-1] if monitor == "val/auroc" else history.val_loss[-1]
            better = (best_state is None or
                      (value > history.best_value if monitor == "val/auroc"
                       else value < history.best_value))
            if better:
                best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
                history.best_epoch, history.best_value, since_best = epoch, value, 0
            else:
                since_best += 1
                if since_best >= cfg.patience:
                    break
    if best_state is not None:
        head.load_state_dict(best_state)
    else:
        history.best_epoch = history.stopped_epoch
    head.eval()
    return head, history


def predict(head: MLPHead, X: Any, batch_size: int = 8192) -> np.ndarray:
    """(n, n_tasks) float32: probabilities (classification) or values in the targets' units."""
    X = _check_features(X, "X", head.n_features)
    head.eval()
    outs = []
    device = next(head.parameters()).device          # a head moved to a GPU scores there
    with torch.no_grad():
        for start in range(0, len(X), batch_size):
            out = head(torch.from_numpy(X[start:start + batch_size]).to(device))
            outs.append((torch.sigmoid(out) if head.task_type == "classification"
                         else out * head.y_std + head.y_mean).cpu())
    return torch.cat(outs).numpy()


# ----------------------------------------------------------------------------- state

def head_to_state(head: MLPHead) -> dict[str, Any]:
    """Everything needed to rebuild ``head``: tensors and JSON-able values only, so
    ``torch.load(..., weights_only=True)`` reads it back."""
    cfg = dataclasses.asdict(head.config)
    cfg["hidden"] = list(cfg["hidden"])
    return {"format": STATE_FORMAT, "task_type": head.task_type,
            "n_features": head.n_features, "n_tasks": head.n_tasks, "config": cfg,
            "state_dict": {k: v.detach().cpu().clone() for k, v in head.state_dict().items()}}


def head_from_state(state: dict[str, Any]) -> MLPHead:
    """The head ``head_to_state`` described, in eval mode (standardisation included)."""
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"not a molecule head state (format {found!r}, expected "
                         f"{STATE_FORMAT!r}); write it with head_to_state")
    missing = [k for k in ("task_type", "n_features", "n_tasks", "config", "state_dict")
               if k not in state]
    if missing:
        raise ValueError(f"molecule head state lacks {missing}; it is truncated or hand-edited")
    cfg = config_from_dict(HeadConfig, state["config"])
    head = MLPHead(state["n_features"], state["n_tasks"], cfg, state["task_type"])
    head.load_state_dict(state["state_dict"])
    return head.eval()

"""Online few-shot continual learning: configuration, curriculum and the CL+LSTM learner
(thesis Sec. 2.4.3, Fig. 2.3 and 2.4; App. A.3; App. A.2 / Table A.1 with ``order=shuffled``).

A continual task is ``n`` subtasks of one class each, ``n_shot`` samples per subtask, shown
subtask after subtask (:class:`priorlab.data.continual.ContinualTaskSampler`); then a query set of
other drawings of all ``n`` classes is classified, and the cross-entropy on the query set is
the only loss. Labels are drawn per task from a fixed space of ``n_labels`` (= the longest task
length), so every model has ``n_labels`` outputs. Training follows App. A.3.1's curriculum:
tasks of ``curriculum_start`` (5) subtasks, one more every ``curriculum_every`` (5000) updates
until the target ``subtasks`` (:func:`curriculum_length`).

Every model here is an ``nn.Module`` with the same call (:class:`ContinualModel`)::

    model = build_continual_model(ContinualConfig(model="cl_lstm"))
    logits = model(support_x, support_y, query_x)   # (B, S, 1, H, W), (B, S), (B, Q, 1, H, W)
                                                    #   -> (B, Q, n_labels)

``model.train()`` gives the meta-training computation, ``model.eval()`` the meta-test one; they
differ only for the gradient-based baselines OML and ANML
(:mod:`priorlab.methods.memory.meta_continual`). The loop, the learner and the evaluation are
in :mod:`priorlab.methods.memory.continual_loop`.

The CL+LSTM (:class:`CLLSTMContinual`) reads the support stream with the online protocol (x_t
with y_{t-1}, the null label at t=1); then every query sample takes ONE step from the final
support state. The state is copied per query sample, so no query sees another, and the
states a query step produces are thrown away: the persistent states are frozen over the query
set (Sec. 2.4.3). What label a query step gets is not stated in the thesis; here
(``query_label``) it is by default ``last``: the one-hot label of the final support sample, the
label the protocol owes at that step, the same for every query, so it says nothing about the
query; ``null`` gives the all-zero label instead (the final support label is then never seen).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from priorlab.data.continual import ORDERS
from priorlab.methods.configuration import ConfigError
from priorlab.methods.memory.cl_lstm import CLLSTM, build_model
from priorlab.methods.memory.config import MemoryConfig
from priorlab.methods.memory.protocol import previous_labels

CONTINUAL_MODELS = ("cl_lstm", "oml", "anml")
QUERY_LABELS = ("last", "null")
INNER_OPTIMIZERS = ("sgd", "adam")
THESIS_LR = {"cl_lstm": 1e-3, "oml": 1e-4, "anml": 1e-3}
"""Outer (meta) learning rates: App. A.3.1 (CL+LSTM), A.3.2 (OML), A.3.3 (ANML)."""
DEFAULT_INNER_LR = {"oml": 0.03, "anml": 0.01}
"""Inner SGD learning rates: 0.03 for OML (App. A.3.2). For ANML the thesis only says "the
suggested hyperparameters"; the reference code's command uses 0.1, on batch-normalised layers.
Our trunk has no batch norm, and 0.1 left it at chance (query accuracy 0.10 on 10-subtask
tasks after 140 updates, 16 filters) where 0.01 learned (0.40 after 90): 0.01 is our default."""
DEFAULT_INNER_OPTIMIZER = {"oml": "sgd", "anml": "adam"}
"""Meta-test adaptation: SGD for OML (App. A.3.2), Adam for ANML (App. A.3.3)."""
DEFAULT_TEST_ADAM_LR = 1e-3
"""Adam's meta-test learning rate when ``test_inner_lr`` is None (the largest of the ANML
reference code's meta-test search grid, 1e-3 .. 1e-5; the thesis does not state it)."""


@dataclass
class ContinualConfig:
    # --- model ---
    model: Literal["cl_lstm", "oml", "anml"] = "cl_lstm"
    """`cl_lstm`: the CL+LSTM adapting through its hidden states; `oml`: Online aware
    Meta-Learning (Javed & White 2019); `anml`: A Neuromodulated Meta-Learning algorithm
    (Beaulieu et al. 2020). The baselines are in ``meta_continual.py``."""
    conv_layers: int = 4
    """Convolutional layers: ConvLSTM layers of the CL+LSTM, CNN layers of OML's representation
    and ANML's trunk (4 in the thesis for all three). ANML's neuromodulatory CNN has 3."""
    channels: int = 64
    """Channels of every ConvLSTM layer (64, App. A.1.4) and of OML's CNN (the thesis: "a
    4-layer CNN with a parameter count comparable to ours"; 64 is our reading)."""
    lstm_hidden: int = 400
    """CL+LSTM: hidden size of the LSTM after the ConvLSTM stack (400)."""
    label_injection: str | list[int] = "first"
    """CL+LSTM: where y_{t-1} enters (see ``MemoryConfig.label_injection``)."""
    skip: bool = True
    """CL+LSTM: residual skip between ConvLSTM layers (App. A.2)."""
    skip_pair: list[int] | None = None
    """CL+LSTM: the (from, to) layers of that skip; None: the thesis' (1, 3) with >= 4 layers and
    (0, conv_layers - 1) with 2 or 3 (App. A.2 gives its depth-4 models, 2 ConvLSTM layers, a
    skip "too" without saying where; this is our reading)."""
    forget_bias: float = 1.0
    """CL+LSTM: initial forget-gate bias of the ConvLSTM cells."""
    lstm_forget_bias: float | None = None
    """CL+LSTM: initial forget-gate bias of the LSTM (None: PyTorch's init)."""
    query_label: Literal["last", "null"] = "last"
    """CL+LSTM: the label input of a query step. `last`: the final support sample's label (the
    one the online protocol owes next; the same for all queries); `null`: all zeros."""
    pln_hidden: int = 400
    """OML: width of the first of the two fully connected (adapted) layers. The thesis gives no
    number; 400 matches the CL+LSTM's LSTM."""
    anml_channels: int = 256
    """ANML: channels of every trunk CNN layer (256, App. A.3.3)."""
    nm_channels: int = 112
    """ANML: channels of the 3-layer neuromodulatory CNN (112, the ANML reference code; the
    thesis does not say)."""

    # --- task (Sec. 2.4.3, App. A.3.1) ---
    subtasks: int = 10
    """Target task length (subtasks of one class each) that the curriculum grows to."""
    n_labels: int = 20
    """Size of the label space (= classifier outputs): the longest task length, 20 in Fig. 2.3.
    Each task draws its labels from it at random."""
    n_shot: int = 5
    """Support samples per subtask (5)."""
    n_query: int = 5
    """Query samples per subtask, drawings not used in the support (the thesis does not state
    the query size; Omniglot has 20 drawings per class, so n_shot + n_query <= 20)."""
    order: Literal["blocked", "shuffled"] = "blocked"
    """Support order: `blocked` shows subtask after subtask (Sec. 2.4.3); `shuffled` interleaves
    every class's samples at random (the k-way 5-shot protocol of App. A.2, Table A.1)."""
    curriculum_start: int = 5
    """Task length of the first updates (App. A.3.1: "always start with a 5-way problem")."""
    curriculum_every: int = 5000
    """Updates between two increments of the task length (5K, App. A.3.1)."""
    image_size: int = 28
    train_split: str = "train"
    eval_split: str = "val"
    """The thesis uses the Vinyals class split; evaluation classes are never seen in training."""

    # --- optimisation ---
    lr: float | None = None
    """Outer Adam learning rate; None: the thesis' for the model (1e-3 CL+LSTM, 1e-4 OML,
    1e-3 ANML)."""
    inner_lr: float | None = None
    """OML/ANML inner SGD learning rate; None: 0.03 OML (App. A.3.2), 0.01 ANML (see
    ``DEFAULT_INNER_LR``: the reference code's 0.1 assumes batch norm)."""
    first_order: bool = False
    """OML/ANML: drop the second-order terms of the meta-gradient (the inner gradients are
    detached). False: differentiate through every inner step, as the reference code does."""
    inner_optimizer: Literal["sgd", "adam"] | None = None
    """OML/ANML meta-test adaptation; None: `sgd` for OML (App. A.3.2), `adam` for ANML (A.3.3).
    Meta-training always adapts with SGD."""
    test_inner_lr: float | None = None
    """Meta-test adaptation learning rate; None: inner_lr for SGD, 1e-3 for Adam."""
    meta_batch: int = 16
    max_iters: int = 100_000
    """Outer updates (the thesis trains CL+LSTM models 100k iterations, OML 150k episodes)."""
    grad_clip: float | None = None
    """Optional global-norm gradient clipping (not in the thesis)."""

    # --- bookkeeping ---
    eval_every: int = 1000
    eval_episodes: int = 200
    """Evaluation tasks per task length."""
    eval_lengths: list[int] = field(default_factory=lambda: [5, 10, 15, 20])
    """Task lengths evaluated (Fig. 2.3); per-subtask accuracy (Fig. 2.4) comes from the longest."""
    seed: int = 0

    # ------------------------------------------------------------------ derived values
    def resolved_lr(self) -> float:
        return THESIS_LR[self.model] if self.lr is None else float(self.lr)

    def resolved_inner_lr(self) -> float:
        return DEFAULT_INNER_LR.get(self.model, 0.0) if self.inner_lr is None else float(self.inner_lr)

    def resolved_inner_optimizer(self) -> str:
        if self.inner_optimizer is not None:
            return self.inner_optimizer
        return DEFAULT_INNER_OPTIMIZER.get(self.model, "sgd")

    def resolved_test_inner_lr(self) -> float:
        if self.test_inner_lr is not None:
            return float(self.test_inner_lr)
        return DEFAULT_TEST_ADAM_LR if self.resolved_inner_optimizer() == "adam" else self.resolved_inner_lr()

    def resolved_skip_pair(self) -> list[int] | None:
        if self.skip_pair is not None:
            return list(self.skip_pair)
        return [0, self.conv_layers - 1] if 2 <= self.conv_layers < 4 else None

    def to_memory_config(self) -> MemoryConfig:
        """The CL+LSTM's own config: n_way = n_labels, the architecture fields copied over."""
        return MemoryConfig(
            model="cl_lstm", conv_layers=self.conv_layers, channels=self.channels,
            lstm_hidden=self.lstm_hidden, label_injection=self.label_injection, skip=self.skip,
            skip_pair=self.resolved_skip_pair(), forget_bias=self.forget_bias,
            lstm_forget_bias=self.lstm_forget_bias, n_way=self.n_labels, n_shot=self.n_shot,
            image_size=self.image_size, label_delay=1, report_shots=[0], lr=self.resolved_lr(),
            meta_batch=self.meta_batch, max_iters=self.max_iters, eval_every=self.eval_every,
            eval_episodes=self.eval_episodes, seed=self.seed, accel="eager")

    def validate(self) -> None:
        if self.model not in CONTINUAL_MODELS:
            raise ConfigError(f"model={self.model!r}: choose one of {list(CONTINUAL_MODELS)}")
        for name in ("conv_layers", "channels", "lstm_hidden", "pln_hidden", "anml_channels",
                     "nm_channels", "subtasks", "n_shot", "n_query", "curriculum_start",
                     "curriculum_every", "image_size", "meta_batch", "max_iters", "eval_every",
                     "eval_episodes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 1")
        if self.order not in ORDERS:
            raise ConfigError(f"order={self.order!r}: choose one of {list(ORDERS)} (blocked: "
                              "subtask after subtask, Sec. 2.4.3; shuffled: App. A.2)")
        if self.query_label not in QUERY_LABELS:
            raise ConfigError(f"query_label={self.query_label!r}: choose one of {list(QUERY_LABELS)}")
        if self.inner_optimizer is not None and self.inner_optimizer not in INNER_OPTIMIZERS:
            raise ConfigError(f"inner_optimizer={self.inner_optimizer!r}: choose one of "
                              f"{list(INNER_OPTIMIZERS)} or null (the model's default)")
        if not self.eval_lengths or any(int(n) < 1 for n in self.eval_lengths):
            raise ConfigError(f"eval_lengths={self.eval_lengths!r}: give a non-empty list of task "
                              "lengths >= 1, e.g. [5,10,15,20]")
        longest = max([self.subtasks, *self.eval_lengths])
        if self.n_labels < max(longest, 2):
            raise ConfigError(
                f"n_labels={self.n_labels} is too small: every subtask of a task needs its own "
                f"label, and tasks of {longest} subtasks are trained or evaluated; set "
                f"n_labels >= {max(longest, 2)} or shorten subtasks / eval_lengths")
        if self.n_shot + self.n_query > 20:
            raise ConfigError(f"n_shot + n_query = {self.n_shot + self.n_query}: Omniglot has 20 "
                              "drawings per class and queries must be drawings not in the support")
        if self.image_size >> (self.conv_layers - 1) < 1:
            raise ConfigError(f"image_size={self.image_size} is too small for conv_layers="
                              f"{self.conv_layers} (each layer after the first halves the resolution)")
        if self.model == "anml" and self.image_size >> 2 < 1:
            raise ConfigError(f"image_size={self.image_size} is too small for ANML's 3-layer "
                              "neuromodulatory CNN: use image_size >= 4")
        for name in ("lr", "inner_lr", "test_inner_lr", "grad_clip"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name}={value} must be > 0 (or null for the default)")
        if self.model == "cl_lstm":
            self.to_memory_config().validate()


def curriculum_length(cfg: ContinualConfig, step: int) -> int:
    """Task length for update ``step`` (0-based; App. A.3.1): ``curriculum_start`` subtasks for
    the first ``curriculum_every`` updates, one more every ``curriculum_every`` updates after,
    capped at ``cfg.subtasks`` (a target below the start is used from the first update)."""
    if step < 0:
        raise ValueError(f"step={step} must be >= 0")
    return min(cfg.subtasks, cfg.curriculum_start + step // cfg.curriculum_every)


class ContinualModel(Protocol):
    """What the learner and the evaluation call: ``model(sx, sy, qx) -> (B, Q, n_labels)``.

    sx: float (B, S, C, H, W) in [0, 1]; sy: int64 (B, S) in [0, n_labels); qx: (B, Q, C, H, W).
    ``train()`` / ``eval()`` select the meta-training / meta-test computation.
    """

    def __call__(self, support_x: torch.Tensor, support_y: torch.Tensor,
                 query_x: torch.Tensor) -> torch.Tensor: ...


def _expand_state(state, q: int):
    """Every tensor of a (nested) state (B, ...) -> (B * Q, ...): one copy per query sample."""
    if isinstance(state, torch.Tensor):
        return state.repeat_interleave(q, dim=0)
    return type(state)(_expand_state(s, q) for s in state)


class CLLSTMContinual(nn.Module):
    """The CL+LSTM on continual tasks: online support stream, frozen states over the query set."""

    def __init__(self, cfg: ContinualConfig):
        super().__init__()
        self.cfg = cfg
        self.n_labels = cfg.n_labels
        self.net: CLLSTM = build_model(cfg.to_memory_config())

    def support_state(self, support_x: torch.Tensor, support_y: torch.Tensor):
        """Run the support stream with one-step-late labels; the final persistent state."""
        y_prev = previous_labels(support_y, self.n_labels)                  # (B, S, k)
        state = self.net.initial_state(support_x.shape[0], support_x)
        for t in range(support_x.shape[1]):
            _, state = self.net.step(support_x[:, t], y_prev[:, t], state)
        return state

    def support_logits(self, support_x: torch.Tensor, support_y: torch.Tensor) -> torch.Tensor:
        """The online predictions over the support stream (B, S, k); step t sees y_<t only."""
        return self.net(support_x, support_y)

    def forward(self, support_x: torch.Tensor, support_y: torch.Tensor,
                query_x: torch.Tensor) -> torch.Tensor:
        b, q = query_x.shape[:2]
        state = _expand_state(self.support_state(support_x, support_y), q)  # (B*Q, ...)
        if self.cfg.query_label == "last":
            y_in = F.one_hot(support_y[:, -1], self.n_labels).to(query_x.dtype)  # (B, k)
        else:
            y_in = query_x.new_zeros(b, self.n_labels)
        logits, _ = self.net.step(query_x.flatten(0, 1), y_in.repeat_interleave(q, 0), state)
        return logits.view(b, q, self.n_labels)                             # new states dropped


def build_continual_model(cfg: ContinualConfig) -> nn.Module:
    cfg.validate()
    if cfg.model == "cl_lstm":
        return CLLSTMContinual(cfg)
    from priorlab.methods.memory.meta_continual import ANML, OML

    return (OML if cfg.model == "oml" else ANML)(cfg)

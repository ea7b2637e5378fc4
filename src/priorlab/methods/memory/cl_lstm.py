"""CL+LSTM: layer-distributed memory with label injection, and the LSTM baseline.

Thesis Ch. 2: Sec. 2.3.3 and Fig. 2.2 (ConvLSTM layers -> LSTM -> classifier, label injection
modes), App. A.1.4 (4 ConvLSTM layers of 64 channels, LSTM of 400, 5-way classifier), App. A.2
(residual skip from layer 2 to layer 4). The model adapts only through its hidden states: no
gradient is taken at test time.

Layer j (0-based) runs at resolution s_j = image_size // 2**j: the output of every ConvLSTM
layer but the last is max-pooled by 2 before it enters the next one. For 28x28 inputs the
layers run at 28, 14, 7 and 3 pixels, which gives the 0.40 GFLOPs per step of Sec. 2.4.3
(checked by benchmarks/flops.py).

    model = build_model(MemoryConfig())
    logits = model(x, y)   # x: (B, T, 1, 28, 28) float in [0, 1], y: (B, T) -> (B, T, n_way)

``channels_last`` keeps the ConvLSTM weights, inputs and states in NHWC order; the forward pass
computes the same function. ``MemoryLearner`` may pass a compiled version of :meth:`CLLSTM.step`
as ``step_fn`` (``accel=compile``, see ``priorlab.methods.memory.accel``).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from priorlab.methods.memory.config import MemoryConfig
from priorlab.methods.memory.convlstm import ConvLSTMCell
from priorlab.methods.memory.protocol import label_planes, previous_labels


class CLLSTM(nn.Module):
    """ConvLSTM stack + LSTM + classifier, with labels y_{i-1} injected where configured."""

    def __init__(self, cfg: MemoryConfig, in_channels: int = 1):
        super().__init__()
        self.cfg = cfg
        self.n_way = cfg.n_way
        self.inject = set(cfg.injection_layers())
        self.sizes = [cfg.image_size >> j for j in range(cfg.conv_layers)]
        cells = []
        for j in range(cfg.conv_layers):
            c_in = in_channels if j == 0 else cfg.channels
            if j in self.inject:
                c_in += cfg.n_way
            cells.append(ConvLSTMCell(c_in, cfg.channels, cfg.kernel_size, cfg.forget_bias))
        self.cells = nn.ModuleList(cells)
        # App. A.2: residual from the 2nd to the 4th ConvLSTM layer (indices 1 -> 3).
        pair = tuple(int(i) for i in cfg.skip_pair) if cfg.skip_pair is not None else (
            (1, 3) if cfg.conv_layers >= 4 else None)
        self.skip = pair if cfg.skip else None
        lstm_in = cfg.channels * self.sizes[-1] ** 2
        if cfg.conv_layers in self.inject:
            lstm_in += cfg.n_way
        self.lstm = nn.LSTMCell(lstm_in, cfg.lstm_hidden)
        set_lstm_forget_bias(self.lstm, cfg.lstm_forget_bias)
        self.classifier = nn.Linear(cfg.lstm_hidden, cfg.n_way)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format

    def initial_state(self, batch: int, like: torch.Tensor):
        conv = [cell.initial_state(batch, s, like, self.memory_format)
                for cell, s in zip(self.cells, self.sizes)]
        zeros = like.new_zeros(batch, self.cfg.lstm_hidden)
        return conv, (zeros, zeros)

    def step(self, x: torch.Tensor, y_prev: torch.Tensor, state):
        """One time step. x: (B, C, H, W); y_prev: (B, k) one-hot (zeros = null label)."""
        conv_state, lstm_state = state
        new_conv = []
        h = x.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else x
        outputs = []
        for j, cell in enumerate(self.cells):
            if j > 0:
                h = F.max_pool2d(h, 2)                                  # (B, C, s_j, s_j)
            inp = torch.cat([h, label_planes(y_prev, h.shape[-1])], 1) if j in self.inject else h
            hj, cj = cell(inp, conv_state[j])
            new_conv.append((hj, cj))
            if self.skip is not None and j == self.skip[1]:
                hj = hj + F.adaptive_avg_pool2d(outputs[self.skip[0]], hj.shape[-2:])
            outputs.append(hj)
            h = hj
        feat = h.flatten(1)                                             # (B, C * s^2)
        if self.cfg.conv_layers in self.inject:
            feat = torch.cat([feat, y_prev], 1)
        hl, cl = self.lstm(feat, lstm_state)
        return self.classifier(hl), (new_conv, (hl, cl))

    def forward(self, x: torch.Tensor, y: torch.Tensor, step_fn: Callable | None = None) -> torch.Tensor:
        """x: (B, T, C, H, W), y: (B, T) -> logits (B, T, n_way); step i sees only y_<i.

        ``step_fn`` (same signature as :meth:`step`, e.g. a compiled ``self.step``) advances
        steps 1..T-1. Step 0 always runs :meth:`step`: its zero state needs no gradient, which
        would make torch.compile build a second graph for one step in T.
        """
        y_prev = previous_labels(y, self.n_way, self.cfg.label_delay)                         # (B, T, k)
        state = self.initial_state(x.shape[0], x)
        later = self.step if step_fn is None else step_fn
        logits = []
        for t in range(x.shape[1]):
            out, state = (self.step if t == 0 else later)(x[:, t], y_prev[:, t], state)
            logits.append(out)
        return torch.stack(logits, 1)


class LSTMBaseline(nn.Module):
    """The LSTM of Santoro et al. (App. A.1.4): [flattened image, one-hot y_{i-1}] -> LSTM(400)."""

    def __init__(self, cfg: MemoryConfig, in_channels: int = 1):
        super().__init__()
        self.cfg = cfg
        self.n_way = cfg.n_way
        self.lstm = nn.LSTM(in_channels * cfg.image_size ** 2 + cfg.n_way, cfg.lstm_hidden,
                            batch_first=True)
        set_lstm_forget_bias(self.lstm, cfg.lstm_forget_bias)
        self.classifier = nn.Linear(cfg.lstm_hidden, cfg.n_way)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        inp = torch.cat([x.flatten(2), previous_labels(y, self.n_way, self.cfg.label_delay)], -1)  # (B, T, HW + k)
        out, _ = self.lstm(inp)
        return self.classifier(out)


def set_lstm_forget_bias(lstm: nn.LSTM | nn.LSTMCell, value: float | None) -> None:
    """Make the forget gate's total bias (b_ih + b_hh) ``value``; None keeps PyTorch's init."""
    if value is None:
        return
    h = lstm.hidden_size
    with torch.no_grad():
        for name, bias in lstm.named_parameters():
            if name.startswith("bias_"):                                # gates i, f, g, o
                bias[h:2 * h].fill_(value if name.startswith("bias_ih") else 0.0)


def build_model(cfg: MemoryConfig) -> nn.Module:
    cfg.validate()
    if cfg.model == "lstm":
        return LSTMBaseline(cfg, cfg.in_channels)
    if cfg.model == "apl":
        from priorlab.methods.memory.apl import AdaptivePosteriorLearning

        return AdaptivePosteriorLearning(cfg, cfg.in_channels)
    if cfg.model == "ntm":
        from priorlab.methods.memory.mann import MemoryAugmentedNetwork

        return MemoryAugmentedNetwork(cfg, cfg.in_channels)
    if cfg.model in ("opn", "cpm"):
        from priorlab.methods.memory.prototypes import ContextualPrototypes, OnlinePrototypes

        return (OnlinePrototypes if cfg.model == "opn" else ContextualPrototypes)(cfg, cfg.in_channels)
    model = CLLSTM(cfg, cfg.in_channels)
    return model.to(memory_format=torch.channels_last) if cfg.channels_last else model

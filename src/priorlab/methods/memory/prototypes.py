"""Online Prototypical Networks (OPN), a baseline of the online few-shot protocol (thesis
Sec. 2.4.2, Table 2.1; App. A.1.4; Ren et al. 2021, "Wandering within a world").

A 4-layer CNN (64 channels, App. A.1.4) embeds each image; each class keeps a prototype, the
weighted average of the embeddings of its samples seen so far, updated online as each label
arrives (one step late: at step t the labels y_0..y_{t-1} are known, as in the protocol of
``protocol.previous_labels``). With equal weights the update

    p_c <- (n_c p_c + w h) / (n_c + w),  n_c <- n_c + w

is the running mean; it is computed for the whole episode at once with exclusive cumulative
sums, so the prediction at step t never sees y_t or anything after it (tested).

Prediction (Ren et al.'s OPN, with every label revealed): a sample far from every prototype is
taken to be of a class not seen yet. With d_c = ||h_t - p_c||^2 over the seen classes,

    u_t = sigmoid((min_c d_c - beta) / gamma)             probability of "a new class"
    P(c) = (1 - u_t) softmax(-d / tau)_c                  for a seen class c
    P(c) = u_t / (number of unseen classes)                for an unseen one

(u_t = 1 before any label, 0 once every class has a prototype); beta, gamma and tau are learned.
``forward`` returns log P, so the protocol's cross-entropy and accuracy apply unchanged.

Differences from the reference (TensorFlow, renmengye/oc-fewshot-public), stated: the CNN
normalises with GroupNorm, per image, because batch statistics over an episode would let a step
see the images that come after it; and the per-sample weights w of the semi-supervised setting
are 1 here, where every sample's label arrives.

    model = build_model(MemoryConfig(model="opn"))
    log_probs = model(x, y)   # x: (B, T, 1, 28, 28), y: (B, T) -> (B, T, n_way)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from priorlab.methods.memory.config import MemoryConfig
from priorlab.methods.memory.protocol import previous_labels, shift_in_time


class ConvEmbedding(nn.Module):
    """The 4-layer CNN of the prototype baselines: [conv 3x3 -> GroupNorm -> ReLU -> max-pool 2]
    x ``layers``; a 28x28 image becomes a 64-dim vector (channels x 1 x 1)."""

    def __init__(self, in_channels: int = 1, channels: int = 64, layers: int = 4, groups: int = 8):
        super().__init__()
        blocks = []
        for j in range(layers):
            blocks += [nn.Conv2d(in_channels if j == 0 else channels, channels, 3, padding=1),
                       nn.GroupNorm(min(groups, channels), channels), nn.ReLU(), nn.MaxPool2d(2)]
        self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-3]
        out = self.net(x.reshape(-1, *x.shape[-3:]))                      # (N, C, h, w)
        return out.flatten(1).reshape(*lead, -1)                          # (..., C h w)


def online_prototypes(h: torch.Tensor, y: torch.Tensor, n_way: int,
                      weights: torch.Tensor | None = None,
                      delay: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Prototypes at each step: (P (B, T, k, D), counts (B, T, k)), where P[:, t, c] is the
    weighted mean of the embeddings h[:, s] (B, T, D) with y[:, s] == c whose label has arrived,
    s <= t - ``delay`` (zero where class c has none yet), and counts[:, t, c] the total weight
    behind it."""
    onehot = F.one_hot(y.long(), n_way).to(h.dtype)                       # (B, T, k)
    if weights is not None:
        onehot = onehot * weights[..., None]
    sums = torch.einsum("btk,btd->btkd", onehot, h).cumsum(1)             # through step t
    counts = onehot.cumsum(1)
    sums, counts = shift_in_time(sums, delay), shift_in_time(counts, delay)   # labels arrived
    return sums / counts.clamp_min(1e-12)[..., None], counts


class OnlinePrototypes(nn.Module):
    """OPN: CNN embeddings, online class prototypes, distance-based prediction with a learned
    "new class" probability (module docstring)."""

    def __init__(self, cfg: MemoryConfig, in_channels: int = 1):
        super().__init__()
        self.cfg, self.n_way = cfg, cfg.n_way
        self.embed = ConvEmbedding(in_channels, cfg.channels, cfg.conv_layers)
        self.log_tau = nn.Parameter(torch.zeros(()))          # softmax temperature over seen classes
        self.beta = nn.Parameter(torch.tensor(10.0))          # distance at which "new" is even odds
        self.log_gamma = nn.Parameter(torch.zeros(()))        # its sharpness

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)                                                 # (B, T, D)
        protos, counts = online_prototypes(h, y, self.n_way, delay=self.cfg.label_delay)
        return self.log_probs(h, protos, counts)

    def log_probs(self, h: torch.Tensor, protos: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """log P (B, T, k) of each step's class from its embedding h (B, T, D) and the prototypes
        (B, T, k, D) with their weights (B, T, k) at that step."""
        seen = counts > 0                                                 # (B, T, k)
        d = ((h[:, :, None, :] - protos) ** 2).sum(-1)                    # (B, T, k)
        big = torch.finfo(d.dtype).max / 4
        d_seen = torch.where(seen, d, torch.full_like(d, big))
        n_seen = seen.sum(-1, keepdim=True)                               # (B, T, 1)
        n_unseen = self.n_way - n_seen
        u = torch.sigmoid((d_seen.min(-1, keepdim=True).values - self.beta) / self.log_gamma.exp())
        u = torch.where(n_seen == 0, torch.ones_like(u), u)
        u = torch.where(n_unseen == 0, torch.zeros_like(u), u)
        log_seen = torch.log_softmax(torch.where(seen, -d / self.log_tau.exp(),
                                                 torch.full_like(d, -big)), -1)
        tiny = torch.finfo(d.dtype).tiny
        log_p_seen = torch.log((1 - u).clamp_min(tiny)) + log_seen
        log_p_unseen = torch.log(u.clamp_min(tiny)) - torch.log(n_unseen.clamp_min(1).to(d.dtype))
        return torch.where(seen, log_p_seen, log_p_unseen.expand_as(d))


class ContextualPrototypes(OnlinePrototypes):
    """CPM, Contextual Prototypical Memory (Ren et al. 2021; thesis Sec. 2.4.2, App. A.1.4): OPN
    with a representation conditioned on the episode so far and gated prototype updates.

    An LSTM (``lstm_hidden`` = 400) reads [h_t, one-hot of the label arriving at step t]; its
    state c_t conditions the embedding, z_t = h_t + W c_t (W starts at zero, so CPM starts as
    OPN); prototypes are the weighted means of the z_s whose labels have arrived, each sample
    weighted by a gate g_s = sigmoid(v . [z_s, c_s] + b) in (0, 1) instead of 1. Everything at
    step t depends on labels y_s with s <= t - label_delay only (tested). This is our reading
    of CPM for the fully labelled online protocol; the reference is TensorFlow
    (renmengye/oc-fewshot-public).
    """

    def __init__(self, cfg: MemoryConfig, in_channels: int = 1):
        super().__init__(cfg, in_channels)
        dim = cfg.channels * (cfg.image_size >> cfg.conv_layers) ** 2
        self.context = nn.LSTM(dim + cfg.n_way, cfg.lstm_hidden, batch_first=True)
        self.condition = nn.Linear(cfg.lstm_hidden, dim)
        nn.init.zeros_(self.condition.weight)
        nn.init.zeros_(self.condition.bias)
        self.gate = nn.Linear(dim + cfg.lstm_hidden, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)                                                 # (B, T, D)
        arrived = previous_labels(y, self.n_way, self.cfg.label_delay).to(h.dtype)
        c, _ = self.context(torch.cat([h, arrived], -1))                  # (B, T, H)
        z = h + self.condition(c)                                         # (B, T, D)
        g = torch.sigmoid(self.gate(torch.cat([z, c], -1)))[..., 0]       # (B, T)
        protos, counts = online_prototypes(z, y, self.n_way, weights=g, delay=self.cfg.label_delay)
        return self.log_probs(z, protos, counts)

"""The memory-augmented network of Santoro et al. (2016), the NTM baseline of the online few-shot
protocol (thesis Sec. 2.4.2, Table 2.1; App. A.1.4: LSTM controller of 400, memory 120 x 40,
least-recently-used access with usage decay 0.95).

Each step the controller LSTM reads [flattened x_t, one-hot of the label arriving at step t,
the previous read vectors] and emits, per head, a key. With M_t the memory (N slots x W):

    write    w^w_t = sigmoid(alpha) w^r_{t-1} + (1 - sigmoid(alpha)) w^lu_{t-1}
             the least-used slot is cleared, then M_t = M_{t-1} + w^w_t k_t^T
    read     w^r_t(i) = softmax_i cos(k_t, M_t(i))                     (sums to one; tested)
             r_t = sum_i w^r_t(i) M_t(i)
    usage    w^u_t = gamma w^u_{t-1} + w^r_t + w^w_t    (gamma = lru_decay)
             w^lu_t(i) = 1 for the ``read_heads`` least-used slots, else 0

and the class scores come from [controller output, r_t]. Labels enter only through the
controller input, one step late (or ``label_delay`` steps), so step t never sees y_t.

    model = build_model(MemoryConfig(model="ntm"))
    logits = model(x, y)   # (B, T, 1, 28, 28), (B, T) -> (B, T, n_way)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from priorlab.methods.memory.config import MemoryConfig
from priorlab.methods.memory.protocol import previous_labels


def read_weights(keys: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """Content-based read weights (B, H, N) of keys (B, H, W) over memory (B, N, W): a softmax
    over slots of the cosine similarity, so each head's weights sum to one."""
    sim = F.cosine_similarity(keys[:, :, None, :], memory[:, None, :, :], dim=-1, eps=1e-8)
    return torch.softmax(sim, dim=-1)


def least_used(usage: torch.Tensor, n: int) -> torch.Tensor:
    """(B, N) -> (B, N) float: 1 at the ``n`` slots of smallest usage, 0 elsewhere."""
    idx = usage.topk(n, dim=-1, largest=False).indices
    return torch.zeros_like(usage).scatter(-1, idx, 1.0)


class MemoryAugmentedNetwork(nn.Module):
    def __init__(self, cfg: MemoryConfig, in_channels: int = 1):
        super().__init__()
        self.cfg, self.n_way = cfg, cfg.n_way
        self.heads, self.slots, self.width = cfg.read_heads, cfg.memory_slots, cfg.memory_width
        x_dim = in_channels * cfg.image_size ** 2
        self.controller = nn.LSTMCell(x_dim + cfg.n_way + self.heads * self.width, cfg.lstm_hidden)
        self.keys = nn.Linear(cfg.lstm_hidden, self.heads * self.width)     # read and write keys
        self.alpha = nn.Linear(cfg.lstm_hidden, self.heads)                 # read vs least-used mix
        self.classifier = nn.Linear(cfg.lstm_hidden + self.heads * self.width, cfg.n_way)

    def forward(self, x: torch.Tensor, y: torch.Tensor, return_weights: bool = False):
        b, t = y.shape
        flat = x.flatten(2)                                                   # (B, T, HW)
        arrived = previous_labels(y, self.n_way, self.cfg.label_delay).to(flat.dtype)
        dtype, dev = flat.dtype, flat.device
        h = torch.zeros(b, self.cfg.lstm_hidden, dtype=dtype, device=dev)
        c = torch.zeros_like(h)
        memory = torch.full((b, self.slots, self.width), 1e-6, dtype=dtype, device=dev)
        usage = torch.zeros(b, self.slots, dtype=dtype, device=dev)
        w_read = torch.zeros(b, self.heads, self.slots, dtype=dtype, device=dev)
        reads = torch.zeros(b, self.heads * self.width, dtype=dtype, device=dev)
        logits, all_reads = [], []
        for step in range(t):
            h, c = self.controller(torch.cat([flat[:, step], arrived[:, step], reads], -1), (h, c))
            keys = torch.tanh(self.keys(h)).view(b, self.heads, self.width)   # (B, H, W)
            # write first (Santoro et al.): to the previously read slots or the least-used ones
            lu = least_used(usage, self.heads)                                # (B, N)
            gate = torch.sigmoid(self.alpha(h))[..., None]                    # (B, H, 1)
            w_write = gate * w_read + (1 - gate) * lu[:, None, :]             # (B, H, N)
            if step > 0:                                                      # clear the least used
                oldest = usage.argmin(-1)
                memory = memory * (1 - F.one_hot(oldest, self.slots).to(dtype))[..., None]
            memory = memory + torch.einsum("bhn,bhw->bnw", w_write, keys)
            w_read = read_weights(keys, memory)                               # (B, H, N)
            reads = torch.einsum("bhn,bnw->bhw", w_read, memory).reshape(b, -1)
            usage = self.cfg.lru_decay * usage + w_read.sum(1) + w_write.sum(1)
            logits.append(self.classifier(torch.cat([h, reads], -1)))
            all_reads.append(w_read)
        out = torch.stack(logits, 1)
        return (out, torch.stack(all_reads, 1)) if return_weights else out

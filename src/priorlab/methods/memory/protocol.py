"""The online few-shot protocol and its label encodings (thesis Sec. 2.3.1, 2.3.3; App. A.1.3).

A task is ((x_1, null), (x_2, y_1), ..., (x_t, y_{t-1})): at step i the model sees x_i and the
label of the *previous* step. With a delay d (Sec. 2.1, ``MemoryConfig.label_delay``) it sees
y_{i-d} instead, and the null label at the first d steps. Labels enter a ConvLSTM layer as k planes of size s x s, all ones
in the plane of the true class (Sec. 2.3.3), and the LSTM as a one-hot vector. The null label
of step 1 is all zeros. k-shot accuracy is the accuracy on the (k+1)-th appearance of each class
in the sequence (App. A.1.3, following Santoro et al.).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def previous_labels(y: torch.Tensor, n_way: int, delay: int = 1) -> torch.Tensor:
    """One-hot of y_{i-d} for every step i (d = ``delay``: the label of a sample arrives d steps
    after it; 1 is the standard protocol), zeros (the null label) at steps 0..d-1.

    y: (B, T) int64 in [0, n_way)  ->  (B, T, n_way) float
    """
    if delay < 1:
        raise ValueError(f"delay={delay} must be >= 1: a label arrives after its sample")
    onehot = F.one_hot(y, n_way).to(torch.float32)  # (B, T, k)
    return shift_in_time(onehot, delay)


def shift_in_time(v: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, T, ...) -> the same ``steps`` steps later: out[:, t] = v[:, t - steps], zeros before."""
    steps = min(steps, v.shape[1])
    return torch.cat([torch.zeros_like(v[:, :steps]), v[:, :v.shape[1] - steps]], dim=1)


def label_planes(onehot: torch.Tensor, size: int) -> torch.Tensor:
    """Sec. 2.3.3 encoding: (B, k) one-hot -> (B, k, size, size), ones in the true class's plane."""
    return onehot[:, :, None, None].expand(-1, -1, size, size)


def shot_indices(y: torch.Tensor) -> torch.Tensor:
    """For each step, how many times its class appeared earlier in the sequence.

    y: (B, T) -> (B, T) int64; a step with value k is the (k+1)-th appearance, i.e. "k-shot".
    """
    onehot = F.one_hot(y)  # (B, T, C)
    seen_before = onehot.cumsum(dim=1) - onehot
    return (seen_before * onehot).sum(-1)


def kshot_counts(
    logits: torch.Tensor, y: torch.Tensor, shots: list[int] | tuple[int, ...]
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Per-episode (correct, count) at each k in ``shots``.

    logits: (B, T, k), y: (B, T) -> {k: (correct (B,), count (B,))}
    """
    pred = logits.argmax(-1)
    correct = (pred == y)
    idx = shot_indices(y)
    out = {}
    for k in shots:
        mask = idx == k
        out[k] = ((correct & mask).sum(1), mask.sum(1))
    return out

"""Sinusoidal positional encoding γ of NeRF (thesis Sec. 4.3.3, App. B.1).

HyperFields feeds the MLP both hash-grid features and γ(x) "to combat the known spectral bias
of neural networks". With frequencies 2^0..2^(K-1):

    γ(x) = [x, sin(2^0 π x), cos(2^0 π x), ..., sin(2^(K-1) π x), cos(2^(K-1) π x)]

applied per coordinate to points scaled to [-1, 1] (x / bound); the leading x is optional.
The π follows the NeRF paper (its released code leaves it out).

    enc = SinusoidalEncoding(n_frequencies=6)
    feats = enc(points / bound)          # (N, 3) -> (N, 3 + 36)
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_encoding(x: torch.Tensor, n_frequencies: int, include_input: bool = True) -> torch.Tensor:
    """γ(x) of points (..., D): (..., D * (include_input + 2K)), frequency-major order."""
    parts = [x] if include_input else []
    if n_frequencies > 0:
        freqs = math.pi * 2.0 ** torch.arange(n_frequencies, dtype=x.dtype, device=x.device)
        scaled = x[..., None, :] * freqs[:, None]                 # (..., K, D)
        sc = torch.stack([torch.sin(scaled), torch.cos(scaled)], -2)  # (..., K, 2, D)
        parts.append(sc.flatten(-3))                              # (..., K * 2 * D)
    if not parts:
        return x.new_zeros(*x.shape[:-1], 0)
    return torch.cat(parts, -1)


class SinusoidalEncoding(nn.Module):
    """γ as a module (no parameters)."""

    def __init__(self, n_frequencies: int, include_input: bool = True, in_dim: int = 3):
        super().__init__()
        self.n_frequencies = n_frequencies
        self.include_input = include_input
        self.out_dim = in_dim * ((1 if include_input else 0) + 2 * n_frequencies)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sinusoidal_encoding(x, self.n_frequencies, self.include_input)

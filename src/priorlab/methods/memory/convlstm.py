"""Convolutional LSTM cell (thesis Sec. 2.3.3, Eq. 2.1-2.5).

The gates are computed with convolutions instead of matrix products; the term W_h * h_{t-1}
is the "adaptation in activation space" of Sec. 2.3.2. One convolution over [x_t, h_{t-1}]
produces all four gate pre-activations (equal to separate W_x * x + W_h * h convolutions).
The gate biases start at 0 except the forget gate's, ``forget_bias`` (config field of the same
name; 1 by default, the usual "remember by default" initialisation: the thesis does not state it).
"""

from __future__ import annotations

import torch
from torch import nn


class ConvLSTMCell(nn.Module):
    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3,
                 forget_bias: float = 1.0):
        super().__init__()
        self.hidden_channels = hidden_channels
        self.conv = nn.Conv2d(
            in_channels + hidden_channels, 4 * hidden_channels, kernel_size,
            padding=kernel_size // 2,
        )
        with torch.no_grad():
            self.conv.bias.zero_()
            self.conv.bias[hidden_channels:2 * hidden_channels].fill_(forget_bias)  # gates i, f, o, g

    def initial_state(self, batch: int, size: int, like: torch.Tensor,
                      memory_format: torch.memory_format = torch.contiguous_format):
        zeros = like.new_zeros(batch, self.hidden_channels, size, size).contiguous(
            memory_format=memory_format)
        return zeros, zeros

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state                                   # (B, C_h, H, W) each
        gates = self.conv(torch.cat([x, h], dim=1))    # (B, 4 C_h, H, W)
        i, f, o, g = gates.chunk(4, dim=1)
        i, f, o = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)  # Eq. 2.1-2.3
        c = f * c + i * torch.tanh(g)                  # Eq. 2.4
        h = o * torch.tanh(c)                          # Eq. 2.5
        return h, c

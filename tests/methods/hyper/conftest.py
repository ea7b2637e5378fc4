"""Shared test data for the hypernetwork tests."""

import pytest
import torch


def prototype_batches(n=64, batch=16, seed=0):
    """A learnable 4-class toy problem: noisy copies of 4 random 16x16 prototypes, in batches."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.rand(4, 1, 16, 16, generator=g)
    y = torch.arange(n) % 4
    x = (protos[y] + 0.2 * torch.rand(n, 1, 16, 16, generator=g)).clamp(0, 1)
    return [(x[i:i + batch], y[i:i + batch]) for i in range(0, n, batch)]


@pytest.fixture
def loader():
    """``loader(n=64, batch=16, seed=0)``: see :func:`prototype_batches`."""
    return prototype_batches

import logging
import math
import types

import pytest
import torch
from torch import nn

from priorlab.methods.fields import hashgrid
from priorlab.methods.fields.config import FieldConfig
from priorlab.methods.fields.hashgrid import (TcnnHashGrid, TorchHashGrid, build_hash_grid,
                                              level_resolutions, tcnn_encoding_config)


def tiny_grid(dtype=torch.float64):
    # level 0: 3^3 = 27 vertices <= 64 entries (dense); level 1: 9^3 = 729 > 64 (hashed)
    return TorchHashGrid(n_levels=2, features_per_level=2, log2_hashmap_size=6,
                         base_resolution=2, finest_resolution=8, bound=1.0, dtype=dtype)


def test_level_resolutions_follow_the_instant_ngp_formula():
    res = level_resolutions(16, 16, 2048)
    b = 2.0 ** (7 / 15)                                       # (2048 / 16) ** (1 / 15)
    assert res[0] == 16 and res[-1] == 2048
    for level, r in enumerate(res):
        assert abs(r - math.floor(16 * b ** level + 1e-9)) == 0
    assert all(a < b_ for a, b_ in zip(res, res[1:]))
    cfg = FieldConfig()
    assert math.isclose(cfg.per_level_scale, b, rel_tol=1e-12)
    assert TorchHashGrid.from_config(FieldConfig(n_levels=4, log2_hashmap_size=8)).resolutions == \
        level_resolutions(4, 16, 2048)


def test_coarse_level_is_dense_and_collision_free_fine_level_hashes_into_the_table():
    grid = TorchHashGrid(n_levels=2, features_per_level=2, log2_hashmap_size=10,
                         base_resolution=4, finest_resolution=64)
    assert grid.dense == [True, False]
    assert grid.sizes == [125, 1024] and grid.embeddings.shape == (125 + 1024, 2)
    r = torch.arange(5)
    coarse = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)   # (125, 3)
    rows = grid.level_index(0, coarse)
    assert sorted(rows.tolist()) == list(range(125))           # a bijection: no collisions
    r = torch.arange(65)
    fine = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)     # 65^3 > 1024
    rows = grid.level_index(1, fine)
    assert rows.min() >= 0 and rows.max() < 1024
    assert len(set(rows.tolist())) > 1000                      # the hash spreads over the table
    # Instant-NGP's hash in uint32 arithmetic, computed independently
    for i, j, k in [(0, 0, 0), (1, 2, 3), (64, 7, 33), (17, 64, 64)]:
        h = ((i * 1) ^ (j * 2654435761) ^ (k * 805459861)) % 2 ** 32 % 1024
        assert grid.level_index(1, torch.tensor([i, j, k])).item() == h


def test_init_range_and_output_shape():
    grid = tiny_grid(torch.float32)
    assert grid.embeddings.abs().max() <= 1e-4
    out = grid(torch.rand(4, 5, 3) * 2 - 1)
    assert out.shape == (4, 5, 4) and out.dtype == torch.float32


def test_interpolation_hits_vertices_and_reproduces_linear_functions():
    grid = tiny_grid()
    res = grid.resolutions[0]
    r = torch.arange(res + 1)
    verts = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    with torch.no_grad():                                       # level 0 feature 0 := 2i - j + 3k
        grid.embeddings[grid.level_index(0, verts), 0] = (2 * verts[:, 0] - verts[:, 1] + 3 * verts[:, 2]).double()
    x = torch.rand(50, 3, dtype=torch.float64) * 2 - 1
    u = (x + 1) / 2 * res                                       # continuous vertex coordinates
    expected = 2 * u[:, 0] - u[:, 1] + 3 * u[:, 2]
    assert torch.allclose(grid(x)[:, 0], expected, atol=1e-10)


def test_gradcheck_wrt_table_and_points():
    torch.manual_seed(0)
    grid = tiny_grid()
    table = torch.randn_like(grid.embeddings).requires_grad_(True)
    x = (torch.rand(6, 3, dtype=torch.float64) * 1.6 - 0.8).requires_grad_(True)

    def f(points, emb):
        return torch.func.functional_call(grid, {"embeddings": emb}, (points,))

    assert torch.autograd.gradcheck(f, (x, table), eps=1e-6, atol=1e-5)


def test_tcnn_config_translation():
    cfg = FieldConfig(n_levels=8, features_per_level=4, log2_hashmap_size=15, base_resolution=8,
                      finest_resolution=512)
    assert tcnn_encoding_config(cfg) == {
        "otype": "HashGrid", "n_levels": 8, "n_features_per_level": 4, "log2_hashmap_size": 15,
        "base_resolution": 8, "per_level_scale": pytest.approx((512 / 8) ** (1 / 7))}


def test_auto_falls_back_to_torch_and_explicit_tcnn_says_how_to_install(monkeypatch, caplog):
    monkeypatch.setattr(hashgrid, "_import_tinycudann", lambda: None)
    cfg = FieldConfig(n_levels=2, log2_hashmap_size=8, backend="auto")
    with caplog.at_level(logging.INFO, logger=hashgrid.__name__):
        grid = build_hash_grid(cfg)
    assert isinstance(grid, TorchHashGrid)
    assert "auto -> torch" in caplog.text and "not importable" in caplog.text
    with pytest.raises(RuntimeError, match="tiny-cuda-nn/#subdirectory=bindings/torch"):
        build_hash_grid(FieldConfig(n_levels=2, log2_hashmap_size=8, backend="tcnn"))
    assert isinstance(build_hash_grid(FieldConfig(n_levels=2, log2_hashmap_size=8, backend="torch")),
                      TorchHashGrid)


class _FakeEncoding(nn.Module):
    seen_config = None

    def __init__(self, n_input_dims, encoding_config):
        super().__init__()
        _FakeEncoding.seen_config = encoding_config
        self.n_out = encoding_config["n_levels"] * encoding_config["n_features_per_level"]

    def forward(self, x):                                       # tcnn returns half precision
        return x[:, :1].repeat(1, self.n_out).half()


def test_tcnn_needs_cuda_and_is_used_when_it_can_run(monkeypatch):
    monkeypatch.setattr(hashgrid, "_import_tinycudann", lambda: types.SimpleNamespace(Encoding=_FakeEncoding))
    cfg = FieldConfig(n_levels=2, log2_hashmap_size=8, backend="tcnn", bound=2.0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA"):
        build_hash_grid(cfg)
    assert isinstance(build_hash_grid(FieldConfig(n_levels=2, log2_hashmap_size=8)), TorchHashGrid)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    grid = build_hash_grid(cfg)
    assert isinstance(grid, TcnnHashGrid)
    assert _FakeEncoding.seen_config == tcnn_encoding_config(cfg)
    out = grid(torch.tensor([[[-2.0, 0.0, 0.0], [1.0, 0.0, 0.0]]]))   # mapped into [0, 1]
    assert out.shape == (1, 2, 4) and out.dtype == torch.float32
    assert torch.allclose(out[0, :, 0], torch.tensor([0.0, 0.75]))


def test_forward_gathers_the_rows_level_index_names_with_trilinear_weights():
    """forward builds each corner's row and weight per axis; it must equal the direct form:
    rows from level_index on the 8 vertices, weights the product over axes."""
    grid = TorchHashGrid(4, 2, 8, 4, 64, 1.0)             # coarse levels dense, fine ones hashed
    assert grid.dense[0] and not grid.dense[-1]
    with torch.no_grad():
        grid.embeddings.uniform_(-1, 1)
    x = torch.rand(500, 3, generator=torch.Generator().manual_seed(0)) * 2.2 - 1.1
    unit = ((x + 1.0) / 2.0).clamp(0.0, 1.0)
    outs = []
    for level, res in enumerate(grid.resolutions):
        pos = unit * res
        cell = pos.floor().clamp(max=res - 1)
        frac = pos - cell
        vertices = cell.long()[:, None, :] + grid.corners                 # (N, 8, 3)
        rows = grid.level_index(level, vertices) + grid.offsets[level]
        w = torch.where(grid.corners.bool(), frac[:, None, :], 1.0 - frac[:, None, :]).prod(-1)
        outs.append((w[..., None] * grid.embeddings[rows]).sum(1))
    with torch.no_grad():
        assert torch.equal(grid(x), torch.cat(outs, -1))

"""The occupancy grid: exact empty-space skipping, updates that follow the field, persistence."""

import pytest
import torch

from priorlab.data.scenes import parse_scene
from priorlab.methods.fields.config import FieldConfig
from priorlab.methods.fields.field import NeRFField
from priorlab.methods.fields.occupancy import (cell_index, cell_points, occupied, sigma_threshold,
                                               sphere_cells, update_occupancy)
from priorlab.methods.fields.renderer import render_image
from priorlab.methods.fields.teacher import TeacherConfig, fit_reconstruction
from priorlab.methods.fields.views import sample_cameras

SMALL = dict(n_levels=4, log2_hashmap_size=10, finest_resolution=64, n_samples=32)


class BallField(NeRFField):
    """A NeRFField whose own density is an analytic ball (radius ``radius``, σ = ``value``)."""

    radius, value, centre = 0.3, 50.0, (0.0, 0.0, 0.0)

    def forward(self, points, mlp_params=None, *, apply_occupancy=True):
        out = super().forward(points, mlp_params, apply_occupancy=apply_occupancy)
        offset = points - torch.tensor(self.centre, dtype=points.dtype)
        ball = (offset.norm(dim=-1) <= self.radius).to(points.dtype) * self.value
        if apply_occupancy:
            ball = ball * occupied(points, self.occupancy, self.cfg.bound)
        return {"sigma": ball, "rgb": out["rgb"]}


def test_cells_index_points_and_clamp_at_the_border():
    pts = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [-0.99, 0.99, 0.1]])
    idx = cell_index(pts, 4, 1.0)
    assert idx.tolist() == [0, 63, (2 * 4 + 2) * 4 + 2, (0 * 4 + 3) * 4 + 2]
    centres = cell_points(4, 1.0, jitter=False)
    assert torch.equal(cell_index(centres, 4, 1.0), torch.arange(64))  # flat order
    assert sigma_threshold(0.01, 1.0, 50) == pytest.approx(-torch.log1p(torch.tensor(-0.01)).item() * 25)


def test_a_fresh_grid_holds_exactly_the_cells_that_reach_into_the_bounding_sphere():
    grid = sphere_cells(8, 1.0)
    centres = cell_points(8, 1.0, jitter=False)
    dense = torch.rand(200_000, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    inside = dense[dense.norm(dim=-1) <= 1.0]
    hit = torch.zeros(8 ** 3, dtype=torch.bool)
    hit[cell_index(inside, 8, 1.0)] = True
    assert torch.equal(grid.reshape(-1), hit)                   # sampled sphere points' cells
    assert not bool(occupied(torch.tensor([[-0.99, -0.99, -0.99]]), grid, 1.0))   # a corner
    assert bool(grid.reshape(-1)[cell_index(centres, 8, 1.0)].any())


def test_update_marks_the_ball_occupied_and_far_space_empty():
    field = BallField(FieldConfig(**SMALL, occupancy_resolution=16))
    assert torch.equal(field.occupancy, sphere_cells(16, 1.0))  # a fresh grid: the sphere's cells
    frac = update_occupancy(field, decay=0.8, alpha=0.01, n_samples=32,
                            generator=torch.Generator().manual_seed(0))
    assert 0.0 < frac < 0.1
    inside = torch.randn(4000, 3, generator=torch.Generator().manual_seed(1))
    inside = inside / inside.norm(dim=-1, keepdim=True) * 0.3 * torch.rand(4000, 1) ** (1 / 3)
    assert bool(occupied(inside, field.occupancy, 1.0).all())   # no part of the ball is culled
    far = torch.tensor([[0.9, 0.0, 0.0], [0.0, -0.8, 0.0], [0.6, 0.6, 0.0]])
    assert not occupied(far, field.occupancy, 1.0).any()


def test_culled_density_decays_away_and_new_density_is_found_by_the_next_update():
    field = BallField(FieldConfig(**SMALL, occupancy_resolution=8))
    g = torch.Generator().manual_seed(0)
    update_occupancy(field, decay=0.5, alpha=0.01, n_samples=32, generator=g)
    old, new = torch.tensor([[-0.1, 0.0, 0.0]]), torch.tensor([[0.6, 0.0, 0.0]])
    assert bool(occupied(old, field.occupancy, 1.0)) and not bool(occupied(new, field.occupancy, 1.0))
    field.radius, field.centre = 0.2, (0.6, 0.0, 0.0)           # the ball moves
    update_occupancy(field, decay=0.5, alpha=0.01, n_samples=32, generator=g)
    assert bool(occupied(new, field.occupancy, 1.0))            # found at once
    assert bool(occupied(old, field.occupancy, 1.0))            # remembered for a while ...
    for _ in range(12):                                         # 50 * 0.5^12 < 0.3 (σ_min)
        update_occupancy(field, decay=0.5, alpha=0.01, n_samples=32, generator=g)
    assert not bool(occupied(old, field.occupancy, 1.0))        # ... then culled
    assert bool(occupied(new, field.occupancy, 1.0))


def test_skipping_empty_cells_renders_exactly_what_evaluating_every_sample_renders():
    torch.manual_seed(0)
    cfg = FieldConfig(**SMALL, occupancy_resolution=16)
    field = NeRFField(cfg)
    g = torch.Generator().manual_seed(0)
    update_occupancy(field, decay=0.8, alpha=0.01, n_samples=32, generator=g)
    field.occupancy[:8] = False                                 # half the cube empty for sure
    cams = sample_cameras(2, generator=torch.Generator().manual_seed(3))
    calls = []

    def counting(points):
        calls.append(points.shape[0])
        return field(points)

    full = render_image(counting, cams.c2w, 16, 16, cams.fov, cfg)
    n_full = sum(calls)
    calls.clear()
    skipped = render_image(counting, cams.c2w, 16, 16, cams.fov, cfg, occupancy=field.occupancy)
    assert sum(calls) < 0.9 * n_full                            # fewer samples evaluated ...
    for key in ("rgb", "opacity", "depth", "weights"):          # ... and the same image
        torch.testing.assert_close(skipped[key], full[key], rtol=0, atol=1e-6)


def test_gradients_flow_through_the_kept_samples_only():
    torch.manual_seed(0)
    cfg = FieldConfig(**SMALL, occupancy_resolution=8)
    field = NeRFField(cfg)
    field.occupancy.zero_()
    cams = sample_cameras(1, generator=torch.Generator().manual_seed(0))
    out = render_image(field, cams.c2w, 8, 8, cams.fov, cfg, occupancy=field.occupancy)
    assert float(out["opacity"].detach().abs().max()) == 0.0    # all empty: pure background
    field.occupancy.fill_(True)
    out = render_image(field, cams.c2w, 8, 8, cams.fov, cfg, occupancy=field.occupancy)
    out["rgb"].sum().backward()
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in field.grid.parameters())


def test_the_grid_is_part_of_the_saved_field():
    cfg = FieldConfig(**SMALL, occupancy_resolution=8)
    field = NeRFField(cfg)
    update_occupancy(field, decay=0.8, alpha=0.01, n_samples=32)
    field.occupancy[0] = False
    state = field.state_dict()
    assert {"occupancy", "occupancy_density"} <= set(state)
    loaded = NeRFField(cfg)
    loaded.load_state_dict(state, strict=True)
    assert torch.equal(loaded.occupancy, field.occupancy)
    with pytest.raises(RuntimeError, match="occupancy"):        # a grid-less config refuses it
        NeRFField(FieldConfig(**SMALL)).load_state_dict(state, strict=True)
    with pytest.raises(ValueError, match="occupancy_resolution"):
        update_occupancy(NeRFField(FieldConfig(**SMALL)), decay=0.8, alpha=0.01, n_samples=32)


def test_a_teacher_with_the_grid_fits_a_scene_and_culls_empty_space():
    torch.set_num_threads(2)
    cfg = TeacherConfig(image_size=32, steps=100, eval_every=100, n_levels=8, log2_hashmap_size=14,
                        finest_resolution=128, n_samples=32, rays_per_step=512, n_train_views=16,
                        n_test_views=4, occupancy_resolution=16, occupancy_every=8)
    result = fit_reconstruction(parse_scene("a red sphere"), cfg)
    assert result.metrics["eval/psnr"] >= 24.0
    assert float(result.field.occupancy.float().mean()) < 0.6   # most of the cube is culled

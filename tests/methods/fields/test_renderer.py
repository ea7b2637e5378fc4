import math

import torch

from priorlab.methods.fields.cameras import get_rays, look_at, pose_spherical, sphere_near_far
from priorlab.methods.fields.config import FieldConfig
from priorlab.methods.fields.field import NeRFField
from priorlab.methods.fields.renderer import render_image, render_rays, stratified_samples

RED = torch.tensor([1.0, 0.0, 0.0])


class ConstantSphere:
    """σ = density inside the ball of ``radius`` at the origin, 0 outside; red everywhere."""

    def __init__(self, density, radius):
        self.density, self.radius = density, radius

    def __call__(self, points):
        inside = points.norm(dim=-1) <= self.radius
        return {"sigma": torch.where(inside, self.density, 0.0), "rgb": RED.expand(*points.shape[:-1], 3)}


class OpaqueSlab:
    """σ = density where z <= plane (within the bounding sphere): an opaque wall facing +z."""

    def __init__(self, plane, density=1e4):
        self.plane, self.density = plane, density

    def __call__(self, points):
        sigma = torch.where(points[..., 2] <= self.plane, self.density, 0.0)
        return {"sigma": sigma, "rgb": torch.full((*points.shape[:-1], 3), 0.3)}


def test_constant_density_sphere_gives_the_analytic_opacity():
    density, rho, n = 2.0, 0.6, 128
    cfg = FieldConfig(n_samples=n, background=[0.0, 0.0, 1.0])
    offsets = torch.tensor([0.0, 0.2, 0.45, 0.59, 0.8, 1.2])           # the last misses the bound
    origins = torch.stack([torch.zeros(6), offsets, torch.full((6,), 3.0)], -1)
    dirs = torch.tensor([0.0, 0.0, -1.0]).expand(6, 3)
    chord = 2 * torch.sqrt((rho ** 2 - offsets ** 2).clamp_min(0))
    expected = 1 - torch.exp(-density * chord)
    near, far, _ = sphere_near_far(origins, dirs, radius=cfg.bound)
    delta = (far - near) / n
    field = ConstantSphere(density, rho)
    for training, slack in ((False, 1.0), (True, 2.0)):               # jitter: intervals up to 2 strata
        out = render_rays(field, origins, dirs, cfg, training=training,
                          generator=torch.Generator().manual_seed(0))
        # each sphere boundary shifts the optical depth τ by at most one interval's σδ, and
        # d(1 - e^-τ)/dτ = e^-τ
        dtau = slack * 2 * density * delta
        tol = dtau * torch.exp(-(density * chord - dtau)).clamp(max=1.0) + 1e-6
        assert ((out["opacity"] - expected).abs() <= tol).all()
        assert torch.allclose(out["rgb"], out["opacity"][:, None] * RED
                              + (1 - out["opacity"])[:, None] * torch.tensor([0.0, 0.0, 1.0]), atol=1e-6)
        assert torch.allclose(out["weights"].sum(-1), out["opacity"])
    assert out["opacity"][-2:].abs().max() == 0 and out["depth"][-1] == 0   # rays through nothing
    # more samples, closer to the truth
    fine = render_rays(field, origins, dirs, FieldConfig(n_samples=1024))
    assert (fine["opacity"] - expected).abs().max() < (out["opacity"] - expected).abs().max() + 1e-6
    assert (fine["opacity"] - expected).abs().max() < 3e-3


def test_depth_of_an_opaque_plane_is_recovered():
    cfg = FieldConfig(n_samples=64)
    plane = 0.25
    c2w = look_at(torch.tensor([0.6, 0.8, 3.0]))
    out = render_image(OpaqueSlab(plane), c2w, 12, 12, 40.0, cfg, chunk=50)
    o, d = get_rays(c2w, 12, 12, 40.0)
    true_t = (o[..., 2] - plane) / -d[..., 2]                          # ray-plane distance
    hit_point = o + true_t[..., None] * d
    visible = hit_point.norm(dim=-1) < 0.95                            # the wall lies inside the sphere there
    assert visible.sum() > 20
    near, far, _ = sphere_near_far(o, d, radius=cfg.bound)
    delta = (far - near) / cfg.n_samples
    assert (out["opacity"][visible] > 0.999).all()
    assert ((out["depth"] - true_t).abs()[visible] <= delta[visible]).all()
    assert torch.allclose(out["rgb"][visible], torch.full_like(out["rgb"][visible], 0.3), atol=1e-3)


def test_strata_and_intervals():
    near, far = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 2.0])    # the second ray is empty
    t, deltas = stratified_samples(near, far, 8, perturb=True, generator=torch.Generator().manual_seed(1))
    lo = near[:, None] + (far - near)[:, None] * torch.arange(8) / 8
    hi = near[:, None] + (far - near)[:, None] * (torch.arange(8) + 1) / 8
    assert ((t >= lo) & (t <= hi)).all()
    assert torch.allclose(deltas.sum(-1), far - near) and (deltas >= 0).all()
    t, deltas = stratified_samples(near, far, 8)
    assert torch.allclose(deltas[0], torch.full((8,), 0.25))


def test_chunked_image_equals_one_call_and_nerf_field_trains_on_cpu():
    torch.manual_seed(0)
    cfg = FieldConfig(n_levels=4, log2_hashmap_size=10, base_resolution=4, finest_resolution=32,
                      n_frequencies=2, hidden=16, n_samples=16, backend="torch")
    field = NeRFField(cfg)
    c2w = pose_spherical(torch.tensor([20.0, -5.0]), torch.tensor([30.0, 200.0]), torch.tensor([3.0, 2.5]))
    fov = torch.tensor([40.0, 45.0])
    whole = render_image(field, c2w, 8, 8, fov, cfg, chunk=10_000)
    parts = render_image(field, c2w, 8, 8, fov, cfg, chunk=37)
    assert whole["rgb"].shape == (2, 8, 8, 3) and whole["weights"].shape == (2, 8, 8, 16)
    for k in whole:
        assert torch.allclose(whole[k], parts[k], atol=1e-5), k
    assert ((whole["rgb"] >= 0) & (whole["rgb"] <= 1)).all()
    # one training step: gradients reach the hash table and every MLP layer
    out = render_image(field, c2w, 8, 8, fov, cfg, training=True, generator=torch.Generator().manual_seed(0))
    loss = (out["rgb"] - 0.2).square().mean()
    loss.backward()
    assert field.grid.embeddings.grad.abs().sum() > 0
    assert all(p.grad.abs().sum() > 0 for p in field.mlp.parameters())
    assert math.isfinite(loss.item())

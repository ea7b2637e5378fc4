"""Cameras and rays shared by the NeRF renderer and the analytic scene renderer (thesis Ch. 4).

One convention everywhere (OpenGL / NeRF-synthetic): world y is up; a camera-to-world matrix
``c2w`` (4x4) has the camera's right, up and backward axes as its first three columns and its
position as the fourth; the camera looks down its own -z. Spherical poses follow DreamFusion's
sampler (Sec. 4.3 trains teachers from random views around the object): ``elevation`` in
degrees above the horizontal plane, ``azimuth`` in degrees about the y axis with 0 = the front
view (camera on +z looking at the origin), ``radius`` the distance to the origin.

    c2w = pose_spherical(torch.tensor([20.0]), torch.tensor([45.0]), torch.tensor([3.0]))
    origins, dirs = get_rays(c2w, height=64, width=64, fov_deg=40.0)   # (1, 64, 64, 3) each

Pixel (i, j) is row i from the top, column j from the left; its ray passes through the pixel
centre. ``dirs`` are unit vectors.
"""

from __future__ import annotations

import math

import torch


def look_at(eye: torch.Tensor, target: torch.Tensor | None = None,
            up: torch.Tensor | None = None) -> torch.Tensor:
    """Camera-to-world matrices (..., 4, 4) of cameras at ``eye`` (..., 3) looking at ``target``.

    ``up`` defaults to world +y; a camera looking straight up or down uses +z as its up hint
    instead (the cross product with +y would vanish there).
    """
    eye = torch.as_tensor(eye, dtype=torch.float32)
    target = torch.zeros_like(eye) if target is None else torch.as_tensor(target, dtype=eye.dtype).expand_as(eye)
    forward = target - eye
    forward = forward / forward.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    if up is None:
        up = eye.new_tensor([0.0, 1.0, 0.0]).expand_as(eye)
    else:
        up = torch.as_tensor(up, dtype=eye.dtype).expand_as(eye)
    parallel = (torch.linalg.cross(forward, up).norm(dim=-1, keepdim=True) < 1e-6)
    up = torch.where(parallel, eye.new_tensor([0.0, 0.0, 1.0]).expand_as(eye), up)
    right = torch.linalg.cross(forward, up)
    right = right / right.norm(dim=-1, keepdim=True)
    true_up = torch.linalg.cross(right, forward)
    c2w = torch.zeros(*eye.shape[:-1], 4, 4, dtype=eye.dtype)
    c2w[..., :3, 0] = right
    c2w[..., :3, 1] = true_up
    c2w[..., :3, 2] = -forward                       # the camera looks down its -z
    c2w[..., :3, 3] = eye
    c2w[..., 3, 3] = 1.0
    return c2w


def spherical_to_position(elevation_deg: torch.Tensor, azimuth_deg: torch.Tensor,
                          radius: torch.Tensor) -> torch.Tensor:
    """Points (..., 3) at the given elevation / azimuth (degrees) and radius."""
    el = torch.deg2rad(torch.as_tensor(elevation_deg, dtype=torch.float32))
    az = torch.deg2rad(torch.as_tensor(azimuth_deg, dtype=torch.float32))
    r = torch.as_tensor(radius, dtype=torch.float32)
    el, az, r = torch.broadcast_tensors(el, az, r)
    return torch.stack([r * torch.cos(el) * torch.sin(az), r * torch.sin(el),
                        r * torch.cos(el) * torch.cos(az)], -1)


def pose_spherical(elevation_deg: torch.Tensor, azimuth_deg: torch.Tensor,
                   radius: torch.Tensor) -> torch.Tensor:
    """Camera-to-world matrices (..., 4, 4) of cameras on a sphere looking at the origin."""
    return look_at(spherical_to_position(elevation_deg, azimuth_deg, radius))


def focal_from_fov(fov_deg: float | torch.Tensor, size: int) -> torch.Tensor:
    """Focal length in pixels for a field of view (degrees) across ``size`` pixels."""
    fov = torch.deg2rad(torch.as_tensor(fov_deg, dtype=torch.float32))
    return 0.5 * size / torch.tan(0.5 * fov)


def get_rays(c2w: torch.Tensor, height: int, width: int,
             fov_deg: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Ray origins and unit directions, each (B, H, W, 3), of pinhole cameras ``c2w`` (B, 4, 4).

    ``fov_deg`` is the vertical field of view: a float or a (B,) tensor (one per camera).
    """
    if c2w.dim() == 2:
        c2w = c2w[None]
    b = c2w.shape[0]
    focal = focal_from_fov(fov_deg, height).to(c2w).reshape(-1, 1, 1).expand(b, 1, 1)  # (B, 1, 1)
    i, j = torch.meshgrid(torch.arange(height, dtype=c2w.dtype, device=c2w.device),
                          torch.arange(width, dtype=c2w.dtype, device=c2w.device), indexing="ij")
    x = (j + 0.5 - 0.5 * width)[None] / focal                      # (B, H, W), right
    y = -(i + 0.5 - 0.5 * height)[None] / focal                    # up (rows grow downwards)
    d_cam = torch.stack([x, y, -torch.ones_like(x)], -1)           # (B, H, W, 3)
    dirs = torch.einsum("bhwk,bjk->bhwj", d_cam, c2w[:, :3, :3])
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    origins = c2w[:, None, None, :3, 3].expand_as(dirs)
    return origins, dirs


def sphere_near_far(origins: torch.Tensor, dirs: torch.Tensor, radius: float = 1.0,
                    min_near: float = 0.05) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where rays (..., 3) enter and leave the origin-centred sphere of ``radius``.

    Returns (near, far, hit), each (...,): ``hit`` is False for rays that miss the sphere (their
    near = far = the closest approach, so they sample nothing). ``near`` is at least
    ``min_near`` (a camera inside the sphere starts in front of itself).
    """
    b = (origins * dirs).sum(-1)                                   # dirs are unit vectors
    c = (origins * origins).sum(-1) - radius ** 2
    disc = b * b - c
    hit = disc > 0
    root = torch.sqrt(disc.clamp_min(0.0))
    near = (-b - root).clamp_min(min_near)
    far = torch.maximum(-b + root, near)
    closest = (-b).clamp_min(min_near)
    return torch.where(hit, near, closest), torch.where(hit, far, closest), hit


def fov_for_radius(object_radius: float, distance: float, margin: float = 1.1) -> float:
    """Vertical field of view (degrees) that frames a sphere of ``object_radius`` at ``distance``."""
    return math.degrees(2 * math.asin(min(1.0, margin * object_radius / distance)))

import math

import torch

from priorlab.methods.fields.cameras import (fov_for_radius, get_rays, look_at, pose_spherical,
                                             sphere_near_far, spherical_to_position)


def test_pose_is_a_rigid_frame_looking_at_the_origin():
    el = torch.tensor([0.0, 30.0, -20.0, 89.0, 90.0])
    az = torch.tensor([0.0, 45.0, 200.0, 10.0, 0.0])
    c2w = pose_spherical(el, az, torch.full((5,), 3.0))
    rot = c2w[:, :3, :3]
    assert torch.allclose(rot.transpose(1, 2) @ rot, torch.eye(3).expand(5, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(5), atol=1e-5)  # right-handed
    eye = c2w[:, :3, 3]
    assert torch.allclose(eye.norm(dim=-1), torch.full((5,), 3.0), atol=1e-5)
    # -z of the camera points from the eye to the origin
    assert torch.allclose(-c2w[:, :3, 2], -eye / 3.0, atol=1e-5)


def test_front_view_sits_on_plus_z_and_elevation_raises_the_camera():
    assert torch.allclose(spherical_to_position(0.0, 0.0, 2.0), torch.tensor([0.0, 0.0, 2.0]), atol=1e-6)
    assert torch.allclose(spherical_to_position(0.0, 90.0, 2.0), torch.tensor([2.0, 0.0, 0.0]), atol=1e-6)
    assert spherical_to_position(30.0, 0.0, 2.0)[1] > 0


def test_centre_ray_hits_the_target_and_corners_span_the_fov():
    c2w = look_at(torch.tensor([0.0, 0.0, 4.0]))
    o, d = get_rays(c2w, 5, 5, 60.0)
    assert o.shape == d.shape == (1, 5, 5, 3)
    assert torch.allclose(d[0, 2, 2], torch.tensor([0.0, 0.0, -1.0]), atol=1e-6)
    assert torch.allclose(d.norm(dim=-1), torch.ones(1, 5, 5), atol=1e-6)
    # top row looks up, left column looks left
    assert d[0, 0, 2, 1] > 0 and d[0, 2, 0, 0] < 0
    # the vertical extent of the image is the field of view (pixel centres: half a pixel in)
    focal = 0.5 * 5 / math.tan(math.radians(30))
    assert math.isclose(float(d[0, 0, 2, 1] / -d[0, 0, 2, 2]), 2.0 / focal, rel_tol=1e-5)


def test_near_far_of_a_bounding_sphere():
    o = torch.tensor([[0.0, 0.0, 3.0], [0.0, 2.0, 3.0]])
    d = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]])
    near, far, hit = sphere_near_far(o, d, radius=1.0)
    assert hit.tolist() == [True, False]
    assert torch.allclose(near[0], torch.tensor(2.0)) and torch.allclose(far[0], torch.tensor(4.0))
    assert near[1] == far[1]


def test_fov_for_radius_frames_the_sphere():
    fov = fov_for_radius(1.0, 3.0, margin=1.0)
    assert math.isclose(math.sin(math.radians(fov / 2)) * 3.0, 1.0, rel_tol=1e-9)

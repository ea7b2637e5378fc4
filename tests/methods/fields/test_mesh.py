"""Mesh export: marching cubes finds a ball where it is, faces point out, PLY round-trips atomically."""

import numpy as np
import pytest
import torch

from priorlab.methods.fields import mesh as mesh_module
from priorlab.methods.fields.config import FieldConfig
from priorlab.methods.fields.field import NeRFField
from priorlab.methods.fields.mesh import (DEFAULT_THRESHOLD, Mesh, MeshError, extract_mesh,
                                          read_ply, threshold_for_opacity, write_ply)

RADIUS = 0.5


def ball(points, centre=(0.0, 0.0, 0.0)):
    """σ = 100 inside a ball of radius 0.5, 0 outside; constant red."""
    offset = points - torch.tensor(centre, dtype=points.dtype)
    sigma = (offset.norm(dim=-1) <= RADIUS).to(points.dtype) * 100.0
    rgb = torch.tensor([1.0, 0.0, 0.0], dtype=points.dtype).expand(*points.shape[:-1], 3)
    return {"sigma": sigma, "rgb": rgb}


def face_normals_and_centroids(m):
    a, b, c = (m.vertices[m.faces[:, i]].astype(np.float64) for i in range(3))
    return np.cross(b - a, c - a), (a + b + c) / 3


def test_a_ball_becomes_a_closed_outward_red_sphere_in_world_units():
    bound, resolution = 1.0, 32
    m = extract_mesh(ball, bound=bound, resolution=resolution, chunk=5000)  # several chunks
    assert m.vertices.dtype == np.float32 and m.faces.dtype == np.int64
    assert m.colours.dtype == np.uint8 and len(m.faces) > 100
    cell = 2 * bound / (resolution - 1)
    r = np.linalg.norm(m.vertices, axis=-1)
    assert np.abs(r - RADIUS).max() < cell                     # on the sphere, within one cell
    assert np.abs(m.vertices.mean(0)).max() < 0.1 * cell        # centred: no half-cell offset
    normals, centroids = face_normals_and_centroids(m)
    assert (np.sum(normals * centroids, -1) > 0).all()          # every face points outwards
    assert (m.colours == [255, 0, 0]).all()
    edges = np.sort(np.concatenate([m.faces[:, [0, 1]], m.faces[:, [1, 2]], m.faces[:, [2, 0]]]), 1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert (counts == 2).all()                                  # closed: each edge in two faces


def test_an_off_centre_ball_lands_where_it_is():
    centre = (0.3, -0.2, 0.1)
    m = extract_mesh(lambda p: ball(p, centre), bound=1.0, resolution=24)
    cell = 2.0 / 23
    r = np.linalg.norm(m.vertices - np.array(centre, dtype=np.float32), axis=-1)
    assert np.abs(r - RADIUS).max() < cell                      # axes not swapped nor flipped


def test_an_object_touching_the_grid_edge_still_gives_a_closed_surface():
    full = lambda p: {"sigma": torch.full(p.shape[:-1], 50.0), "rgb": torch.zeros(*p.shape[:-1], 3)}
    m = extract_mesh(full, bound=1.0, resolution=8)
    assert np.abs(m.vertices).max() <= 1.0 + 2.0 / 7            # at most one cell outside
    normals, centroids = face_normals_and_centroids(m)
    assert (np.sum(normals * centroids, -1) > 0).all()


def test_ply_round_trip_is_exact(tmp_path):
    m = extract_mesh(ball, bound=1.0, resolution=16)
    path = write_ply(m, tmp_path / "ball.ply")
    assert path.read_bytes().startswith(b"ply\nformat binary_little_endian 1.0\n")
    back = read_ply(path)
    assert np.array_equal(back.vertices, m.vertices) and back.vertices.dtype == np.float32
    assert np.array_equal(back.faces, m.faces) and back.faces.dtype == np.int64
    assert np.array_equal(back.colours, m.colours) and back.colours.dtype == np.uint8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ball.ply"]   # no temp file left


def test_a_failed_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "scene.ply"
    write_ply(extract_mesh(ball, bound=1.0, resolution=12), path)
    before = path.read_bytes()

    def disk_full(faces):                                       # header and vertices are out
        raise OSError("No space left on device")

    monkeypatch.setattr(mesh_module, "_face_block", disk_full)
    with pytest.raises(OSError, match="No space"):
        write_ply(extract_mesh(ball, bound=1.0, resolution=20), path)
    assert path.read_bytes() == before
    assert read_ply(path).faces.shape[1] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.ply"]


def test_an_empty_field_says_the_threshold_and_the_densities_seen():
    empty = lambda p: {"sigma": torch.zeros(p.shape[:-1]), "rgb": torch.zeros(*p.shape[:-1], 3)}
    with pytest.raises(MeshError, match=r"threshold=10\b.*ranges 0\.\.0.*empty everywhere"):
        extract_mesh(empty, resolution=8)
    with pytest.raises(MeshError, match=r"threshold=200\b.*ranges 0\.\.100.*below 100"):
        extract_mesh(ball, resolution=8, threshold=200.0)       # the ball peaks at 100


@pytest.mark.parametrize("kwargs, match", [
    (dict(resolution=7), "resolution=7"), (dict(resolution=513), "resolution=513"),
    (dict(threshold=0.0), "threshold=0"), (dict(bound=-1.0), "bound=-1"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(MeshError, match=match):
        extract_mesh(ball, **kwargs)


def test_a_field_without_sigma_is_refused():
    with pytest.raises(MeshError, match=r"no 'sigma' \(it gave \['rgb'\]\)"):
        extract_mesh(lambda p: {"rgb": torch.zeros(*p.shape[:-1], 3)}, resolution=8)
    assert isinstance(MeshError("x"), ValueError)


def test_a_tiny_nerf_field_exports_end_to_end(tmp_path):
    torch.manual_seed(0)
    field = NeRFField(FieldConfig(n_levels=2, log2_hashmap_size=8, finest_resolution=32,
                                  backend="torch"))
    m = extract_mesh(field, resolution=16, threshold=1.0)       # bound from field.cfg
    assert m.vertices.ndim == 2 and m.vertices.shape[1] == 3 and len(m.vertices) > 0
    assert m.faces.shape[1] == 3 and m.colours.shape == m.vertices.shape
    assert (m.vertices.dtype, m.faces.dtype, m.colours.dtype) == (np.float32, np.int64, np.uint8)
    assert m.faces.max() < len(m.vertices)
    assert np.abs(m.vertices).max() <= field.cfg.bound * (1 + 2 / 15)
    assert all(p.grad is None for p in field.parameters())      # queried without autograd
    back = read_ply(write_ply(m, tmp_path / "nerf.ply"))
    assert np.array_equal(back.faces, m.faces)


def test_default_threshold_is_a_density_with_a_stated_opacity():
    assert DEFAULT_THRESHOLD == 10.0
    delta = 2.0 / 64                                             # the renderer's default spacing
    assert 1 - np.exp(-DEFAULT_THRESHOLD * delta) == pytest.approx(0.268, abs=1e-3)
    assert threshold_for_opacity(0.5) == pytest.approx(np.log(2) / delta)


def test_read_ply_rejects_other_formats(tmp_path):
    ascii_ply = tmp_path / "a.ply"
    ascii_ply.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 0\nend_header\n")
    with pytest.raises(MeshError, match="ascii"):
        read_ply(ascii_ply)
    short = tmp_path / "b.ply"
    m = Mesh(np.zeros((3, 3), np.float32), np.array([[0, 1, 2]]), np.zeros((3, 3), np.uint8))
    short.write_bytes(write_ply(m, tmp_path / "c.ply").read_bytes()[:-4])
    with pytest.raises(MeshError, match="truncated"):
        read_ply(short)

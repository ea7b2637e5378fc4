"""ShapeNet part benchmark (Yi et al. 2016) as scenes with part labels (thesis Sec. 4.4.8.1).

ShapeNet is not on the test machines: every test writes a small fixture in the benchmark's
layout (``shapenetcore_partanno_segmentation_benchmark_v0_normal``) into a temp folder: a
chair (box seat, global part 12, and box back, 13), a mug (cylinder body 37 and torus
handle 36) and a custom category outside ``SEG_CLASSES`` (parts 60 and 62).
"""

import json
import math

import numpy as np
import pytest
import torch

from priorlab.data.scenes import COLOURS, VIEW_FOV_DEG, render_scene, view_cameras
from priorlab.data.shapenet import (DOWNLOAD_URL, OBJECT_RADIUS, PART_PALETTE, RADIUS_FACTOR,
                                    PartObject, ShapeNetError, ShapeNetParts, default_radius)
from priorlab.methods.fields.cameras import get_rays

CHAIR, MUG, WIDGET = "03001627", "03797390", "99999999"
# The raw frame is deliberately off-centre and scaled: normalisation must undo it.
RAW_OFFSET, RAW_SCALE = np.array([3.0, 1.0, -2.0]), 0.5
SEAT = ((0.0, 0.0, 0.0), (0.5, 0.06, 0.5))            # (centre, half extents), chair frame
BACK = ((0.0, 0.56, -0.44), (0.5, 0.5, 0.06))
SPLITS = {"train": [(CHAIR, "chair_a"), (MUG, "mug_a"), (CHAIR, "chair_b")],
          "val": [(MUG, "mug_b")],
          "test": [(CHAIR, "chair_c"), (WIDGET, "widget_a")]}


# ---- fixture: surfaces sampled uniformly at random, like scanned annotation -----------------

def box_surface(rng, centre, half, n):
    """n points uniform on a box's surface, with outward normals."""
    half = np.asarray(half, dtype=float)
    areas = np.array([half[1] * half[2], half[0] * half[2], half[0] * half[1]] * 2)
    face = rng.choice(6, size=n, p=areas / areas.sum())
    axis, sign = face % 3, np.where(face < 3, 1.0, -1.0)
    p = rng.uniform(-1, 1, size=(n, 3)) * half
    p[np.arange(n), axis] = sign * half[axis]
    normals = np.zeros((n, 3))
    normals[np.arange(n), axis] = sign
    return p + np.asarray(centre), normals


def cylinder_surface(rng, radius, half_height, n):
    """n points uniform on a capped cylinder along y, with outward normals."""
    side, cap = 2 * math.pi * radius * 2 * half_height, math.pi * radius ** 2
    on_side = rng.uniform(size=n) < side / (side + 2 * cap)
    theta = rng.uniform(0, 2 * math.pi, n)
    rho = np.where(on_side, radius, radius * np.sqrt(rng.uniform(size=n)))
    cap_y = np.where(rng.uniform(size=n) < 0.5, -half_height, half_height)
    y = np.where(on_side, rng.uniform(-half_height, half_height, n), cap_y)
    p = np.stack([rho * np.cos(theta), y, rho * np.sin(theta)], 1)
    normals = np.where(on_side[:, None], np.stack([np.cos(theta), 0 * y, np.sin(theta)], 1),
                       np.stack([0 * y, np.sign(y), 0 * y], 1))
    return p, normals


def torus_surface(rng, centre, major, minor, n):
    """n points uniform on a torus in the xy plane (a mug's handle), with outward normals."""
    u, v = np.empty(0), np.empty(0)
    while u.size < n:                           # area element ~ major + minor cos v: rejection
        uu, vv = rng.uniform(0, 2 * math.pi, (2, 4 * n))
        keep = rng.uniform(size=4 * n) * (major + minor) < major + minor * np.cos(vv)
        u, v = np.concatenate([u, uu[keep]]), np.concatenate([v, vv[keep]])
    u, v = u[:n], v[:n]
    normals = np.stack([np.cos(v) * np.cos(u), np.cos(v) * np.sin(u), np.sin(v)], 1)
    ring = np.stack([np.cos(u), np.sin(u), 0 * u], 1) * major
    return ring + minor * normals + np.asarray(centre), normals


def chair_cloud(rng, n=1500):
    (c1, h1), (c2, h2) = SEAT, BACK
    seat, n1 = box_surface(rng, c1, h1, n // 2)
    back, n2 = box_surface(rng, c2, h2, n - n // 2)
    labels = np.r_[np.full(len(seat), 12), np.full(len(back), 13)]
    return np.r_[seat, back], np.r_[n1, n2], labels


def mug_cloud(rng, n=1500):
    body, n1 = cylinder_surface(rng, 0.4, 0.5, n - n // 4)
    handle, n2 = torus_surface(rng, (0.55, 0.0, 0.0), 0.22, 0.05, 2 * (n // 4))
    outside = np.hypot(handle[:, 0], handle[:, 2]) > 0.4          # drop what the body hides
    handle, n2 = handle[outside][: n // 4], n2[outside][: n // 4]
    return np.r_[body, handle], np.r_[n1, n2], np.r_[np.full(len(body), 37), np.full(len(handle), 36)]


def widget_cloud(rng, n=300):
    a, na = box_surface(rng, (0, 0, 0), (0.3, 0.3, 0.3), n // 2)
    b, nb = box_surface(rng, (0, 0.5, 0), (0.1, 0.2, 0.1), n - n // 2)
    return np.r_[a, b], np.r_[na, nb], np.r_[np.full(len(a), 60), np.full(len(b), 62)]


def write_cloud(path, points, normals, labels):
    raw = points * RAW_SCALE + RAW_OFFSET
    path.write_text("".join(f"{x:.6f} {y:.6f} {z:.6f} {a:.6f} {b:.6f} {c:.6f} {int(l)}\n"
                            for (x, y, z), (a, b, c), l in zip(raw, normals, labels)))


@pytest.fixture
def benchmark(tmp_path):
    """The fixture benchmark folder; returns (root, {model_id: (points, normals, labels)})."""
    root = tmp_path / "shapenetcore_partanno_segmentation_benchmark_v0_normal"
    root.mkdir()
    (root / "synsetoffset2category.txt").write_text(f"Chair\t{CHAIR}\nMug\t{MUG}\nWidget\t{WIDGET}\n")
    clouds = {}
    makers = {CHAIR: chair_cloud, MUG: mug_cloud, WIDGET: widget_cloud}
    for i, (synset, model) in enumerate(m for items in SPLITS.values() for m in items):
        (root / synset).mkdir(exist_ok=True)
        clouds[model] = makers[synset](np.random.default_rng(i))
        write_cloud(root / synset / f"{model}.txt", *clouds[model])
    (root / "train_test_split").mkdir()
    for split, items in SPLITS.items():
        (root / "train_test_split" / f"shuffled_{split}_file_list.json").write_text(
            json.dumps([f"shape_data/{s}/{m}" for s, m in items]))
    return root, clouds


def normalised(raw_points):
    """The fixture's points as the loader must normalise them (written raw, then read back)."""
    raw = np.round(raw_points * RAW_SCALE + RAW_OFFSET, 6)
    centre = 0.5 * (raw.min(0) + raw.max(0))
    return (raw - centre) * (OBJECT_RADIUS / np.linalg.norm(raw - centre, axis=1).max())


# ---- listing -------------------------------------------------------------------------------

def test_each_split_lists_its_objects_in_file_order(benchmark):
    root, _ = benchmark
    for split, items in SPLITS.items():
        data = ShapeNetParts(root, split)
        assert len(data) == len(items)
        assert [(e.synset, e.model_id) for e in data.entries] == items
    names = {CHAIR: "Chair", MUG: "Mug", WIDGET: "Widget"}
    assert [e.category for e in ShapeNetParts(root, "test").entries] == [names[s] for s, _ in SPLITS["test"]]
    assert [o.model_id for o in ShapeNetParts(root, "train")] == [m for _, m in SPLITS["train"]]
    # the parent of the benchmark folder works too
    assert len(ShapeNetParts(root.parent, "val")) == 1


def test_categories_filter_by_name_or_synset(benchmark):
    root, _ = benchmark
    chairs = ShapeNetParts(root, "train", categories=["chair"])
    assert [e.model_id for e in chairs.entries] == ["chair_a", "chair_b"]
    assert [e.model_id for e in ShapeNetParts(root, "train", categories=MUG).entries] == ["mug_a"]
    assert len(ShapeNetParts(root, "val", categories=["Chair"])) == 0
    with pytest.raises(ShapeNetError, match=r"unknown ShapeNet category 'Sofa'.*Chair, Mug, Widget"):
        ShapeNetParts(root, "train", categories=["Sofa"])
    with pytest.raises(ShapeNetError, match="unknown split 'trainval'.*train, val, test"):
        ShapeNetParts(root, "trainval")


# ---- one object ----------------------------------------------------------------------------

def test_labels_are_renumbered_within_the_category(benchmark):
    root, clouds = benchmark
    data = ShapeNetParts(root, "train")
    chair, mug = data[0], data[1]
    assert chair.labels.dtype == torch.int64 and chair.num_parts == 4          # Chair: 12..15
    assert chair.part_names == ("part1", "part2", "part3", "part4")
    assert torch.equal(chair.labels, torch.as_tensor(clouds["chair_a"][2] - 11))
    assert mug.num_parts == 2                                                 # Mug: 36, 37
    assert torch.equal(mug.labels, torch.as_tensor(clouds["mug_a"][2] - 35))
    widget = ShapeNetParts(root, "test")[1]                 # not in SEG_CLASSES: parts scanned
    assert widget.num_parts == 2 and set(widget.labels.tolist()) == {1, 2}
    assert torch.equal(widget.labels, torch.as_tensor(np.where(clouds["widget_a"][2] == 60, 1, 2)))
    names = ShapeNetParts(root, "val", part_names={"mug": ("handle", "body")})[0].part_names
    assert names == ("handle", "body")
    with pytest.raises(ShapeNetError, match="has 1 names, the category has 2 parts"):
        ShapeNetParts(root, "val", part_names={"Mug": ("body",)})[0]


def test_points_are_centred_and_scaled_into_the_scene_bound(benchmark):
    root, clouds = benchmark
    for obj in ShapeNetParts(root, "train"):
        p = obj.points
        assert p.dtype == torch.float32 and p.shape == (len(clouds[obj.model_id][0]), 3)
        assert p.norm(dim=-1).max().item() == pytest.approx(OBJECT_RADIUS, abs=1e-5)
        assert torch.allclose(p.min(0).values + p.max(0).values, torch.zeros(3), atol=1e-5)
        np.testing.assert_allclose(p.numpy(), normalised(clouds[obj.model_id][0]), atol=1e-5)
        assert torch.allclose(obj.normals, torch.as_tensor(clouds[obj.model_id][1], dtype=torch.float32),
                              atol=1e-5)                         # a uniform scale keeps normals
        assert OBJECT_RADIUS + obj.radius < 1.0                 # the thickened surface fits too
        assert obj.slug == f"shapenet-{obj.category.lower()}-{obj.model_id}"
    assert ShapeNetParts(root, "train")[0].prompt == "a chair"


def test_default_radius_is_the_factor_times_the_median_spacing(benchmark):
    root, _ = benchmark
    obj = ShapeNetParts(root, "train")[0]
    p = obj.points.double().numpy()
    d = np.linalg.norm(p[:, None] - p[None], axis=-1)
    d[d == 0] = np.inf
    assert obj.radius == pytest.approx(RADIUS_FACTOR * np.median(d.min(1)), rel=1e-4)
    assert default_radius(obj.points, 1.0) == pytest.approx(obj.radius / RADIUS_FACTOR, rel=1e-6)
    fixed = ShapeNetParts(root, "train", radius=0.05)[0]
    assert fixed.radius == 0.05
    with pytest.raises(ShapeNetError, match="surface radius must be in"):
        ShapeNetParts(root, "train", radius=0.3)[0]


def test_sdf_is_distance_to_the_cloud_minus_the_radius(benchmark):
    root, _ = benchmark
    obj = ShapeNetParts(root, "val")[0]
    g = torch.Generator().manual_seed(0)
    q = torch.cat([torch.rand(500, 3, generator=g) * 2 - 1,                      # anywhere
                   obj.points[:200] + 0.01 * torch.randn(200, 3, generator=g)])  # near the surface
    brute = torch.sqrt(((q[:, None].double() - obj.points[None].double()) ** 2).sum(-1)).min(1).values
    d = obj.sdf(q)
    assert d.shape == (700,) and d.dtype == torch.float32
    torch.testing.assert_close(d.double(), brute - obj.radius, atol=1e-6, rtol=0)
    assert (obj.sdf(obj.points) < 0).all()                       # annotated points are inside
    assert (obj.sdf(torch.tensor([[0.0, 0.0, 0.97], [0.0, 0.97, 0.0]])) > 0.1).all()  # far: outside
    torch.testing.assert_close(obj.sdf(q.double()), d.double(), atol=1e-6, rtol=0)  # float64 too
    assert obj.sdf(torch.zeros(0, 3)).shape == (0,)
    # 1-Lipschitz: sphere tracing with it never oversteps the surface
    a, b = q[:350], q[350:]
    assert ((obj.sdf(a) - obj.sdf(b)).abs() <= (a - b).norm(dim=-1) + 1e-5).all()


def test_part_label_is_the_label_of_the_nearest_annotated_point(benchmark):
    root, _ = benchmark
    obj = ShapeNetParts(root, "train")[0]                                   # chair_a
    assert torch.equal(obj.part_labels(obj.points), obj.labels)
    off = obj.points + 0.3 * obj.radius * obj.normals           # just off the surface
    same = (obj.part_labels(off) == obj.labels).float().mean()
    assert same > 0.97                                           # all but points at the joint
    seat_top = ((np.array([0.0, 0.06, 0.2]) * RAW_SCALE + RAW_OFFSET - np.array(obj.centre))
                * obj.scale)
    back_front = ((np.array([0.0, 0.8, -0.38]) * RAW_SCALE + RAW_OFFSET - np.array(obj.centre))
                  * obj.scale)
    q = torch.tensor(np.stack([seat_top, back_front]), dtype=torch.float32)
    assert obj.part_labels(q).tolist() == [1, 2]                  # seat is part 1, back part 2


def test_albedo_per_object_or_per_part(benchmark):
    root, _ = benchmark
    obj = ShapeNetParts(root, "train", colour="red")[0]
    assert torch.allclose(obj.albedo(obj.points[:5]), torch.tensor(COLOURS["red"]).expand(5, 3))
    parts = ShapeNetParts(root, "train", colour_by="part")[0]
    expected = torch.tensor([COLOURS[PART_PALETTE[k - 1]] for k in parts.labels.tolist()])
    assert torch.allclose(parts.albedo(parts.points), expected)
    with pytest.raises(ShapeNetError, match="unknown colour 'mauve'"):
        ShapeNetParts(root, "train", colour="mauve")
    with pytest.raises(ShapeNetError, match="colour_by must be one of object, part"):
        ShapeNetParts(root, "train", colour_by="height")


def test_render_scene_draws_the_object_with_part_labels(benchmark):
    root, _ = benchmark
    obj = ShapeNetParts(root, "train", colour_by="part")[0]
    c2w, _, _ = view_cameras(2, seed=0)
    size = 24
    out = render_scene(obj, c2w, size, size, VIEW_FOV_DEG, labels=True)
    hit = out["opacity"] > 0
    assert hit.flatten(1).sum(1).min() > 0.05 * size * size      # visible in every view
    assert (out["rgb"][hit] < 0.99).any(-1).all()                 # coloured, not background
    assert (out["rgb"][~hit] == 1.0).all()
    origins, dirs = get_rays(c2w, size, size, VIEW_FOV_DEG)
    surface = (origins + out["depth"][..., None] * dirs)[hit]     # the points the rays hit
    assert obj.sdf(surface).abs().max() < 1e-3
    labels = obj.part_labels(surface)
    assert set(labels.tolist()) == {1, 2}                         # both parts seen, nothing else
    assert torch.equal(out["labels"][hit], labels)               # render_scene's label maps
    assert (out["labels"][~hit] == 0).all()


# ---- errors a user can act on --------------------------------------------------------------

def test_missing_benchmark_says_where_to_get_it(tmp_path):
    with pytest.raises(ShapeNetError, match="does not exist") as e:
        ShapeNetParts(tmp_path / "nowhere")
    assert DOWNLOAD_URL in str(e.value) and "synsetoffset2category.txt" in str(e.value)
    with pytest.raises(ShapeNetError, match="missing .*synsetoffset2category.txt") as e:
        ShapeNetParts(tmp_path)
    assert DOWNLOAD_URL in str(e.value) and "x y z nx ny nz part_label" in str(e.value)


def test_missing_files_are_named(benchmark):
    root, _ = benchmark
    (root / "train_test_split" / "shuffled_val_file_list.json").unlink()
    with pytest.raises(ShapeNetError, match="missing .*shuffled_val_file_list.json") as e:
        ShapeNetParts(root, "val")
    assert DOWNLOAD_URL in str(e.value)
    (root / CHAIR / "chair_b.txt").unlink()
    data = ShapeNetParts(root, "train")                          # listing reads no model file
    with pytest.raises(ShapeNetError, match=rf"missing .*{CHAIR}/chair_b.txt \(Chair model chair_b"):
        data[2]


def test_malformed_lines_name_the_file_and_line(benchmark):
    root, _ = benchmark
    path = root / MUG / "mug_b.txt"
    lines = path.read_text().splitlines()
    lines[2] = "0.1 0.2 0.3 0 1 0"                                  # a field short
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ShapeNetError, match=r"mug_b.txt:3: expected 7 numbers"):
        ShapeNetParts(root, "val")[0]
    lines[2] = "0.1 0.2 0.3 0 1 0 12"                               # a chair part on a mug
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ShapeNetError, match=r"mug_b.txt:3: part label 12 is not a Mug part"):
        ShapeNetParts(root, "val")[0]
    (root / "synsetoffset2category.txt").write_text(f"Chair\t{CHAIR}\nMug {MUG} extra\n")
    with pytest.raises(ShapeNetError, match=r"synsetoffset2category.txt:2: expected"):
        ShapeNetParts(root, "val")


def test_split_entries_of_unlisted_synsets_are_errors(benchmark):
    root, _ = benchmark
    (root / "synsetoffset2category.txt").write_text(f"Chair\t{CHAIR}\nMug\t{MUG}\n")
    with pytest.raises(ShapeNetError, match=rf"synset {WIDGET} \(model widget_a\) is not in"):
        ShapeNetParts(root, "test")


# ---- the older v0 layout -------------------------------------------------------------------

def test_v0_layout_points_and_points_label(tmp_path):
    root = tmp_path / "shapenetcore_partanno_segmentation_benchmark_v0"
    (root / CHAIR / "points").mkdir(parents=True)
    (root / CHAIR / "points_label").mkdir()
    (root / "synsetoffset2category.txt").write_text(f"Chair\t{CHAIR}\n")
    points, _, labels = chair_cloud(np.random.default_rng(0), 600)
    (root / CHAIR / "points" / "m.pts").write_text("".join(f"{x} {y} {z}\n" for x, y, z in points))
    (root / CHAIR / "points_label" / "m.seg").write_text("".join(f"{l - 11}\n" for l in labels))
    (root / "train_test_split").mkdir()
    for split in ("train", "val", "test"):
        (root / "train_test_split" / f"shuffled_{split}_file_list.json").write_text(
            json.dumps([f"shape_data/{CHAIR}/m"] if split == "train" else []))
    obj = ShapeNetParts(tmp_path, "train")[0]
    assert obj.normals is None and obj.num_parts == 4
    assert torch.equal(obj.labels, torch.as_tensor(labels - 11))
    assert obj.points.norm(dim=-1).max().item() == pytest.approx(OBJECT_RADIUS, abs=1e-5)
    (root / CHAIR / "points_label" / "m.seg").write_text("1\n" * 5)
    with pytest.raises(ShapeNetError, match="m.seg has 5 labels for the 600 points"):
        ShapeNetParts(root, "train")[0]


def test_part_object_from_a_cloud():
    rng = np.random.default_rng(1)
    points, normals, labels = mug_cloud(rng, 400)
    obj = PartObject.from_cloud(points * 7 + 3, labels - 35, "Mug", "m1", normals=normals)
    assert obj.part_names == ("part1", "part2") and obj.prompt == "a mug"
    assert obj.points.norm(dim=-1).max().item() == pytest.approx(OBJECT_RADIUS, abs=1e-5)
    with pytest.raises(ShapeNetError, match=r"labels must be part indices 1\.\.2"):
        PartObject.from_cloud(points, labels - 36, "Mug", "m1", part_names=("a", "b"))


# ---- HyperSegmentationFields on this layout (methods/fields/segfields.py) -------------------

def test_segmentation_fields_train_and_score_on_the_shapenet_layout(benchmark, one_thread):
    import math

    from priorlab.methods.fields.segfields import SegFieldsConfig, SegFieldsFit

    root, _ = benchmark
    cfg = SegFieldsConfig(source="shapenet", shapenet_root=str(root), shapenet_categories="Chair;Mug",
                          n_train_scenes=2, n_novel_scenes=1, n_parts=4, context_views=2,
                          context_size=16, target_views=2, target_size=12, eval_views=1,
                          eval_size=12, encoder_width=8, token_dim=16, token_grid=2, feature_dim=4,
                          model_dim=16, transformer_layers=1, n_heads=2, head_dim=4,
                          hyper_hidden=8, n_levels=2, log2_hashmap_size=8, finest_resolution=16,
                          n_samples=8, n_scenes=2, rays_per_scene=32)
    fit = SegFieldsFit(cfg)
    assert all(s.slug.startswith("shapenet-") for s in fit.train_scenes + fit.novel_scenes)
    assert max(int(t["labels"].max()) for t in fit.targets) >= 1
    assert math.isfinite(fit.train_step())
    metrics = fit.evaluate()
    assert {"seen/miou", "novel/miou", "novel/psnr"} <= set(metrics)
    assert all(math.isfinite(v) for v in metrics.values())

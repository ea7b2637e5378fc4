"""The analytic scene family (thesis Sec. 4.4.1, App. B.2): names, exact SDFs, exact renders."""

import math

import pytest
import torch

from priorlab.data.scenes import (AMBIENT, ATTRIBUTES, COLOURS, DIFFUSE, FAMILY_COLOURS, LIGHT_DIR,
                                  Scene, SceneError, filter_scenes, make_scene, parse_scene,
                                  render_scene, render_views, scene_family)
from priorlab.data.sdf import (PRIMITIVES, SHAPE_RADIUS, SHAPES, sd_box, sd_capped_cone, sd_capsule,
                               sd_cylinder, sd_sphere, sd_torus, shape_sdf)
from priorlab.methods.fields.cameras import get_rays, look_at
from priorlab.platform.cli import main


def pts(*rows):
    return torch.tensor(rows, dtype=torch.float32)


# ---- the family and its names ------------------------------------------------------------

def test_family_is_at_least_nine_shapes_by_eight_colours():
    assert len(SHAPES) >= 9 and len(FAMILY_COLOURS) >= 8
    assert {"sphere", "cube", "torus", "cylinder", "cone", "chair", "table", "vase", "lamp"} <= set(SHAPES)
    fam = scene_family()
    assert len(fam) == len(SHAPES) * len(FAMILY_COLOURS)
    assert {(s.shape, s.colour) for s in fam} == {(a, c) for a in SHAPES for c in FAMILY_COLOURS}
    with_attrs = scene_family(attributes=True)
    assert len(with_attrs) == len(fam) + len(SHAPES) * len(ATTRIBUTES)
    assert len({s.slug for s in with_attrs}) == len({s.prompt for s in with_attrs}) == len(with_attrs)


def test_family_is_deterministic_for_a_seed_and_the_seed_matters():
    assert scene_family(3, attributes=True) == scene_family(3, attributes=True)
    a, b = scene_family(0, attributes=True), scene_family(1, attributes=True)
    n = len(scene_family())
    assert a[:n] == b[:n]                        # the plain grid does not depend on the seed
    assert a[n:] != b[n:]


def test_slugs_and_prompts_read_back_to_the_same_scene():
    for s in scene_family(seed=2, attributes=True):
        assert parse_scene(s.slug, seed=2) == s
        assert parse_scene(s.prompt, seed=2) == s


def test_prompts_are_grammatical():
    assert parse_scene("orange cube").prompt == "an orange cube"
    assert parse_scene("red-torus").prompt == "a red torus"
    s = make_scene("chair", "blue", "striped", "white")
    assert (s.slug, s.prompt) == ("blue-white-striped-chair", "a blue and white striped chair")
    assert make_scene("vase", "orange", "two-tone", "red").prompt == "an orange and red two-tone vase"
    assert parse_scene("a pink and black two tone mug").slug == "pink-black-two-tone-mug"
    for s in scene_family(attributes=True):
        article, rest = s.prompt.split(" ", 1)
        assert article == ("an" if rest[0] in "aeiou" else "a")


def test_a_pattern_prompt_with_one_colour_gets_its_second_colour_from_the_seed():
    s = parse_scene("a blue striped chair", seed=5)
    assert s.attribute == "striped" and s.colour == "blue" and s.colour2 not in (None, "blue")
    assert s.frequency in ATTRIBUTES["striped"]
    assert parse_scene("blue stripes chair", seed=5) == s       # aliases


@pytest.mark.parametrize("text, bad, valid", [
    ("a gren torus", "gren", "green"),
    ("a red spaceship", "spaceship", "torus"),
    ("a plaid chair", "plaid", "striped"),
])
def test_parse_errors_name_the_bad_word_and_the_valid_ones(text, bad, valid):
    with pytest.raises(SceneError) as err:
        parse_scene(text)
    assert repr(bad) in str(err.value) and valid in str(err.value)


def test_parse_errors_for_missing_or_extra_words():
    for text, needle in [("a red", "shape"), ("a torus", "colour"), ("a red cube torus", "one shape"),
                         ("a red and blue torus", "attribute")]:
        with pytest.raises(SceneError, match=needle):
            parse_scene(text)
    with pytest.raises(SceneError, match="'plaid'.*striped"):
        Scene("chair", "red", "plaid", "blue")
    with pytest.raises(SceneError, match="second colour"):
        Scene("chair", "red", "striped")


def test_filter_any_within_a_kind_all_across_kinds():
    fam = scene_family(attributes=True)
    got = filter_scenes(fam, ["red blue", "chair"])
    assert {s.slug for s in got if s.attribute is None} == {"red-chair", "blue-chair"}
    assert got and all(s.shape == "chair" and {"red", "blue"} & set(s.words) for s in got)
    assert {s.attribute for s in filter_scenes(fam, ["striped"])} == {"striped"}
    with pytest.raises(SceneError, match="'chiar'"):
        filter_scenes(fam, ["chiar"])


def test_patterns_mix_the_two_colours_as_documented():
    c1, c2 = torch.tensor(COLOURS["red"]), torch.tensor(COLOURS["white"])
    striped = Scene("sphere", "red", "striped", "white", frequency=2.0)      # bands 0.25 high
    a = striped.albedo(pts([0.0, 0.1, 0.0], [0.0, 0.35, 0.0], [0.0, 0.6, 0.0]))
    assert torch.allclose(a, torch.stack([c1, c2, c1]))
    two = Scene("sphere", "red", "two-tone", "white", split=0.1)
    assert torch.allclose(two.albedo(pts([0, 0.05, 0], [0, 0.15, 0])), torch.stack([c1, c2]))
    grad = Scene("sphere", "red", "gradient", "white").albedo(pts([0, -1, 0], [0, 0, 0], [0, 1, 0]))
    assert torch.allclose(grad, torch.stack([c1, (c1 + c2) / 2, c2]))
    check = Scene("cube", "red", "checkered", "white", frequency=1.0)        # cells 0.5 wide
    a = check.albedo(pts([0.1, 0.1, 0.1], [0.6, 0.1, 0.1], [0.6, 0.6, 0.1]))
    assert torch.allclose(a, torch.stack([c1, c2, c1]))


# ---- signed distances --------------------------------------------------------------------

def test_primitive_sdfs_at_hand_picked_points():
    sph = sd_sphere(pts([0.5, 0, 0], [0, 0, 0], [0, 2, 0]), 0.5)
    assert torch.allclose(sph, pts(0.0, -0.5, 1.5), atol=1e-6)
    box = sd_box(pts([0.5, 0, 0], [0, 0, 0], [1, 0, 0], [1, 1, 0], [0.2, 0.4, 0]), (0.5, 0.5, 0.5))
    assert torch.allclose(box, pts(0.0, -0.5, 0.5, math.sqrt(0.5), -0.1), atol=1e-6)
    R, r = 0.6, 0.2
    tor = sd_torus(pts([R + r, 0, 0], [0, 0, R], [R, 0, 0], [0, 0, 0], [0, 1, 0]), R, r)
    assert torch.allclose(tor, pts(0.0, -r, -r, R - r, math.sqrt(R * R + 1) - r), atol=1e-6)
    cyl = sd_cylinder(pts([0, 0.6, 0], [0.5, 0, 0], [0, 0, 0], [1.5, 1.6, 0]), 0.5, 0.6)
    assert torch.allclose(cyl, pts(0.0, 0.0, -0.5, math.sqrt(2.0)), atol=1e-6)
    # cone of half height 0.6, base radius 0.6 at y = -0.6, tip at y = 0.6: the side is the
    # line 2 radius + y = 0.6 in the (radius, y) half-plane
    cone = sd_capped_cone(pts([0, 0.6, 0], [0, -0.6, 0], [0.3, 0, 0], [0, 0, 0], [0.8, 0.5, 0]),
                          0.6, 0.6, 0.0)
    s5 = math.sqrt(5.0)
    assert torch.allclose(cone, pts(0.0, 0.0, 0.0, -0.6 / s5, 1.5 / s5), atol=1e-6)
    cap = sd_capsule(pts([0, 0.8, 0], [0.35, 0, 0], [0, 0, 0], [0, 1.8, 0]),
                     (0, -0.45, 0), (0, 0.45, 0), 0.35)
    assert torch.allclose(cap, pts(0.0, 0.0, -0.35, 1.0), atol=1e-6)


def test_family_shapes_at_known_surface_points():
    assert torch.allclose(shape_sdf("sphere", pts([0.75, 0, 0], [0, 0, 0])), pts(0.0, -0.75), atol=1e-6)
    assert torch.allclose(shape_sdf("cube", pts([0, 0.5, 0], [0.5, 0.5, 0.5], [0, 0, 0])),
                          pts(0.0, 0.0, -0.5), atol=1e-6)
    # the torus is tilted about x: points on the x axis are unaffected, the hole is empty
    assert torch.allclose(shape_sdf("torus", pts([0.8, 0, 0], [0.58, 0, 0], [0, 0, 0])),
                          pts(0.0, -0.22, 0.36), atol=1e-6)
    with pytest.raises(SceneError, match="'teapot'.*sphere"):
        shape_sdf("teapot", pts([0, 0, 0]))


def test_every_shape_is_an_exact_sdf_outside_itself():
    """|grad sdf| = 1 away from the surface: primitives are exact and unions of them stay exact
    outside, so sphere tracing never oversteps."""
    g = torch.Generator().manual_seed(0)
    p = torch.rand(4000, 3, generator=g) * 2.4 - 1.2
    for name in SHAPES:
        q = p[shape_sdf(name, p) > 0.02].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(shape_sdf(name, q).sum(), q)
        assert torch.allclose(grad.norm(dim=-1), torch.ones(len(q)), atol=1e-4), name


def test_every_shape_fits_inside_the_unit_sphere_with_a_margin():
    g = torch.Generator().manual_seed(1)
    inside = torch.rand(100_000, 3, generator=g) * 2 - 1
    shell = torch.randn(20_000, 3, generator=g)
    shell = shell / shell.norm(dim=-1, keepdim=True)            # the unit sphere
    for name in SHAPES:
        d = shape_sdf(name, inside)
        assert (d < 0).sum() > 100, name                         # not empty
        assert inside[d < 0].norm(dim=-1).max() < SHAPE_RADIUS, name
        # exact outside: nothing of the shape is within 1 - SHAPE_RADIUS of the bounding sphere
        assert shape_sdf(name, shell).min() > 1 - SHAPE_RADIUS - 0.02, name
    assert set(PRIMITIVES) < set(SHAPES)


# ---- rendering ---------------------------------------------------------------------------

def _front_view(scene, size=33, fov=40.0, background=(0.2, 0.4, 0.6)):
    c2w = look_at(torch.tensor([0.0, 0.0, 3.0]))
    return c2w, render_scene(scene, c2w, size, size, fov, background=background)


def test_hand_computed_pixels_of_a_sphere():
    r = 0.75                                                     # the family's sphere
    _, out = _front_view(Scene("sphere", "red"))
    assert out["rgb"].shape == (1, 33, 33, 3) and out["depth"].shape == out["opacity"].shape == (1, 33, 33)
    c = 16                                                       # the centre ray is the -z axis
    assert out["opacity"][0, c, c] == 1
    assert math.isclose(float(out["depth"][0, c, c]), 3.0 - r, abs_tol=1e-4)
    assert torch.allclose(out["normal"][0, c, c], torch.tensor([0.0, 0.0, 1.0]), atol=1e-3)
    shade = AMBIENT + DIFFUSE * max(0.0, LIGHT_DIR[2])           # n = +z faces the camera
    assert torch.allclose(out["rgb"][0, c, c], torch.tensor(COLOURS["red"]) * shade, atol=1e-3)
    # a corner ray passes the sphere: background, opacity 0, depth 0
    assert torch.allclose(out["rgb"][0, 0, 0], torch.tensor([0.2, 0.4, 0.6]))
    assert out["opacity"][0, 0, 0] == 0 and out["depth"][0, 0, 0] == 0


def test_every_pixel_of_a_sphere_matches_ray_sphere_intersection():
    r = 0.75
    c2w, out = _front_view(Scene("sphere", "green"), size=48)
    o, d = get_rays(c2w, 48, 48, 40.0)
    b = (o * d).sum(-1)
    disc = b * b - ((o * o).sum(-1) - r * r)
    analytic_hit = disc > 0
    t = -b - disc.clamp_min(0).sqrt()
    hit = out["opacity"] > 0
    assert (hit != analytic_hit).float().mean() < 0.01           # only grazing pixels may differ
    both = hit & analytic_hit & (disc > 0.01)                    # away from the silhouette
    assert torch.allclose(out["depth"][both], t[both], atol=1e-3)
    n = (o + t[..., None] * d)[both] / r
    shade = AMBIENT + DIFFUSE * (n @ torch.tensor(LIGHT_DIR)).clamp_min(0)
    assert torch.allclose(out["rgb"][both], torch.tensor(COLOURS["green"]) * shade[:, None], atol=2e-3)


def test_cube_front_face_depth():
    _, out = _front_view(Scene("cube", "blue"))
    assert math.isclose(float(out["depth"][0, 16, 16]), 2.5, abs_tol=1e-4)
    assert torch.allclose(out["normal"][0, 16, 16], torch.tensor([0.0, 0.0, 1.0]), atol=1e-3)


def test_views_frame_every_shape_and_follow_the_seed():
    for name in SHAPES:
        v = render_views(Scene(name, "red"), n_views=3, size=24, seed=0)
        assert v["rgb"].shape == (3, 24, 24, 3) and v["c2w"].shape == (3, 4, 4)
        assert v["opacity"].sum() > 0, name
        border = torch.cat([v["opacity"][:, 0], v["opacity"][:, -1], v["opacity"][:, :, 0],
                            v["opacity"][:, :, -1]], -1)
        assert border.sum() == 0, name                            # the unit sphere fits in frame
        assert v["rgb"].min() >= 0 and v["rgb"].max() <= 1
    scene = Scene("chair", "pink")
    a, b = render_views(scene, 2, 16, seed=1), render_views(scene, 2, 16, seed=1)
    assert torch.equal(a["rgb"], b["rgb"]) and torch.equal(a["c2w"], b["c2w"])
    assert not torch.equal(a["c2w"], render_views(scene, 2, 16, seed=2)["c2w"])
    orbit = render_views(scene, 4, 8, orbit=True)
    assert orbit["azimuth"].tolist() == [0.0, 90.0, 180.0, 270.0]


# ---- CLI ---------------------------------------------------------------------------------

def test_cli_lists_scenes(capsys):
    assert main(["scenes", "list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"{len(SHAPES) * len(FAMILY_COLOURS)} scenes"
    assert any(line.split() == ["orange-cube", "an", "orange", "cube"] for line in lines)
    assert main(["scenes", "list", "--attributes", "--seed", "1", "--filter", "chair", "striped"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    striped_chair = [s for s in scene_family(1, attributes=True) if s.slug.endswith("-striped-chair")]
    assert lines == [f"{striped_chair[0].slug}  {striped_chair[0].prompt}", "1 scenes"]


def test_cli_bad_filter_word_is_a_user_error_and_starts_no_ray(capsys):
    assert main(["scenes", "list", "--filter", "red", "chiar"]) == 2
    err = capsys.readouterr().err
    assert "'chiar'" in err and "chair" in err and "Traceback" not in err
    import sys
    if "ray" in sys.modules:
        import ray
        assert not ray.is_initialized()

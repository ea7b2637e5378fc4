"""A scene family with analytic ground truth: colour x shape (+ attribute) prompts (thesis Ch. 4).

Sec. 4.4.1 trains HyperFields on colour x shape prompts (9 shapes x 8 colours, Fig. 4.4, with
3 colours per shape held out) and App. B.2 adds attributes ("plaid", "terracotta": Fig. B.2,
shape x style). This module is that family with shapes whose every view can be rendered
exactly, so teachers and students can be scored against ground truth instead of a CLIP proxy:

- shapes: the exact SDFs of ``priorlab.data.sdf`` (6 primitives + 5 composites, y up, inside
  the unit sphere with a margin);
- colours: ``COLOURS`` (name -> linear RGB); the plain grid uses ``FAMILY_COLOURS`` (8);
- attributes: procedural surface colours of two colours, ``striped`` (horizontal bands),
  ``checkered`` (3-D checker), ``gradient`` (linear in height) and ``two-tone`` (split at a
  height), standing in for App. B.2's styles.

A ``Scene`` has a ``slug`` ("red-torus", "blue-white-striped-chair") and a ``prompt`` ("a red
torus", "a blue and white striped chair", "an orange cube"). ``scene_family(seed)`` lists them;
``parse_scene(text, seed)`` reads a slug or a prompt back. The seed picks what a name leaves
open: a pattern's frequency or split height, the second colour when a prompt names only one,
and the colours of the attribute scenes in the family.

Splits: ``zero_shot_split(seed)`` divides the plain 9 x 8 grid of ``ID_SHAPES`` (Fig. 4.4)
into 45 seen and 27 unseen scenes, 3 colours held out per shape and balanced over colours, so
every shape and colour is still seen (Sec. 4.4.1, Table 4.1 retrieves against all 72).
``ood_scenes(seed)`` gives Sec. 4.4.3's out-of-distribution prompts: ``OOD_SHAPES`` (capsule,
mug, never in the grid), attributes on grid shapes, and both together.

Rendering is sphere tracing (``render_scene``): rays from ``cameras.get_rays``, starting where
they enter the unit sphere. Shading is Lambertian under one fixed *world-space* directional
light plus ambient, ``rgb = albedo * (AMBIENT + DIFFUSE * max(0, n . LIGHT_DIR))``, so a
surface point has the same colour from every view: the radiance a NeRF can represent exactly.

    priorlab scenes list --attributes --filter chair
    views = render_views(parse_scene("an orange torus"), n_views=32, size=64, seed=0)
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

import torch

from priorlab.data.sdf import BOUND_RADIUS, PART_CLASSES, SHAPES, SceneError, part_labels, shape_sdf
from priorlab.methods.fields.cameras import fov_for_radius, get_rays, pose_spherical, sphere_near_far

__all__ = ["AMBIENT", "ATTRIBUTES", "COLOURS", "DIFFUSE", "FAMILY_COLOURS", "ID_SHAPES", "LIGHT_DIR",
           "OOD_SHAPES", "PART_CLASSES", "SHAPES", "Scene", "SceneError", "filter_scenes", "ood_scenes", "parse_scene",
           "render_scene", "render_views", "scene_family", "zero_shot_split"]

# Linear RGB in [0, 1]. White and black serve as second colours of patterns; the plain grid
# leaves them out (a white object on the white background has no visible silhouette).
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.10),
    "orange": (0.95, 0.50, 0.08),
    "yellow": (0.95, 0.85, 0.15),
    "green": (0.15, 0.62, 0.22),
    "blue": (0.12, 0.30, 0.85),
    "purple": (0.50, 0.20, 0.70),
    "pink": (0.95, 0.52, 0.72),
    "brown": (0.50, 0.30, 0.12),
    "white": (0.95, 0.95, 0.95),
    "black": (0.08, 0.08, 0.08),
}
FAMILY_COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown")

# attribute -> the choices the seed picks from (frequency in cycles per unit length for the
# periodic patterns, split height for two-tone, nothing for the gradient)
ATTRIBUTES: dict[str, tuple[float, ...]] = {
    "striped": (2.5, 3.0, 4.0),
    "checkered": (2.0, 2.5, 3.0),
    "gradient": (),
    "two-tone": (-0.15, 0.0, 0.15),
}
# other spellings a prompt may use -> the canonical word
ALIASES = {"stripes": "striped", "stripy": "striped", "checker": "checkered",
           "chequered": "checkered", "checked": "checkered", "twotone": "two-tone",
           "box": "cube", "ball": "sphere"}
ARTICLES = {"a", "an", "the", "and"}
GRADIENT_SPAN = 0.8                 # the gradient runs over y in [-0.8, 0.8], about every shape's height

# Lighting (document changes in docs/fields.md): ambient + Lambertian from a fixed direction
# above, right and in front of the object (towards the light; world space).
AMBIENT = 0.35
DIFFUSE = 0.65                      # AMBIENT + DIFFUSE = 1 keeps rgb within the albedo
LIGHT_DIR = tuple(v / math.sqrt(0.3 ** 2 + 0.8 ** 2 + 0.5 ** 2) for v in (0.3, 0.8, 0.5))

# Sphere tracing
MAX_STEPS = 128                     # enough for grazing rays of these shapes at <= 256 px
STEP_EPS = 1e-4                     # a ray stops once the SDF at its tip is below this
HIT_EPS = 1e-3                      # ... and counts as a hit if |SDF| is below this at the end
NORMAL_H = 5e-4                     # central-difference step for normals

# render_views: cameras at distance 3 framing the unit sphere with 10% margin (fov ~43 deg)
VIEW_RADIUS = 3.0
VIEW_FOV_DEG = fov_for_radius(BOUND_RADIUS, VIEW_RADIUS, margin=1.1)


@dataclass(frozen=True)
class Scene:
    """One scene: a shape of ``SHAPES`` in a colour of ``COLOURS``, optionally patterned."""

    shape: str
    colour: str
    attribute: str | None = None
    """One of ``ATTRIBUTES``, or None for a plain colour."""
    colour2: str | None = None
    """The pattern's second colour (required with an attribute, which mixes two colours)."""
    frequency: float = 0.0
    """Cycles per unit length of ``striped`` / ``checkered``."""
    split: float = 0.0
    """Height (y) of the boundary of ``two-tone``: ``colour`` below, ``colour2`` above."""

    def __post_init__(self):
        _check_word(self.shape, SHAPES, "shape")
        _check_word(self.colour, COLOURS, "colour")
        if self.attribute is None:
            if self.colour2 is not None:
                raise SceneError(f"scene {self.shape!r} has a second colour {self.colour2!r} but no "
                                 f"attribute to use it; attributes: {', '.join(ATTRIBUTES)}")
            return
        _check_word(self.attribute, ATTRIBUTES, "attribute")
        if self.colour2 is None:
            raise SceneError(f"attribute {self.attribute!r} needs a second colour (colour2); "
                             f"colours: {', '.join(COLOURS)}")
        _check_word(self.colour2, COLOURS, "colour")
        if self.colour2 == self.colour:
            raise SceneError(f"a {self.attribute} scene needs two different colours, got "
                             f"{self.colour!r} twice")
        if self.attribute in ("striped", "checkered") and self.frequency <= 0:
            raise SceneError(f"a {self.attribute} scene needs frequency > 0 (cycles per unit "
                             f"length, e.g. {ATTRIBUTES[self.attribute]})")

    @property
    def words(self) -> tuple[str, ...]:
        colours = (self.colour,) if self.colour2 is None else (self.colour, self.colour2)
        return colours + ((self.attribute,) if self.attribute else ()) + (self.shape,)

    @property
    def slug(self) -> str:
        return "-".join(self.words)

    @property
    def prompt(self) -> str:
        colours = self.colour if self.colour2 is None else f"{self.colour} and {self.colour2}"
        text = " ".join([colours] + ([self.attribute] if self.attribute else []) + [self.shape])
        return f"{'an' if text[0] in 'aeiou' else 'a'} {text}"

    def sdf(self, points: torch.Tensor) -> torch.Tensor:
        """Signed distances (N,) of ``points`` (N, 3)."""
        return shape_sdf(self.shape, points)

    def part_labels(self, points: torch.Tensor) -> torch.Tensor:
        """``PART_CLASSES`` index (N,) of the part at ``points`` (N, 3) (meant for surface points)."""
        return part_labels(self.shape, points)

    def albedo(self, points: torch.Tensor) -> torch.Tensor:
        """Surface colour (N, 3) in [0, 1] at ``points`` (N, 3) (meant for surface points)."""
        c1 = points.new_tensor(COLOURS[self.colour])
        if self.attribute is None:
            return c1.expand(points.shape[0], 3)
        c2 = points.new_tensor(COLOURS[self.colour2])
        y = points[:, 1]
        if self.attribute == "striped":            # horizontal bands, `frequency` per unit height
            t = torch.remainder(torch.floor(y * 2 * self.frequency), 2.0)
        elif self.attribute == "checkered":        # 3-D checker of cells 1 / (2 frequency) wide
            t = torch.remainder(torch.floor(points * 2 * self.frequency).sum(-1), 2.0)
        elif self.attribute == "gradient":         # colour at y <= -GRADIENT_SPAN, colour2 at y >= +
            t = ((y + GRADIENT_SPAN) / (2 * GRADIENT_SPAN)).clamp(0.0, 1.0)
        else:                                      # two-tone
            t = (y >= self.split).to(points.dtype)
        return (1 - t)[:, None] * c1 + t[:, None] * c2


def _check_word(word: str, valid, kind: str) -> None:
    if word not in valid:
        raise SceneError(f"unknown {kind} {word!r}; {kind}s: {', '.join(valid)}")


# ---- the family, names -------------------------------------------------------------------

def _pattern_choices(seed: int, shape: str, colour: str, attribute: str) -> tuple[str, float, float]:
    """(default second colour, frequency, split) the seed picks for one attribute scene."""
    rng = random.Random(f"pattern:{seed}:{shape}:{colour}:{attribute}")  # str seeds: stable across runs
    colour2 = rng.choice([c for c in COLOURS if c != colour])
    choices = ATTRIBUTES[attribute]
    value = rng.choice(choices) if choices else 0.0
    if attribute in ("striped", "checkered"):
        return colour2, value, 0.0
    return colour2, 0.0, value


def make_scene(shape: str, colour: str, attribute: str | None = None, colour2: str | None = None,
               seed: int = 0) -> Scene:
    """A scene from its words, the seed filling in what they leave open (pattern, colour2)."""
    if attribute is None:
        return Scene(shape, colour, colour2=colour2)
    _check_word(attribute, ATTRIBUTES, "attribute")
    _check_word(colour, COLOURS, "colour")
    default2, frequency, split = _pattern_choices(seed, shape, colour, attribute)
    return Scene(shape, colour, attribute, colour2 or default2, frequency, split)


def scene_family(seed: int = 0, attributes: bool = False, shapes=None, colours=None) -> list[Scene]:
    """Every shape x colour (plain, Sec. 4.4.1), then with ``attributes`` one scene per shape x
    attribute (App. B.2's shape x style grid) whose two colours the seed draws.

    ``shapes`` / ``colours`` restrict the grid (default: all ``SHAPES``, ``FAMILY_COLOURS``).
    Same seed, same list.
    """
    shapes = list(SHAPES) if shapes is None else list(shapes)
    colours = list(FAMILY_COLOURS) if colours is None else list(colours)
    for s in shapes:
        _check_word(s, SHAPES, "shape")
    for c in colours:
        _check_word(c, COLOURS, "colour")
    scenes = [Scene(s, c) for s in shapes for c in colours]
    if attributes:
        for s in shapes:
            for a in ATTRIBUTES:
                colour = random.Random(f"family:{seed}:{s}:{a}").choice(colours)
                scenes.append(make_scene(s, colour, a, seed=seed))
    return scenes


def _words(text: str) -> list[str]:
    """Lower-case words of a slug or prompt, aliases resolved, articles dropped, "two-tone" kept."""
    raw = [w for w in re.split(r"[\s\-_,]+", text.strip().lower()) if w]
    words, i = [], 0
    while i < len(raw):
        if raw[i] == "two" and i + 1 < len(raw) and raw[i + 1] == "tone":
            words.append("two-tone")
            i += 2
            continue
        w = ALIASES.get(raw[i], raw[i])
        if w not in ARTICLES:
            words.append(w)
        i += 1
    return words


def _vocabulary() -> str:
    return (f"shapes: {', '.join(SHAPES)}; colours: {', '.join(COLOURS)}; "
            f"attributes: {', '.join(ATTRIBUTES)}")


def _classify(words: list[str], text: str) -> tuple[list[str], list[str], list[str]]:
    shapes, colours, attributes = [], [], []
    for w in words:
        if w in SHAPES:
            shapes.append(w)
        elif w in COLOURS:
            colours.append(w)
        elif w in ATTRIBUTES:
            attributes.append(w)
        else:
            raise SceneError(f"unknown word {w!r} in {text!r}: not a shape, colour or attribute "
                             f"({_vocabulary()})")
    return shapes, colours, attributes


def parse_scene(text: str, seed: int = 0) -> Scene:
    """The scene of a slug ("blue-white-striped-chair") or prompt ("a blue striped chair").

    A pattern prompt may name one colour or two ("a blue and white striped chair"); what it
    leaves open comes from ``seed`` exactly as in ``scene_family(seed)``, so
    ``parse_scene(s.slug, seed) == s`` for every scene ``s`` of that family.
    """
    shapes, colours, attributes = _classify(_words(text), text)
    if len(shapes) != 1:
        raise SceneError(f"{text!r} must name exactly one shape, found "
                         f"{shapes or 'none'} (shapes: {', '.join(SHAPES)})")
    if not colours:
        raise SceneError(f"{text!r} names no colour (colours: {', '.join(COLOURS)})")
    if len(attributes) > 1 or len(colours) > 2:
        raise SceneError(f"{text!r} names too many words: at most two colours and one attribute")
    if len(colours) == 2 and not attributes:
        raise SceneError(f"{text!r} names two colours but no attribute to combine them "
                         f"(attributes: {', '.join(ATTRIBUTES)})")
    return make_scene(shapes[0], colours[0], attributes[0] if attributes else None,
                      colours[1] if len(colours) == 2 else None, seed=seed)


def filter_scenes(scenes: list[Scene], words) -> list[Scene]:
    """Scenes matching ``words`` (strings, each may hold several words): any of the named
    shapes, and any of the named colours (first or second), and any of the named attributes."""
    text = " ".join(words)
    shapes, colours, attributes = _classify(_words(text), text)
    return [s for s in scenes
            if (not shapes or s.shape in shapes)
            and (not colours or s.colour in colours or s.colour2 in colours)
            and (not attributes or s.attribute in attributes)]


# ---- rendering ---------------------------------------------------------------------------

def _normals(scene: Scene, points: torch.Tensor) -> torch.Tensor:
    """Unit normals (N, 3): the SDF's gradient by central differences."""
    n = points.shape[0]
    offsets = torch.eye(3, dtype=points.dtype, device=points.device) * NORMAL_H        # (3, 3)
    probes = torch.cat([points[:, None] + offsets, points[:, None] - offsets], 1)       # (N, 6, 3)
    d = scene.sdf(probes.reshape(-1, 3)).reshape(n, 6)
    grad = d[:, :3] - d[:, 3:]
    return grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _trace(scene: Scene, origins: torch.Tensor, dirs: torch.Tensor):
    """Sphere-trace rays (N, 3) through the bounding sphere: (t (N,), hit (N,))."""
    near, far, inside = sphere_near_far(origins, dirs, radius=BOUND_RADIUS)
    t = near.clone()
    active = inside.clone()
    for _ in range(MAX_STEPS):
        idx = active.nonzero().squeeze(-1)
        if idx.numel() == 0:
            break
        d = scene.sdf(origins[idx] + t[idx, None] * dirs[idx])
        t[idx] = t[idx] + d.clamp_min(0.0)     # inside (d < 0) only from float error: stay put
        active[idx] = (d >= STEP_EPS) & (t[idx] <= far[idx])
    points = origins + t[:, None] * dirs
    hit = inside & (t <= far)
    idx = hit.nonzero().squeeze(-1)
    hit[idx] = scene.sdf(points[idx]).abs() < HIT_EPS
    return t, hit


def render_scene(scene: Scene, c2w: torch.Tensor, height: int, width: int, fov_deg: float,
                 background=(1.0, 1.0, 1.0), chunk: int = 1 << 16, labels: bool = False
                 ) -> dict[str, torch.Tensor]:
    """Render ``scene`` from cameras ``c2w`` (B, 4, 4) (or one (4, 4)) by sphere tracing.

    Returns rgb (B, H, W, 3) in [0, 1] (``background`` where rays miss), opacity (B, H, W) in
    {0, 1}, depth (B, H, W) = distance along the (unit) ray to the surface, 0 where rays miss,
    and normal (B, H, W, 3) (world space, 0 where rays miss). ``labels=True`` adds labels
    (B, H, W) int64: the part hit (``scene.part_labels``, ``PART_CLASSES`` for this family), 0
    where rays miss. ``scene`` is anything with ``sdf`` and ``albedo`` (and ``part_labels``)
    of surface points: a ``Scene``, a ``part_scenes.PartScene``, a ShapeNet object.
    """
    origins, dirs = get_rays(c2w, height, width, fov_deg)            # (B, H, W, 3)
    shape = origins.shape[:-1]
    origins, dirs = origins.reshape(-1, 3), dirs.reshape(-1, 3)
    bg = origins.new_tensor(background)
    light = origins.new_tensor(LIGHT_DIR)
    rgb, opacity, depth, normal, label = [], [], [], [], []
    for s in range(0, origins.shape[0], chunk):
        o, d = origins[s:s + chunk], dirs[s:s + chunk]
        t, hit = _trace(scene, o, d)
        idx = hit.nonzero().squeeze(-1)
        p = o[idx] + t[idx, None] * d[idx]
        n = _normals(scene, p)
        shade = AMBIENT + DIFFUSE * (n @ light).clamp_min(0.0)                           # (M,)
        c = bg.expand(o.shape[0], 3).clone()
        c[idx] = (scene.albedo(p) * shade[:, None]).clamp(0.0, 1.0)
        nrm = torch.zeros_like(o)
        nrm[idx] = n
        rgb.append(c)
        opacity.append(hit.to(o.dtype))
        depth.append(torch.where(hit, t, torch.zeros_like(t)))
        normal.append(nrm)
        if labels:
            lab = torch.zeros(o.shape[0], dtype=torch.long)
            lab[idx] = scene.part_labels(p).to(torch.long)
            label.append(lab)
    out = {"rgb": torch.cat(rgb).reshape(*shape, 3), "opacity": torch.cat(opacity).reshape(shape),
           "depth": torch.cat(depth).reshape(shape), "normal": torch.cat(normal).reshape(*shape, 3)}
    if labels:
        out["labels"] = torch.cat(label).reshape(shape)
    return out


def render_views(scene: Scene, n_views: int, size: int, seed: int = 0, *, orbit: bool = False,
                 elevation: tuple[float, float] = (-10.0, 50.0), radius: float = VIEW_RADIUS,
                 fov_deg: float | None = None, background=(1.0, 1.0, 1.0),
                 labels: bool = False) -> dict[str, torch.Tensor]:
    """``n_views`` square views of ``size`` pixels from cameras on a sphere looking at the origin.

    Random views (default): azimuth uniform in [0, 360), elevation uniform in ``elevation``,
    drawn from ``seed`` (training views with one seed, held-out views with another).
    ``orbit=True``: a turntable, azimuths evenly spaced from 0 at the middle of ``elevation``.
    Cameras sit at ``radius`` (3) with the vertical field of view that frames the unit bounding
    sphere with 10% margin (``fov_for_radius(1, 3, 1.1)`` ~ 43 degrees), so every shape is in
    frame. Returns ``render_scene``'s maps plus c2w (N, 4, 4), elevation, azimuth (N,), fov_deg.
    """
    if n_views < 1 or size < 1:
        raise SceneError(f"render_views needs n_views >= 1 and size >= 1, got {n_views}, {size}")
    c2w, el, az = view_cameras(n_views, seed, orbit=orbit, elevation=elevation, radius=radius)
    fov = fov_for_radius(BOUND_RADIUS, radius, margin=1.1) if fov_deg is None else fov_deg
    out = render_scene(scene, c2w, size, size, fov, background=background, labels=labels)
    out.update(c2w=c2w, elevation=el, azimuth=az, fov_deg=torch.tensor(fov))
    return out


def view_cameras(n_views: int, seed: int = 0, *, orbit: bool = False,
                 elevation: tuple[float, float] = (-10.0, 50.0),
                 radius: float = VIEW_RADIUS) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The cameras of ``render_views``: c2w (N, 4, 4), elevation and azimuth (N,) in degrees.

    Random (azimuth uniform in [0, 360), elevation uniform in ``elevation``, from ``seed``), or
    with ``orbit`` a turntable: azimuths evenly spaced from 0 at the middle of ``elevation``.
    """
    if orbit:
        az = torch.arange(n_views, dtype=torch.float32) * (360.0 / n_views)
        el = torch.full((n_views,), 0.5 * (elevation[0] + elevation[1]))
    else:
        g = torch.Generator().manual_seed(seed)
        az = torch.rand(n_views, generator=g) * 360.0
        el = elevation[0] + torch.rand(n_views, generator=g) * (elevation[1] - elevation[0])
    return pose_spherical(el, az, torch.full((n_views,), float(radius))), el, az


# ---- zero-shot split and out-of-distribution sets (Sec. 4.4.1, 4.4.3) ----------------------

# The 9 shapes of Fig. 4.4's in-distribution grid; the other two are never in it (Sec. 4.4.3).
ID_SHAPES = ("sphere", "cube", "torus", "cylinder", "cone", "chair", "table", "vase", "lamp")
OOD_SHAPES = ("capsule", "mug")
OOD_SET_SIZE = 4                    # scenes in each of ood_scenes' sets


def zero_shot_split(seed: int = 0, n_held_out: int = 3, shapes=ID_SHAPES,
                    colours=FAMILY_COLOURS) -> tuple[list[Scene], list[Scene]]:
    """(seen, unseen) plain scenes of the ``shapes`` x ``colours`` grid (Sec. 4.4.1, Fig. 4.4).

    Every shape holds out exactly ``n_held_out`` colours (defaults: 9 x 8 grid, 3 held out,
    45 seen / 27 unseen). The seed shuffles the colours and the shapes; the shuffled shapes then
    take consecutive, wrapping blocks of ``n_held_out`` shuffled colours, so each colour is held
    out floor or ceil of ``len(shapes) * n_held_out / len(colours)`` times and, as long as that
    is below ``len(shapes)``, every colour (and, with ``n_held_out < len(colours)``, every
    shape) is still seen. Both lists keep ``scene_family``'s order. Same seed, same split.
    """
    shapes, colours = list(shapes), list(colours)
    if not shapes or not colours:
        raise SceneError(f"zero_shot_split needs at least one shape and one colour, got "
                         f"shapes={shapes}, colours={colours}")
    if len(set(shapes)) != len(shapes) or len(set(colours)) != len(colours):
        raise SceneError(f"zero_shot_split: shapes and colours must not repeat, got "
                         f"shapes={shapes}, colours={colours}")
    if not 0 <= n_held_out < len(colours):
        raise SceneError(f"n_held_out must be in [0, {len(colours)}) so that every shape keeps a "
                         f"seen colour ({len(colours)} colours), got {n_held_out}")
    most = -(-len(shapes) * n_held_out // len(colours))          # ceil: a colour's most hold-outs
    if most >= len(shapes):
        raise SceneError(f"holding out {n_held_out} of {len(colours)} colours for each of "
                         f"{len(shapes)} shapes leaves some colour never seen; hold out fewer "
                         f"colours or use more shapes")
    family = scene_family(seed, shapes=shapes, colours=colours)  # also checks the words
    rng = random.Random(f"zero-shot:{seed}")
    order = rng.sample(colours, len(colours))
    held = {}
    for i, shape in enumerate(rng.sample(shapes, len(shapes))):
        held[shape] = {order[(i * n_held_out + j) % len(order)] for j in range(n_held_out)}
    seen = [s for s in family if s.colour not in held[s.shape]]
    unseen = [s for s in family if s.colour in held[s.shape]]
    return seen, unseen


def ood_scenes(seed: int = 0) -> dict[str, list[Scene]]:
    """Out-of-distribution scenes for Sec. 4.4.3 (Fig. 4.8), ``OOD_SET_SIZE`` (4) in each set:

    - ``unseen_shape``: ``OOD_SHAPES`` in plain ``FAMILY_COLOURS`` (each shape in distinct colours);
    - ``unseen_attribute``: ``ID_SHAPES`` with an attribute: one scene per attribute, each on a
      different shape;
    - ``both``: ``OOD_SHAPES`` with attributes, one scene per attribute, shapes alternating.

    The seed picks the shapes and colours, and ``make_scene(..., seed=seed)`` the pattern
    (second colour, frequency, split) as everywhere in this module. Same seed, same sets.
    """
    rng = random.Random(f"ood:{seed}")
    n_per_shape = -(-OOD_SET_SIZE // len(OOD_SHAPES))
    unseen_shape = [Scene(s, c) for s in OOD_SHAPES
                    for c in rng.sample(FAMILY_COLOURS, n_per_shape)][:OOD_SET_SIZE]
    attributes = list(ATTRIBUTES)[:OOD_SET_SIZE]
    unseen_attribute = [make_scene(s, rng.choice(FAMILY_COLOURS), a, seed=seed)
                        for s, a in zip(rng.sample(ID_SHAPES, len(attributes)), attributes)]
    first = rng.randrange(len(OOD_SHAPES))
    both = [make_scene(OOD_SHAPES[(first + i) % len(OOD_SHAPES)], rng.choice(FAMILY_COLOURS), a,
                       seed=seed) for i, a in enumerate(attributes)]
    return {"unseen_shape": unseen_shape, "unseen_attribute": unseen_attribute, "both": both}

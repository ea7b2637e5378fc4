"""Part-labelled procedural scenes for HyperSegmentationFields (thesis Sec. 4.4.8).

Sec. 4.4.8 segments novel scenes from a feature field that HyperFields generates from a
handful of posed views. The thesis uses ShapeNet (``data/shapenet.py`` reads it where a user has
it); this module is the family that runs anywhere, with exact part labels: the composite shapes
of ``data/sdf.py`` (chair: seat / leg / back, table: top / leg, vase: body / neck / lip / foot,
lamp: base / pole / shade, mug: body / handle; ``sdf.PART_CLASSES``), each *instance* a colour,
an optional pattern (``scenes.ATTRIBUTES``) and a rotation about the vertical axis (``yaw``), so
that a novel instance differs from every training one in appearance and pose and the model has to
read both from its context views.

``part_scene_split(seed, n_train, n_novel)`` draws training and novel instances from separate
streams (no instance is in both: checked by slug). ``render_scene(..., labels=True)`` renders
their views with per-pixel part labels (0 = background).

    train, novel = part_scene_split(0, n_train=40, n_novel=10)
    views = render_views(train[0], n_views=4, size=32, seed=1, labels=True)   # + "labels"
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch

from priorlab.data.scenes import ATTRIBUTES, FAMILY_COLOURS, Scene, make_scene
from priorlab.data.sdf import COMPOSITE_PARTS, SceneError

PART_SHAPES = tuple(COMPOSITE_PARTS)          # chair, table, vase, lamp, mug
PATTERN_PROBABILITY = 0.5


@dataclass(frozen=True)
class PartScene:
    """A scene of the procedural family turned by ``yaw`` degrees about the y axis."""

    scene: Scene
    yaw: float = 0.0

    def _local(self, points: torch.Tensor) -> torch.Tensor:
        """World points (N, 3) in the unrotated scene's frame (the inverse rotation)."""
        c, s = math.cos(math.radians(self.yaw)), math.sin(math.radians(self.yaw))
        x, y, z = points.unbind(-1)
        return torch.stack([c * x - s * z, y, s * x + c * z], -1)

    def sdf(self, points: torch.Tensor) -> torch.Tensor:
        return self.scene.sdf(self._local(points))

    def albedo(self, points: torch.Tensor) -> torch.Tensor:
        return self.scene.albedo(self._local(points))

    def part_labels(self, points: torch.Tensor) -> torch.Tensor:
        return self.scene.part_labels(self._local(points))

    @property
    def shape(self) -> str:
        return self.scene.shape

    @property
    def slug(self) -> str:
        return f"{self.scene.slug}-yaw{round(self.yaw) % 360:03d}"

    @property
    def prompt(self) -> str:
        return self.scene.prompt


def random_part_scene(rng: random.Random, shape: str, seed: int = 0) -> PartScene:
    """One instance of ``shape``: a colour, a pattern with probability 1/2, a yaw in [0, 360)."""
    colour = rng.choice(FAMILY_COLOURS)
    attribute = rng.choice(list(ATTRIBUTES)) if rng.random() < PATTERN_PROBABILITY else None
    scene = make_scene(shape, colour, attribute, seed=rng.randrange(1 << 30) if attribute else seed)
    return PartScene(scene, round(rng.uniform(0.0, 360.0)) % 360)


def part_scene_split(seed: int = 0, n_train: int = 40, n_novel: int = 10,
                     shapes=PART_SHAPES) -> tuple[list[PartScene], list[PartScene]]:
    """(training, novel) instances, shapes taken in turn; novel ones never equal a training one."""
    shapes = list(shapes)
    unknown = [s for s in shapes if s not in COMPOSITE_PARTS]
    if not shapes or unknown:
        raise SceneError(f"part scenes need shapes with parts, got {unknown or 'none'}; "
                         f"choose from {', '.join(PART_SHAPES)}")
    train_rng = random.Random(f"part-scenes:train:{seed}")
    train: dict[str, PartScene] = {}
    while len(train) < n_train:
        scene = random_part_scene(train_rng, shapes[len(train) % len(shapes)], seed)
        train.setdefault(scene.slug, scene)
    novel_rng = random.Random(f"part-scenes:novel:{seed}")
    novel: dict[str, PartScene] = {}
    while len(novel) < n_novel:
        scene = random_part_scene(novel_rng, shapes[len(novel) % len(shapes)], seed)
        if scene.slug not in train:
            novel.setdefault(scene.slug, scene)
    return list(train.values()), list(novel.values())


__all__ = ["PART_SHAPES", "PartScene", "part_scene_split", "random_part_scene"]

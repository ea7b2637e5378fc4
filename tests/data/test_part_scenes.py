"""Part-labelled scenes (HyperSegmentationFields, thesis Sec. 4.4.8): exact labels per part,
yaw as a true rotation, and training / novel instances that never coincide."""

from __future__ import annotations

import pytest
import torch

from priorlab.data.part_scenes import PART_SHAPES, PartScene, part_scene_split
from priorlab.data.scenes import Scene, render_views
from priorlab.data.sdf import PART_CLASSES, SceneError, part_labels, shape_parts, shape_sdf


def test_every_part_of_every_composite_is_seen_and_labelled_with_its_own_class():
    for shape in PART_SHAPES:
        views = render_views(Scene(shape, "red"), 8, 48, seed=3, labels=True)
        labels, hit = views["labels"], views["opacity"] > 0
        assert bool((labels[~hit] == 0).all())
        assert bool((labels[hit] > 0).all())
        seen = {PART_CLASSES[i] for i in labels[hit].unique().tolist()}
        assert seen == set(shape_parts(shape)), shape


def test_labels_follow_the_geometry():
    seat = torch.tensor([[0.0, -0.05, 0.0], [0.2, -0.05, 0.2]])          # the chair's seat top
    leg = torch.tensor([[0.31, -0.6, 0.31]])
    assert [PART_CLASSES[i] for i in part_labels("chair", torch.cat([seat, leg])).tolist()] == \
        ["seat", "seat", "leg"]
    assert part_labels("sphere", torch.zeros(3, 3)).tolist() == [PART_CLASSES.index("body")] * 3
    with pytest.raises(SceneError, match="unknown shape"):
        shape_parts("teapot")


def test_yaw_is_a_rotation_about_the_vertical_axis():
    scene = PartScene(Scene("chair", "blue"), 90.0)
    p = torch.rand(256, 3) * 1.6 - 0.8
    turned = torch.stack([p[:, 2], p[:, 1], -p[:, 0]], -1)                # p turned by +90 about y
    torch.testing.assert_close(scene.sdf(turned), shape_sdf("chair", p), atol=1e-6, rtol=0)
    torch.testing.assert_close(scene.part_labels(turned), part_labels("chair", p))
    assert scene.slug == "blue-chair-yaw090" and scene.prompt == "a blue chair"


def test_novel_instances_are_never_training_ones_and_the_split_is_seeded():
    train, novel = part_scene_split(0, n_train=30, n_novel=12)
    assert len(train) == 30 and len(novel) == 12
    assert not {s.slug for s in train} & {s.slug for s in novel}
    assert {s.shape for s in train} == set(PART_SHAPES)
    again, _ = part_scene_split(0, n_train=30, n_novel=12)
    assert [s.slug for s in again] == [s.slug for s in train]
    other, _ = part_scene_split(1, n_train=30, n_novel=12)
    assert [s.slug for s in other] != [s.slug for s in train]
    with pytest.raises(SceneError, match="shapes with parts"):
        part_scene_split(0, shapes=["sphere"])

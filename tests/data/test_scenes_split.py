"""The zero-shot split of the colour x shape grid (Sec. 4.4.1) and the OOD sets (Sec. 4.4.3)."""

from collections import Counter

import pytest

from priorlab.data.scenes import (ATTRIBUTES, FAMILY_COLOURS, ID_SHAPES, OOD_SHAPES, SHAPES,
                                  SceneError, make_scene, ood_scenes, scene_family, zero_shot_split)


def grid():
    return scene_family(shapes=ID_SHAPES)


def test_id_and_ood_shapes_partition_the_known_shapes():
    assert len(ID_SHAPES) == 9 and len(FAMILY_COLOURS) == 8
    assert set(ID_SHAPES) | set(OOD_SHAPES) == set(SHAPES)
    assert not set(ID_SHAPES) & set(OOD_SHAPES)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_default_split_is_45_seen_27_unseen_of_the_72_grid(seed):
    seen, unseen = zero_shot_split(seed)
    assert len(seen) == 45 and len(unseen) == 27
    assert not set(seen) & set(unseen)
    assert set(seen) | set(unseen) == set(grid())
    assert all(s.attribute is None for s in seen + unseen)
    order = {s: i for i, s in enumerate(grid())}           # scene_family's order kept
    assert [order[s] for s in seen] == sorted(order[s] for s in seen)
    assert [order[s] for s in unseen] == sorted(order[s] for s in unseen)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_each_shape_holds_out_three_colours_balanced_over_colours(seed):
    seen, unseen = zero_shot_split(seed)
    assert Counter(s.shape for s in unseen) == {shape: 3 for shape in ID_SHAPES}
    held = Counter(s.colour for s in unseen)
    assert set(held.values()) <= {27 // 8, 27 // 8 + 1}            # 3 or 4 each
    assert sum(held.values()) == 27
    assert {s.colour for s in seen} == set(FAMILY_COLOURS)
    assert {s.shape for s in seen} == set(ID_SHAPES)


@pytest.mark.parametrize("n_held_out", [0, 1, 2, 4])
def test_other_hold_out_counts_keep_the_invariants(n_held_out):
    seen, unseen = zero_shot_split(3, n_held_out=n_held_out)
    assert len(unseen) == 9 * n_held_out and len(seen) == 72 - 9 * n_held_out
    assert all(Counter(s.shape for s in unseen)[shape] == n_held_out for shape in ID_SHAPES)
    lo, hi = 9 * n_held_out // 8, -(-9 * n_held_out // 8)
    counts = Counter(s.colour for s in unseen)
    assert all(lo <= counts[c] <= hi for c in FAMILY_COLOURS)
    assert {s.colour for s in seen} == set(FAMILY_COLOURS)


def test_split_is_deterministic_per_seed_and_differs_across_seeds():
    assert zero_shot_split(5) == zero_shot_split(5)
    splits = {frozenset(zero_shot_split(seed)[1]) for seed in range(6)}
    assert len(splits) == 6
    assert set(zero_shot_split(0)[1]) != set(zero_shot_split(1)[1])


@pytest.mark.parametrize("n_held_out", [-1, 8, 9])
def test_bad_hold_out_count_raises(n_held_out):
    with pytest.raises(SceneError, match="n_held_out"):
        zero_shot_split(n_held_out=n_held_out)


def test_a_hold_out_that_would_hide_a_colour_raises():
    # two shapes each hiding 7 of 8 colours: some colour is hidden by both
    with pytest.raises(SceneError, match="never seen"):
        zero_shot_split(n_held_out=7, shapes=("sphere", "cube"))


def test_ood_sets_are_outside_the_grid_and_match_their_key():
    sets = ood_scenes(0)
    assert set(sets) == {"unseen_shape", "unseen_attribute", "both"}
    in_grid = set(grid())
    for name, scenes in sets.items():
        assert 1 <= len(scenes) and len(set(scenes)) == len(scenes), name
        assert not set(scenes) & in_grid, name
    assert all(s.shape in OOD_SHAPES and s.attribute is None and s.colour in FAMILY_COLOURS
               for s in sets["unseen_shape"])
    assert {s.shape for s in sets["unseen_shape"]} == set(OOD_SHAPES)
    attr = sets["unseen_attribute"]
    assert all(s.shape in ID_SHAPES and s.attribute in ATTRIBUTES for s in attr)
    assert sorted(s.attribute for s in attr) == sorted(ATTRIBUTES)      # one per attribute
    assert len({s.shape for s in attr}) == len(attr)                     # on different shapes
    assert all(s.shape in OOD_SHAPES and s.attribute in ATTRIBUTES for s in sets["both"])
    assert {s.shape for s in sets["both"]} == set(OOD_SHAPES)


def test_ood_sets_use_make_scene_patterns_and_are_deterministic_per_seed():
    for seed in (0, 2):
        sets = ood_scenes(seed)
        assert sets == ood_scenes(seed)
        for s in sets["unseen_attribute"] + sets["both"]:
            assert s == make_scene(s.shape, s.colour, s.attribute, seed=seed)
    assert ood_scenes(0) != ood_scenes(1)

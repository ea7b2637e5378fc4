"""`priorlab reproduce` (platform/reproduce.py, platform/cli_reproduce.py): every budget of every
target is a config its study accepts at every grid point, the cpu and paper budgets leave what the
thesis compares to the grid, the thesis' numbers are the studies' own, and one smoke run prints the
thesis' numbers beside ours."""

from __future__ import annotations

import argparse
import json

import pandas as pd
import pytest

from priorlab.platform import cli_reproduce
from priorlab.platform.reproduce import (BUDGETS, TARGETS, ReproduceError, check_plan, get_target,
                                         plan_run)


@pytest.fixture(scope="module")
def shapenet_root(tmp_path_factory):
    """The smallest ShapeNet part benchmark layout (one mug, parts 36 and 37): fig-4.11's paper
    budget reads it when its config is validated."""
    root = tmp_path_factory.mktemp("shapenet")
    (root / "synsetoffset2category.txt").write_text("Mug\t03797390\n")
    (root / "train_test_split").mkdir()
    for split in ("train", "val", "test"):
        (root / "train_test_split" / f"shuffled_{split}_file_list.json").write_text(
            json.dumps(["shape_data/03797390/m1"]))
    (root / "03797390").mkdir()
    (root / "03797390" / "m1.txt").write_text("0 0 0 0 1 0 36\n1 0 0 0 1 0 37\n0 1 0 0 1 0 37\n")
    return root


def _needs(target, budget, shapenet_root):
    """A value for every path the budget needs (none of them is opened but ShapeNet's)."""
    return {k: str(shapenet_root) if k == "shapenet_root" else f"/abs/{k}"
            for k in target.budget(budget).needs}


def _searched(plan):
    """The study's grid after the plan's fixed keys are taken out, as lists of values."""
    from priorlab.platform.reproduce import grid_points
    from priorlab.platform.studies import get_study

    study = get_study(plan.study)
    fixed = {**study.budget, **plan.overrides}
    space = {k: v for k, v in study.space(fixed).items() if k not in fixed}
    points = grid_points(space)
    return {k: sorted({str(p[k]) for p in points}) for k in (points[0] if points else {})}


@pytest.mark.parametrize("target_id", list(TARGETS))
def test_every_budget_is_a_config_the_study_accepts_with_the_declared_seeds(target_id, shapenet_root):
    target = get_target(target_id)
    for budget in BUDGETS:
        plan = plan_run(target_id, budget, overrides=_needs(target, budget, shapenet_root))
        size = check_plan(plan)  # config_from_dict at every grid point; ReproduceError if not
        assert size["seeds"] == target.budget(budget).seeds, (budget, size)
        assert size["trials"] >= 1


@pytest.mark.parametrize("target_id", [t.id for t in TARGETS.values() if t.compares])
def test_cpu_and_paper_budgets_leave_the_compared_choices_to_the_grid(target_id, shapenet_root):
    target = get_target(target_id)
    for budget in ("cpu", "paper"):
        searched = _searched(plan_run(target_id, budget, overrides=_needs(target, budget, shapenet_root)))
        for key in target.compares:
            assert len(searched.get(key, [])) >= 2, (budget, key, searched)


def test_paper_budgets_set_again_every_laptop_setting():
    from priorlab.platform.studies import get_study

    for target in TARGETS.values():
        plan = plan_run(target.id, "paper", overrides={k: "/abs/x" for k in target.paper.needs})
        left = set(get_study(target.study).budget) - set(plan.overrides) - set(target.compares)
        assert not left, (target.id, sorted(left))


def test_the_thesis_numbers_are_the_studies_own():
    from priorlab.search_spaces.memory_baselines import THESIS_CIFAR_FS, THESIS_OMNIGLOT
    from priorlab.search_spaces.memory_continual import THESIS_FIG_2_4
    from priorlab.search_spaces.memory_depth import THESIS_TABLE_A1
    from priorlab.search_spaces.memory_segmentation_injection import THESIS_TABLE_2_2
    from priorlab.search_spaces.molecules_features import ANCHORS

    def row(values):
        return " / ".join(f"{v:.1f}" for v in values)

    for target_id, numbers in (("table-2.1", THESIS_OMNIGLOT), ("table-2.1-cifar-fs", THESIS_CIFAR_FS)):
        for model, values in numbers.items():
            assert f"{model} {row(values)}" in TARGETS[target_id].thesis, (target_id, model)
    for name, values in THESIS_TABLE_2_2.items():
        text = TARGETS["table-2.2-cnn" if name == "Fine-tuned CNN" else "table-2.2"].thesis
        assert f"{row(values[:2])}, {row(values[2:])}" in text, name
    for number in ("93.15", "91.78"):
        assert number in THESIS_FIG_2_4 and number in TARGETS["fig-2.4"].thesis
    for (depth, length), verdict in THESIS_TABLE_A1.items():
        ways = length // 5
        assert f"{ways}-way (T = {length}, effective depth {depth * length}) {verdict}" in (
            TARGETS["table-a.1"].thesis), (depth, length)
    thesis_rows = [float(v) / 100 for k, v in ANCHORS if k.startswith("thesis Table 5.1")]
    assert thesis_rows and all(f"{v:.3f}" in TARGETS["table-5.1"].thesis for v in thesis_rows)


def test_user_errors_say_what_to_do():
    with pytest.raises(ReproduceError, match="table-2.1, table-2.1-cifar-fs"):
        get_target("table-9")
    with pytest.raises(ReproduceError, match="midi_checkpoint=PATH .*priorlab train molecules-pretrain"):
        plan_run("table-5.1", "cpu")
    with pytest.raises(ReproduceError, match="smoke, cpu, paper"):
        plan_run("table-2.1", "laptop")
    # a grid study runs one seed per sweep: two samples would be the same trials twice
    with pytest.raises(ReproduceError, match="seed=1, seed=2"):
        check_plan(plan_run("table-3.1", "smoke", samples=2))
    with pytest.raises(ReproduceError, match=r"unknown config key\(s\) \['widht'\].*valid keys"):
        check_plan(plan_run("table-2.1", "smoke", overrides={"widht": 3}))


def _cli(argv, capsys):
    parser = argparse.ArgumentParser(prog="priorlab")
    cli_reproduce.add_parsers(parser.add_subparsers(dest="command", required=True))
    rc = cli_reproduce.cmd_reproduce(parser.parse_args(["reproduce", *argv]))
    return rc, capsys.readouterr().out


def test_the_list_one_target_and_a_dry_run(capsys):
    rc, listing = _cli([], capsys)
    assert rc == 0 and all(f"\n{t} " in listing for t in TARGETS) and "Not covered:" in listing
    assert all(listing.count(f"\n    {b} ") == len(TARGETS) for b in BUDGETS)

    rc, one = _cli(["table-2.1"], capsys)
    assert rc == 0 and "CL+LSTM 96.8 / 99.4 / 99.7" in one
    assert one.count("runs: priorlab sweep memory-baselines") == 3
    assert "max_iters=100000" in one and "--samples 3" in one    # the paper budget's command

    rc, dry = _cli(["fig-2.2", "--budget", "smoke", "--dry-run", "--samples", "1"], capsys)
    assert rc == 0 and "2 trials, 1 seed(s)" in dry
    assert "priorlab sweep memory-label-injection" in dry and "lr=0.01" in dry and "--samples 1" in dry


@pytest.mark.integration
def test_a_smoke_run_prints_the_thesis_numbers_beside_ours(ray_session, data_root, tmp_path, capsys):
    # the cheapest run: one trial of the fine-tuned CNN row of Table 2.2 (4 iterations, 16x16)
    rc, out = _cli(["table-2.2-cnn", "--budget", "smoke", "--samples", "1", "--runs-dir", str(tmp_path),
                    "--name", "smoke", "--data-dir", str(data_root)], capsys)
    assert rc == 0
    ours = pd.read_parquet(tmp_path / "smoke" / "results.parquet")
    assert len(ours) == 1 and ours["status"].eq("TERMINATED").all()
    report, thesis = out.split("== The thesis (Table 2.2", 1)
    row = next(line for line in report.splitlines() if line.startswith("Fine-tuned CNN"))
    assert f"{ours['eval/iou_1shot'].iloc[0]:.3f} (n=1)" in row      # ours, in Table 2.2's layout
    assert row.rstrip().endswith("65.3 / 64.0 / 23.1 / 23.6")          # the thesis' row beside it
    assert "Fine-tuned CNN 65.3 / 64.0, 23.1 / 23.6" in thesis
    assert "== What the smoke budget settles ==\nnothing" in thesis

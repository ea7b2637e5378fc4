import json

import numpy as np
import pandas as pd
import pytest

from priorlab.platform.report import STUDY_FILE, ReportError, build_report, summarise
from priorlab.platform.results import ResultsStore, trial_row


def test_trial_row_prefixes_config_and_drops_noise():
    row = trial_row("t1", "TERMINATED", {"lr": 0.1, "report_shots": [1, 2]},
                    {"eval/acc_1shot": 0.5, "pid": 3, "training_iteration": 4, "config": {}})
    assert row["config/lr"] == 0.1 and row["config/report_shots"] == "[1, 2]"
    assert row["eval/acc_1shot"] == 0.5 and row["iterations"] == 4 and "pid" not in row


def test_upsert_keeps_finished_trials(tmp_path):
    store = ResultsStore(tmp_path)
    store.upsert([trial_row("a", "TERMINATED", {"x": 1}, {"m": 0.1})])
    store.upsert([trial_row("b", "TERMINATED", {"x": 2}, {"m": 0.2})])
    store.upsert([trial_row("a", "TERMINATED", {"x": 1}, {"m": 0.3})])
    df = store.read()
    assert list(df["trial_id"]) == ["a", "b"] and list(df["m"]) == [0.3, 0.2]
    assert not list(tmp_path.glob("*.tmp"))


def test_summarise_mean_std_n():
    df = pd.DataFrame({"config/mode": ["a", "a", "b"], "acc": [0.2, 0.4, 0.9]})
    t = summarise(df, ["mode"], ["acc"]).set_index("mode")
    assert t.loc["a", "acc mean"] == pytest.approx(0.3)
    assert t.loc["a", "acc std"] == pytest.approx(np.std([0.2, 0.4], ddof=1))
    assert t.loc["b", "acc n"] == 1


def test_report_groups_by_swept_choice_and_plots(tmp_path):
    (tmp_path / STUDY_FILE).write_text(json.dumps(
        {"study": "memory-label-injection", "fixed": {"report_shots": [1, 4]}, "seed": 0}))
    rows = []
    for i, (mode, a1, a4) in enumerate([("first", .5, .7), ("first", .6, .8), ("lstm", .3, .4)]):
        rows.append(trial_row(f"t{i}", "TERMINATED", {"label_injection": mode},
                              {"eval/acc_1shot": a1, "eval/acc_4shot": a4}))
    ResultsStore(tmp_path).upsert(rows)
    rep = build_report(tmp_path)
    assert "first" in rep.text and "0.550 ± 0.071" in rep.text and "lstm" in rep.text
    assert rep.plot_path.stat().st_size > 1000 and rep.csv_path.is_file()
    assert "± = std over the n trials" in rep.text and "chance level 0.200" in rep.text
    assert "budget and fixed settings of every trial: report_shots=[1,4]" in rep.text


def _memory_experiment(tmp_path, trials, fixed=None):
    """trials: (trial_id, status, mode, {step: acc_1shot}) -> an experiment folder."""
    fixed = fixed or {"report_shots": [1], "max_iters": 40, "eval_every": 10}
    (tmp_path / STUDY_FILE).write_text(json.dumps(
        {"study": "memory-label-injection", "fixed": fixed, "seed": 0}))
    store = ResultsStore(tmp_path)
    for tid, status, mode, curve in trials:
        config = {**fixed, "label_injection": mode}
        rows = [trial_row(tid, "RUNNING", config, {"step": float(k), "eval/acc_1shot": v,
                                                   "eval/acc_1shot_ci95": 0.01})
                for k, v in sorted(curve.items())]
        store.append_history(rows, key="step")
        last = rows[-1] | {"status": status} if rows else trial_row(tid, status, config, {})
        if status == "ERROR":
            last["error_file"] = str(tmp_path / f"trial_{tid}" / "error.txt")
        store.upsert([last])
    return tmp_path


def test_failed_trials_are_left_out_and_listed(tmp_path):
    exp = _memory_experiment(tmp_path, [
        ("a", "TERMINATED", "first", {10: 0.4, 20: 0.5, 30: 0.6, 40: 0.7}),
        ("b", "TERMINATED", "first", {10: 0.4, 20: 0.5, 30: 0.6, 40: 0.5}),
        ("c", "ERROR", "first", {10: 0.0}),  # its partial metrics must not pull the mean down
    ])
    rep = build_report(exp)
    row = rep.table.set_index("label_injection").loc["first"]
    assert row["eval/acc_1shot mean"] == pytest.approx(0.6) and row["eval/acc_1shot n"] == 2
    assert rep.failed == 1 and "1 trial(s) failed" in rep.text
    assert str(exp / "trial_c" / "error.txt") in rep.text


def test_choices_are_compared_at_equal_budget(tmp_path):
    # ASHA stopped every `lstm` trial at step 20; `first` ran to 40 and is better late on only.
    exp = _memory_experiment(tmp_path, [
        ("a", "TERMINATED", "first", {10: 0.3, 20: 0.35, 30: 0.6, 40: 0.8}),
        ("b", "TERMINATED", "lstm", {10: 0.3, 20: 0.45}),
        ("c", "TERMINATED", "lstm", {10: 0.3, 20: 0.55}),
        ("d", "TERMINATED", "first", {10: 0.2}),  # stopped before the common budget: left out
    ])
    rep = build_report(exp)
    assert rep.budget == 20
    t = rep.table.set_index("label_injection")
    assert t.loc["first", "eval/acc_1shot mean"] == pytest.approx(0.35)  # its step-20 report, not 0.8
    assert t.loc["first", "eval/acc_1shot n"] == 1 and t.loc["lstm", "eval/acc_1shot n"] == 2
    assert t.loc["lstm", "eval/acc_1shot mean"] == pytest.approx(0.5)
    assert "every choice at step 20" in rep.text
    assert "Trials that ran to the end (1 of 4" in rep.text and "0.800" in rep.text
    assert "0.350 ± 0.010*" in rep.text  # n = 1: the trial's own interval over episodes, marked


def test_history_is_appended_and_deduplicated_by_progress(tmp_path):
    store = ResultsStore(tmp_path)
    store.append_history([{"trial_id": "a", "step": 10.0, "m": 0.1}], key="step")
    store.append_history([{"trial_id": "a", "step": 20.0, "m": 0.2}], key="step")
    # a resumed trial reports step 20 again: the newer row replaces the old one
    store.append_history([{"trial_id": "a", "step": 20.0, "m": 0.25},
                          {"trial_id": "b", "step": 10.0, "m": 0.3}], key="step")
    h = store.read_history().sort_values(["trial_id", "step"])
    assert list(h["m"]) == [0.1, 0.25, 0.3]


def test_report_errors_are_actionable(tmp_path):
    with pytest.raises(ReportError, match="not a priorlab experiment"):
        build_report(tmp_path)
    (tmp_path / STUDY_FILE).write_text(json.dumps({"study": "memory-label-injection", "fixed": {}}))
    with pytest.raises(ReportError, match="--resume"):
        build_report(tmp_path)


def test_hyper_maml_report_is_laid_out_as_tables_3_6_and_3_7(tmp_path):
    fixed = {"meta_train": "omniglot", "cross_domain": "digits", "arch": "resnet12",
             "meta_iters": 2, "eval_every": 1}
    (tmp_path / STUDY_FILE).write_text(json.dumps({"study": "hyper-maml", "fixed": fixed, "seed": 0}))
    rows, history = [], []
    rng = np.random.default_rng(0)
    for i, (hyper, k) in enumerate([(h, k) for h in (True, False) for k in (1, 5) for _ in range(3)]):
        metrics = {"eval/same/acc": rng.uniform(), "eval/cross/acc": rng.uniform(),
                   "eval/val/acc": rng.uniform(),
                   "diag/movement_early": 0.01, "diag/movement_mid": 0.02,
                   "diag/movement_late": 0.03, "iteration": 2}
        config = {**fixed, "hyper": hyper, "k_shot": k, "seed": i % 3}
        rows.append(trial_row(f"t{i}", "TERMINATED", config, metrics))
        history += [trial_row(f"t{i}", "RUNNING", config, {**metrics, "iteration": it})
                    for it in (0, 1, 2)]
    ResultsStore(tmp_path).upsert(rows, history)
    rep = build_report(tmp_path)
    assert "cf. Table 3.6" in rep.text and "cf. Table 3.7" in rep.text and "Fig. 3.5" in rep.text
    assert "HyperResNet-12" in rep.text and "1-shot 5-way" in rep.text and "(n=3)" in rep.text
    md = rep.tables_path.read_text()
    assert md.count("| HyperResNet-12 |") >= 3 and md.count("| ResNet-12 |") >= 3
    assert rep.curves_path.stat().st_size > 1000


@pytest.mark.parametrize("study, grid, metric", [
    ("hyper-rsc", {"hyper": [True, False], "target_domain": ["photo", "art_painting", "cartoon", "sketch"]},
     "Table 3.8"),
    ("hyper-design", {"sharing": ["global", "unshared"], "bias": [True, False],
                      "lambda_output_l2": [0.0, 6.25e-5], "swa": [True, False]}, "Table 3.1"),
])
def test_hyper_study_reports_have_thesis_tables(tmp_path, study, grid, metric):
    import itertools

    (tmp_path / STUDY_FILE).write_text(json.dumps({"study": study, "fixed": {"epochs": 1}, "seed": 0}))
    keys = list(grid)
    rows = [trial_row(f"t{i}", "TERMINATED", dict(zip(keys, values)), {"eval/acc": 0.1 * (i % 7)})
            for i, values in enumerate(itertools.product(*grid.values()))]
    ResultsStore(tmp_path).upsert(rows)
    rep = build_report(tmp_path)
    assert metric in rep.text and rep.tables_path.is_file()
    if study == "hyper-rsc":
        assert "HyperResNet-18" in rep.text and "mean" in rep.text and "sketch" in rep.text
    else:
        assert "W/O Bias" in rep.text and "l2 = 0" in rep.text and "SWA" in rep.text


@pytest.mark.parametrize("study, grid, metrics, title", [
    ("fields-distillation", {"objective": ["distill", "direct"]},
     ("seen/psnr", "unseen/psnr", "gap/psnr", "seen/ssim"), "Fig. 4.10"),
    ("fields-dynamic", {"dynamic": [True, False], "pack_size": [4, 16]}, ("seen/psnr",), "Fig. 4.9"),
    ("fields-segmentation", {"dynamic": [True, False], "context_views": [2, 4]},
     ("novel/miou", "novel/miou_majority", "novel/fg_iou", "novel/psnr", "seen/miou"), "Sec. 4.4.8"),
])
def test_fields_study_reports_have_thesis_tables(tmp_path, study, grid, metrics, title):
    import itertools

    (tmp_path / STUDY_FILE).write_text(json.dumps({"study": study, "fixed": {"steps": 2}, "seed": 0}))
    keys = list(grid)
    rng = np.random.default_rng(0)
    rows = [trial_row(f"t{i}-{seed}", "TERMINATED", {**dict(zip(keys, values)), "seed": seed},
                      {**{m: float(rng.uniform(10, 20)) for m in metrics}, "step": 2.0})
            for i, values in enumerate(itertools.product(*grid.values())) for seed in (0, 1)]
    ResultsStore(tmp_path).upsert(rows)
    rep = build_report(tmp_path)
    assert title in rep.text and "(n=2)" in rep.text and "paired" in rep.text
    assert rep.tables_path.is_file()

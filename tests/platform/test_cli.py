"""CLI errors a user can fix: one clear line, exit status 2, nothing started."""

import pytest

from priorlab.platform.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    return code, capsys.readouterr().err


def test_unknown_study_lists_studies(capsys):
    code, err = run(capsys, "sweep", "no-such-study")
    assert code == 2 and "memory-label-injection" in err and "no-such-study" in err


def test_unknown_override_names_key_and_valid_keys(capsys):
    code, err = run(capsys, "sweep", "memory-label-injection", "chanels=8")
    assert code == 2 and "chanels" in err and "valid keys" in err and "channels" in err


def test_ill_typed_override(capsys):
    code, err = run(capsys, "sweep", "memory-label-injection", "--samples", "1", "lr=fast")
    assert code == 2 and "lr='fast'" in err


def test_missing_data_names_files_root_and_command(capsys, tmp_path):
    code, err = run(capsys, "sweep", "memory-label-injection", "--data-dir", str(tmp_path))
    assert code == 2 and str(tmp_path) in err and "priorlab data download omniglot" in err
    assert "images_background.zip" in err or "train.txt" in err


def test_unreachable_address_says_how_to_run_locally(capsys, tmp_path, data_root):
    code, err = run(capsys, "sweep", "memory-label-injection", "--address", "127.0.0.1:9",
                    "--runs-dir", str(tmp_path))
    assert code == 2 and "could not reach" in err and "leaving out --address" in err


def test_existing_experiment_is_not_touched(capsys, tmp_path, data_root):
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "keep.txt").write_text("x")
    code, err = run(capsys, "sweep", "memory-label-injection", "--runs-dir", str(tmp_path),
                    "--name", "exp")
    assert code == 2 and "--resume" in err
    assert (tmp_path / "exp" / "keep.txt").read_text() == "x"


def test_eval_rejects_non_checkpoint(capsys, tmp_path):
    code, err = run(capsys, "eval", str(tmp_path))
    assert code == 2 and "holds no priorlab checkpoint" in err and "experiment folder" in err


def test_eval_names_a_damaged_checkpoint_file(capsys, tmp_path):
    from priorlab.methods.memory.config import MemoryConfig
    from priorlab.methods.memory.loop import MemoryLearner

    ckpt = MemoryLearner(MemoryConfig(channels=4, lstm_hidden=16, n_shot=3, report_shots=[1])).save(tmp_path / "c")
    (ckpt / "meta.json").write_text("{truncated")
    code, err = run(capsys, "eval", str(ckpt))
    assert code == 2 and str(ckpt / "meta.json") in err and "Traceback" not in err


def test_stray_arguments_are_rejected():
    with pytest.raises(SystemExit):
        main(["report", "x", "y=1"])


def test_eval_prints_kshot_accuracies_with_intervals(capsys, tmp_path, data_root):
    from priorlab.methods.memory.config import MemoryConfig
    from priorlab.methods.memory.loop import MemoryLearner

    cfg = MemoryConfig(channels=4, lstm_hidden=16, n_shot=3, report_shots=[1, 2])
    MemoryLearner(cfg).save(tmp_path / "ckpt")
    assert main(["eval", str(tmp_path / "ckpt"), "--episodes", "12"]) == 0
    out = capsys.readouterr().out
    assert "12 test episodes" in out and "95% CI" in out
    lines = [l.split() for l in out.splitlines() if l.strip()[:1].isdigit()]
    assert [int(l[0]) for l in lines] == [0, 1, 2]
    assert all(0.0 <= float(l[1]) <= 1.0 for l in lines)
    # the same checkpoint on the same (fixed) episodes gives the same numbers
    assert main(["eval", str(tmp_path / "ckpt"), "--episodes", "12"]) == 0
    assert capsys.readouterr().out == out


def test_eval_takes_a_run_folder_or_an_experiment(capsys, tmp_path, data_root):
    """A trial's run folder means its latest checkpoint; an experiment means its best finished
    trial (a failed trial never counts, even with a better metric)."""
    import json

    from priorlab.methods.memory.config import MemoryConfig
    from priorlab.methods.memory.loop import MemoryLearner
    from priorlab.platform.results import ResultsStore, trial_row

    cfg = MemoryConfig(channels=4, lstm_hidden=16, n_shot=3, report_shots=[1])
    exp = tmp_path / "exp"
    for trial, steps in (("a", (2, 4)), ("b", (2,)), ("c", (2,))):
        for step in steps:
            learner = MemoryLearner(cfg)
            learner.step = step
            learner.save(exp / "train_runs" / f"train_{trial}" / f"checkpoint_{step:09d}")
    assert main(["eval", str(exp / "train_runs" / "train_a"), "--episodes", "4"]) == 0
    captured = capsys.readouterr()
    assert "checkpoint at step 4" in captured.out and "checkpoint_000000004" in captured.err

    (exp / "study.json").write_text(json.dumps({"study": "memory-label-injection", "fixed": {}}))
    ResultsStore(exp).upsert([trial_row("a", "TERMINATED", {}, {"eval/acc_1shot": 0.3}),
                              trial_row("b", "TERMINATED", {}, {"eval/acc_1shot": 0.6}),
                              trial_row("c", "ERROR", {}, {"eval/acc_1shot": 0.9})])
    assert main(["eval", str(exp), "--episodes", "4"]) == 0
    err = capsys.readouterr().err
    assert "best finished trial b" in err and "1 failed trial(s) not considered" in err


def _eval_table(out: str) -> dict[str, float]:
    return {l.split()[0]: float(l.split()[1]) for l in out.splitlines() if l.startswith("eval/")}


def test_eval_scores_a_continual_checkpoint(capsys, tmp_path, data_root):
    from priorlab.methods.memory.continual import ContinualConfig
    from priorlab.methods.memory.continual_loop import ContinualLearner

    cfg = ContinualConfig(image_size=28, conv_layers=2, channels=4, lstm_hidden=8, pln_hidden=8,
                          subtasks=3, n_labels=5, n_query=2, eval_lengths=[2])
    ContinualLearner(cfg).save(tmp_path / "ckpt")
    assert main(["eval", str(tmp_path / "ckpt"), "--episodes", "6", "--split", "val"]) == 0
    out = capsys.readouterr().out
    assert "memory-continual checkpoint at step 0, 6 val episodes" in out
    table = _eval_table(out)
    assert {"eval/acc_len2", "eval/acc_len3", "eval/acc_subtask1", "eval/acc_subtask3"} <= set(table)
    assert all(0.0 <= v <= 1.0 for v in table.values())
    assert main(["eval", str(tmp_path / "ckpt"), "--episodes", "6", "--split", "val"]) == 0
    assert capsys.readouterr().out == out      # fixed tasks: the same numbers again


def test_eval_scores_a_segmentation_checkpoint(capsys, tmp_path, data_root):
    from priorlab.methods.memory.segmentation import SegmentationConfig
    from priorlab.methods.memory.segmentation_loop import SegmentationLearner

    cfg = SegmentationConfig(source="omniglot", image_size=16, channels=[3, 4, 4, 4, 4, 4, 4, 4, 3, 3], n_targets=3,
                             n_distractors=3, report_shots=[1])
    SegmentationLearner(cfg).save(tmp_path / "ckpt")
    assert main(["eval", str(tmp_path / "ckpt"), "--episodes", "4", "--split", "val"]) == 0
    out = capsys.readouterr().out
    assert "memory-segmentation checkpoint at step 0, 4 val episodes" in out
    table = _eval_table(out)
    assert {"eval/iou_1shot", "eval/mask_1shot", "eval/iou_mean", "eval/mask_mean"} <= set(table)
    assert all(0.0 <= v <= 1.0 for v in table.values())

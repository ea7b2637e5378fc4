"""Studies `memory-continual` (Fig. 2.3, 2.4) and `memory-depth` (Table A.1): grids whose every
configuration builds under the laptop budget, and reports in the thesis' layout."""

import pandas as pd

from priorlab.methods.configuration import config_from_dict
from priorlab.methods.memory.continual import ContinualConfig, build_continual_model
from priorlab.platform.studies import get_study
from priorlab.platform.sweep import choices_only


def test_the_continual_study_is_a_grid_of_the_three_models_with_fig_2_3_and_2_4_tables():
    study = get_study("memory-continual")
    assert choices_only(study.space()) == {"model": ["cl_lstm", "oml", "anml"]}
    for m in ("cl_lstm", "oml", "anml"):
        build_continual_model(config_from_dict(ContinualConfig, {**study.budget, "model": m}))
    assert study.curve(dict(study.budget)) == {5.0: "eval/acc_len5", 8.0: "eval/acc_len8",
                                               10.0: "eval/acc_len10"}
    rows = [{"config/model": m, "eval/acc_len5": a, "eval/acc_len8": a - 0.1, "eval/acc_len10": a - 0.2,
             **{f"eval/acc_subtask{i}": a for i in range(1, 11)}}
            for m, a in (("cl_lstm", 0.8), ("cl_lstm", 0.9), ("oml", 0.6), ("oml", 0.62))]
    fig23, fig24 = study.tables(pd.DataFrame(rows), dict(study.budget))
    assert list(fig23.frame.index) == ["CL+LSTM", "OML"]
    assert list(fig23.frame.columns) == ["n = 5", "n = 8", "n = 10"]
    assert fig23.frame.loc["CL+LSTM", "n = 5"].startswith("0.850 ±")
    assert list(fig24.frame.columns)[:2] == ["#1", "#2"] and "93.15" in fig24.title


def test_the_depth_study_crosses_depth_task_length_and_skip_as_table_a1():
    study = get_study("memory-depth")
    assert choices_only(study.space()) == {"conv_layers": [2, 4], "subtasks": [4, 5, 6, 7],
                                           "skip": [True, False]}
    cfg = config_from_dict(ContinualConfig, {**study.budget, "conv_layers": 2, "subtasks": 7})
    assert cfg.order == "shuffled" and cfg.resolved_skip_pair() == [0, 1]
    net = build_continual_model(cfg).net
    assert net.skip == (0, 1)
    no_skip = config_from_dict(ContinualConfig, {**study.budget, "subtasks": 5, "skip": False})
    assert build_continual_model(no_skip).net.skip is None
    rows = [{"config/conv_layers": c, "config/subtasks": k, "config/skip": s, "eval/acc": 0.5}
            for c in (2, 4) for k in (4, 7) for s in (True, False) for _ in range(2)]
    [table] = study.tables(pd.DataFrame(rows), dict(study.budget))
    assert list(table.frame.columns) == ["T = 20", "T = 35"]
    assert "depth 4, skip on" in table.frame.index and "depth 6, skip off" in table.frame.index
    assert "Table A.1" in table.title and "depth 6 x T 25 = 150: no" in table.title

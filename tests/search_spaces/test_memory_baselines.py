"""Study `memory-baselines`: every model of the space builds under the study's budget, and the
report lays results out as Table 2.1 with the thesis' numbers beside them."""

import pandas as pd

from priorlab.methods.configuration import config_from_dict
from priorlab.methods.memory.cl_lstm import build_model
from priorlab.methods.memory.config import MemoryConfig
from priorlab.platform.studies import get_study
from priorlab.platform.sweep import choices_only


def test_every_model_builds_under_the_budget_and_runs_as_a_grid():
    study = get_study("memory-baselines")
    models = list(study.space()["model"].categories)
    assert models == ["cl_lstm", "lstm", "ntm", "apl", "opn", "cpm"]
    assert choices_only(study.space()) == {"model": models}      # all of them, to the end, per seed
    for m in models:
        build_model(config_from_dict(MemoryConfig, {**study.budget, "model": m}))


def test_the_report_is_laid_out_as_table_2_1():
    study = get_study("memory-baselines")
    rows = [{"config/model": m, "eval/acc_1shot": a, "eval/acc_2shot": a + 0.1, "eval/acc_4shot": a + 0.2}
            for m, a in (("cl_lstm", 0.5), ("cl_lstm", 0.6), ("opn", 0.7), ("opn", 0.72))]
    [table] = study.tables(pd.DataFrame(rows), dict(study.budget))
    frame = table.frame
    assert list(frame.index) == ["CL+LSTM", "OPN"]
    assert list(frame.columns)[:3] == ["1-shot", "2-shot", "4-shot"]
    assert frame.loc["CL+LSTM", "1-shot"].startswith("0.550 ±")
    assert frame.loc["OPN", "thesis 1/5/8-shot (Omniglot, 100k it.)"] == "91.2 / 94.6 / 95.8"
    assert "Table 2.1" in table.title and "3000 iterations" in table.title
    # with dataset=cifar_fs the thesis column is CIFAR-FS's, "-" where the thesis has no number
    [table] = study.tables(pd.DataFrame(rows), dict(study.budget, dataset="cifar_fs", image_size=32))
    assert table.frame.loc["CL+LSTM", "thesis 1/5/8-shot (CIFAR-FS, 100k it.)"] == "47.6 / 56.7 / 61.0"
    assert "CIFAR-FS" in table.title


def test_the_delay_study_is_a_grid_of_models_and_delays_with_a_table_per_shot():
    study = get_study("memory-delay")
    assert choices_only(study.space()) == {"model": ["cl_lstm", "opn", "cpm"], "label_delay": [1, 3, 6]}
    rows = [{"config/model": m, "config/label_delay": d, "eval/acc_1shot": 0.5, "eval/acc_2shot": 0.6,
             "eval/acc_4shot": 0.7} for m in ("cl_lstm", "opn") for d in (1, 6) for _ in range(2)]
    tables = study.tables(pd.DataFrame(rows), dict(study.budget))
    assert len(tables) == 3 and list(tables[0].frame.columns) == ["d = 1", "d = 6"]
    assert list(tables[0].frame.index) == ["CL+LSTM", "OPN"] and "1-shot" in tables[0].title
    for d in (1, 6):
        build_model(config_from_dict(MemoryConfig, {**study.budget, "model": "cpm", "label_delay": d}))

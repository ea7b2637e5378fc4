import dataclasses

from priorlab.methods.configuration import config_from_dict
from priorlab.methods.memory.config import MemoryConfig
from priorlab.platform.studies import STUDIES, get_study


def test_every_study_space_uses_config_field_names():
    for name in STUDIES:
        study = get_study(name)
        fields = {f.name for f in dataclasses.fields(study.config_cls)}
        assert set(study.space()) <= fields, name
        assert set(study.group_by) <= fields, name
        config_from_dict(study.config_cls, study.budget)  # the budget is a valid config


def test_label_injection_space_covers_the_three_modes():
    study = get_study("memory-label-injection")
    assert sorted(study.space()["label_injection"].categories) == ["every", "first", "lstm"]
    assert study.metric == "eval/acc_1shot" and study.mode == "max"
    assert study.curve({"report_shots": [1, 5]}) == {1.0: "eval/acc_1shot", 5.0: "eval/acc_5shot"}
    assert MemoryConfig().label_injection == "first"

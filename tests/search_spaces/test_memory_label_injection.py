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
        config_from_dict(study.config_cls, {**study.train_point, **study.budget})  # a valid config


def test_label_injection_space_covers_the_three_modes():
    study = get_study("memory-label-injection")
    assert sorted(study.space()["label_injection"].categories) == ["every", "first", "lstm"]
    assert sorted(study.space({"conv_layers": 4})["label_injection"].categories) == [
        "every", "first", "lstm"]
    # one ConvLSTM layer: `every` injects where `first` does, so it is not a separate choice
    assert study.space({"conv_layers": 1})["label_injection"].categories == ["first", "lstm"]
    assert study.metric == "eval/acc_1shot" and study.mode == "max"
    assert study.curve({"report_shots": [1, 5]}) == {1.0: "eval/acc_1shot", 5.0: "eval/acc_5shot"}
    assert MemoryConfig().label_injection == "first"


def test_a_space_of_choices_only_runs_as_a_grid_with_seeds():
    from ray import tune

    from priorlab.platform.sweep import choices_only

    study = get_study("memory-label-injection")
    pinned = {"lr": 0.01, "channels": 8, "conv_layers": 1}
    space = {k: v for k, v in study.space(pinned).items() if k not in pinned}
    assert choices_only(space) == {"label_injection": ["first", "lstm"]}
    assert choices_only({}) == {}
    assert choices_only(study.space()) is None  # lr is continuous: Optuna searches it
    assert choices_only({"x": tune.grid_search([1, 2])}) is None


def test_searcher_starts_with_each_distinct_mode():
    study = get_study("memory-label-injection")
    space = study.space({"conv_layers": 1})
    searcher = study.make_searcher(0, space)
    starts = searcher._points_to_evaluate
    assert [p["label_injection"] for p in starts] == ["first", "lstm"]
    assert all(set(p) == {"label_injection", "lr", "channels"} for p in starts)


def test_optuna_searcher_keeps_its_study_in_the_experiment_storage(tmp_path):
    """What `priorlab sweep` gives the searcher: optuna-dashboard can open EXPERIMENT/optuna.db."""
    import optuna

    from priorlab.platform.tracking import optuna_storage, optuna_url

    study = get_study("memory-label-injection")
    space = study.space({"conv_layers": 1})
    searcher = study.make_searcher(0, space, storage=optuna_storage(tmp_path), study_name="exp")
    assert searcher.set_search_properties(study.metric, study.mode, space)
    for i, acc in enumerate([0.3, 0.5]):
        config = searcher.suggest(f"t{i}")
        assert config["label_injection"] in ("first", "lstm")
        searcher.on_trial_complete(f"t{i}", {study.metric: acc, "training_iteration": 1})
    stored = optuna.load_study(study_name="exp", storage=optuna_url(tmp_path))
    assert [t.value for t in stored.trials] == [0.3, 0.5]
    assert {"label_injection", "lr", "channels"} <= set(stored.trials[0].params)

"""The RSC trainable on a tiny PACS written in the real folder layout, and the hyper-rsc study."""

import pytest

from priorlab.data.images import PACS_CLASSES, PACS_DOMAINS
from priorlab.data.root import MissingDataError
from priorlab.methods.configuration import ConfigError
from priorlab.methods.hyper.config import HyperConfig
from priorlab.methods.hyper.loop import SupervisedLearner

TINY = dict(arch="resnet18", widths=[4, 4, 8, 8], stem="cifar")


def _pretrained(path, hyper):
    SupervisedLearner(HyperConfig(**TINY, hyper=hyper, num_classes=5, in_channels=3)).save(path)
    return str(path)


def test_study_grid_and_prepare_data_fail_fast(tmp_path, write_pacs):
    from priorlab.platform.studies import get_study

    study = get_study("hyper-rsc")
    space = study.space()
    assert space["hyper"]["grid_search"] == [True, False]
    assert sorted(space["target_domain"]["grid_search"]) == sorted(PACS_DOMAINS)
    assert study.metric == "eval/acc" and study.make_scheduler(30) is None
    assert study.reports_per_trial({"epochs": 30}) == 30

    hyper, plain = _pretrained(tmp_path / "h", True), _pretrained(tmp_path / "p", False)
    fixed = dict(pretrained_hyper=hyper, pretrained_plain=plain)
    with pytest.raises(MissingDataError, match="pacs"):
        study.prepare_data(tmp_path / "no-data", fixed)
    root = write_pacs(tmp_path / "data", per_class=1)
    study.prepare_data(root, fixed)
    with pytest.raises(ConfigError, match="pretrained_plain"):  # swapped checkpoints
        study.prepare_data(root, dict(pretrained_hyper=hyper, pretrained_plain=hyper))
    with pytest.raises(ConfigError, match="does not exist"):
        study.prepare_data(root, dict(fixed, pretrained_hyper=str(tmp_path / "typo")))
    study.prepare_data(root, dict(fixed, hyper=False, pretrained_hyper=""))  # only the plain one is used


# Resume tolerance: the resumed run sees the same batches and augmentations (generators seeded
# from (seed, epoch)) and restores the weights, momentum, LR schedule and the global RNG (RSC's
# mode choice), so its losses should be bit-identical; 1e-6 relative allows float reduction order.
RESUME_RTOL = 1e-6


@pytest.mark.integration
def test_rsc_trainable_reports_target_accuracy_checkpoints_and_resumes_exactly(ray_session, tmp_path,
                                                                               write_pacs):
    from priorlab.methods.checkpoint import load_checkpoint
    from priorlab.methods.hyper.export import export_plain
    from priorlab.methods.hyper.rsc import METHOD, load_model
    from priorlab.trainables.rsc import fit

    root = write_pacs(tmp_path / "data", per_class=2)  # 42 source images, 14 target
    cfg = dict(hyper=True, pretrained_hyper=_pretrained(tmp_path / "pre", True), target_domain="cartoon",
               image_size=24, epochs=4, batch_size=8, lr_milestones=[3], val_fraction=0.2,
               data_root=str(root), storage_path=str(tmp_path / "runs"), cpus_per_worker=1.0)
    full = fit(dict(cfg, run_name="full"))  # 4 epochs, uninterrupted

    first = fit(dict(cfg, epochs=2, run_name="cut"))  # interrupted after 2 ...
    m = first.metrics
    assert m["epoch"] == 2 and 0.0 <= m["eval/acc"] <= 1.0 and 0.0 <= m["eval/val_acc"] <= 1.0
    assert "eval/acc_at_best_val" in m and "train/loss_output_l2" in m
    ckpt = load_checkpoint(first.checkpoint.path, method=METHOD)
    assert ckpt.step == 2 and ckpt.config["target_domain"] == "cartoon"
    assert ckpt.model_state["fc.weight"].shape[0] == len(PACS_CLASSES)

    second = fit(dict(cfg, run_name="cut"))  # ... and resumed to 4 under the same run name
    assert second.metrics["train/start_epoch"] == 2 and second.metrics["epoch"] == 4
    # The last two reports (the kept checkpoints) of each run: epochs 3 and 4.
    resumed = {m["epoch"]: m for _, m in second.best_checkpoints}
    uninterrupted = {m["epoch"]: m for _, m in full.best_checkpoints}
    assert sorted(resumed) == sorted(uninterrupted) == [3.0, 4.0]
    for epoch in (3.0, 4.0):
        for key in ("train/loss", "train/challenged_frac"):
            assert resumed[epoch][key] == pytest.approx(uninterrupted[epoch][key], rel=RESUME_RTOL), (
                epoch, key)
    plain = export_plain(load_model(second.checkpoint.path))
    assert plain.fc.out_features == len(PACS_CLASSES)

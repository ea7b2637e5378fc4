"""Integration: the supervised (Hyper)WRN trainable on Omniglot classification, checkpoint + resume."""

import pytest

pytestmark = pytest.mark.integration


def test_hyper_trainable_reports_checkpoints_and_resumes(ray_session, data_root, tmp_path):
    from priorlab.methods.checkpoint import load_checkpoint
    from priorlab.methods.hyper.config import HyperConfig
    from priorlab.methods.hyper.export import export_plain
    from priorlab.methods.hyper.resnets import build_model
    from priorlab.trainables.hyper import fit

    cfg = dict(dataset="omniglot", num_classes=5, in_channels=1, arch="wrn", wrn_depth=10,
               wrn_widen=1, epochs=2, lr_milestones=[1], batch_size=16, swa=True,
               swa_start_epoch=1, data_root=str(data_root), storage_path=str(tmp_path),
               run_name="hyper")
    first = fit(cfg)
    assert first.metrics["epoch"] == 2 and 0.0 <= first.metrics["eval/acc"] <= 1.0
    assert "train/loss_output_l2" in first.metrics
    ckpt = load_checkpoint(first.checkpoint.path, method="hyper")
    assert ckpt.step == 2 and "swa_model" in ckpt.train_state and "scheduler" in ckpt.train_state

    second = fit(dict(cfg, epochs=3))
    assert second.metrics["train/start_epoch"] == 2 and second.metrics["epoch"] == 3

    # a Serve app later rebuilds the model from the checkpoint and exports the plain network
    from priorlab.methods.configuration import config_from_dict
    ck = load_checkpoint(second.checkpoint.path, method="hyper", with_train_state=False)
    model = build_model(config_from_dict(HyperConfig, ck.config))
    model.load_state_dict(ck.model_state)
    plain = export_plain(model.eval())
    assert not any("embedding" in k or "hypernet" in k for k in plain.state_dict())

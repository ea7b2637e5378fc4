"""Integration: the supervised (Hyper)WRN trainable on Omniglot classification, checkpoint + resume,
DDP and DeepSpeed ZeRO."""

import pytest
import torch

pytestmark = pytest.mark.integration


# Resume tolerance: the resumed run trains on the same batches (shuffle seeded from (seed, epoch))
# from the same weights, momentum, LR/SWA schedules and RNG with the same thread count, so its
# losses should be bit-identical; 1e-6 relative leaves room only for float reduction order.
RESUME_RTOL = 1e-6


def test_hyper_trainable_reports_checkpoints_and_resumes_exactly(ray_session, data_root, tmp_path):
    from priorlab.methods.checkpoint import load_checkpoint
    from priorlab.methods.hyper.config import HyperConfig
    from priorlab.methods.hyper.export import export_plain
    from priorlab.methods.hyper.resnets import build_model
    from priorlab.trainables.hyper import fit

    cfg = dict(dataset="omniglot", num_classes=5, in_channels=1, arch="wrn", wrn_depth=10,
               wrn_widen=1, epochs=4, lr_milestones=[1], batch_size=16, swa=True,
               swa_start_epoch=1, data_root=str(data_root), storage_path=str(tmp_path))
    full = fit(dict(cfg, run_name="full"))  # 4 epochs, uninterrupted

    first = fit(dict(cfg, epochs=2, run_name="cut"))  # interrupted after 2 ...
    assert first.metrics["epoch"] == 2 and 0.0 <= first.metrics["eval/acc"] <= 1.0
    assert "train/loss_output_l2" in first.metrics
    ckpt = load_checkpoint(first.checkpoint.path, method="hyper")
    assert ckpt.step == 2 and "swa_model" in ckpt.train_state and "scheduler" in ckpt.train_state

    second = fit(dict(cfg, run_name="cut"))  # ... and resumed to 4 under the same run name
    assert second.metrics["train/start_epoch"] == 2 and second.metrics["epoch"] == 4
    # The last two reports (the kept checkpoints) of each run: epochs 3 and 4.
    resumed = {m["epoch"]: m["train/loss"] for _, m in second.best_checkpoints}
    uninterrupted = {m["epoch"]: m["train/loss"] for _, m in full.best_checkpoints}
    assert sorted(resumed) == sorted(uninterrupted) == [3.0, 4.0]
    for epoch in (3.0, 4.0):
        assert resumed[epoch] == pytest.approx(uninterrupted[epoch], rel=RESUME_RTOL), epoch

    # a Serve app later rebuilds the model from the checkpoint and exports the plain network
    from priorlab.methods.configuration import config_from_dict
    ck = load_checkpoint(second.checkpoint.path, method="hyper", with_train_state=False)
    model = build_model(config_from_dict(HyperConfig, ck.config))
    model.load_state_dict(ck.model_state)
    plain = export_plain(model.eval())
    assert not any("embedding" in k or "hypernet" in k for k in plain.state_dict())


def test_hyper_trainable_deepspeed_zero2_matches_ddp(ray_session, data_root, tmp_path):
    """Two workers, ZeRO-2 over Ray Train's gloo group: the same epoch as DDP, and a checkpoint
    gathered from both workers' shards that a plain model loads. (Resuming is the DDP path's
    code: test_strategies.py checks the checkpoint crossing between strategies.)"""
    from priorlab.methods.checkpoint import load_checkpoint
    from priorlab.methods.configuration import config_from_dict
    from priorlab.methods.hyper.config import HyperConfig
    from priorlab.methods.hyper.resnets import build_model
    from priorlab.trainables.hyper import fit

    cfg = dict(dataset="omniglot", num_classes=5, in_channels=1, arch="wrn", wrn_depth=10,
               wrn_widen=1, epochs=1, batch_size=16, workers=2, cpus_per_worker=0.5,
               data_root=str(data_root), storage_path=str(tmp_path))
    ddp = fit(dict(cfg, run_name="ddp"))
    zero = fit(dict(cfg, run_name="zero", strategy="deepspeed", zero_stage=2))
    for key in ("train/loss", "train/loss_output_l2", "diag/embedding_grad_ratio_median"):
        assert zero.metrics[key] == pytest.approx(ddp.metrics[key], rel=1e-4), key

    ck = load_checkpoint(zero.checkpoint.path, method="hyper")
    model = build_model(config_from_dict(HyperConfig, ck.config))
    model.load_state_dict(ck.model_state)  # whole tensors, gathered from both workers' shards
    n_params = sum(len(g["params"]) for g in ck.train_state["optimizer"]["param_groups"])
    assert n_params == len(list(model.parameters())) == len(ck.train_state["optimizer"]["state"])
    # ...and they are DDP's weights and momentum buffers, in the plain optimiser's layout.
    ref = load_checkpoint(ddp.checkpoint.path, method="hyper")
    torch.testing.assert_close(ck.model_state, ref.model_state, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ck.train_state["optimizer"]["state"],
                               ref.train_state["optimizer"]["state"], rtol=1e-4, atol=1e-6)

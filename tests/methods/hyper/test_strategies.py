"""Execution strategies of the supervised loop: DeepSpeed ZeRO, autocast precision, the ImageNet recipe.

DeepSpeed runs in this process (world size 1, a gloo group on an in-memory store). The invariant:
a strategy changes how the optimisation runs, not what it computes.
"""

import dataclasses

import pytest
import torch
import torch.distributed as dist

from priorlab.methods.checkpoint import load_checkpoint
from priorlab.methods.configuration import ConfigError, apply_overrides
from priorlab.methods.hyper.config import RECIPES, HyperConfig
from priorlab.methods.hyper.export import count_params
from priorlab.methods.hyper.loop import SupervisedLearner
from priorlab.methods.hyper.resnets import build_model


def cfg(**kw):
    # Two param groups (decay / no decay on embeddings and hypernetworks), a milestone, SWA and
    # the output penalty: everything the strategies must carry over.
    base = dict(arch="resnet18", widths=[4, 8, 8, 8], in_channels=1, num_classes=4, lr=0.05,
                epochs=4, lr_milestones=[1], sharing="stage", batch_size=8, swa=True,
                swa_start_epoch=1, swa_lr=0.02)
    base.update(kw)
    return HyperConfig(**base)


@pytest.fixture(scope="module", autouse=True)
def own_process_group():
    had_group = dist.is_initialized()
    yield
    if not had_group and dist.is_initialized():
        dist.destroy_process_group()  # the single-process group the deepspeed learners made


def run(learner, data, epochs):
    return [learner.train_epoch(data) for _ in range(epochs)]


def logits(learner, x):
    model = learner.bare_model.eval()
    with torch.no_grad():
        out = model(x)
    model.train()
    return out


# --- mixed precision ---------------------------------------------------------------------------

def test_bf16_autocast_on_cpu_trains_with_fp32_weights(one_thread, loader):
    learner = SupervisedLearner(cfg(precision="bf16", swa=False))
    dtypes = []
    learner.bare_model.fc.register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
    metrics = run(learner, loader(n=32, batch=8), 3)
    assert set(dtypes) == {torch.bfloat16}  # the forward ran under autocast...
    assert {p.dtype for p in learner.bare_model.parameters()} == {torch.float32}  # ...weights did not
    assert metrics[-1]["train/loss"] < metrics[0]["train/loss"]
    assert all(torch.isfinite(torch.tensor(m["train/loss_output_l2"])) for m in metrics)
    assert not learner.scaler.is_enabled()  # bf16 needs no loss scaling


def test_fp16_on_cpu_is_a_clear_config_error():
    with pytest.raises(ConfigError, match="precision=fp16 needs a CUDA device.*bf16"):
        SupervisedLearner(cfg(precision="fp16"))
    with pytest.raises(ConfigError, match="precision='fp8'"):
        apply_overrides(cfg(), {"precision": "fp8"})


# --- DeepSpeed ZeRO ----------------------------------------------------------------------------

@pytest.mark.parametrize("stage", [1, 2])
def test_zero_gives_the_plain_loss_trajectory(stage, one_thread, loader):
    data = loader(n=32, batch=8)
    plain = run(SupervisedLearner(cfg()), data, 3)
    ds_learner = SupervisedLearner(cfg(strategy="deepspeed", zero_stage=stage))
    zero = run(ds_learner, data, 3)
    for key in ("train/loss", "train/loss_output_l2", "diag/embedding_grad_ratio_median", "lr"):
        got, want = [m[key] for m in zero], [m[key] for m in plain]
        assert got == pytest.approx(want, rel=1e-5), key
    assert zero[0]["lr"] == pytest.approx(0.05 * 0.2)  # the milestone, then SWALR's schedule
    assert ds_learner.swa_model.n_averaged.item() == 2


def test_zero3_plain_twin_matches_and_its_limits_are_config_errors(one_thread, loader):
    data = loader(n=32, batch=8)
    kw = dict(hyper=False, swa=False)
    plain = run(SupervisedLearner(cfg(**kw)), data, 2)
    zero = run(SupervisedLearner(cfg(strategy="deepspeed", zero_stage=3, **kw)), data, 2)
    assert [m["train/loss"] for m in zero] == pytest.approx([m["train/loss"] for m in plain], rel=1e-5)
    with pytest.raises(ConfigError, match="swa=true .* zero_stage=3"):
        apply_overrides(cfg(), {"strategy": "deepspeed", "zero_stage": 3})
    with pytest.raises(ConfigError, match="output-l2 penalty .* zero_stage=3"):
        apply_overrides(cfg(swa=False), {"strategy": "deepspeed", "zero_stage": 3})
    with pytest.raises(ConfigError, match="zero_stage=4"):
        apply_overrides(cfg(), {"strategy": "deepspeed", "zero_stage": 4})


def test_checkpoints_cross_between_deepspeed_and_plain(tmp_path, one_thread, loader):
    data = loader(n=32, batch=8)
    ds_learner = SupervisedLearner(cfg(strategy="deepspeed", zero_stage=2))
    run(ds_learner, data, 2)
    ds_learner.save(tmp_path / "zero")
    ckpt = load_checkpoint(tmp_path / "zero", method="hyper")
    assert ckpt.train_state["optimizer"]["state"], "momentum buffers were gathered"

    plain = SupervisedLearner(cfg())
    plain.restore(ckpt)
    x = data[0][0]
    torch.testing.assert_close(logits(plain, x), logits(ds_learner, x), rtol=0, atol=0)
    assert plain.epoch == 2
    assert [g["lr"] for g in plain.optimizer.param_groups] == [g["lr"] for g in ds_learner.optimizer.param_groups]

    # Resuming either way continues the same run: the plain one from the DeepSpeed checkpoint,
    # and a DeepSpeed one from the plain learner's checkpoint (momentum, SWA, schedule included).
    plain.save(tmp_path / "plain")
    resumed = SupervisedLearner(cfg(strategy="deepspeed", zero_stage=1))
    resumed.restore(load_checkpoint(tmp_path / "plain", method="hyper"))
    ref = run(ds_learner, data, 2)
    for other in (plain, resumed):
        got = run(other, data, 2)
        assert [m["train/loss"] for m in got] == pytest.approx([m["train/loss"] for m in ref], rel=1e-5)
    torch.testing.assert_close(logits(resumed, x), logits(ds_learner, x), rtol=1e-5, atol=1e-6)


# --- the ImageNet recipe (Sec. 3.4.2) ----------------------------------------------------------

def test_imagenet_recipe_config():
    c = HyperConfig.from_recipe("imagenet")
    assert (c.arch, c.stem, c.num_classes, c.dataset) == ("resnet18", "imagenet", 1000, "imagenet")
    assert (c.epochs, c.lr, c.momentum, c.lr_milestones, c.lr_gamma) == (100, 0.1, 0.9, [30, 60, 90], 0.1)
    assert (c.weight_decay, c.lambda_output_l2) == (1e-4, 6.25e-5)
    assert HyperConfig.from_recipe("imagenet", arch="resnet34", lr="0.2").lr == 0.2  # strict overrides
    assert HyperConfig.from_recipe("cifar") == HyperConfig()
    with pytest.raises(ConfigError, match="recipe='imagenet21k'"):
        HyperConfig.from_recipe("imagenet21k")
    with pytest.raises(ConfigError, match="unknown config key"):
        HyperConfig.from_recipe("imagenet", learning_rate=0.1)
    assert set(RECIPES["imagenet"]) <= {f.name for f in dataclasses.fields(HyperConfig)}


@pytest.mark.parametrize("arch, table_train, table_test, he_test", [
    ("resnet18", 21.4, 11.1, 11_689_512),
    ("resnet34", 41.6, 21.3, 21_797_672),
])
def test_imagenet_recipe_param_counts(arch, table_train, table_test, he_test):
    # Table 3.4 gives one Train/Test Params pair per row for CIFAR and ImageNet alike: the
    # counts of the 10-class CIFAR models. The ImageNet models differ only in the plain stem
    # (7x7 instead of 3x3) and the 1000-way classifier, so the hypernetwork overhead is the same,
    # and the plain twin is He et al.'s ResNet (torchvision's parameter count).
    imagenet = count_params(build_model(HyperConfig.from_recipe("imagenet", arch=arch)))
    cifar = count_params(build_model(HyperConfig(arch=arch)))
    assert cifar["train"] / 1e6 == pytest.approx(table_train, abs=0.05)
    assert cifar["test"] / 1e6 == pytest.approx(table_test, abs=0.1)
    assert imagenet["test"] == he_test
    assert imagenet["train"] - imagenet["test"] == cifar["train"] - cifar["test"]


def test_imagenet_recipe_train_step_on_small_inputs():
    # The recipe's ResNet-18 at full width, 1000 classes; 64x64 inputs keep the step cheap.
    c = HyperConfig.from_recipe("imagenet", batch_size=2, swa=False)
    learner = SupervisedLearner(c)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8, generator=g)
    y = torch.tensor([3, 997])
    before = learner.bare_model.layer1[0].conv1.embedding.detach().clone()
    m = learner.train_epoch([(x, y)])
    assert torch.isfinite(torch.tensor(m["train/loss"])) and m["train/loss"] > 5.0  # ~ln 1000
    assert not torch.equal(before, learner.bare_model.layer1[0].conv1.embedding)
    assert learner.optimizer.param_groups[0]["weight_decay"] == 1e-4

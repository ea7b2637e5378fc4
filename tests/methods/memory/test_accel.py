"""Execution options of the memory learner (accel, precision, channels_last) on tiny CPU configs.

Each option must train the same model as eager: same losses from the same initial weights and
batches (fp32: to float rounding, rel 1e-5; bf16: close, rel 5e-2, and not identical), and
leave checkpoints an eager learner loads. The compiled learner is built once per module:
compiling is the slow part.
"""

import pytest
import torch

from priorlab.methods.checkpoint import load_checkpoint
from priorlab.methods.configuration import ConfigError, apply_overrides
from priorlab.methods.memory.accel import DEFAULT_ACCEL, snapshot
from priorlab.methods.memory.config import MemoryConfig
from priorlab.methods.memory.loop import MemoryLearner, evaluate

STEPS = 3
FP32_RTOL = 1e-5
BF16_RTOL = 5e-2


def tiny(**kw):
    base = dict(channels=4, lstm_hidden=8, conv_layers=2, n_way=2, n_shot=2, image_size=8,
                meta_batch=2, report_shots=[1], lr=1e-2, seed=1)
    base.update(kw)
    return MemoryConfig(**base)


class Episodes:
    def __init__(self, cfg):
        self.cfg = cfg

    def sample_batch(self, seeds):
        xs, ys = [], []
        for s in seeds:
            g = torch.Generator().manual_seed(int(s))
            T, size = self.cfg.episode_length, self.cfg.image_size
            xs.append(torch.rand(T, 1, size, size, generator=g))
            ys.append(torch.randint(0, self.cfg.n_way, (T,), generator=g))
        return torch.stack(xs), torch.stack(ys)


def losses(learner, n=STEPS):
    src = Episodes(learner.cfg)
    return torch.tensor([learner.train_step(*src.sample_batch(range(2 * i, 2 * i + 2)))
                         for i in range(n)], dtype=torch.float64)


@pytest.fixture(scope="module")
def eager_losses():
    return losses(MemoryLearner(tiny(accel="eager")))


@pytest.fixture(scope="module")
def compiled():
    learner = MemoryLearner(tiny(accel="compile"))
    return learner, losses(learner)


def test_compile_gives_the_losses_of_eager(compiled, eager_losses):
    learner, got = compiled
    assert learner.accel == "compile"
    torch.testing.assert_close(got, eager_losses, rtol=FP32_RTOL, atol=0)


def test_channels_last_gives_the_losses_of_eager(eager_losses):
    learner = MemoryLearner(tiny(accel="eager", channels_last=True))
    assert learner.bare_model.cells[0].conv.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(losses(learner), eager_losses, rtol=FP32_RTOL, atol=0)


def test_bf16_trains_close_to_fp32(eager_losses):
    got = losses(MemoryLearner(tiny(accel="eager", precision="bf16")))
    assert torch.isfinite(got).all()
    assert not torch.equal(got, eager_losses)  # autocast really ran in bf16
    torch.testing.assert_close(got, eager_losses, rtol=BF16_RTOL, atol=0)


@pytest.mark.parametrize("option", ["compiled", "channels_last", "bf16"])
def test_checkpoint_of_an_option_loads_into_an_eager_learner(option, compiled, tmp_path):
    if option == "compiled":
        learner = compiled[0]
    else:
        learner = MemoryLearner(tiny(accel="eager", **{option: True} if option == "channels_last"
                                     else {"precision": "bf16"}))
        losses(learner, 1)
    learner.save(tmp_path / "ckpt")
    ckpt = load_checkpoint(tmp_path / "ckpt", method="memory")
    assert not any(k.startswith("_orig_mod") for k in ckpt.model_state)
    eager = MemoryLearner(tiny(accel="eager"))
    eager.restore(ckpt)
    for a, b in zip(eager.bare_model.parameters(), learner.bare_model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # evaluation runs the plain module under every option, and agrees with the eager copy
    src, seeds = Episodes(learner.cfg), list(range(100, 108))
    assert evaluate(learner.model, src, seeds, [1]) == evaluate(eager.model, src, seeds, [1])


@pytest.mark.parametrize("trained_before", [0, 1])
def test_snapshot_undo_puts_weights_and_adam_state_back(trained_before):
    """The CUDA-graph path warms up with real updates, then undoes them in place before capture;
    the undo must leave the learner where it was (fresh Adam state included)."""
    src = Episodes(tiny())
    b = [src.sample_batch([10 * i, 10 * i + 1]) for i in range(3)]
    learner, ref = MemoryLearner(tiny(accel="eager")), MemoryLearner(tiny(accel="eager"))
    for i in range(trained_before):
        learner.train_step(*b[i])
        ref.train_step(*b[i])
    undo = snapshot(learner.optimizer)
    learner.train_step(*b[1])
    learner.train_step(*b[2])
    undo()
    assert learner.train_step(*b[2]) == ref.train_step(*b[2])
    for p, q in zip(learner.model.parameters(), ref.model.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
        for k, v in ref.optimizer.state[q].items():
            torch.testing.assert_close(learner.optimizer.state[p][k], v, rtol=0, atol=0)


@pytest.mark.parametrize("overrides", [dict(accel="cuda_graph"), dict(accel="compile_cuda_graph"),
                                       dict(accel="compile", compile_mode="reduce-overhead")])
def test_cuda_only_options_raise_a_clear_error_on_cpu(overrides):
    with pytest.raises(ConfigError, match="CUDA device.*'cpu'"):
        MemoryLearner(tiny(**overrides))


def test_accel_auto_is_the_device_default():
    assert MemoryConfig().accel == "auto"
    assert MemoryLearner(tiny()).accel == DEFAULT_ACCEL["cpu"]


def test_execution_options_are_validated():
    cfg = tiny()
    with pytest.raises(ConfigError, match="accel"):
        apply_overrides(cfg, {"accel": "fast"})
    with pytest.raises(ConfigError, match="precision"):
        apply_overrides(cfg, {"precision": "fp8"})
    with pytest.raises(ConfigError, match="model=lstm"):
        apply_overrides(cfg, {"channels_last": "true", "model": "lstm"})
    with pytest.raises(ConfigError, match="reduce-overhead"):
        apply_overrides(cfg, {"accel": "compile_cuda_graph", "compile_mode": "reduce-overhead"})
    with pytest.raises(ConfigError, match="compile_mode"):
        MemoryLearner(tiny(accel="eager", compile_mode="max-autotune-no-cudagraphs"))
    good = apply_overrides(cfg, {"accel": "compile", "precision": "bf16", "channels_last": "on"})
    assert (good.accel, good.precision, good.channels_last) == ("compile", "bf16", True)

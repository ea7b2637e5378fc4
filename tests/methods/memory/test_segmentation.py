"""Online few-shot segmentation (thesis Sec. 2.4.4, App. A.4): protocol, CL U-Net, metrics,
the online fine-tuning baseline, the learner, checkpoints. Tiny sizes: runs in seconds on a CPU."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from priorlab.methods.checkpoint import load_checkpoint
from priorlab.methods.configuration import ConfigError
from priorlab.methods.memory.segmentation import (
    SKIPS, SegmentationConfig, _skip, build_segmentation_model, layer_sizes, segmentation_inputs,
    shift_labels,
)
from priorlab.methods.memory.segmentation_loop import (
    SegmentationLearner, distractors_on, evaluate_segmentation, kshot_scores, load_segmentation_model,
    online_finetune_logits, segmentation_metrics, train,
)

S = 16
pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models: one thread is fastest


def tiny(**kw):
    base = dict(image_size=S, channels=[3, 4, 4, 4, 4, 4, 4, 4, 3, 3], n_targets=3, n_distractors=3,
                report_shots=[1], meta_batch=2, eval_every=3, eval_episodes=2, max_iters=3,
                curriculum_steps=1)
    base.update(kw)
    cfg = SegmentationConfig(**base)
    cfg.validate()
    return cfg


def episode(batch=2, steps=5, size=S, seed=0):
    """Random images, object masks, target flags; label = mask on targets, zeros on distractors."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, steps, 3, size, size, generator=g)
    obj = (torch.rand(batch, steps, size, size, generator=g) > 0.5).float()
    is_target = torch.tensor([True, False] * steps)[:steps].repeat(batch, 1)
    label = obj * is_target[..., None, None]
    return x, label, obj, is_target


class FakeSampler:
    def __init__(self, steps, size=S):
        self.steps, self.size = steps, size

    def sample_batch(self, seeds):
        x, label, obj, is_target = episode(len(seeds), self.steps, self.size, seed=int(seeds[0]) % 1000)
        return ((x * 255).to(torch.uint8).numpy(), label.to(torch.uint8).numpy(),
                obj.to(torch.uint8).numpy(), is_target.numpy())


def test_label_planes_null_then_previous_label():
    x, label, _, is_target = episode()
    planes = shift_labels(label)
    assert planes.shape == (2, 5, 1, S, S)
    assert (planes[:, 0] == -1).all()                       # null label at step 1
    for t in range(1, 5):
        assert torch.equal(planes[:, t, 0], label[:, t - 1])  # step t sees exactly label t-1
        if not is_target[0, t - 1]:
            assert (planes[:, t] == 0).all()                 # a distractor's label: all zeros
    inp = segmentation_inputs(x, label)
    assert inp.shape == (2, 5, 4, S, S) and torch.equal(inp[:, :, :3], x)


@pytest.mark.parametrize("layer", [1, 9, 10])
def test_no_label_leakage(layer):
    torch.manual_seed(0)
    net = build_segmentation_model(tiny(injection_layer=layer)).eval()
    x, label, _, _ = episode()
    label2 = label.clone()
    label2[:, 2:] = 1 - label2[:, 2:]                         # change labels from step 2 on
    with torch.no_grad():
        a, b = net(x, label), net(x, label2)
    assert a.shape == (2, 5, S, S)
    assert torch.equal(a[:, :3], b[:, :3])                    # steps <= 2 unchanged
    assert not torch.allclose(a[:, 3], b[:, 3])               # step 3 sees label 2


def test_injection_layer_sets_the_label_channel():
    w = tiny().layer_channels()
    first = build_segmentation_model(tiny(injection_layer=1))
    late = build_segmentation_model(tiny(injection_layer=9))
    last = build_segmentation_model(tiny(injection_layer=10))
    assert first.cells[0].conv.weight.shape[1] == 3 + 1 + w[0]      # image + label + hidden
    assert late.cells[0].conv.weight.shape[1] == 3 + w[0]           # no label at layer 1
    assert late.cells[8].hidden.weight.shape[1] == w[8] + 1         # TConvLSTM: label with h
    assert first.cells[8].hidden.weight.shape[1] == w[8]
    assert last.cells[9].conv.weight.shape[1] == w[8] + 1 + w[9]
    assert last.cells[0].conv.weight.shape[1] == 3 + w[0]


def test_layer_resolutions_and_skips():
    assert layer_sizes(56) == [56, 28, 14, 7, 7, 7, 14, 28, 56, 56]
    assert layer_sizes(28) == [28, 14, 7, 3, 3, 3, 7, 14, 28, 28]
    assert SKIPS == ((2, 4), (4, 6), (6, 8))
    for size in (16, 28):
        net = build_segmentation_model(tiny(image_size=size)).eval()
        outs, inputs = {}, {}
        for j, cell in enumerate(net.cells, start=1):
            cell.register_forward_hook(lambda m, a, out, j=j: outs.update({j: out[0]}))
            cell.register_forward_pre_hook(lambda m, a, j=j: inputs.update({j: a[0]}))
        x, label, _, _ = episode(1, 1, size)
        with torch.no_grad():
            net(x, label)
        assert [outs[j].shape[-1] for j in range(1, 11)] == layer_sizes(size)
        # layer 5's input is layer 4's output plus layer 2's, pooled to its size (skip 2 -> 4)
        expect = outs[4] + F.adaptive_avg_pool2d(outs[2], outs[4].shape[-1])
        assert torch.allclose(inputs[5], expect)
        # layer 10's input is layer 9's output alone: no U-Net skip from the first layer
        assert torch.equal(inputs[10][:, :outs[9].shape[1]], outs[9])
    dummy = {j: torch.ones(1, 4, 8, 8) for j in range(1, 11)}
    assert [j for j in range(1, 11) if not isinstance(_skip(net, j, dummy), float)] == [4, 6, 8]


def test_metrics_on_hand_made_predictions():
    _, _, obj, is_target = episode(steps=6)
    obj[:, :, 0, 0] = 1                                       # every image has an object
    big = 20.0 * (2 * obj - 1)                                # perfect segmentation of every image
    perfect = torch.where(is_target[..., None, None], big, torch.full_like(big, -20.0))
    iou, mask = kshot_scores(perfect > 0, obj, is_target, 1)
    assert torch.all(iou == 1) and torch.all(mask == 1)
    allfg = torch.full_like(big, 5.0)
    iou, mask = kshot_scores(allfg > 0, obj, is_target, 2)
    assert torch.all(mask == 0)
    assert torch.allclose(iou, obj[:, 4].mean((-1, -2)).double())   # 3rd target is step 4
    iou, mask = kshot_scores(allfg > 0, obj, is_target, 3)          # no 4th target: nan
    assert torch.isnan(iou).all() and torch.isnan(mask).all()
    m = segmentation_metrics(perfect, obj, is_target, [1])
    assert m["eval/iou_1shot"] == m["eval/mask_1shot"] == m["eval/iou_mean"] == m["eval/mask_mean"] == 1
    assert m["eval/mask_1shot_ci95"] == 0
    assert segmentation_metrics(allfg, obj, is_target, [0])["eval/mask_0shot"] == 0


def test_online_finetuning_is_causal_and_keeps_pretrained_weights():
    torch.manual_seed(0)
    net = build_segmentation_model(tiny(model="finetune_cnn"))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x, label, _, _ = episode(1, 4)
    label2 = label.clone()
    label2[:, 2:] = 1 - label2[:, 2:]
    a = online_finetune_logits(net, x, label, lr=0.5)
    b = online_finetune_logits(net, x, label2, lr=0.5)
    assert torch.equal(a[:, :3], b[:, :3])                    # prediction t uses labels < t only
    assert not torch.allclose(a[:, 3], b[:, 3])
    with torch.no_grad():
        plain = net(x)
    assert torch.allclose(a[:, 0], plain[:, 0], atol=1e-5)    # step 1: the pre-trained weights
    assert not torch.allclose(a[:, 1:], plain[:, 1:], atol=1e-3)  # later: fine-tuned weights
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize("model", ["cl_unet", "finetune_cnn"])
def test_learner_curriculum_and_checkpoint_round_trip(model, tmp_path):
    cfg = tiny(model=model)
    learner = SegmentationLearner(cfg)
    start = {k: v.clone() for k, v in learner.model.state_dict().items()}
    asked, reports = [], []

    def batches(step, distractors):
        asked.append(distractors)
        return FakeSampler(6 if distractors else 3).sample_batch([step, step + 1])

    def evaluate_fn(lrn):
        return evaluate_segmentation(lrn, FakeSampler(6), [7, 8], batch_size=2)

    train(learner, batches, evaluate_fn=evaluate_fn,
          report=lambda metrics, save: reports.append((metrics, save(tmp_path / "ckpt"))))
    want = [False, True, True] if model == "cl_unet" else [False] * 3
    assert asked == want == [distractors_on(cfg, s) for s in range(3)]
    (metrics, path), = reports
    assert metrics["step"] == 3 and metrics["train/distractors"] == float(want[-1])
    assert np.isfinite(metrics["train/loss"])
    assert 0 <= metrics["eval/iou_1shot"] <= 1 and 0 <= metrics["eval/mask_mean"] <= 1
    assert any(not torch.equal(v, learner.model.state_dict()[k]) for k, v in start.items())

    x, label, _, _ = episode(1, 4)
    other = SegmentationLearner(tiny(model=model, seed=1))
    other.restore(load_checkpoint(path))
    assert other.step == 3
    assert torch.equal(other.predict(x, label), learner.predict(x, label))
    loaded, lcfg, step = load_segmentation_model(path)
    assert step == 3 and lcfg == cfg
    again = evaluate_segmentation(loaded, FakeSampler(6), [7, 8])
    assert again["eval/iou_1shot"] == metrics["eval/iou_1shot"]


@pytest.mark.parametrize("bad, match", [
    (dict(injection_layer=0), "injection_layer"), (dict(injection_layer=11), "injection_layer"),
    (dict(channels=[4] * 9), "10 widths"), (dict(report_shots=[3]), "report_shots"),
    (dict(image_size=4), "image_size"), (dict(model="unet"), "model"), (dict(source="coco"), "source"),
])
def test_config_errors(bad, match):
    with pytest.raises(ConfigError, match=match):
        tiny(**bad)


def test_default_config_is_the_thesis():
    cfg = SegmentationConfig()
    cfg.validate()
    assert (cfg.injection_layer, cfg.image_size, cfg.episode_length, cfg.lr, cfg.meta_batch) == (1, 56, 18, 1e-3, 4)
    assert (cfg.curriculum_steps, cfg.max_iters, cfg.inner_lr, cfg.report_shots) == (100_000, 200_000, 1e-2, [1, 6])


@pytest.mark.parametrize("model", ["cl_unet", "finetune_cnn"])
def test_scaled_init_keeps_the_input_signal_through_the_ten_layers(model):
    """PyTorch's default init fades the signal over the depth (logits ~constant over pixels)."""
    x, label, _, _ = episode()
    spread = {}
    for init in ("scaled", "pytorch"):
        torch.manual_seed(0)
        net = build_segmentation_model(tiny(model=model, init=init))
        with torch.no_grad():
            logits = net(x, label) if model == "cl_unet" else net(x)
        spread[init] = float(logits.std((-1, -2)).mean())
    assert spread["scaled"] > 20 * spread["pytorch"]

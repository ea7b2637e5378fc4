"""RSC fine-tuning (thesis Sec. 3.5, Table 3.8): mask invariants, gradients, checkpoints, export."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from priorlab.data.images import load_pacs
from priorlab.methods.checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from priorlab.methods.configuration import ConfigError, apply_overrides
from priorlab.methods.hyper.config import HyperConfig
from priorlab.methods.hyper.export import export_plain
from priorlab.methods.hyper.hypernet import ConvHypernet, HyperConv2d
from priorlab.methods.hyper.loop import SupervisedLearner
from priorlab.methods.hyper.resnets import build_model
from priorlab.methods.hyper.rsc import (CONFIDENCE_MARGIN, METHOD, RSCConfig, RSCLearner, SelfChallengingNet,
                                       feature_map, load_model, model_config_from_checkpoint, n_challenged,
                                       pacs_augment, pool, self_challenge_mask)

TINY = dict(arch="resnet18", widths=[4, 4, 8, 8], stem="cifar")
SIZE = 24  # 24 -> 3x3 final map with the CIFAR stem


def _scratch(**kw) -> RSCConfig:
    return RSCConfig(**{**TINY, "image_size": SIZE, "batch_size": 8, **kw})


def _pretrained(path, hyper=True, **kw):
    cfg = HyperConfig(**{**TINY, "hyper": hyper, "num_classes": 5, "in_channels": 3, "epochs": 1, **kw})
    SupervisedLearner(cfg).save(path)
    return str(path)


@pytest.mark.parametrize("arch", [dict(TINY), dict(arch="resnet12", widths=[4, 4, 8, 8]),
                                  dict(arch="wrn", wrn_depth=10, wrn_widen=1)])
@pytest.mark.parametrize("hyper", [True, False])
def test_feature_map_then_pool_and_fc_is_the_forward(arch, hyper):
    torch.manual_seed(0)
    model = build_model(HyperConfig(**arch, hyper=hyper, num_classes=7)).eval()
    x = torch.randn(3, 3, 32, 32)  # ResNet-12 halves the size four times
    fmap = feature_map(model, x)
    assert fmap.dim() == 4 and fmap.shape[2] * fmap.shape[3] > 1
    torch.testing.assert_close(model.fc(pool(fmap)), model(x))


def _batch(b=12, c=8, hw=3, k=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    fmap = torch.randn(b, c, hw, hw, generator=g).relu()
    fc = nn.Linear(c, k)
    with torch.no_grad():
        fc.weight.copy_(torch.randn(k, c, generator=g))
        fc.bias.zero_()
    return fmap, fc, torch.randint(0, k, (b,), generator=g)


@pytest.mark.parametrize("mode", ["spatial", "channel"])
def test_mask_mutes_exactly_the_top_fraction_of_challenged_samples_only(mode):
    fmap, fc, y = _batch()
    b, c, h, w = fmap.shape
    mask, chal = self_challenge_mask(fmap, fc, y, drop_percentage=1 / 3, batch_percentage=0.5, mode=mode)
    assert mask.shape == ((b, 1, h, w) if mode == "spatial" else (b, c, 1, 1))
    assert set(mask.unique().tolist()) <= {0.0, 1.0} and not mask.requires_grad
    # The score, written out: behind average pooling d logit_y / d z[c,i,j] = W[y,c] / hw.
    wy = fc.weight.detach()[y] / (h * w)  # (B, C)
    score = (fmap * wy[:, :, None, None]).sum(1).flatten(1) if mode == "spatial" else wy
    n = score.shape[1]
    k = math.ceil(n / 3)
    flat = mask.flatten(1)
    for i in range(b):
        if chal[i]:
            muted = set(torch.nonzero(flat[i] == 0).flatten().tolist())
            assert len(muted) == k
            assert muted == set(score[i].topk(k).indices.tolist())
        else:
            assert bool((flat[i] == 1).all())
    # Which samples: the largest true-class confidence drops, at most round(b * B), drops > 0 only.
    with torch.no_grad():
        full = torch.ones_like(score).scatter_(1, score.topk(k, dim=1).indices, 0.0)
        full = full.view(b, 1, h, w) if mode == "spatial" else full.view(b, c, 1, 1)
        p_before = fc(pool(fmap)).softmax(-1)[torch.arange(b), y]
        p_after = fc(pool(fmap * full)).softmax(-1)[torch.arange(b), y]
        drop = p_before - p_after
    positive = drop > CONFIDENCE_MARGIN
    assert int(chal.sum()) == min(n_challenged(0.5, b), int(positive.sum())) > 0
    assert bool(positive[chal].all())
    if (~chal & positive).any():
        assert drop[~chal & positive].max() <= drop[chal].min()


def test_batch_fraction_bounds_the_challenged_samples():
    fmap, fc, y = _batch(b=30, seed=1)
    counts = {}
    for bp in (0.0, 1 / 3, 1.0):
        _, chal = self_challenge_mask(fmap, fc, y, drop_percentage=1 / 3, batch_percentage=bp, mode="channel")
        counts[bp] = int(chal.sum())
    assert counts[0.0] == 0 and counts[1 / 3] <= 10 and counts[1 / 3] <= counts[1.0] <= 30
    assert counts[1 / 3] == min(10, counts[1.0])  # the same positive-drop samples, capped


def _net(hyper=True, bp=1 / 3):
    torch.manual_seed(0)
    backbone = build_model(HyperConfig(**TINY, hyper=hyper, num_classes=7))
    return SelfChallengingNet(backbone, drop_percentage=1 / 3, batch_percentage=bp).train()


@pytest.mark.parametrize("mode", ["spatial", "channel"])
def test_samples_not_challenged_keep_their_logits(mode):
    net = _net(bp=0.5)
    x, y = torch.randn(10, 3, SIZE, SIZE), torch.randint(0, 7, (10,))
    logits, chal = net(x, y, mode=mode)
    plain = net.backbone(x)  # train mode, same batch: the same BatchNorm statistics
    assert 0 < int(chal.sum()) <= 5
    torch.testing.assert_close(logits[~chal], plain[~chal])
    assert not torch.allclose(logits[chal], plain[chal])


def test_no_challenge_without_labels_in_eval_or_with_zero_batch_fraction():
    x, y = torch.randn(6, 3, SIZE, SIZE), torch.randint(0, 7, (6,))
    net = _net(bp=0.0)
    logits, chal = net(x, y)
    assert not chal.any()
    torch.testing.assert_close(logits, net.backbone(x))
    net = _net().eval()
    logits, chal = net(x, y)
    assert not chal.any()
    torch.testing.assert_close(logits, net(x))


@pytest.mark.parametrize("hyper", [True, False])
def test_rsc_loss_backward_reaches_every_parameter_and_skips_muted_features(hyper):
    net = _net(hyper=hyper, bp=1.0)
    x, y = torch.randn(8, 3, SIZE, SIZE), torch.randint(0, 7, (8,))
    fmap = feature_map(net.backbone, x)
    fmap.retain_grad()
    mask, chal = self_challenge_mask(fmap, net.backbone.fc, y, drop_percentage=1 / 3,
                                     batch_percentage=1.0, mode="spatial")
    assert chal.any()
    F.cross_entropy(net.backbone.fc(pool(fmap * mask)), y).backward()
    muted = (mask == 0).expand_as(fmap)
    assert bool((fmap.grad[muted] == 0).all()) and bool((fmap.grad[~muted] != 0).any())
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    generated = [m for m in net.modules() if isinstance(m, (HyperConv2d, ConvHypernet))]
    assert bool(generated) == hyper


def test_pacs_augment_keeps_shape_range_and_is_seeded():
    x = torch.rand(4, 3, 20, 20)
    a = pacs_augment(x, torch.Generator().manual_seed(1))
    b = pacs_augment(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, x)


@pytest.mark.parametrize("hyper", [True, False])
def test_pretrained_checkpoint_loads_body_and_gets_a_7_class_classifier(tmp_path, hyper):
    path = _pretrained(tmp_path / "pre", hyper=hyper)
    field = "pretrained_hyper" if hyper else "pretrained_plain"
    learner = RSCLearner(_scratch(hyper=hyper, **{field: path}, arch="wrn", widths=None))  # arch ignored
    source = load_checkpoint(path).model_state
    state = learner.bare_model.state_dict()
    assert learner.bare_model.fc.out_features == 7 and learner.model_cfg.arch == "resnet18"
    assert set(state) == set(source)
    for k, v in source.items():
        if not k.startswith("fc."):
            torch.testing.assert_close(state[k], v, msg=k)
    assert learner.model_cfg.hyper == hyper and learner.is_hyper == hyper


def test_pretrained_swa_average_is_preferred_when_asked(tmp_path):
    pre = SupervisedLearner(HyperConfig(**TINY, num_classes=5, in_channels=3, swa=True))
    pre.swa_model.update_parameters(pre.bare_model)  # the average = the weights now
    averaged = {k: v.clone() for k, v in pre.bare_model.state_dict().items()}
    with torch.no_grad():
        for p in pre.bare_model.parameters():
            p.add_(1.0)
    pre.save(tmp_path / "pre")
    key = "layer1.0.conv1.embedding"
    with_swa = RSCLearner(_scratch(pretrained_hyper=str(tmp_path / "pre")))
    without = RSCLearner(_scratch(pretrained_hyper=str(tmp_path / "pre"), pretrained_swa=False))
    torch.testing.assert_close(with_swa.bare_model.state_dict()[key], averaged[key])
    torch.testing.assert_close(without.bare_model.state_dict()[key], averaged[key] + 1.0)


def test_epoch_on_pacs_fixture_checkpoint_roundtrip_resume_and_export(tmp_path, write_pacs):
    write_pacs(tmp_path / "data", per_class=1)
    train = load_pacs(tmp_path / "data", ["art_painting", "cartoon", "photo"], image_size=SIZE)
    test = load_pacs(tmp_path / "data", ["sketch"], image_size=SIZE)
    train_loader = DataLoader(train, batch_size=7, shuffle=False)  # 21 images, 3 batches
    test_loader = DataLoader(test, batch_size=7)
    pre = _pretrained(tmp_path / "pre")
    cfg = _scratch(pretrained_hyper=pre, target_domain="sketch", batch_size=7, lr_milestones=[1])

    a = RSCLearner(cfg)
    m = a.train_epoch(train_loader)
    assert m["epoch"] == 1 and m["lr"] == pytest.approx(cfg.lr * cfg.lr_gamma)
    assert math.isfinite(m["train/loss"]) and m["train/loss_output_l2"] > 0
    assert 0 <= m["train/challenged_frac"] <= 3 / 7 and 0 <= a.evaluate(test_loader) <= 1
    rec = a.record_eval(0.5, val_acc=0.8)
    assert rec["eval/acc_at_best_val"] == 0.5 and a.record_eval(0.9, 0.7)["eval/acc_at_best_val"] == 0.5
    a.save(tmp_path / "ckpt", metrics=m)

    ckpt = load_checkpoint(tmp_path / "ckpt", method=METHOD)
    assert ckpt.step == 1 and ckpt.config["model"]["num_classes"] == 7
    import shutil
    shutil.rmtree(pre)  # a resume must not need the pretrained checkpoint any more
    b = RSCLearner(cfg, model_cfg=model_config_from_checkpoint(ckpt))
    b.restore(ckpt)
    assert b.epoch == 1 and b.best == a.best and b.scheduler.last_epoch == a.scheduler.last_epoch
    x = torch.stack([torch.from_numpy(test[i][0]) for i in range(len(test))]).float() / 255
    a.bare_model.eval(), b.bare_model.eval()
    with torch.no_grad():
        torch.testing.assert_close(b.bare_model(x), a.bare_model(x))
        plain = export_plain(b.bare_model)
        assert not any("embedding" in k or "hypernet" in k for k in plain.state_dict())
        torch.testing.assert_close(plain(x), a.bare_model(x))
        torch.testing.assert_close(load_model(tmp_path / "ckpt")(x), a.bare_model(x))

    # Resuming continues exactly: same RNG, augmentation stream, optimiser and schedule.
    set_rng_state(ckpt.train_state["rng"])  # the models built above drew from the global RNG
    a.train_epoch(train_loader)
    set_rng_state(ckpt.train_state["rng"])
    b.train_epoch(train_loader)
    for (k, va), vb in zip(a.bare_model.state_dict().items(), b.bare_model.state_dict().values()):
        torch.testing.assert_close(va, vb, msg=k)


@pytest.mark.parametrize("overrides, message", [
    (dict(target_domain="paintings"), "target_domain"),
    (dict(drop_percentage=0.0), "drop_percentage"),
    (dict(drop_percentage=1.0), "drop_percentage"),
    (dict(batch_percentage=1.5), "batch_percentage"),
    (dict(pretrained_hyper="runs/ckpt"), "absolute"),
    (dict(image_size=8), "image_size"),
    (dict(widths=[4, 4]), "widths"),
    (dict(val_fraction=1.0), "val_fraction"),
    (dict(nonsense=1), "unknown config key"),
])
def test_bad_config_is_a_clear_error(overrides, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(RSCConfig(), overrides)


def test_wrong_pretrained_checkpoints_are_clear_errors(tmp_path):
    plain = _pretrained(tmp_path / "plain", hyper=False)
    with pytest.raises(ConfigError, match="pretrained_hyper.*hyper=False"):
        RSCLearner(_scratch(pretrained_hyper=plain))
    with pytest.raises(ConfigError, match="does not exist"):
        RSCLearner(_scratch(pretrained_plain=str(tmp_path / "nowhere"), hyper=False))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not a priorlab checkpoint"):
        RSCLearner(_scratch(pretrained_hyper=str(tmp_path / "empty")))
    gray = _pretrained(tmp_path / "gray", in_channels=1)
    with pytest.raises(ConfigError, match="RGB"):
        RSCLearner(_scratch(pretrained_hyper=gray))
    save_checkpoint(tmp_path / "other", method="memory", step=0, config={}, model=nn.Linear(1, 1))
    with pytest.raises(ConfigError, match="'memory' checkpoint"):
        RSCLearner(_scratch(pretrained_hyper=str(tmp_path / "other")))

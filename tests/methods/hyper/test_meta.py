"""MAML meta-training of (Hyper)ResNets (thesis Sec. 3.3.1-3.3.2, Alg. 1-2, Fig. 3.5): invariants."""

import numpy as np
import pytest
import torch

from priorlab.methods.configuration import ConfigError, config_from_dict
from priorlab.methods.hyper.hypernet import HyperConv2d, hyper_layers
from priorlab.methods.hyper.meta import (
    MetaConfig, MetaLearner, inner_filter, input_transform, run_meta_training,
)
from priorlab.methods.hyper.movement import conv_movement, effective_conv_weights, movement_by_depth
from priorlab.methods.hyper.resnets import build_model
from priorlab.methods.maml import MAML

TINY = dict(widths=[4, 4, 8, 8], n_query=2, meta_batch=2, inner_steps=1, eval_inner_steps=2,
            eval_tasks=3, diag_tasks=2, pretrain_steps=2, pretrain_classes=10, pretrain_batch=8,
            meta_iters=3, eval_every=1)


def learner(data_root, **kw) -> MetaLearner:
    cfg = config_from_dict(MetaConfig, {**TINY, **kw})
    return MetaLearner(cfg, data_root)


def test_effective_weights_are_the_generated_ones_and_names_match_the_plain_twin():
    cfg = MetaConfig(**{k: v for k, v in TINY.items() if k == "widths"})
    hyper = build_model(cfg.model_config(5))
    plain = build_model(MetaConfig(widths=TINY["widths"], hyper=False).model_config(5))
    wh = effective_conv_weights(hyper, dict(hyper.named_parameters()))
    wp = effective_conv_weights(plain, dict(plain.named_parameters()))
    assert list(wh) == list(wp) and len(wh) > 3
    for name, layer in hyper_layers(hyper):
        torch.testing.assert_close(wh[name], layer.generated_weight())
    for name, w in wp.items():
        assert w is dict(plain.named_parameters())[f"{name}.weight"]
    for name in wh:
        assert wh[name].shape == wp[name].shape


def test_inner_loop_adapts_embeddings_and_classifier_for_hyper_everything_for_plain():
    hyper_cfg = MetaConfig(widths=TINY["widths"])
    hyper = build_model(hyper_cfg.model_config(5))
    chosen = [n for n, _ in hyper.named_parameters() if inner_filter(hyper_cfg)(n)]
    assert chosen and all(n.endswith("embedding") or n.startswith("fc.") for n in chosen)
    assert {"fc.weight", "fc.bias"} <= set(chosen)
    assert not any(n.startswith("hypernets.") or "bn" in n for n in chosen)  # Alg. 2: H outer only
    plain_cfg = MetaConfig(widths=TINY["widths"], hyper=False)
    plain = build_model(plain_cfg.model_config(5))
    assert all(inner_filter(plain_cfg)(n) for n, _ in plain.named_parameters())
    head = MetaConfig(widths=TINY["widths"], inner_params="head")
    assert [n for n, _ in hyper.named_parameters() if inner_filter(head)(n)] == ["fc.weight", "fc.bias"]


def test_movement_is_zero_without_adaptation_and_positive_after():
    model = build_model(MetaConfig(widths=TINY["widths"]).model_config(5))
    params = dict(model.named_parameters())
    adapted = [n for n in params if n.endswith("embedding")]
    zero = movement_by_depth(model, params, params, adapted)
    assert set(zero) == {"diag/movement_early", "diag/movement_mid", "diag/movement_late"}
    assert all(v == 0.0 for v in zero.values())
    moved = {n: (p + 0.01 if n.endswith("embedding") else p) for n, p in params.items()}
    assert all(v > 0 for v in movement_by_depth(model, params, moved, adapted).values())


def _adapt_once(hyper: bool):
    """A real inner step (the model's own Alg. 1 / Alg. 2 filter) on a random 5-way task."""
    cfg = MetaConfig(widths=TINY["widths"], hyper=hyper)
    torch.manual_seed(0)
    model = build_model(cfg.model_config(5))
    maml = MAML(model, inner_lr=0.5, adapt=inner_filter(cfg))
    learner = maml.clone()
    x, y = torch.rand(10, 1, 28, 28), torch.arange(10) % 5
    learner.adapt(torch.nn.functional.cross_entropy(learner(x), y), keep_graph=False)
    return model, maml, dict(model.named_parameters()), learner.params


@pytest.mark.parametrize("hyper", [True, False])
def test_movement_counts_exactly_the_convs_the_inner_loop_changes(hyper):
    """The bias of the first diagnostic: HyperResNet-12's plain 1x1 shortcuts are not adapted under
    Alg. 2 (movement exactly 0) and were averaged in. Now every counted conv moved, and a conv
    the inner loop cannot change is not counted; the plain twin (Alg. 1) counts every conv."""
    model, maml, initial, adapted = _adapt_once(hyper)
    convs = [n for n, m in model.named_modules() if isinstance(m, (HyperConv2d, torch.nn.Conv2d))]
    shortcuts = [n for n in convs if "shortcut" in n]
    assert len(convs) == 16 and len(shortcuts) == 4  # ResNet-12: 4 x (3 main + 1 shortcut)
    moved = conv_movement(model, initial, adapted, maml.adapt_names)
    assert all(v > 0 for v in moved.values()), moved
    if hyper:
        assert sorted(moved) == sorted(n for n, _ in hyper_layers(model)) and len(moved) == 12
        assert not set(shortcuts) & set(moved)
        for n in shortcuts:  # what the old diagnostic averaged in
            torch.testing.assert_close(adapted[f"{n}.weight"], initial[f"{n}.weight"], rtol=0, atol=0)
    else:
        assert list(moved) == convs
    # the thirds are the same depth ranges in both models: convs 0-5, 6-10, 11-15 in network order
    by_depth = movement_by_depth(model, initial, adapted, maml.adapt_names)
    for tag, part in zip(("early", "mid", "late"), (convs[:6], convs[6:11], convs[11:])):
        expected = np.mean([moved[n] for n in part if n in moved])
        assert by_depth[f"diag/movement_{tag}"] == pytest.approx(expected)


def test_movement_is_nan_where_the_inner_loop_adapts_no_conv():
    cfg = MetaConfig(widths=TINY["widths"], inner_params="head")
    model = build_model(cfg.model_config(5))
    params = dict(model.named_parameters())
    maml = MAML(model, adapt=inner_filter(cfg))
    assert all(np.isnan(v) for v in movement_by_depth(model, params, params, maml.adapt_names).values())


def test_input_transform_matches_channels_and_size():
    x = torch.rand(2, 3, 32, 32)
    grey = input_transform(1, 28)(x)
    assert grey.shape == (2, 1, 28, 28)
    rgb = input_transform(3, 16)(torch.rand(2, 1, 16, 16))
    assert rgb.shape == (2, 3, 16, 16) and torch.equal(rgb[:, 0], rgb[:, 2])


def test_pretraining_resets_the_classifier_to_n_way(data_root):
    ml = learner(data_root)
    metrics = ml.pretrain()
    assert metrics["pretrain/classes"] == 10 and np.isfinite(metrics["pretrain/loss"])
    assert ml.model.fc.out_features == 5 and ml.pretrained_done
    assert any(p is ml.model.fc.weight for p in ml.maml.parameters())  # the new head is trained
    assert ml.pretrain() == {}  # idempotent after the phase


def test_pretrained_checkpoint_is_loaded_except_the_classifier(data_root, tmp_path):
    from priorlab.methods.hyper.loop import SupervisedLearner

    sup = SupervisedLearner(MetaConfig(widths=TINY["widths"]).model_config(num_classes=20))
    sup.save(tmp_path / "ckpt")
    ml = learner(data_root, pretrained=str(tmp_path / "ckpt"), pretrain_steps=0)
    ml.pretrain()
    theirs = sup.model.state_dict()
    for k, v in ml.model.state_dict().items():
        if not k.startswith("fc."):
            torch.testing.assert_close(v, theirs[k])
    assert ml.model.fc.out_features == 5

    with pytest.raises(ConfigError, match="does not fit"):
        learner(data_root, pretrained=str(tmp_path / "ckpt"), hyper=False).pretrain()


def test_evaluation_is_deterministic_and_leaves_the_model_untouched(data_root):
    ml = learner(data_root, cross_domain="digits")
    ml.pretrain()
    before = {k: v.clone() for k, v in ml.model.state_dict().items()}
    val, test = ml.evaluate(), ml.evaluate_test()
    for k, v in ml.model.state_dict().items():
        torch.testing.assert_close(v, before[k])
    assert ml.evaluate() == val and ml.evaluate_test() == test
    assert val["eval/val/acc"] == val["eval/val/acc_1shot"] and 0.0 <= val["eval/val/acc"] <= 1.0
    assert not any(k.startswith(("eval/same", "eval/cross")) for k in val)
    for role in ("same", "cross"):
        assert 0.0 <= test[f"eval/{role}/acc_1shot"] <= 1.0
        assert test[f"eval/{role}/acc"] == test[f"eval/{role}/acc_1shot"]
    assert val["diag/movement_early"] > 0  # the inner loop moved the generated weights


def test_periodic_evaluations_use_validation_classes_and_the_test_split_once_at_the_end(
        data_root, monkeypatch):
    from priorlab.methods.hyper import meta

    loads, real = [], meta.load_classes

    def recording(root, name, split, size):
        loads.append((name, split))
        return real(root, name, split, size)

    monkeypatch.setattr(meta, "load_classes", recording)
    ml = learner(data_root, cross_domain="digits", meta_iters=2, eval_every=1)
    reports = []
    run_meta_training(ml, lambda m: reports.append((dict(m), list(loads))))
    assert [m["iteration"] for m, _ in reports] == [0.0, 1.0, 2.0]
    for m, seen in reports[:-1]:
        assert ("omniglot", "val") in seen and "eval/val/acc" in m
        assert not any(split == "test" or name == "digits" for name, split in seen)
        assert not any(k.startswith(("eval/same", "eval/cross")) for k in m)
    last, seen = reports[-1]
    assert ("omniglot", "test") in seen and ("digits", "all") in seen
    assert {"eval/val/acc", "eval/same/acc", "eval/cross/acc"} <= set(last)
    assert seen.count(("omniglot", "test")) == 1  # built once, for the final evaluation only


def test_resume_continues_exactly(data_root, tmp_path):
    from priorlab.methods.checkpoint import load_checkpoint

    a = learner(data_root, learn_preconditioner=True)
    a.pretrain()
    a.train_iteration()
    a.save(tmp_path / "ck")
    a.train_iteration()
    b = learner(data_root, learn_preconditioner=True)
    b.restore(load_checkpoint(tmp_path / "ck", method="hyper-maml"))
    assert b.iteration == 1 and b.pretrained_done
    b.train_iteration()
    for (n, pa), pb in zip(a.maml.named_parameters(), b.maml.parameters()):
        torch.testing.assert_close(pa, pb, msg=n)


@pytest.mark.parametrize("hyper", [True, False])
def test_meta_batch_split_over_workers_sums_to_the_single_worker_gradient(data_root, hyper):
    def grads(rank, world):
        captured = {}

        def sync(module):
            captured.update({n: p.grad.clone() for n, p in module.named_parameters()
                             if p.grad is not None})

        ml = MetaLearner(config_from_dict(MetaConfig, {**TINY, "hyper": hyper, "meta_batch": 4}),
                         data_root, rank=rank, world=world, sync=sync)
        ml.pretrained_done = True
        ml.train_iteration()
        return captured

    whole = grads(0, 1)
    parts = [grads(0, 2), grads(1, 2)]
    assert set(whole) == set(parts[0]) == set(parts[1])
    for n in whole:
        torch.testing.assert_close(parts[0][n] + parts[1][n], whole[n], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("bad, match", [
    (dict(meta_train="imagenet"), "meta_train"),
    (dict(same_domain=False, cross_domain=""), "nothing to evaluate"),
    (dict(cross_domain="svhn"), "cross_domain"),
    (dict(inner_params="some"), "inner_params"),
    (dict(pretrained="/nonexistent/ckpt"), "not a priorlab checkpoint"),
    (dict(n_way=1), "n_way"),
    (dict(inner_lr=0.0), "inner_lr"),
])
def test_bad_config_is_rejected_with_a_clear_message(bad, match):
    with pytest.raises(ConfigError, match=match):
        config_from_dict(MetaConfig, bad)

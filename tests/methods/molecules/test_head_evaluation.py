"""The MLP head (masked losses, early stopping, state) and the AUROC evaluation helpers."""

import io
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from priorlab.methods.configuration import ConfigError
from priorlab.methods.molecules.evaluation import (
    auroc, auroc_per_task, bootstrap_auroc, paired_difference, r2, random_forest_floor, rmse,
    summarise_runs, _auroc_resamples)
from priorlab.methods.molecules.head import (
    HeadConfig, MLPHead, head_from_state, head_to_state, masked_loss, predict, train_head)

FAST = dict(hidden=(16, 16), epochs=60, patience=60, batch_size=32)


def separable(n=160, d=8, seed=0, tasks=1):
    """Labels from a random linear rule (plus margin), features far from standardised."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32) * 5 + 3
    w = rng.normal(size=(d, tasks))
    Y = ((X - 3) @ w > 0).astype(np.float32)
    return X, Y


# ----------------------------------------------------------------------------- head

def test_masked_bce_ignores_missing_labels_value_and_gradient():
    torch.manual_seed(0)
    pred = torch.randn(6, 3, requires_grad=True)
    target = torch.randint(0, 2, (6, 3)).float()
    mask = torch.rand(6, 3) > 0.4
    grads, losses = [], []
    for fill in (0.0, 1.0, float("nan"), 1e6):
        t = torch.where(mask, target, torch.full_like(target, fill))
        for task_type in ("classification", "regression"):
            pred.grad = None
            loss = masked_loss(pred, t, mask, task_type)
            loss.backward()
            losses.append((task_type, float(loss.detach())))
            grads.append((task_type, pred.grad.clone()))
    for task_type in ("classification", "regression"):
        ls = [v for k, v in losses if k == task_type]
        gs = [g for k, g in grads if k == task_type]
        assert all(v == ls[0] and math.isfinite(v) for v in ls)
        assert all(torch.equal(g, gs[0]) for g in gs)
        assert torch.all(gs[0][~mask] == 0)
    # default mask = labelled entries: nan labels are the missing ones
    t_nan = torch.where(mask, target, torch.full_like(target, float("nan")))
    assert torch.equal(masked_loss(pred, t_nan), masked_loss(pred, target, mask))


def test_head_learns_a_separable_toy_set():
    X, Y = separable()
    head, hist = train_head(X[:100], Y[:100], X[100:130], Y[100:130], HeadConfig(**FAST),
                            "classification")
    p = predict(head, X[130:])
    assert p.shape == (30, 1) and ((p >= 0) & (p <= 1)).all()
    assert auroc(Y[130:], p) > 0.95
    assert hist.monitor == "val/auroc" and 0 <= hist.best_epoch <= hist.stopped_epoch
    assert hist.best_value == max(hist.val_auroc)


def test_head_is_deterministic_per_seed_and_leaves_global_rng_alone():
    X, Y = separable()
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    cfg = HeadConfig(**{**FAST, "epochs": 5})
    h1, _ = train_head(X[:100], Y[:100], X[100:], Y[100:], cfg, "classification")
    assert torch.equal(torch.rand(1), before)
    h2, _ = train_head(X[:100], Y[:100], X[100:], Y[100:], cfg, "classification")
    np.testing.assert_array_equal(predict(h1, X), predict(h2, X))
    h3, _ = train_head(X[:100], Y[:100], X[100:], Y[100:], HeadConfig(**{**FAST, "epochs": 5,
                                                                          "seed": 1}), "classification")
    assert not np.array_equal(predict(h1, X), predict(h3, X))


def test_standardisation_comes_from_train_rows_only_and_round_trips():
    X, Y = separable()
    X_val = X[100:] * 100 - 50  # very different scale: must not leak into the statistics
    head, _ = train_head(X[:100], Y[:100], X_val, Y[100:], HeadConfig(**{**FAST, "epochs": 3}),
                         "classification")
    np.testing.assert_allclose(head.x_mean.numpy(), X[:100].mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(head.x_std.numpy(), X[:100].std(0), rtol=1e-5)
    buf = io.BytesIO()
    torch.save(head_to_state(head), buf)
    buf.seek(0)
    loaded = head_from_state(torch.load(buf, weights_only=True))
    assert loaded.config == head.config and loaded.task_type == "classification"
    np.testing.assert_array_equal(predict(loaded, X), predict(head, X))
    with pytest.raises(ValueError, match="head_to_state"):
        head_from_state({"state_dict": {}})


def test_multitask_missing_labels_and_single_class_validation():
    X, Y = separable(tasks=2)
    Y = Y.copy()
    Y[::3, 1] = np.nan                              # task 1 partly unlabelled
    Y_val = Y[100:130].copy()
    Y_val[:, 0] = 1.0                               # task 0: one class in validation
    head, hist = train_head(X[:100], Y[:100], X[100:130], Y_val, HeadConfig(**FAST),
                            "classification")
    assert hist.monitor == "val/auroc"              # task 1 still defines it
    assert auroc(Y[130:], predict(head, X[130:])) > 0.9
    # no validation task with both classes: falls back to the validation loss
    _, hist = train_head(X[:100], Y[:100], X[100:130], np.ones_like(Y_val),
                         HeadConfig(**{**FAST, "epochs": 3}), "classification")
    assert hist.monitor == "val/loss" and hist.best_value == min(hist.val_loss)
    with pytest.raises(ValueError, match="no label in the training rows"):
        train_head(X[:10], np.full((10, 2), np.nan), cfg=HeadConfig(**FAST))


def test_regression_head_predicts_in_target_units():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4)).astype(np.float32)
    y = (X @ np.array([1.0, -2.0, 0.5, 0.0]) * 10 + 100).astype(np.float32)
    head, hist = train_head(X[:150], y[:150], X[150:170], y[150:170],
                            HeadConfig(**{**FAST, "epochs": 150, "dropout": 0.0}), "regression")
    assert hist.monitor == "val/loss"
    pred = predict(head, X[170:])
    assert r2(y[170:], pred) > 0.9 and rmse(y[170:], pred) < 0.3 * y.std()


def test_bad_inputs_are_named():
    X, Y = separable(n=20)
    X[[3, 7]] = np.nan
    X[11, 0] = np.inf
    with pytest.raises(ValueError, match=r"rows \[3, 7, 11\]"):
        train_head(X, Y, cfg=HeadConfig(**FAST))
    with pytest.raises(ValueError, match="0, 1 or nan"):
        train_head(np.zeros((4, 2)), np.array([0, 1, 2, 1.0]), cfg=HeadConfig(**FAST))
    head = MLPHead(3, 1)
    with pytest.raises(ValueError, match="built for 3"):
        predict(head, np.zeros((2, 4)))
    with pytest.raises(ConfigError, match="dropout"):
        HeadConfig(dropout=1.5)
    with pytest.raises(ConfigError, match="hidden"):
        HeadConfig(hidden=())


# ----------------------------------------------------------------------------- evaluation

def test_auroc_matches_sklearn_and_masks_tasks():
    rng = np.random.default_rng(1)
    y = (rng.random((50, 3)) > 0.5).astype(float)
    p = np.clip(y * 0.3 + rng.random((50, 3)), 0, None)
    p[:5, 0] = p[5, 0]                              # ties
    assert auroc(y[:, 0], p[:, 0]) == pytest.approx(roc_auc_score(y[:, 0], p[:, 0]))
    y[::4, 1] = np.nan
    y[:, 2] = 1.0                                   # one class: left out of the mean
    per = auroc_per_task(y, p)
    lab = ~np.isnan(y[:, 1])
    assert per[1] == pytest.approx(roc_auc_score(y[lab, 1], p[lab, 1])) and math.isnan(per[2])
    assert auroc(y, p) == pytest.approx((per[0] + per[1]) / 2)
    assert math.isnan(auroc(np.ones(5), np.arange(5.0)))
    # a masked row's score does not matter, an unscored labelled row is an error
    p2 = p.copy()
    p2[0, 1] = np.nan
    assert auroc(y[:, :2], p2[:, :2]) == auroc(y[:, :2], p[:, :2])
    with pytest.raises(ValueError, match="labelled rows"):
        auroc(y[:, 0], p2[:, 1] * np.nan)


def test_rank_form_equals_sklearn_on_resamples():
    rng = np.random.default_rng(2)
    y = (rng.random((40, 2)) > 0.6).astype(float)
    y[::5, 1] = np.nan
    p = np.round(rng.random((40, 2)), 1)            # many ties
    idx = rng.integers(0, 40, size=(30, 40))
    fast = _auroc_resamples(y, p, idx)
    for b in range(30):
        for t in range(2):
            yt, pt = y[idx[b], t], p[idx[b], t]
            lab = ~np.isnan(yt)
            if len(np.unique(yt[lab])) == 2:
                assert fast[b, t] == pytest.approx(roc_auc_score(yt[lab], pt[lab]))
            else:
                assert math.isnan(fast[b, t])


def test_bootstrap_interval_contains_point_and_is_seeded():
    rng = np.random.default_rng(3)
    y = (rng.random(120) > 0.5).astype(float)
    p = y * 0.5 + rng.random(120)
    point, lo, hi = bootstrap_auroc(y, p, n_boot=300, seed=0)
    assert point == pytest.approx(roc_auc_score(y, p))
    assert lo < point < hi and hi - lo < 0.3
    assert bootstrap_auroc(y, p, n_boot=300, seed=0) == (point, lo, hi)
    assert bootstrap_auroc(y, p, n_boot=300, seed=1) != (point, lo, hi)
    with pytest.raises(ValueError, match="undefined"):
        bootstrap_auroc(np.ones(10), np.arange(10.0))


def test_random_forest_floor_per_task():
    X, Y = separable(n=200, tasks=2)
    Y[::2, 1] = np.nan
    floor = random_forest_floor(X[:150], Y[:150], X[150:], Y[150:], seed=0, n_estimators=30)
    assert 0.7 < floor <= 1.0
    assert floor == random_forest_floor(X[:150], Y[:150], X[150:], Y[150:], seed=0, n_estimators=30)
    one_class = Y[:150].copy()
    one_class[:, 0] = 0.0                           # a forest that saw one class scores a constant
    const = random_forest_floor(X[:150], one_class[:, :1], X[150:], Y[150:, :1], n_estimators=5)
    assert const == 0.5


def test_summaries_and_paired_differences():
    a = [{"split_seed": s, "head_seed": h, "test/auroc": 0.80 + 0.01 * s + 0.001 * h}
         for s in range(3) for h in range(2)]
    b = [dict(r, **{"test/auroc": r["test/auroc"] + 0.02 + 0.002 * r["split_seed"]})
         for r in reversed(a)] + [{"split_seed": 9, "head_seed": 0, "test/auroc": 0.1}]
    s = summarise_runs(a)
    assert s.n == 6 and s.mean == pytest.approx(np.mean([r["test/auroc"] for r in a]))
    assert s.half_width > 0
    assert summarise_runs(a, group="split_seed").n == 3
    assert summarise_runs([0.7, 0.8]).mean == pytest.approx(0.75)
    eff = paired_difference(a, b, a="ecfp", b="ecfp+midi")
    assert eff.n == 6 and eff.unmatched == 1
    assert eff.interval.mean == pytest.approx(0.022) and eff.interval.low > 0
    assert paired_difference([0.8, 0.7], [0.85, 0.72]).interval.mean == pytest.approx(0.035)
    with pytest.raises(ValueError, match="no matched runs"):
        paired_difference(a, [{"split_seed": 7, "head_seed": 7, "test/auroc": 0.5}])

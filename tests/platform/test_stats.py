"""platform.stats: Student-t intervals and paired effects, on small hand-computed examples."""

import math

import numpy as np
import pandas as pd
import pytest

from priorlab.platform.stats import (
    interval_table, mean_ci95, paired_differences, paired_effect, t_quantile, t_two_sided_mass,
)


@pytest.mark.parametrize("dof, expected", [(1, 12.7062), (2, 4.3027), (3, 3.1824), (4, 2.7764),
                                           (9, 2.2622), (30, 2.0423), (120, 1.9799)])
def test_t_quantile_matches_the_printed_table(dof, expected):
    assert t_quantile(0.975, dof) == pytest.approx(expected, abs=5e-5)


def test_t_mass_closed_forms():
    assert t_two_sided_mass(0.0, 5) == 0.0
    for t in (0.3, 1.0, 4.0):
        assert t_two_sided_mass(t, 1) == pytest.approx(2 / math.pi * math.atan(t))  # Cauchy
        assert t_two_sided_mass(t, 2) == pytest.approx(t / math.sqrt(t * t + 2))
    assert t_two_sided_mass(1e6, 7) == pytest.approx(1.0)
    assert t_quantile(0.95, 10) < t_quantile(0.975, 10) < t_quantile(0.975, 3)
    with pytest.raises(ValueError, match="dof"):
        t_two_sided_mass(1.0, 0)


def test_mean_ci95_is_a_t_interval_with_n_minus_1_dof():
    iv = mean_ci95([1.0, 2.0, 3.0])  # mean 2, s = 1, t_{.975,2} = 4.3027
    assert iv.mean == 2.0 and iv.n == 3
    assert iv.half_width == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert iv.text() == "2.000 ± 2.484 (n=3)"
    assert mean_ci95([0.5, float("nan")]).text() == "0.500 (n=1)"  # NaN dropped, no interval
    assert mean_ci95([]).text() == "-"


def _runs():
    # factor config/hyper, matched on config/k_shot and config/seed (and config/lr, constant)
    rows = [  # (hyper, k, seed, acc)
        (False, 1, 0, 0.50), (True, 1, 0, 0.60),
        (False, 1, 1, 0.40), (True, 1, 1, 0.40),
        (False, 5, 0, 0.70), (True, 5, 0, 0.65),
        (True, 5, 2, 0.90),  # no plain partner: left out
        (False, 5, 1, float("nan")), (True, 5, 1, 0.80),  # plain side has no value: left out
    ]
    return pd.DataFrame({"config/hyper": [r[0] for r in rows], "config/k_shot": [r[1] for r in rows],
                         "config/seed": [r[2] for r in rows], "config/lr": 0.1,
                         "acc": [r[3] for r in rows]})


def test_paired_differences_match_every_other_setting_and_drop_unmatched_runs():
    pairs = paired_differences(_runs(), "config/hyper", False, True, "acc")
    got = {(k, s): d for k, s, d in zip(pairs["config/k_shot"], pairs["config/seed"], pairs["diff"])}
    expected = {("1", "0"): 0.10, ("1", "1"): 0.0, ("5", "0"): -0.05}  # keys compared as repr
    assert got.keys() == expected.keys()
    for key, d in expected.items():
        assert got[key] == pytest.approx(d)
    assert pairs.attrs["unmatched"] == 2  # (True, 5, 2) and (True, 5, 1)


def test_paired_effect_summary_by_hand():
    eff = paired_effect(_runs(), "config/hyper", False, True, "acc")
    diffs = [0.10, 0.0, -0.05]
    mean, s = np.mean(diffs), np.std(diffs, ddof=1)
    assert eff.n == 3 and eff.unmatched == 2
    assert eff.interval.mean == pytest.approx(mean)
    assert eff.interval.half_width == pytest.approx(4.302653 * s / math.sqrt(3), rel=1e-6)
    assert (eff.b_higher, eff.a_higher, eff.ties) == (1, 1, 1)
    assert eff.text(names=("plain", "Hyper")) == (
        f"+{mean:.3f} ± {4.302653 * s / math.sqrt(3):.3f} (3 pairs; Hyper higher in 1, plain in 1, "
        "tied in 1)")
    d = eff.to_dict()
    assert d["n_pairs"] == 3 and d["ci95_low"] < d["mean_b_minus_a"] < d["ci95_high"]


def test_a_run_differing_in_another_setting_is_not_a_partner():
    df = _runs()
    df.loc[1, "config/lr"] = 0.2  # the Hyper run of (k=1, seed=0) now has another lr
    eff = paired_effect(df, "config/hyper", False, True, "acc")
    assert eff.n == 2 and eff.unmatched == 4
    # ...unless the caller says which columns define a setting
    assert paired_effect(df, "config/hyper", False, True, "acc",
                         match=["config/k_shot", "config/seed"]).n == 3


def test_other_levels_are_ignored_and_one_pair_has_no_interval():
    df = pd.DataFrame({"config/sharing": ["global", "stage", "unshared"], "config/seed": 0,
                       "acc": [0.8, 0.9, 0.85]})
    eff = paired_effect(df, "config/sharing", "global", "unshared", "acc")
    assert eff.diffs == pytest.approx((0.05,)) and eff.unmatched == 0
    assert eff.text() == "+0.050 (1 pair; B higher in 1, A in 0)"


def test_ambiguous_pairs_and_missing_columns_are_errors():
    df = pd.concat([_runs(), _runs().iloc[:1]], ignore_index=True)  # two plain (k=1, seed=0) runs
    with pytest.raises(ValueError, match="ambiguous"):
        paired_effect(df, "config/hyper", False, True, "acc")
    with pytest.raises(KeyError, match="acc2"):
        paired_effect(_runs(), "config/hyper", False, True, "acc2")
    with pytest.raises(ValueError, match="nothing to match"):
        paired_effect(pd.DataFrame({"config/hyper": [False, True], "acc": [0.1, 0.2]}),
                      "config/hyper", False, True, "acc")


def test_interval_table_cells():
    df = pd.DataFrame({"model": ["A", "A", "A", "B"], "config/k_shot": [1, 1, 5, 1],
                       "acc": [0.4, 0.6, 0.7, 0.3]})
    t = interval_table(df, "model", "config/k_shot", "acc", col_name=lambda k: f"{k}-shot")
    half = 12.7062 * np.std([0.4, 0.6], ddof=1) / math.sqrt(2)
    assert t.loc["A", "1-shot"] == f"0.500 ± {half:.3f} (n=2)"
    assert t.loc["A", "5-shot"] == "0.700 (n=1)" and t.loc["B", "5-shot"] == "-"
    assert t.index.name == "model"

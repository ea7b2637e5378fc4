"""Statistics for study reports: t-intervals over seeds and paired effects of a factor.

Pure numpy/pandas, shared by every family's tables. Two summaries, each labelled by what its
± is:

* :func:`mean_ci95`: the mean of independent runs (e.g. seeds) ± the half-width of a 95%
  Student-t interval, t_{0.975, n-1} * s / sqrt(n) with n - 1 degrees of freedom (not the
  normal 1.96, which is too narrow for the 3-5 seeds a study runs: t_{0.975, 2} = 4.30).
* :func:`paired_effect`: the effect of moving a factor from level A to level B, as the mean of
  paired differences B - A between runs that agree on every other config column and the seed
  (a "matched setting"), ± the 95% t-interval over those pairs, how many pairs there are and
  in how many each level is higher. Runs without a partner are left out (and counted). A spread over
  *other* factors is not a confidence interval of anything; this is what a factor's effect is.

    eff = paired_effect(results, "config/bias", False, True, "eval/acc")
    eff.text()        # "<mean B - A> ± <t half-width> (<n> pairs; B higher in <k>, A in <m>)"
    mean_ci95([0.61, 0.66, 0.64]).text()   # "0.637 ± 0.063 (n=3)"
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

CONFIDENCE = 0.95


# ----------------------------------------------------------------------------- Student t

def t_two_sided_mass(t: float, dof: int) -> float:
    """P(|T| <= t) for Student's t with an integer ``dof`` >= 1 (Abramowitz & Stegun 26.7.3-4,
    exact: a finite series in theta = atan(t / sqrt(dof)))."""
    if dof < 1 or int(dof) != dof:
        raise ValueError(f"dof={dof}: Student's t needs an integer number of degrees of freedom >= 1")
    t = abs(float(t))
    theta = math.atan(t / math.sqrt(dof))
    c2 = math.cos(theta) ** 2
    if dof % 2:  # odd: (2/pi) (theta + sin cos (1 + 2/3 cos^2 + 2.4/(3.5) cos^4 + ...))
        total, term = 0.0, math.cos(theta)
        if dof > 1:
            total = term
            for k in range(2, dof - 1, 2):
                term *= c2 * k / (k + 1)
                total += term
        return 2.0 / math.pi * (theta + math.sin(theta) * total)
    total = term = 1.0  # even: sin (1 + 1/2 cos^2 + 1.3/(2.4) cos^4 + ...)
    for k in range(1, dof - 2, 2):
        term *= c2 * k / (k + 1)
        total += term
    return math.sin(theta) * total


def t_quantile(q: float, dof: int) -> float:
    """The ``q`` quantile (0.5 < q < 1) of Student's t with ``dof`` degrees of freedom; e.g.
    t_quantile(0.975, n - 1) is the multiplier of a two-sided 95% interval over n values."""
    if not 0.5 < q < 1:
        raise ValueError(f"q={q}: give an upper quantile in (0.5, 1)")
    mass = 2 * q - 1
    lo, hi = 0.0, 1.0
    while t_two_sided_mass(hi, dof) < mass:
        hi *= 2
    for _ in range(200):  # bisection to float precision
        mid = 0.5 * (lo + hi)
        if t_two_sided_mass(mid, dof) < mass:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * hi:
            break
    return 0.5 * (lo + hi)


# ----------------------------------------------------------------------------- intervals

def _fmt(value: float, spec: str, sign: bool = False) -> str:
    return format(value, ("+" if sign else "") + spec)


@dataclass(frozen=True)
class Interval:
    """A mean over n values ± the half-width of its 95% t-interval (n - 1 dof; nan if n < 2)."""

    mean: float
    half_width: float
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def text(self, spec: str = ".3f", sign: bool = False) -> str:
        """"0.637 ± 0.062 (n=3)"; "0.637 (n=1)" without an interval; "-" with no values."""
        if self.n == 0:
            return "-"
        if self.n < 2 or not np.isfinite(self.half_width):
            return f"{_fmt(self.mean, spec, sign)} (n={self.n})"
        return f"{_fmt(self.mean, spec, sign)} ± {_fmt(self.half_width, spec)} (n={self.n})"


def mean_ci95(values: Iterable[float]) -> Interval:
    """Mean ± t_{0.975, n-1} * s / sqrt(n) over the finite ``values`` (NaNs dropped)."""
    v = np.asarray([float(x) for x in values], dtype=float)
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return Interval(float("nan"), float("nan"), 0)
    if n == 1:
        return Interval(float(v[0]), float("nan"), 1)
    half = t_quantile(0.5 + CONFIDENCE / 2, n - 1) * float(v.std(ddof=1)) / math.sqrt(n)
    return Interval(float(v.mean()), half, n)


# ----------------------------------------------------------------------------- paired effects

@dataclass(frozen=True)
class PairedEffect:
    """Level B minus level A of ``factor`` on ``metric``, over matched pairs of runs."""

    factor: str
    a: Any
    b: Any
    metric: str
    diffs: tuple[float, ...]
    """B - A, one per matched setting (every other config column and the seed equal)."""
    unmatched: int
    """Runs at level A or B that had no partner (left out)."""

    @property
    def interval(self) -> Interval:
        return mean_ci95(self.diffs)

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def b_higher(self) -> int:
        """Pairs where B's metric is higher (better for accuracy; read per metric)."""
        return sum(d > 0 for d in self.diffs)

    @property
    def a_higher(self) -> int:
        return sum(d < 0 for d in self.diffs)

    @property
    def ties(self) -> int:
        return sum(d == 0 for d in self.diffs)

    def text(self, spec: str = ".3f", names: tuple[str, str] = ("A", "B")) -> str:
        """"-0.030 ± 0.072 (3 pairs; B higher in 0, A in 3)": mean of B - A ± 95% t-interval."""
        if self.n == 0:
            return "- (no matched pairs)"
        iv = self.interval
        core = _fmt(iv.mean, spec, sign=True)
        if iv.n >= 2 and np.isfinite(iv.half_width):
            core += f" ± {_fmt(iv.half_width, spec)}"
        a, b = names
        ties = f", tied in {self.ties}" if self.ties else ""
        pairs = "pair" if self.n == 1 else "pairs"
        return f"{core} ({self.n} {pairs}; {b} higher in {self.b_higher}, {a} in {self.a_higher}{ties})"

    def to_dict(self) -> dict[str, Any]:
        iv = self.interval
        return {"factor": self.factor, "a": self.a, "b": self.b, "metric": self.metric,
                "mean_b_minus_a": iv.mean, "ci95_half_width_t": iv.half_width,
                "ci95_low": iv.low, "ci95_high": iv.high, "n_pairs": self.n,
                "b_higher": self.b_higher, "a_higher": self.a_higher, "ties": self.ties,
                "unmatched_runs": self.unmatched, "diffs": list(self.diffs)}


def _key(values: pd.Series) -> pd.Series:
    # Compare settings by their printed value: lists (stored as their repr) and NaN then match.
    return values.map(repr)


def paired_differences(df: pd.DataFrame, factor: str, a: Any, b: Any, metric: str, *,
                       match: Sequence[str] | None = None,
                       seed: str = "config/seed") -> pd.DataFrame:
    """One row per matched setting: the ``match`` columns, ``a`` and ``b`` (the metric at each
    level) and ``diff`` = b - a.

    ``match`` defaults to every ``config/*`` column except ``factor``; ``seed`` is added when the
    frame has it. Runs at other levels are ignored; runs at A or B whose setting has no run at
    the other level are dropped (``df.attrs["unmatched"]`` counts them). Two runs at the same
    level and setting are ambiguous: that is an error naming the columns to match on.
    """
    for col in (factor, metric):
        if col not in df.columns:
            raise KeyError(f"no column {col!r}; columns: {sorted(df.columns)}")
    keys = list(match) if match is not None else [
        c for c in df.columns if c.startswith("config/") and c != factor]
    if seed in df.columns and seed not in keys and seed != factor:
        keys.append(seed)
    if not keys:
        raise ValueError(f"nothing to match {factor}={a!r} and {b!r} runs on: the results have no "
                         "other config column; pass match=")
    missing = [c for c in keys if c not in df.columns]
    if missing:
        raise KeyError(f"match column(s) {missing} not in the results; columns: {sorted(df.columns)}")
    sides = {}
    for name, level in (("a", a), ("b", b)):
        part = df[df[factor] == level]
        part = part[np.isfinite(part[metric].astype(float))]
        k = pd.DataFrame({c: _key(part[c]) for c in keys}, index=part.index)
        dup = k.duplicated(keep=False)
        if dup.any():
            raise ValueError(
                f"{int(dup.sum())} runs at {factor}={level!r} share one setting of {keys}: pairs are "
                "ambiguous; pass match= with the columns that tell these runs apart")
        sides[name] = k.assign(**{name: part[metric].astype(float).to_numpy()})
    merged = sides["a"].merge(sides["b"], on=keys, how="inner")
    merged["diff"] = merged["b"] - merged["a"]
    merged.attrs["unmatched"] = len(sides["a"]) + len(sides["b"]) - 2 * len(merged)
    return merged


def paired_effect(df: pd.DataFrame, factor: str, a: Any, b: Any, metric: str, *,
                  match: Sequence[str] | None = None, seed: str = "config/seed") -> PairedEffect:
    """:func:`paired_differences` summarised: mean B - A ± 95% t-interval over the pairs."""
    pairs = paired_differences(df, factor, a, b, metric, match=match, seed=seed)
    return PairedEffect(factor=factor, a=a, b=b, metric=metric,
                        diffs=tuple(float(d) for d in pairs["diff"]),
                        unmatched=int(pairs.attrs["unmatched"]))


def interval_table(df: pd.DataFrame, rows: str, cols: str, metric: str, *,
                   col_name: Callable[[Any], str] | None = None, col_order: list | None = None,
                   spec: str = ".3f") -> pd.DataFrame:
    """rows x cols cells "mean ± 95% t-interval (n)" of ``metric`` over the runs in each cell."""
    for col in (rows, cols, metric):
        if col not in df.columns:
            raise KeyError(f"no column {col!r}; columns: {sorted(df.columns)}")
    row_values = sorted(df[rows].dropna().unique(), key=lambda v: (str(type(v)), v))
    col_values = col_order or sorted(df[cols].dropna().unique(), key=lambda v: (str(type(v)), v))
    return pd.DataFrame(
        {(col_name(c) if col_name else str(c)):
         [mean_ci95(df[(df[rows] == r) & (df[cols] == c)][metric]).text(spec) for r in row_values]
         for c in col_values},
        index=pd.Index(row_values, name=rows.split("/")[-1]))

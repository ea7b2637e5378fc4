"""Plotly figures of the ablation dashboard, built in Python as figure JSON (drawn by plotly.js).

One function per plot of an experiment (``platform.dashboard_data.Experiment``):

* :func:`choice_figures`: strip + box plot of the metric per choice of each ``group_by`` key
  (and per combination), at the same equal budget as the ablation table;
* :func:`parallel_figure`: parallel coordinates of the searched config keys and the metric
  (SVG lines, not plotly's WebGL ``parcoords``: that takes seconds in a software-rendered browser);
* :func:`curves_figure`: learning curves from history.parquet, progress vs metric, one line per
  trial coloured by its choice (a line per choice with gaps between trials: one legend entry
  per choice, and far fewer traces for plotly.js to draw);
* :func:`importance_figure`: the parameter importances (variance explained per key) as bars.

Each returns plain ``{"data": [...], "layout": {...}}`` dicts in plotly's figure schema (the
tests check every one with ``plotly.graph_objects.Figure``), encoded by plotly's JSON encoder.

    figures = experiment_figures(load_experiment(path), prefix="exp0")   # {div id: figure}
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from priorlab.platform.dashboard_data import (ALL, Experiment, _numeric, budget_view, label,
                                              param_importances, value_key)

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
MAX_POINTS_PER_TRIAL = 200
"""Learning curves with more reports are thinned to about this many points (the last kept)."""


def _figure(traces: list, layout: dict[str, Any]) -> dict:
    """A plotly figure as JSON-ready dicts (the tests validate each with plotly.graph_objects;
    building graph objects here would cost more than the rest of the page)."""
    return {"data": traces, "layout": {
        "margin": {"l": 60, "r": 20, "t": 40, "b": 50}, "height": 360,
        "paper_bgcolor": "white", "plot_bgcolor": "#f7f7f9", "hovermode": "closest",
        "font": {"size": 12}, **layout}}


def _metric_axis(exp: Experiment) -> dict:
    better = "higher" if exp.higher_is_better else "lower"
    return {"title": {"text": f"{exp.metric} ({better} is better)"}, "gridcolor": "white"}


def _chance_shape(exp: Experiment) -> tuple[list, list]:
    if exp.chance is None:
        return [], []
    shape = {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": exp.chance, "y1": exp.chance,
             "line": {"color": "grey", "dash": "dash", "width": 1}}
    note = {"xref": "paper", "x": 1, "y": exp.chance, "xanchor": "right", "yanchor": "bottom",
            "text": f"chance {exp.chance:.3g}", "showarrow": False, "font": {"color": "grey"}}
    return [shape], [note]


def _combo_label(keys: list[str], values: tuple) -> str:
    return ", ".join(f"{k}={label(v)}" for k, v in zip(keys, values))


def _colours(values: list) -> dict:
    return {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(values)}


def _ordered(series: pd.Series) -> list:
    return sorted(dict.fromkeys(series.tolist()), key=value_key)


def choice_figures(exp: Experiment, prefix: str) -> dict[str, dict]:
    """Strip + box plots of the metric at the equal budget: per key, and per combination."""
    rows, at = budget_view(exp)
    if rows.empty or exp.metric is None:
        return {}
    values = _numeric(rows, exp.metric)
    where = f" at {exp.progress} {at:g}" if at is not None else " (last reports)"
    keys_sets = [[k] for k in exp.group_by] or [[ALL]]
    if len(exp.group_by) > 1:
        keys_sets.append(list(exp.group_by))
    if not exp.group_by:
        rows = rows.assign(**{f"config/{ALL}": "all trials"})
    figures = {}
    shapes, notes = _chance_shape(exp)
    for n, keys in enumerate(keys_sets):
        cols = [f"config/{k}" for k in keys]
        combos = rows[cols].apply(tuple, axis=1) if len(cols) > 1 else rows[cols[0]].map(lambda v: (v,))
        order = sorted(dict.fromkeys(combos.tolist()), key=lambda t: tuple(value_key(v) for v in t))
        colours = _colours(order)
        traces = []
        for combo in order:
            mask = (combos == combo).to_numpy()
            name = label(combo[0]) if len(keys) == 1 else _combo_label(keys, combo)
            traces.append({"type": "box", "y": values[mask].tolist(), "name": name,
                           "boxpoints": "all", "jitter": 0.4, "pointpos": 0,
                           "marker": {"color": colours[combo], "size": 6, "opacity": 0.8},
                           "line": {"color": colours[combo]},
                           "text": rows.loc[mask, "trial_id"].astype(str).tolist(),
                           "hovertemplate": "trial %{text}<br>%{y:.4g}<extra>" + name + "</extra>"})
        what = " x ".join(keys) if keys != [ALL] else "all trials"
        figures[f"{prefix}-choice-{n}"] = _figure(traces, {
            "title": {"text": f"{exp.metric} per {what}{where}"}, "showlegend": False,
            "yaxis": _metric_axis(exp), "xaxis": {"title": {"text": what if keys != [ALL] else ""}},
            "shapes": shapes, "annotations": notes})
    return figures


VIRIDIS = ("#440154", "#46327e", "#365c8d", "#277f8e", "#1fa187", "#4ac16d", "#a0da39", "#fde725")


def _axis(label_text: str, col: pd.Series) -> tuple[str, np.ndarray, list[tuple[float, str]]]:
    """One parallel axis: (title, values scaled to [0, 1], ticks as (position, text))."""
    numeric = pd.to_numeric(col, errors="coerce")
    if (pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
            and numeric.notna().all()):
        v = numeric.to_numpy(dtype=float)
        lo, hi = float(v.min()), float(v.max())
        log = lo > 0 and hi / lo >= 20
        if log:
            v, label_text = np.log10(v), f"{label_text} (log)"
        a, b = float(v.min()), float(v.max())
        scaled = (v - a) / (b - a) if b > a else np.full(len(v), 0.5)
        ticks = [(0.0, f"{lo:.3g}"), (1.0, f"{hi:.3g}")] if b > a else [(0.5, f"{lo:.3g}")]
        return label_text, scaled, ticks
    cats = _ordered(col)
    index = {label(c): i for i, c in enumerate(cats)}
    pos = [i / (len(cats) - 1) if len(cats) > 1 else 0.5 for i in range(len(cats))]
    return (label_text, np.array([pos[index[label(v)]] for v in col]),
            [(pos[i], label(c)) for i, c in enumerate(cats)])


def parallel_figure(exp: Experiment) -> dict | None:
    """Parallel coordinates: one line per finished trial through its searched keys to its final
    metric, coloured by the metric. Drawn as SVG lines (plotly's parcoords needs WebGL, which
    takes seconds where the browser renders it in software)."""
    ok = exp.ok
    if ok.empty or exp.metric is None:
        return None
    values = _numeric(ok, exp.metric)
    ok, values = ok[values.notna()].reset_index(drop=True), values[values.notna()].reset_index(drop=True)
    if ok.empty:
        return None
    axes = [_axis(key, ok[f"config/{key}"]) for key in exp.searched]
    axes.append(_axis(exp.metric, values))
    raw = [ok[f"config/{key}"].map(label).tolist() for key in exp.searched] + [
        [f"{v:.4g}" for v in values]]
    names = [a[0] for a in axes]
    lo, hi = float(values.min()), float(values.max())
    shade = ((values - lo) / (hi - lo)).to_numpy() if hi > lo else np.full(len(values), 0.5)
    if not exp.higher_is_better:
        shade = 1 - shade                          # the best trials are yellow either way
    bins = np.minimum((shade * len(VIRIDIS)).astype(int), len(VIRIDIS) - 1)
    ids = ok["trial_id"].astype(str).tolist()
    traces = []
    for b in range(len(VIRIDIS)):
        xs, ys, texts = [], [], []
        for i in np.flatnonzero(bins == b):
            xs += list(range(len(axes))) + [None]
            ys += [float(a[1][i]) for a in axes] + [None]
            texts += [f"trial {ids[i]}<br>{names[d]} = {raw[d][i]}" for d in range(len(axes))] + [None]
        if xs:
            traces.append({"type": "scatter", "mode": "lines", "x": xs, "y": ys, "text": texts,
                           "hovertemplate": "%{text}<extra></extra>", "showlegend": False,
                           "line": {"color": VIRIDIS[b], "width": 1.5}, "opacity": 0.75})
    scale = [[i / (len(VIRIDIS) - 1), c] for i, c in enumerate(VIRIDIS if exp.higher_is_better
                                                                 else VIRIDIS[::-1])]
    traces.append({"type": "scatter", "mode": "markers", "x": [len(axes) - 1] * len(values),
                   "y": axes[-1][1].tolist(), "text": ids, "showlegend": False,
                   "hovertemplate": "trial %{text}<br>" + exp.metric + " %{marker.color:.4g}<extra></extra>",
                   "marker": {"color": values.tolist(), "colorscale": scale, "size": 7,
                              "showscale": True, "colorbar": {"title": {"text": exp.metric.split("/")[-1]}}}})
    shapes = [{"type": "line", "x0": d, "x1": d, "y0": 0, "y1": 1, "line": {"color": "#444", "width": 1}}
              for d in range(len(axes))]
    notes = [{"x": d, "y": 1.06, "text": f"<b>{a[0]}</b>", "showarrow": False, "yanchor": "bottom"}
             for d, a in enumerate(axes)]
    notes += [{"x": d, "y": pos, "text": text, "showarrow": False, "xanchor": "right", "xshift": -4,
               "font": {"size": 10, "color": "#333"}}
              for d, a in enumerate(axes) for pos, text in a[2]]
    return _figure(traces, {
        "title": {"text": f"The sweep: searched keys and final {exp.metric} ({len(ok)} finished trials)"},
        "xaxis": {"visible": False, "range": [-0.4, len(axes) - 0.6]},
        "yaxis": {"visible": False, "range": [-0.06, 1.14]}, "shapes": shapes, "annotations": notes,
        "plot_bgcolor": "white", "margin": {"l": 30, "r": 30, "t": 50, "b": 20}})


def _thin(part: pd.DataFrame) -> pd.DataFrame:
    if len(part) <= MAX_POINTS_PER_TRIAL:
        return part
    step = math.ceil(len(part) / MAX_POINTS_PER_TRIAL)
    keep = np.zeros(len(part), dtype=bool)
    keep[::step] = True
    keep[-1] = True
    return part[keep]


def curves_figure(exp: Experiment, at: float | None) -> tuple[dict | None, str]:
    """(figure, note): progress vs metric, a line per trial coloured by choice."""
    h = exp.history
    if h.empty or exp.metric is None or exp.progress is None:
        return None, "no history.parquet with the study's progress column yet"
    if exp.metric not in h.columns:
        return None, f"history.parquet has no {exp.metric} column"
    failed = set(exp.failed["trial_id"]) if not exp.results.empty else set()
    h = h[~h["trial_id"].isin(failed)].assign(
        _x=_numeric(h, exp.progress), _y=_numeric(h, exp.metric)).dropna(subset=["_x", "_y"])
    if h.empty:
        return None, f"no report with both {exp.progress} and {exp.metric} yet"
    running = set(exp.running)
    cols = [f"config/{g}" for g in exp.group_by if f"config/{g}" in h.columns]
    if cols:
        key = h[cols].apply(lambda r: _combo_label(exp.group_by, tuple(r)), axis=1) \
            if len(cols) > 1 else h[cols[0]].map(lambda v: f"{exp.group_by[0]}={label(v)}")
    else:
        key = pd.Series("all trials", index=h.index)
    h = h.assign(_key=np.where(h["trial_id"].isin(running), "running (no result yet)", key))
    order = sorted(h["_key"].unique(), key=lambda s: (s.startswith("running"), s))
    colours = _colours([k for k in order if not k.startswith("running")])
    traces, thinned = [], False
    for name in order:
        part = h[h["_key"] == name].sort_values(["trial_id", "_x"])
        xs: list = []
        ys: list = []
        ids: list = []
        for tid, one in part.groupby("trial_id", sort=False):
            small = _thin(one)
            thinned |= len(small) < len(one)
            xs += small["_x"].tolist() + [None]
            ys += small["_y"].tolist() + [None]
            ids += [str(tid)] * len(small) + [None]
        run = name.startswith("running")
        n = part["trial_id"].nunique()
        traces.append({"type": "scatter", "mode": "lines", "name": f"{name} ({n})", "x": xs, "y": ys,
                       "text": ids, "connectgaps": False,
                       "line": {"color": "#999" if run else colours[name], "width": 1.5,
                                "dash": "dot" if run else "solid"},
                       "opacity": 0.8,
                       "hovertemplate": f"trial %{{text}}<br>{exp.progress} %{{x}}<br>"
                                        f"{exp.metric} %{{y:.4g}}<extra>{name}</extra>"})
    shapes, notes = _chance_shape(exp)
    if at is not None:
        shapes = shapes + [{"type": "line", "yref": "paper", "y0": 0, "y1": 1, "x0": at, "x1": at,
                            "line": {"color": "black", "dash": "dot", "width": 1}}]
        notes = notes + [{"yref": "paper", "y": 1, "x": at, "text": f"budget {at:g}",
                          "showarrow": False, "yanchor": "bottom", "font": {"size": 11}}]
    note = (f"one line per trial ({h['trial_id'].nunique()} trials), coloured by choice"
            + (f"; curves thinned to about {MAX_POINTS_PER_TRIAL} points per trial" if thinned else ""))
    return _figure(traces, {"title": {"text": f"Learning curves: {exp.metric} vs {exp.progress}"},
                            "xaxis": {"title": {"text": exp.progress}, "gridcolor": "white"},
                            "yaxis": _metric_axis(exp), "shapes": shapes, "annotations": notes,
                            "legend": {"orientation": "h", "y": -0.2}, "height": 400}), note


def importance_figure(importances: list, metric: str) -> dict | None:
    scored = [imp for imp in importances if np.isfinite(imp.value)]
    if not scored:
        return None
    scored = scored[::-1]                          # most important on top
    trace = {"type": "bar", "orientation": "h", "x": [imp.value for imp in scored],
             "y": [imp.key for imp in scored], "marker": {"color": PALETTE[0]},
             "text": [f"{imp.groups} groups ({imp.how})" for imp in scored],
             "hovertemplate": "%{y}: %{x:.3f}<br>%{text}<extra></extra>"}
    return _figure([trace], {"title": {"text": f"Variance of {metric} explained by each key alone"},
                             "xaxis": {"title": {"text": "epsilon-squared"}, "range": [0, 1],
                                       "gridcolor": "white"},
                             "height": max(220, 90 + 40 * len(scored)),
                             "margin": {"l": 140, "r": 20, "t": 40, "b": 50}})


def experiment_figures(exp: Experiment, prefix: str) -> tuple[dict[str, dict], dict[str, Any]]:
    """Every figure of one experiment ({div id: figure}) and what the page says beside them."""
    figures: dict[str, dict] = {}
    extra: dict[str, Any] = {}
    figures.update(choice_figures(exp, prefix))
    par = parallel_figure(exp)
    if par is not None:
        figures[f"{prefix}-parallel"] = par
    at = budget_view(exp)[1] if not exp.ok.empty else None
    curves, extra["curves_note"] = curves_figure(exp, at)
    if curves is not None:
        figures[f"{prefix}-curves"] = curves
    importances, extra["importance_note"] = param_importances(exp)
    extra["importances"] = importances
    imp = importance_figure(importances, exp.metric or "")
    if imp is not None:
        figures[f"{prefix}-importance"] = imp
    return figures, extra

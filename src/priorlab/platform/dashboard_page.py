"""The ablation dashboard's HTML: one section per experiment, tables in HTML, plots as plotly JSON.

The page is the same whether it is served (``priorlab dashboard``: plotly.js from the local
route ``/plotly.min.js``, files through ``/file?path=...``) or exported (``--export``: plotly.js
inlined, file:// links, small PNG renders inlined as data URIs), so it never refers to the
network. Its script draws every figure with ``Plotly.newPlot``, marks each drawn div
``data-drawn="1"``, then sets ``body[data-ready="1"]`` and ``window.dashboardDrawnMs`` (ms
since navigation start; the browser test and benchmarks/dashboard_load.py wait on them), and
wires the ablation filter (a select per group_by key and a text box; client-side only).

    html = render_page([build_experiment_page(path, 0)], ExportLinks(), plotly_tag, live=False)
"""

from __future__ import annotations

import base64
import html
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from priorlab.platform.dashboard_data import (ALL, AblationTable, DashboardError, Experiment,
                                              Failure, TrialInfo, ablation_tables, best_trials,
                                              failures, load_experiment)
from priorlab.platform.dashboard_figures import experiment_figures

INLINE_PNG_BYTES = 300_000
"""Exported pages inline a render up to this size; larger ones are linked (file://)."""
PM = "\u00b1"


class ServedLinks:
    """Links of the served page: files go through the server's /file route."""

    def href(self, path: Path) -> str:
        return "/file?path=" + quote(str(Path(path).resolve()))

    def img(self, path: Path) -> str:
        return self.href(path)


class ExportLinks:
    """Links of an exported file: file:// URIs; small PNGs inlined so the file stands alone."""

    def href(self, path: Path) -> str:
        return Path(path).resolve().as_uri()

    def img(self, path: Path) -> str:
        try:
            if path.stat().st_size <= INLINE_PNG_BYTES:
                return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
        except OSError:
            pass
        return self.href(path)


@dataclass
class ExperimentPage:
    """What one experiment's section needs, computed once per change of its files."""

    index: int
    path: Path
    exp: Experiment | None = None
    error: str | None = None
    tables: list[AblationTable] = field(default_factory=list)
    best: list[TrialInfo] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    figures: dict[str, dict] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    figures_json: str = "{}"
    """``figures`` encoded once (plotly's JSON encoder: NaN -> null, numpy arrays as lists)."""


def build_experiment_page(path: Path, index: int) -> ExperimentPage:
    """Load and summarise one experiment; a folder that cannot be read becomes an error section."""
    page = ExperimentPage(index=index, path=Path(path))
    try:
        exp = load_experiment(path)
    except DashboardError as err:
        page.error = str(err)
        return page
    page.exp = exp
    page.tables = ablation_tables(exp)
    page.best = best_trials(exp)
    page.failures = failures(exp)
    page.figures, page.extra = experiment_figures(exp, prefix=f"exp{index}")
    from plotly.io.json import to_json_plotly

    page.figures_json = to_json_plotly(page.figures)
    return page


# ----------------------------------------------------------------------------- helpers

def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float | None, spec: str = ".4g") -> str:
    if value is None or value != value:
        return "-"
    return format(value, spec)


def _plot(div_id: str, figures: dict) -> str:
    return f'<div class="plot" id="{_e(div_id)}"></div>' if div_id in figures else ""


def _choices(labels: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in labels.items()) or "-"


# ----------------------------------------------------------------------------- sections

def _ablation_html(page: ExperimentPage) -> str:
    exp = page.exp
    keys = exp.group_by or [ALL]
    out = []
    options = {k: sorted({r.labels[k] for t in page.tables for r in t.rows if k in r.labels})
               for k in keys if k != ALL}
    controls = "".join(
        f'<label>{_e(k)} <select class="filter" data-key="{_e(k)}"><option value="">all</option>'
        + "".join(f'<option value="{_e(v)}">{_e(v)}</option>' for v in vals) + "</select></label>"
        for k, vals in options.items())
    controls += ('<label>text <input class="filter filter-text" type="search" '
                 'placeholder="rows containing..."></label><span class="count"></span>')
    out.append(f'<div class="filters">Filter the table: {controls}</div>')
    better = "higher" if exp.higher_is_better else "lower"
    for t_index, table in enumerate(page.tables):
        head = "".join(f"<th>{_e(k if k != ALL else 'trials')}</th>" for k in keys)
        head += (f"<th>{_e(exp.metric)} mean</th><th>95% interval</th><th>{PM} (95% t)</th>"
                 "<th>n</th><th>finished</th>")
        blocks: dict[tuple, list] = {}
        for row in table.rows:
            blocks.setdefault(tuple(row.labels), []).append(row)
        body = []
        for block in blocks.values():
            means = [r.interval.mean for r in block if r.interval.n]
            best = (max(means) if exp.higher_is_better else min(means)) if len(block) > 1 and means else None
            for row in block:
                iv = row.interval
                cells = "".join(f"<td>{_e(row.labels.get(k, '·'))}</td>" for k in keys)
                ci = f"[{_num(iv.low)}, {_num(iv.high)}]" if iv.n >= 2 else "-"
                mark = ' class="best"' if best is not None and iv.n and iv.mean == best else ""
                body.append(f"<tr data-labels='{_e(json.dumps(row.labels))}'{mark}>{cells}"
                            f"<td>{_num(iv.mean) if iv.n else '-'}</td><td>{ci}</td>"
                            f"<td>{_num(iv.half_width, '.3g') if iv.n >= 2 else '-'}</td>"
                            f"<td>{iv.n}</td><td>{row.total}</td></tr>")
        out.append(f"<h4>{_e(table.title)}</h4><table class=\"ablation\" id=\"exp{page.index}-ablation-"
                   f"{t_index}\"><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")
    out.append(
        f'<p class="note">mean {PM} half-width of the 95% Student-t interval over the n trials of '
        f"each choice at the budget (stats.mean_ci95: t<sub>0.975, n-1</sub> s / &radic;n; "
        f"n = 1: no interval); finished = trials of the choice that finished, at any budget; "
        f"&middot; = any value of that key. Bold: the best mean of a block ({better} is better). "
        f"The trials of a choice may differ in other searched keys and seeds.</p>")
    return "\n".join(out)


def _best_html(page: ExperimentPage, links) -> str:
    exp = page.exp
    if not page.best:
        return "<p>no finished trial with the metric yet</p>"
    rows = []
    for rank, t in enumerate(page.best, 1):
        if t.checkpoint is None:
            ckpt = "-"
        else:
            ckpt = f'<a href="{_e(links.href(t.checkpoint))}">{_e(t.checkpoint.name)}</a>'
            if not t.checkpoint.exists():
                ckpt += ' <span class="note">(not on this machine)</span>'
        renders = " ".join(f'<a href="{_e(links.href(p))}"><img class="render" alt="{_e(p.name)}" '
                           f'title="{_e(p)}" src="{_e(links.img(p))}"></a>' for p in t.pngs) or "-"
        progress = "-" if t.progress is None else f"{t.progress:g}"
        rows.append(f"<tr><td>{rank}</td><td>{_e(t.trial_id)}</td><td>{_e(_choices(t.labels))}</td>"
                    f"<td>{_num(t.value)}</td><td>{progress}</td><td>{ckpt}</td><td>{renders}</td></tr>")
    unit = exp.progress or "iterations"
    return (f'<table class="best-trials"><thead><tr><th>#</th><th>trial</th><th>choice</th>'
            f"<th>final {_e(exp.metric)}</th><th>{_e(unit)}</th><th>checkpoint</th><th>renders</th>"
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _failures_html(page: ExperimentPage, links) -> str:
    if not page.failures:
        return "<p>none</p>"
    out = [f"<p>{len(page.failures)} trial(s) failed; they are left out of every table and plot "
           "above. The end of each error file:</p>"]
    for f in page.failures:
        where = (f'<a href="{_e(links.href(f.error_file))}">{_e(f.error_file)}</a>'
                 if f.error_file is not None and f.error_file.is_file()
                 else _e(f.error_file or "no error file"))
        cut = f"[... the first {f.cut} bytes cut]\n" if f.cut else ""
        out.append(f'<details class="failure" open><summary>trial {_e(f.trial_id)} '
                   f"({_e(_choices(f.labels))}): {where}</summary><pre>{_e(cut)}{_e(f.text)}</pre>"
                   "</details>")
    return "\n".join(out)


def _summary(exp: Experiment) -> str:
    n, ok, failed, running = len(exp.results), len(exp.ok), len(exp.failed), len(exp.running)
    parts = [f"{n} trials: {ok} finished, {failed} failed"]
    if running:
        parts.append(f"{running} running (reports in history.parquet, no result yet)")
    line = "; ".join(parts)
    if exp.metric:
        line += (f". Metric: <b>{_e(exp.metric)}</b> ({'higher' if exp.higher_is_better else 'lower'}"
                 " is better)")
    if exp.chance is not None:
        line += f"; chance level {exp.chance:.3g}"
    if exp.group_by:
        line += f". Choices: {_e(', '.join(exp.group_by))}"
    if exp.progress:
        line += f"; progress: {_e(exp.progress)}"
    fixed = " ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}"
                     for k, v in sorted(exp.fixed.items()))
    out = f"<p>{line}.</p>"
    if fixed:
        out += f'<p class="note">Fixed settings of every trial: {_e(fixed)}</p>'
    return out


def _section(page: ExperimentPage, links) -> str:
    i = page.index
    if page.error is not None:
        return (f'<section class="experiment" id="exp{i}"><h2>{_e(page.path.name)}</h2>'
                f'<p class="error">{_e(page.error)}</p></section>')
    exp = page.exp
    figs = page.figures
    notes = "".join(f'<p class="note warn">{_e(n)}</p>' for n in exp.notes)
    head = (f'<section class="experiment" id="exp{i}"><h2>{_e(page.path.name)}: '
            f"{_e(exp.study_name)}</h2><p class=\"desc\">{_e(exp.description)} &mdash; "
            f"<code>{_e(page.path.resolve())}</code></p>{notes}{_summary(exp)}")
    curves = (f'<h3>Learning curves</h3>{_plot(f"exp{i}-curves", figs)}'
              f'<p class="note">{_e(page.extra.get("curves_note", ""))}</p>')
    if not page.tables:
        running = len(exp.running)
        return (head + f'<div class="empty"><h3>No finished trials yet</h3><p>results.parquet has '
                f"{'no rows' if exp.results.empty else 'no finished trial with ' + _e(exp.metric)}"
                f"{f'; {running} trial(s) are reporting' if running else ''}. Reload to update.</p></div>"
                + (curves if f"exp{i}-curves" in figs else "")
                + f"<h3>Failed trials</h3>{_failures_html(page, links)}</section>")
    choice_divs = "".join(_plot(k, figs) for k in sorted(figs) if k.startswith(f"exp{i}-choice-"))
    importances = page.extra.get("importances") or []
    imp_rows = "".join(f"<tr><td>{_e(imp.key)}</td><td>{_num(imp.value, '.3f')}</td>"
                       f"<td>{imp.groups} ({_e(imp.how)})</td></tr>" for imp in importances)
    imp_table = ('<table class="importances"><thead><tr><th>key</th><th>variance explained '
                 f"(epsilon-squared)</th><th>groups</th></tr></thead><tbody>{imp_rows}</tbody></table>"
                 if imp_rows else "")
    return (head
            + f"<h3>Ablation</h3>{_ablation_html(page)}"
            + f'<h3>Per choice</h3><div class="grid">{choice_divs}</div>'
            + f'<h3>The sweep</h3>{_plot(f"exp{i}-parallel", figs)}'
            + curves
            + f'<h3>Parameter importances</h3>{_plot(f"exp{i}-importance", figs)}{imp_table}'
            + f'<p class="note">{_e(page.extra.get("importance_note", ""))}</p>'
            + f"<h3>Best trials</h3>{_best_html(page, links)}"
            + f"<h3>Failed trials</h3>{_failures_html(page, links)}</section>")


CSS = """
body{font-family:system-ui,-apple-system,"DejaVu Sans",sans-serif;margin:0 auto;max-width:1200px;
padding:0 16px 40px;color:#222}
header{border-bottom:1px solid #ddd;margin-bottom:8px}nav a{margin-right:12px}
h2{margin-top:32px;border-top:2px solid #333;padding-top:12px}h3{margin-top:24px}
table{border-collapse:collapse;margin:6px 0;font-size:14px}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f3}tr.best td{font-weight:bold}
.note{color:#555;font-size:13px}.warn{color:#8a5a00}.error{color:#b00020;font-weight:bold}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(440px,1fr));gap:8px}
.plot{min-height:220px}.filters{margin:8px 0;font-size:14px}.filters label{margin-right:12px}
.count{color:#555}img.render{height:64px;margin:2px;border:1px solid #ccc}
pre{background:#f7f7f7;padding:8px;overflow-x:auto;font-size:12px;max-height:320px}
.empty{background:#fff8e1;padding:4px 12px;border:1px solid #f0d080}
"""

SCRIPT = """
(function () {
  function applyFilter(section) {
    var selects = section.querySelectorAll('select.filter');
    var text = (section.querySelector('input.filter-text') || {value: ''}).value.toLowerCase();
    var rows = section.querySelectorAll('table.ablation tbody tr');
    var shown = 0;
    rows.forEach(function (row) {
      var labels = JSON.parse(row.getAttribute('data-labels'));
      var ok = true;
      selects.forEach(function (sel) {
        if (sel.value !== '' && labels[sel.getAttribute('data-key')] !== sel.value) { ok = false; }
      });
      if (ok && text && row.textContent.toLowerCase().indexOf(text) < 0) { ok = false; }
      row.hidden = !ok;
      if (ok) { shown += 1; }
    });
    var count = section.querySelector('.count');
    if (count) { count.textContent = 'showing ' + shown + ' of ' + rows.length + ' rows'; }
  }
  document.querySelectorAll('section.experiment').forEach(function (section) {
    section.querySelectorAll('.filter').forEach(function (el) {
      el.addEventListener(el.tagName === 'SELECT' ? 'change' : 'input',
                          function () { applyFilter(section); });
    });
    applyFilter(section);
  });
  var figures = JSON.parse(document.getElementById('figures').textContent);
  var config = {responsive: true, displaylogo: false};
  var jobs = Object.keys(figures).map(function (id) {
    return Plotly.newPlot(id, figures[id].data, figures[id].layout, config).then(function (gd) {
      gd.setAttribute('data-drawn', '1');
      return gd;
    });
  });
  Promise.all(jobs).then(function () {
    window.dashboardDrawnMs = performance.now();
    document.body.setAttribute('data-ready', '1');
  }, function (err) {
    document.body.setAttribute('data-ready', 'error');
    console.error('dashboard: a plot failed: ' + err);
  });
})();
"""


def figures_json(pages: list[ExperimentPage]) -> str:
    """Every figure of the page as one JSON object, safe inside a <script> element."""
    parts = [p.figures_json.strip()[1:-1] for p in pages if p.figures_json.strip() != "{}"]
    return ("{" + ",".join(parts) + "}").replace("</", "<\\/")


def render_page(pages: list[ExperimentPage], links, plotly_tag: str, *, live: bool) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    how = ("live: the experiment folders are read again on every reload" if live
           else f"a snapshot written {stamp}; `priorlab dashboard EXPERIMENT` serves a live one")
    nav = "".join(f'<a href="#exp{p.index}">{_e(p.path.name)}</a>' for p in pages)
    body = "\n".join(_section(p, links) for p in pages)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>priorlab dashboard: {_e(', '.join(p.path.name for p in pages))}</title>"
        f"<style>{CSS}</style>{plotly_tag}</head><body>"
        f"<header><h1>priorlab dashboard</h1><p class=\"note\">{_e(how)} (page made {stamp}).</p>"
        f"<nav>{nav}</nav></header>\n{body}\n"
        f'<script type="application/json" id="figures">{figures_json(pages)}</script>'
        f"<script>{SCRIPT}</script></body></html>\n")

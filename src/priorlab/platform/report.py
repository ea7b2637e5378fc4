"""`priorlab report EXPERIMENT`: the results table grouped by the swept choice, and a plot.

Works for any study: it reads ``study.json`` (which study made the experiment) and
``results.parquet``, groups trials by the study's ``group_by`` keys and summarises every
metric on the study's curve (mean, std, n). The PNG plots metric vs curve x (e.g. accuracy vs
shot) per choice, with the standard deviation across trials as error bars.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from priorlab.platform.results import ResultsStore

STUDY_FILE = "study.json"


class ReportError(ValueError):
    pass


@dataclass
class Report:
    table: pd.DataFrame
    text: str
    plot_path: Path | None
    csv_path: Path
    tables_path: Path | None = None
    curves_path: Path | None = None


@dataclass
class ReportTable:
    """One table laid out as in the thesis: rows x columns of formatted cells."""

    title: str
    frame: pd.DataFrame

    def text(self) -> str:
        cols = [self.frame.index.name or ""] + [str(c) for c in self.frame.columns]
        rows = [[str(i)] + [str(v) for v in r] for i, r in zip(self.frame.index, self.frame.values)]
        widths = [max(len(c), *(len(r[j]) for r in rows)) if rows else len(c)
                  for j, c in enumerate(cols)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        return "\n".join([self.title, fmt.format(*cols), fmt.format(*["-" * w for w in widths])]
                         + [fmt.format(*r) for r in rows])

    def markdown(self) -> str:
        cols = [self.frame.index.name or ""] + [str(c) for c in self.frame.columns]
        lines = [f"**{self.title}**", "", "| " + " | ".join(cols) + " |",
                 "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join([str(i)] + [str(v) for v in r]) + " |"
                  for i, r in zip(self.frame.index, self.frame.values)]
        return "\n".join(lines)


def _cell(values: pd.Series, ci: bool) -> str:
    v = values.dropna().astype(float)
    if v.empty:
        return "-"
    if len(v) == 1:
        return f"{v.mean():.4g} (n=1)"
    spread = 1.96 * v.std(ddof=1) / np.sqrt(len(v)) if ci else v.std(ddof=1)
    return f"{v.mean():.4g} ± {spread:.2g} (n={len(v)})"


def thesis_table(df: pd.DataFrame, rows: str, cols: str, metric: str, *, title: str,
                 ci: bool = True, col_name=None, col_order: list | None = None) -> ReportTable:
    """Pivot ``metric`` into rows x cols cells "mean ± 95% CI (n)" (``ci=False``: ± std)."""
    missing = [c for c in (rows, cols, metric) if c not in df.columns]
    if missing:
        raise ReportError(f"results have no column(s) {missing}; columns: {sorted(df.columns)}")
    col_values = col_order or sorted(df[cols].dropna().unique(), key=lambda v: (str(type(v)), v))
    frame = pd.DataFrame(
        {(col_name(c) if col_name else str(c)): [_cell(df[(df[rows] == r) & (df[cols] == c)][metric], ci)
                                                 for r in sorted(df[rows].unique())]
         for c in col_values},
        index=pd.Index(sorted(df[rows].unique()), name=rows.split("/")[-1]))
    return ReportTable(title=title, frame=frame)


def _save_plot(fig, ax, xlabel: str, ylabel: str, title: str, path: Path, legend_size: int) -> Path:
    """Label, grid, legend, write ``path`` (PNG) and close the figure."""
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _plot_history(history: pd.DataFrame, group_by: list[str], x: str, metric: str, title: str,
                  path: Path) -> Path | None:
    cols = [f"config/{g}" for g in group_by]
    if history.empty or x not in history or metric not in history or any(c not in history for c in cols):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    h = history.dropna(subset=[metric])
    for key, part in h.groupby(cols, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        curve = part.groupby(x)[metric].agg(["mean", "std", "count"]).reset_index()
        label = ", ".join(f"{g}={k}" for g, k in zip(group_by, key))
        ax.plot(curve[x], curve["mean"], marker="o", label=f"{label} (n={int(curve['count'].max())})")
        ax.fill_between(curve[x], curve["mean"] - curve["std"].fillna(0),
                        curve["mean"] + curve["std"].fillna(0), alpha=0.15)
    return _save_plot(fig, ax, x, metric, title, path, legend_size=7)


def read_study_file(experiment: Path) -> dict:
    path = experiment / STUDY_FILE
    if not path.is_file():
        raise ReportError(
            f"{experiment} is not a priorlab experiment (no {STUDY_FILE}); pass the folder "
            "printed by `priorlab sweep`, e.g. runs/memory-label-injection-<date>"
        )
    return json.loads(path.read_text())


def summarise(df: pd.DataFrame, group_by: list[str], metrics: list[str]) -> pd.DataFrame:
    cols = [f"config/{g}" for g in group_by]
    missing = [c for c in cols + metrics if c not in df.columns]
    if missing:
        raise ReportError(f"results have no column(s) {missing}; columns: {sorted(df.columns)}")
    agg = df.groupby(cols, dropna=False)[metrics].agg(["mean", "std", "count"])
    agg.columns = [f"{m} {stat if stat != 'count' else 'n'}" for m, stat in agg.columns]
    agg.index.names = group_by
    return agg.reset_index()


def _format(table: pd.DataFrame, group_by: list[str], metrics: list[str]) -> str:
    header = group_by + [m.removeprefix("eval/") for m in metrics] + ["n"]
    lines = []
    for _, row in table.iterrows():
        cells = [str(row[g]) for g in group_by]
        for m in metrics:
            mean, std = row[f"{m} mean"], row[f"{m} std"]
            cells.append(f"{mean:.3f} ± {std:.3f}" if not np.isnan(std) else f"{mean:.3f}")
        cells.append(str(int(row[f"{metrics[0]} n"])))
        lines.append(cells)
    widths = [max(len(h), *(len(r[i]) for r in lines)) if lines else len(h)
              for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header), fmt.format(*["-" * w for w in widths])]
    out += [fmt.format(*r) for r in lines]
    return "\n".join(out)


def _plot(table: pd.DataFrame, group_by: list[str], curve: dict[float, str], xlabel: str,
          title: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = sorted(curve)
    fig, ax = plt.subplots(figsize=(6, 4))
    for _, row in table.iterrows():
        means = [row[f"{curve[x]} mean"] for x in xs]
        stds = [0.0 if np.isnan(row[f"{curve[x]} std"]) else row[f"{curve[x]} std"] for x in xs]
        label = ", ".join(f"{g}={row[g]}" for g in group_by) + f" (n={int(row[f'{curve[xs[0]]} n'])})"
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=label)
    ax.set_xticks(xs)
    ylabel = curve[xs[0]].split("/")[0] + " " + curve[xs[0]].split("/")[-1].split("_")[0]
    return _save_plot(fig, ax, xlabel, ylabel, title, path, legend_size=8)


def build_report(experiment: str | Path) -> Report:
    from priorlab.platform.studies import get_study

    experiment = Path(experiment)
    info = read_study_file(experiment)
    study = get_study(info["study"])
    df = ResultsStore(experiment).read()
    if df.empty:
        raise ReportError(
            f"{experiment} has no finished trials yet (no {ResultsStore(experiment).results_path.name}); "
            f"resume it with `priorlab sweep {study.name} --resume --name {experiment.name}`"
        )
    group_by = list(study.group_by)
    curve = study.curve(info.get("fixed", {}))
    metrics = [curve[x] for x in sorted(curve)]
    metrics = [m for m in metrics if m in df.columns] or metrics
    curve = {x: m for x, m in curve.items() if m in metrics}
    table = summarise(df, group_by, metrics)
    text = _format(table, group_by, metrics)
    csv_path = experiment / "report.csv"
    table.to_csv(csv_path, index=False)
    plot_path = _plot(table, group_by, curve, study.curve_label,
                      f"{study.name} ({len(df)} trials)", experiment / "report.png")
    tables_path = curves_path = None
    if study.tables is not None:
        shaped = study.tables(df, info.get("fixed", {}))
        if shaped:
            text = "\n\n".join([text] + [t.text() for t in shaped])
            tables_path = experiment / "tables.md"
            tables_path.write_text(f"# {study.name}: {study.description}\n\n"
                                   + "\n\n".join(t.markdown() for t in shaped) + "\n")
    if study.history_curve is not None:
        x, metric = study.history_curve
        curves_path = _plot_history(ResultsStore(experiment).read_history(), group_by, x, metric,
                                    f"{study.name}: {metric} during training",
                                    experiment / "curves.png")
    return Report(table=table, text=text, plot_path=plot_path, csv_path=csv_path,
                  tables_path=tables_path, curves_path=curves_path)

"""`priorlab report EXPERIMENT`: the swept choices compared at equal budget, a plot, thesis tables.

Works for any study (accuracy, PSNR, AUROC...): it reads ``study.json`` (which study made the
experiment), ``results.parquet`` and ``history.parquet``, and groups trials by the study's
``group_by`` keys. Honest by construction:

* **failed trials never count**: ERROR rows are left out of every mean, table and plot, and
  the report says how many failed and where their error files are;
* **equal budget**: with early stopping (ASHA) some trials stop at step 10 while others run to
  40. The main table compares every choice at the same point, by default the highest value of
  the study's progress metric (step / iteration / epoch) that every choice reached, taking each
  trial's report at that point from ``history.parquet`` (trials that stopped earlier are left
  out, and n says how many are in); a second table shows only the trials that ran to the end;
* **every ± is labelled**: the tables say whether ± is a std over trials, a 95% interval over
  seeds or over evaluation episodes. The plot marks the chance level when the metric has one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from priorlab.methods.configuration import config_from_dict, config_to_dict
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
    failed: int = 0
    budget: float | None = None
    """The progress value (step / iteration / epoch) the main table compares at."""


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
    """Per group: ``<metric> mean``, ``<metric> std`` (over trials, ddof 1) and ``<metric> n``,
    plus ``<metric> ci95`` (the trial's own 95% interval over evaluation episodes) where a
    group has one trial that reported ``<metric>_ci95``."""
    cols = [f"config/{g}" for g in group_by]
    missing = [c for c in cols + metrics if c not in df.columns]
    if missing:
        raise ReportError(f"results have no column(s) {missing}; columns: {sorted(df.columns)}")
    agg = df.groupby(cols, dropna=False)[metrics].agg(["mean", "std", "count"])
    agg.columns = [f"{m} {stat if stat != 'count' else 'n'}" for m, stat in agg.columns]
    for m in metrics:
        if f"{m}_ci95" in df.columns:
            agg[f"{m} ci95"] = df.groupby(cols, dropna=False)[f"{m}_ci95"].first()
    agg.index.names = group_by
    return agg.reset_index()


PM = "\u00b1"
PLUS_MINUS_NOTE = (f"{PM} = std over the n trials of each choice (the trials may differ in other "
                   "searched keys or seeds); n = 1: {pm} = 95% interval over that trial's "
                   "{over} (marked *)").replace("{pm}", PM)


def _format(table: pd.DataFrame, group_by: list[str], metrics: list[str]) -> str:
    header = group_by + [m.removeprefix("eval/") for m in metrics] + ["n"]
    lines = []
    for _, row in table.iterrows():
        cells = [str(row[g]) for g in group_by]
        for m in metrics:
            mean, std, n = row[f"{m} mean"], row[f"{m} std"], row[f"{m} n"]
            ci = row.get(f"{m} ci95", np.nan)
            if n >= 2 and not np.isnan(std):
                cells.append(f"{mean:.3f} {PM} {std:.3f}")
            elif n == 1 and isinstance(ci, float) and not np.isnan(ci):
                cells.append(f"{mean:.3f} {PM} {ci:.3f}*")
            elif n >= 1:
                cells.append(f"{mean:.3f}")
            else:
                cells.append("-")
        cells.append(str(int(row[f"{metrics[0]} n"])))
        lines.append(cells)
    widths = [max(len(h), *(len(r[i]) for r in lines)) if lines else len(h)
              for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header), fmt.format(*["-" * w for w in widths])]
    out += [fmt.format(*r) for r in lines]
    return "\n".join(out)


def _plot(table: pd.DataFrame, group_by: list[str], curve: dict[float, str], xlabel: str,
          title: str, path: Path, chance: float | None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = sorted(curve)
    fig, ax = plt.subplots(figsize=(6, 4))
    for _, row in table.iterrows():
        means = [row[f"{curve[x]} mean"] for x in xs]
        n = int(row[f"{curve[xs[0]]} n"])
        # the table's ±: std over trials, or for one trial its own interval over episodes
        spread = [row.get(f"{curve[x]} std" if n >= 2 else f"{curve[x]} ci95", np.nan) for x in xs]
        spread = [0.0 if np.isnan(v) else v for v in spread]
        label = ", ".join(f"{g}={row[g]}" for g in group_by) + f" (n={n}{'*' if n == 1 else ''})"
        ax.errorbar(xs, means, yerr=spread, marker="o", capsize=3, label=label)
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label=f"chance ({chance:.3g})")
    ax.set_xticks(xs)
    ylabel = curve[xs[0]].split("/")[0] + " " + curve[xs[0]].split("/")[-1].split("_")[0]
    return _save_plot(fig, ax, xlabel, ylabel + " (bars: std over trials;\n"
                      "n=1*: 95% interval over its episodes)", title, path, legend_size=8)


@dataclass
class BudgetView:
    rows: pd.DataFrame
    """One row per trial that reached the budget: its metrics at that point."""
    at: float | None
    """The progress value compared at (None: no history, the trials' last reports)."""


def _progress_of(df: pd.DataFrame, key: str) -> pd.Series:
    return pd.to_numeric(df[key], errors="coerce") if key in df.columns else pd.Series(np.nan, index=df.index)


def _short(value) -> str:
    """A config value as one short token for the budget line (lists without spaces)."""
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_short(v) for v in value) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


def equal_budget(results: pd.DataFrame, history: pd.DataFrame, group_by: list[str],
                 progress: str, at: float | None = None) -> BudgetView:
    """Each trial's metrics at the same progress value ``at`` (default: the highest value every
    group reached). Trials that stopped before it are dropped. Without usable history the
    trials' last reports are returned unchanged (``at`` None)."""
    cols = [f"config/{g}" for g in group_by]
    if history.empty or progress not in history.columns:
        return BudgetView(results, None)
    hist = history[history["trial_id"].isin(results["trial_id"])].copy()
    hist["_p"] = _progress_of(hist, progress)
    hist = hist.dropna(subset=["_p"])
    if hist.empty:
        return BudgetView(results, None)
    reached = hist.groupby("trial_id")["_p"].max()
    groups = results.set_index("trial_id")[cols]
    per_group = reached.to_frame("reached").join(groups).groupby(cols, dropna=False)["reached"].max()
    at = float(per_group.min()) if at is None else float(at)
    keep = reached[reached >= at].index
    chosen = (hist[hist["trial_id"].isin(keep) & (hist["_p"] <= at)]
              .sort_values("_p").groupby("trial_id").tail(1).drop(columns="_p"))
    # configs come from results (complete); metrics from the report at the budget
    chosen = chosen[[c for c in chosen.columns if not c.startswith("config/")]]
    config_cols = [c for c in results.columns if c.startswith("config/")] + ["status"]
    merged = chosen.drop(columns=["status"], errors="ignore").merge(
        results[["trial_id"] + config_cols], on="trial_id")
    return BudgetView(merged, at)


def _completed(results: pd.DataFrame, history: pd.DataFrame, progress: str, iters_key: str) -> pd.DataFrame:
    """Trials that ran to their configured length (``config/<iters_key>``)."""
    target = _progress_of(results, f"config/{iters_key}")
    done = _progress_of(results, progress)
    if done.isna().all() and not history.empty and progress in history.columns:
        last = history.assign(_p=_progress_of(history, progress)).groupby("trial_id")["_p"].max()
        done = results["trial_id"].map(last)
    return results[(done >= target) & target.notna()]


def _failures(df: pd.DataFrame, experiment: Path) -> list[str]:
    out = []
    for _, row in df[df["status"] == "ERROR"].iterrows():
        path = row.get("error_file")
        if not isinstance(path, str) or not path:
            guess = experiment / f"trial_{row['trial_id']}" / "error.txt"
            path = str(guess) if guess.is_file() else "(no error file: see the sweep's console output)"
        out.append(f"  trial {row['trial_id']}: {path}")
    return out


def build_report(experiment: str | Path) -> Report:
    from priorlab.platform.studies import get_study

    experiment = Path(experiment)
    info = read_study_file(experiment)
    study = get_study(info["study"])
    store = ResultsStore(experiment)
    df = store.read()
    if df.empty:
        raise ReportError(
            f"{experiment} has no finished trials yet (no {store.results_path.name}); "
            f"resume it with `priorlab sweep {study.name} --resume --name {experiment.name}`"
        )
    history = store.read_history()
    failed_lines = _failures(df, experiment)
    ok = df[df["status"] != "ERROR"].reset_index(drop=True)
    fixed = info.get("fixed", {})
    group_by = list(study.group_by)
    progress = study.progress_metric
    head = [f"{study.name}: {len(df)} trials, {len(ok)} finished, {len(failed_lines)} failed"]
    try:
        full_config = config_to_dict(config_from_dict(study.config_cls, fixed))
    except Exception:  # noqa: BLE001 - an old or edited study.json: the report still prints
        full_config = dict(fixed)
    chance = study.chance(full_config)
    if chance is not None:
        head[0] += f"; chance level {chance:.3f}"
    if fixed:
        head.append("budget and fixed settings of every trial: "
                    + " ".join(f"{k}={_short(v)}" for k, v in sorted(fixed.items())))
    fail_text = ""
    if failed_lines:
        fail_text = (f"{len(failed_lines)} trial(s) failed and are left out of every table and "
                     "plot; their errors:\n" + "\n".join(failed_lines))
    if ok.empty:
        text = "\n".join(head + ["no trial finished: nothing to compare", fail_text])
        csv_path = experiment / "report.csv"
        df.to_csv(csv_path, index=False)
        return Report(table=pd.DataFrame(), text=text, plot_path=None, csv_path=csv_path,
                      failed=len(failed_lines))

    curve = study.curve(fixed)
    metrics = [curve[x] for x in sorted(curve)]
    metrics = [m for m in metrics if m in ok.columns] or metrics
    curve = {x: m for x, m in curve.items() if m in metrics}
    view = equal_budget(ok, history, group_by, progress)
    completed = _completed(ok, history, progress, study.iters_key)
    table = summarise(view.rows, group_by, metrics)
    unit = progress
    sections = ["\n".join(head)]
    if view.at is None:
        sections.append("Each trial's last report (no history to compare at equal budget):\n"
                        + _format(table, group_by, metrics))
    elif len(completed) == len(ok) == len(view.rows):
        sections.append(f"Every trial ran its whole budget ({unit} {view.at:g}):\n"
                        + _format(table, group_by, metrics))
    else:
        sections.append(
            f"Equal budget: every choice at {unit} {view.at:g}, the highest {unit} every choice "
            f"reached ({len(view.rows)} of {len(ok)} trials got that far; early-stopped trials "
            "that did not are left out):\n" + _format(table, group_by, metrics))
        if not completed.empty and len(completed) < len(ok):
            done_table = summarise(completed, group_by, metrics)
            sections.append(f"Trials that ran to the end ({len(completed)} of {len(ok)}; their "
                            "final reports):\n" + _format(done_table, group_by, metrics))
        elif completed.empty:
            sections.append("No trial ran to the end of its budget.")
    sections.append(PLUS_MINUS_NOTE.format(over=study.trial_interval))
    if fail_text:
        sections.append(fail_text)
    text = "\n\n".join(sections)
    csv_path = experiment / "report.csv"
    table.assign(budget=view.at).to_csv(csv_path, index=False)
    at = "" if view.at is None else f" at {unit} {view.at:g}"
    plot_path = _plot(table, group_by, curve, study.curve_label,
                      f"{study.name}{at} ({len(view.rows)} trials)", experiment / "report.png",
                      chance)
    tables_path = curves_path = None
    if study.tables is not None:
        shaped = study.tables(ok, fixed)
        if shaped:
            text = "\n\n".join([text] + [t.text() for t in shaped])
            tables_path = experiment / "tables.md"
            tables_path.write_text(f"# {study.name}: {study.description}\n\n"
                                   + "\n\n".join(t.markdown() for t in shaped) + "\n")
    if study.history_curve is not None:
        x, metric = study.history_curve
        hist_ok = history[history["trial_id"].isin(ok["trial_id"])] if not history.empty else history
        curves_path = _plot_history(hist_ok, group_by, x, metric,
                                    f"{study.name}: {metric} during training",
                                    experiment / "curves.png")
    return Report(table=table, text=text, plot_path=plot_path, csv_path=csv_path,
                  tables_path=tables_path, curves_path=curves_path, failed=len(failed_lines),
                  budget=view.at)

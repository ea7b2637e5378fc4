"""Study `memory-depth`: effective depth = network depth x task length (thesis App. A.2, Table A.1).

App. A.2 trains CL+LSTMs of depth 4 (2 ConvLSTM layers + LSTM + classifier) and 6 (4 ConvLSTM
layers + LSTM + classifier) on k-way 5-shot tasks whose support set is shown online, one
character per step, in shuffled order, and scores them on a separate query set; a model
"learns an efficient adaptation strategy" up to an effective depth of about 120-140:

    depth  task          length  effective depth  efficient adaptation
    4      5-shot 6-way  30      120              yes
    4      5-shot 7-way  35      140              no
    6      5-shot 4-way  20      120              yes
    6      5-shot 5-way  25      150              no

and the skip connection is what lets longer tasks train at all. This study is that grid,
with and without the skip: ``conv_layers`` in {2, 4} (depth 4, 6) x ``subtasks`` (k) in
{4, 5, 6, 7} x ``skip`` in {on, off}, every seed to the end of the same budget, on the continual
trainable's support/query protocol with ``order=shuffled`` and no curriculum (every update at
the target length). The 2-layer models' skip runs from layer 1 to layer 2 (``skip_pair=[0, 1]``,
our reading: the thesis does not say where it is; see ``ContinualConfig.skip_pair``). `priorlab
report` lays it out as Table A.1: rows depth x skip, columns task length (with its effective
depth), query accuracy mean ± 95% interval over seeds.

    priorlab sweep memory-depth --samples 2
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from ray import tune

from priorlab.platform.report import ReportTable
from priorlab.platform.stats import interval_table
from priorlab.search_spaces.memory_baselines import SEEDS_CI
from priorlab.search_spaces.memory_continual import BUDGET as CONTINUAL_BUDGET, config_of, continual_study

CONV_LAYERS = (2, 4)
WAYS = (4, 5, 6, 7)
THESIS_TABLE_A1 = {(4, 30): "yes", (4, 35): "no", (6, 20): "yes", (6, 25): "no"}
"""(depth, task length) -> "efficient task adaptation" in Table A.1 (paper budget)."""

# The continual budget without the keys this study sweeps (a pinned key leaves the grid).
BUDGET = {**{k: v for k, v in CONTINUAL_BUDGET.items() if k not in ("conv_layers", "subtasks")},
          "order": "shuffled", "curriculum_start": 20, "n_labels": 7, "eval_lengths": [4],
          "max_iters": 1500}


def space(fixed: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"conv_layers": tune.choice(list(CONV_LAYERS)), "subtasks": tune.choice(list(WAYS)),
            "skip": tune.choice([True, False])}


def depth(conv_layers: int) -> int:
    """Layers a step goes through: the ConvLSTM layers, the LSTM and the classifier."""
    return int(conv_layers) + 2


TRAIN_POINT = dict(conv_layers=4, subtasks=5, skip=True)


def tables(df: pd.DataFrame, fixed: dict[str, Any]) -> list[ReportTable]:
    cfg = config_of({**TRAIN_POINT, **fixed})   # the budget leaves the swept keys to the grid
    needed = {"config/conv_layers", "config/subtasks", "config/skip", "eval/acc"}
    if not needed <= set(df):
        return []
    df = df.assign(
        row=[f"depth {depth(c)}, skip {'on' if s else 'off'}"
             for c, s in zip(df["config/conv_layers"], df["config/skip"])],
        length=df["config/subtasks"].astype(int) * cfg.n_shot)
    frame = interval_table(df, "row", "length", "eval/acc",
                           col_name=lambda t: f"T = {t}")
    notes = ", ".join(f"depth {d} x T {t} = {d * t}: {v}" for (d, t), v in THESIS_TABLE_A1.items())
    return [ReportTable(
        title=f"Table A.1 layout: query accuracy after {cfg.max_iters} updates on k-way {cfg.n_shot}-shot "
              f"tasks (support shown online, shuffled; T = task length, effective depth = depth x T); "
              f"{SEEDS_CI}. Thesis (paper budget) 'efficient adaptation': {notes}",
        frame=frame)]


STUDY = continual_study(
    name="memory-depth",
    description="Effective depth: CL+LSTM depth 4/6 x task length x skip connection (App. A.2, Table A.1)",
    space=space,
    budget=dict(BUDGET),
    metric="eval/acc",
    group_by=("conv_layers", "subtasks", "skip"),
    train_point=dict(TRAIN_POINT),
    tables=tables,
    curve=lambda config: {float(config_of(config).subtasks): "eval/acc"},
    curve_label="subtasks (k-way)",
    chance=lambda config: 1.0 / int(config.get("subtasks", 5)),
)

"""Study `memory-delay`: online few-shot learning when each label arrives d steps late (thesis
Sec. 2.1, ref. [106]; Ch. 2's summary: CL+LSTM "adapts seamlessly, whereas other adaptation
strategies struggle").

A grid of model (`cl_lstm`, `opn`, `cpm`) x ``label_delay`` (1, 3, 6: with 5-way 5-shot episodes
of 25 steps, d = 6 withholds a class's label until about one more of its samples has passed),
every seed run to the end of the same budget (`memory-baselines`' laptop budget). `priorlab
report` gives one table per reported k: rows the models, columns the delays, k-shot accuracy
(the (k+1)-th appearance of a class, whether or not its earlier labels have arrived yet).
The thesis states the ordering but prints no numbers for it.

    priorlab sweep memory-delay --samples 3
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from ray import tune

from priorlab.methods.configuration import config_from_dict
from priorlab.methods.memory.config import MemoryConfig
from priorlab.platform.report import ReportTable
from priorlab.platform.stats import interval_table
from priorlab.search_spaces.memory_baselines import NAMES, SEEDS_CI, grid_study

MODELS = ("cl_lstm", "opn", "cpm")
DELAYS = (1, 3, 6)


def space(fixed: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"model": tune.choice(list(MODELS)), "label_delay": tune.choice(list(DELAYS))}


def tables(df: pd.DataFrame, fixed: dict[str, Any]) -> list[ReportTable]:
    """Per reported k: models x delays, k-shot accuracy at the end of training."""
    cfg = config_from_dict(MemoryConfig, {k: v for k, v in fixed.items()
                                          if k in MemoryConfig.__dataclass_fields__})
    if "config/model" not in df or "config/label_delay" not in df:
        return []
    df = df.assign(model=df["config/model"].map(lambda m: NAMES.get(m, m)))
    return [ReportTable(
        title=f"{k}-shot accuracy vs label delay d ({cfg.n_way}-way, {cfg.image_size}x"
              f"{cfg.image_size}, {cfg.max_iters} iterations per run); {SEEDS_CI}",
        frame=interval_table(df, "model", "config/label_delay", f"eval/acc_{k}shot",
                             col_name=lambda d: f"d = {d}"))
        for k in cfg.report_shots if f"eval/acc_{k}shot" in df]


STUDY = grid_study(
    name="memory-delay",
    description="CL+LSTM vs OPN, CPM as labels arrive 1, 3, 6 steps late (Sec. 2.1)",
    space=space,
    group_by=("model", "label_delay"),
    train_point=dict(model="cl_lstm", label_delay=3),
    tables=tables,
)

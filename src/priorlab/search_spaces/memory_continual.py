"""Study `memory-continual`: online few-shot continual learning, CL+LSTM against OML and ANML at
equal budget (thesis Sec. 2.4.3, Fig. 2.3 and 2.4; App. A.3).

A grid over the model (`cl_lstm`, `oml`, `anml`), every seed run to the end of the same number
of outer updates on the same tasks (App. A.3.1's curriculum from 5 subtasks up to ``subtasks``).
`priorlab report` gives Fig. 2.3 as a table (query accuracy vs task length, mean ± 95% interval
over seeds; the plot is the same curve) and Fig. 2.4 (accuracy per subtask within the longest
evaluated task). The thesis prints no numbers for Fig. 2.3; Fig. 2.4's caption gives the mean
over the first 19 subtasks of a 20-subtask task: CL+LSTM 93.15, ANML 91.78 (ANML 56 on the 20th).

The default budget is a CPU laptop's (see ``BUDGET``); the paper's is 28x28, four layers of 64,
LSTM 400, tasks up to 20 subtasks, curriculum steps of 5000 and 100k-150k updates:
``priorlab sweep memory-continual image_size=28 conv_layers=4 channels=64 lstm_hidden=400
subtasks=20 curriculum_every=5000 max_iters=100000 eval_lengths=[5,10,15,20]``.

    priorlab sweep memory-continual --samples 3
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from ray import tune

from priorlab.data.omniglot import load_omniglot_images, read_split
from priorlab.methods.configuration import config_from_dict
from priorlab.methods.memory.continual import ContinualConfig
from priorlab.platform.report import ReportTable
from priorlab.platform.stats import interval_table
from priorlab.search_spaces.memory_baselines import SEEDS_CI, grid_study
from priorlab.trainables.memory_continual import train_driver_fn

MODELS = ("cl_lstm", "oml", "anml")
NAMES = {"cl_lstm": "CL+LSTM", "oml": "OML", "anml": "ANML"}
THESIS_FIG_2_4 = "thesis Fig. 2.4 (20 subtasks, paper budget): mean of subtasks 1-19 CL+LSTM 93.15, ANML 91.78"

# A laptop's budget: 14x14 images, two conv layers of 16, LSTM 64, tasks growing from 5 to 8
# subtasks (one more every 300 updates), meta-batch 8, 1500 updates.
BUDGET = dict(image_size=14, conv_layers=2, channels=16, lstm_hidden=64, pln_hidden=64,
              anml_channels=32, nm_channels=16, subtasks=8, n_labels=10, n_query=3,
              curriculum_every=300, meta_batch=8, grad_clip=10.0, forget_bias=4.0,
              lstm_forget_bias=3.0, max_iters=1500, eval_every=500, eval_episodes=100,
              eval_lengths=[5, 8, 10])


def config_of(fixed: dict[str, Any]) -> ContinualConfig:
    return config_from_dict(ContinualConfig, {k: v for k, v in fixed.items()
                                              if k in ContinualConfig.__dataclass_fields__})


def space(fixed: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"model": tune.choice(list(MODELS))}


def lengths(cfg: ContinualConfig) -> list[int]:
    return sorted({*map(int, cfg.eval_lengths), int(cfg.subtasks)})


def curve(config: dict[str, Any]) -> dict[float, str]:
    """Fig. 2.3: query accuracy vs task length."""
    return {float(n): f"eval/acc_len{n}" for n in lengths(config_of(config))}


def prepare_data(data_root, fixed: dict[str, Any]) -> None:
    """Fail fast on missing Omniglot; decode the image cache once instead of in every actor."""
    cfg = config_of(fixed)
    for split in (cfg.train_split, cfg.eval_split):
        read_split(data_root, split)
    load_omniglot_images(data_root, cfg.image_size)


def _indexed(df: pd.DataFrame, prefix: str, indices: list[int], name: str) -> pd.DataFrame:
    """Columns ``{prefix}{i}`` as long rows (model, ``name`` = i, acc)."""
    long = df.melt(id_vars=["model"], value_vars=[f"{prefix}{i}" for i in indices],
                   var_name=name, value_name="acc")
    long[name] = long[name].str.removeprefix(prefix).astype(int)
    return long


def tables(df: pd.DataFrame, fixed: dict[str, Any]) -> list[ReportTable]:
    """Fig. 2.3 (models x task length) and Fig. 2.4 (models x subtask of the longest task)."""
    cfg = config_of(fixed)
    if "config/model" not in df:
        return []
    df = df.assign(model=df["config/model"].map(lambda m: NAMES.get(m, m)))
    out = []
    ns = [n for n in lengths(cfg) if f"eval/acc_len{n}" in df]
    if ns:
        long = _indexed(df, "eval/acc_len", ns, "n")
        out.append(ReportTable(
            title=f"Fig. 2.3 layout: query accuracy vs task length (subtasks of 1 class x {cfg.n_shot} "
                  f"samples, {cfg.order} order, {cfg.image_size}x{cfg.image_size}, {cfg.max_iters} "
                  f"updates per model, curriculum to {cfg.subtasks}); {SEEDS_CI}",
            frame=interval_table(long, "model", "n", "acc", col_name=lambda n: f"n = {n}", col_order=ns)))
    subtasks = sorted(int(c.removeprefix("eval/acc_subtask")) for c in df
                      if c.startswith("eval/acc_subtask"))
    if subtasks:
        long = _indexed(df, "eval/acc_subtask", subtasks, "i")
        out.append(ReportTable(
            title=f"Fig. 2.4 layout: accuracy on each subtask of a {max(subtasks)}-subtask task "
                  f"(subtask 1 shown first); {SEEDS_CI}. {THESIS_FIG_2_4}",
            frame=interval_table(long, "model", "i", "acc", col_name=lambda i: f"#{i}",
                                 col_order=subtasks)))
    return out


def continual_study(**fields: Any):
    """A continual-learning grid study (this one and `memory-depth`)."""
    defaults = dict(method="memory-continual", config_cls=ContinualConfig, trainable=train_driver_fn,
                    budget=dict(BUDGET), curve=curve, curve_label="task length (subtasks)",
                    prepare_data=prepare_data,
                    chance=lambda config: 1.0 / int(config.get("n_labels", ContinualConfig().n_labels)),
                    trial_interval="evaluation tasks",
                    reports_per_trial=lambda fixed: math.ceil(int(fixed["max_iters"])
                                                              / int(fixed["eval_every"])))
    return grid_study(**{**defaults, **fields})


STUDY = continual_study(
    name="memory-continual",
    description="Online continual learning: CL+LSTM vs OML, ANML (Fig. 2.3, 2.4; App. A.3)",
    space=space,
    metric="eval/acc",
    group_by=("model",),
    train_point=dict(model="cl_lstm"),
    tables=tables,
)

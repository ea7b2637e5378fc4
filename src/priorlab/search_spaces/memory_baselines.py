"""Study `memory-baselines`: CL+LSTM against the online few-shot baselines at equal budget
(thesis Sec. 2.4.2, Table 2.1; App. A.1.4).

One choice, the model: `cl_lstm` (the method), `lstm` (Santoro et al.'s LSTM), `ntm` (their
memory-augmented network), `apl` (Ramalho & Garnelo's adaptive posterior learning), `opn` and
`cpm` (Ren et al.'s online prototypical networks). Every
model gets the same episodes, the same one-step-late labels (or ``label_delay``), the same
steps and the same learning rate; the sweep runs each model with ``--samples`` seeds, and
`priorlab report` lays the result out as Table 2.1 (k-shot accuracy, mean ± 95% interval over
seeds) with the thesis' row of each model beside it: Omniglot, or CIFAR-FS with
``dataset=cifar_fs image_size=32`` (CIFAR-100 in the data root; not on the project's machines).

The default budget is a CPU laptop's (16x16 images, two conv layers of 8 channels, LSTMs of
64, 3000 steps); the paper's is 28x28, four layers of 64, LSTMs of 400 and 100k steps
(`max_iters=100000 image_size=28 conv_layers=4 channels=64 lstm_hidden=400`).

    priorlab sweep memory-baselines --samples 3
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from ray import tune

from priorlab.methods.configuration import config_from_dict
from priorlab.methods.memory.config import MemoryConfig
from priorlab.platform.report import ReportTable
from priorlab.platform.stats import interval_table
from priorlab.search_spaces.base import Study, grid_searcher
from priorlab.search_spaces.memory_label_injection import curve, make_scheduler, prepare_data
from priorlab.trainables.memory import train_driver_fn

METRIC = "eval/acc_1shot"
MODELS = ("cl_lstm", "lstm", "ntm", "apl", "opn", "cpm")
NAMES = {"cl_lstm": "CL+LSTM", "lstm": "LSTM", "ntm": "NTM", "apl": "APL", "opn": "OPN", "cpm": "CPM"}
# Table 2.1, 5-way: mean over 3 runs at 1/5/8 shots, after 100k iterations (LSTM and NTM "fail
# to train on CIFAR-FS").
THESIS_OMNIGLOT = {"LSTM": (85.3, 94.4, 95.8), "NTM": (88.7, 96.8, 97.3), "APL": (89.1, 94.9, 95.7),
                   "OPN": (91.2, 94.6, 95.8), "CPM": (94.5, 97.0, 97.4),
                   "CL+LSTM": (96.8, 99.4, 99.7)}
THESIS_CIFAR_FS = {"APL": (37.6, 45.8, 46.9), "OPN": (49.9, 54.9, 56.8), "CPM": (50.2, 55.8, 57.8),
                   "CL+LSTM": (47.6, 56.7, 61.0)}
THESIS_TABLE_2_1 = {"omniglot": ("Omniglot", THESIS_OMNIGLOT), "cifar_fs": ("CIFAR-FS", THESIS_CIFAR_FS)}
SEEDS_CI = "mean ± 95% t-interval over seeds (n - 1 dof; n = seeds)"


# A laptop's budget, shared with `memory-delay`.
BUDGET = dict(image_size=16, conv_layers=2, channels=8, lstm_hidden=64, n_shot=5,
              report_shots=[1, 2, 4], meta_batch=16, lr=3e-3, grad_clip=10.0, forget_bias=4.0,
              lstm_forget_bias=3.0, memory_slots=40, memory_width=16, max_iters=3000,
              eval_every=500, eval_episodes=200)


def space(fixed: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"model": tune.choice(list(MODELS))}


def tables(df: pd.DataFrame, fixed: dict[str, Any]) -> list[ReportTable]:
    """Table 2.1's layout: one row per model, k-shot accuracy at the end of training, and the
    thesis' Omniglot numbers (its budget, not ours) in the last columns."""
    cfg = config_from_dict(MemoryConfig, {k: v for k, v in fixed.items()
                                          if k in MemoryConfig.__dataclass_fields__})
    shots = [k for k in cfg.report_shots if f"eval/acc_{k}shot" in df]
    if "config/model" not in df or not shots:
        return []
    long = df.assign(model=df["config/model"].map(lambda m: NAMES.get(m, m))).melt(
        id_vars=["model"], value_vars=[f"eval/acc_{k}shot" for k in shots], var_name="k",
        value_name="acc")
    long["k"] = long["k"].str.extract(r"acc_(\d+)shot")[0].astype(int)
    frame = interval_table(long, "model", "k", "acc", col_name=lambda k: f"{k}-shot",
                           col_order=shots)
    label, thesis = THESIS_TABLE_2_1[cfg.dataset]
    frame[f"thesis 1/5/8-shot ({label}, 100k it.)"] = [
        " / ".join(f"{v:.1f}" for v in thesis[m]) if m in thesis else "-" for m in frame.index]
    return [ReportTable(
        title=f"Table 2.1 layout: {cfg.n_way}-way online few-shot accuracy on {label} {cfg.eval_split} "
              f"episodes, {cfg.image_size}x{cfg.image_size}, label delay {cfg.label_delay}, "
              f"{cfg.max_iters} iterations per model; {SEEDS_CI}",
        frame=frame)]


def grid_study(**fields: Any) -> Study:
    """A Ch. 2 study whose space is choices only: the sweep runs it as a grid (every
    combination x every seed, each to the end of the same budget: equal budget) and never asks
    for a searcher or a scheduler. ``fields``: name, description, space, group_by, train_point,
    tables, and any other ``Study`` field that differs from the online few-shot defaults below
    (the continual studies set method, config_cls, trainable, budget, metric, curve...)."""
    defaults = dict(method="memory", config_cls=MemoryConfig, trainable=train_driver_fn,
                    budget=dict(BUDGET), metric=METRIC, mode="max", curve=curve,
                    curve_label="shot (k)", make_searcher=grid_searcher,
                    make_scheduler=make_scheduler,
                    reports_per_trial=lambda fixed: math.ceil(int(fixed["max_iters"])
                                                              / int(fixed["eval_every"])),
                    prepare_data=prepare_data, default_samples=3, progress_metric="step",
                    chance=lambda config: 1.0 / int(config.get("n_way", MemoryConfig().n_way)))
    return Study(**{**defaults, **fields})


STUDY = grid_study(
    name="memory-baselines",
    description="CL+LSTM vs LSTM, NTM, APL, OPN, CPM at equal budget (Table 2.1; Omniglot or CIFAR-FS)",
    space=space,
    group_by=("model",),
    train_point=dict(model="cl_lstm"),
    tables=tables,
)

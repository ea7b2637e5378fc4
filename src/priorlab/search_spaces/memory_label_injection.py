"""Study `memory-label-injection`: where should y_{i-1} enter a CL+LSTM? (thesis Sec. 2.3.3, Fig. 2.2)

Sweeps the label-injection mode (first ConvLSTM layer / every ConvLSTM layer / the LSTM; only
the modes that differ under the fixed config), plus learning rate and width, with seeded Optuna
TPE and ASHA early stopping on 1-shot accuracy. ASHA's grace period is half a trial: these
models sit on a plateau (guessing from the previous label) before they learn to use their
memory, and a rung at the first evaluation would stop trials that had not left it yet.

When lr and width are pinned, as `make run` does, only the mode is left: a choice, so the sweep
runs every mode with `--samples` seeds each (``platform.sweep.choices_only``).

The paper runs 100k iterations at 64 channels on 28x28 images; the default budget here is a CPU
laptop's (override with `priorlab sweep memory-label-injection max_iters=... channels=...`).

    priorlab sweep memory-label-injection lr=0.01 channels=8 --samples 1   # make run
    priorlab sweep memory-label-injection --samples 8                       # TPE + ASHA
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from priorlab.data.fewshot_sources import load_episode_classes
from priorlab.data.omniglot import load_omniglot_images, read_split
from priorlab.methods.configuration import config_from_dict
from priorlab.methods.memory.config import MemoryConfig
from priorlab.search_spaces.base import Study
from priorlab.trainables.memory import train_driver_fn

METRIC = "eval/acc_1shot"
MODES = ("first", "every", "lstm")


def distinct_modes(fixed: dict[str, Any] | None = None) -> list[str]:
    """The injection modes that differ under the fixed config: with one ConvLSTM layer `every`
    is `first` (both inject into layer 0), so only one of them is kept."""
    cfg = config_from_dict(MemoryConfig, {k: v for k, v in (fixed or {}).items()
                                          if k == "conv_layers"})
    seen: dict[tuple[int, ...], str] = {}
    for mode in MODES:
        seen.setdefault(dataclasses.replace(cfg, label_injection=mode).injection_layers(), mode)
    return list(seen.values())


def space(fixed: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "label_injection": tune.choice(distinct_modes(fixed)),
        "lr": tune.loguniform(1e-3, 2e-2),
        "channels": tune.choice([8, 16]),
    }


def make_searcher(seed: int, searched: dict[str, Any], storage=None, study_name: str | None = None) -> OptunaSearch:
    """Seeded TPE. When the mode is searched it starts with each (distinct) mode once at the
    laptop budget's lr and width, so that even a small budget compares them; TPE takes over
    from there."""
    starts = None
    if "label_injection" in searched:
        modes = list(searched["label_injection"].categories)
        starts = [{k: v for k, v in {"label_injection": m, "lr": 1e-2, "channels": 8}.items()
                   if k in searched} for m in modes]
    return OptunaSearch(metric=METRIC, mode="max", seed=seed, points_to_evaluate=starts,
                        storage=storage, study_name=study_name)


def make_scheduler(max_t: int) -> ASHAScheduler:
    return ASHAScheduler(metric=METRIC, mode="max", time_attr="training_iteration",
                         max_t=max(1, max_t), grace_period=max(1, max_t // 2), reduction_factor=2)


def prepare_data(data_root, fixed: dict[str, Any]) -> None:
    """Fail fast on missing data; decode the image cache once instead of in every actor."""
    cfg = config_from_dict(MemoryConfig, fixed)
    if cfg.dataset != "omniglot":
        for split in (cfg.train_split, cfg.eval_split):
            load_episode_classes(data_root, cfg.dataset, split, cfg.image_size)
        return
    for split in (cfg.train_split, cfg.eval_split):
        read_split(data_root, split)
    load_omniglot_images(data_root, cfg.image_size)


def curve(config: dict[str, Any]) -> dict[float, str]:
    shots = config.get("report_shots") or MemoryConfig().report_shots
    return {float(k): f"eval/acc_{k}shot" for k in shots}


STUDY = Study(
    name="memory-label-injection",
    description="CL+LSTM on Omniglot: label injection first / every / lstm (+ lr, channels)",
    method="memory",
    config_cls=MemoryConfig,
    trainable=train_driver_fn,
    # Laptop budget (benchmarks/demo_budget.py, docs/memory.md "The laptop demo"): 5-way 4-shot
    # episodes of 14x14 Omniglot, one ConvLSTM layer, LSTM 64, meta-batch 32, forget gates
    # opened at the start (so a label is still in the cell state when its class comes back),
    # gradients clipped; 3000 iterations: about 6-7 minutes per trial on one core.
    budget=dict(image_size=14, conv_layers=1, lstm_hidden=64, n_shot=4, report_shots=[1, 2, 3],
                meta_batch=32, grad_clip=10.0, forget_bias=4.0, lstm_forget_bias=3.0,
                max_iters=3000, eval_every=500, eval_episodes=200),
    space=space,
    metric=METRIC,
    mode="max",
    group_by=("label_injection",),
    curve=curve,
    curve_label="shot (k)",
    make_searcher=make_searcher,
    make_scheduler=make_scheduler,
    reports_per_trial=lambda fixed: math.ceil(int(fixed["max_iters"]) / int(fixed["eval_every"])),
    prepare_data=prepare_data,
    default_samples=4,
    train_point=dict(label_injection="first", lr=1e-2, channels=8),
    extra_columns=("lr", "channels"),
    progress_metric="step",
    chance=lambda config: 1.0 / int(config.get("n_way", MemoryConfig().n_way)),
)

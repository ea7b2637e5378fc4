"""Study `memory-label-injection`: where should y_{i-1} enter a CL+LSTM? (thesis Sec. 2.3.3, Fig. 2.2)

Sweeps the label-injection mode (first ConvLSTM layer / every ConvLSTM layer / the LSTM),
plus learning rate and width, with seeded Optuna TPE and ASHA early stopping on 1-shot
accuracy. The paper runs 100k iterations at 64 channels; the default budget here is a CPU
laptop's (override with `priorlab sweep memory-label-injection max_iters=... channels=...`).

    priorlab sweep memory-label-injection --samples 8 --max-iters 200
"""

from __future__ import annotations

import math
from typing import Any

from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from priorlab.data.omniglot import load_omniglot_images, read_split
from priorlab.methods.configuration import config_from_dict
from priorlab.methods.memory.config import MemoryConfig
from priorlab.search_spaces.base import Study
from priorlab.trainables.memory import train_driver_fn

METRIC = "eval/acc_1shot"
MODES = ("first", "every", "lstm")


def space() -> dict[str, Any]:
    return {
        "label_injection": tune.choice(list(MODES)),
        "lr": tune.loguniform(3e-4, 3e-3),
        "channels": tune.choice([8, 16, 32]),
    }


def make_searcher(seed: int, searched: set[str]) -> OptunaSearch:
    """Seeded TPE. When the mode is searched it starts with each mode once at the paper's lr,
    so that even a small budget compares all three; TPE takes over from there."""
    starts = None
    if "label_injection" in searched:
        starts = [{k: v for k, v in {"label_injection": m, "lr": 1e-3, "channels": 16}.items()
                   if k in searched} for m in MODES]
    return OptunaSearch(metric=METRIC, mode="max", seed=seed, points_to_evaluate=starts)


def make_scheduler(max_t: int) -> ASHAScheduler:
    return ASHAScheduler(metric=METRIC, mode="max", time_attr="training_iteration",
                         max_t=max(1, max_t), grace_period=1, reduction_factor=2)


def prepare_data(data_root, fixed: dict[str, Any]) -> None:
    """Fail fast on missing Omniglot; decode the image cache once instead of in every actor."""
    cfg = config_from_dict(MemoryConfig, fixed)
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
    # Laptop budget: 5-way 5-shot episodes (25 steps), small meta-batch, few iterations.
    budget=dict(n_shot=5, report_shots=[1, 2, 4], meta_batch=8, max_iters=40, eval_every=10,
                eval_episodes=100, lstm_hidden=128),
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
    extra_columns=("lr", "channels"),
    progress_metric="step",
    chance=lambda config: 1.0 / int(config.get("n_way", MemoryConfig().n_way)),
)

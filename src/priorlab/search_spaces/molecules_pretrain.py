"""Study `molecules-pretrain`: MiDi-style pretraining, with and without the adaptive schedule
(thesis Sec. 5.3.2, Eq. 5.1-5.4; MiDi's noise-schedule ablation).

A grid over the exponent of the positions' cosine schedule (``nu_pos``: 1 = the plain cosine
schedule, 2.5 = MiDi's adaptive one, which keeps positions nearly clean while the bonds are being
decided). Every trial trains for the same steps on the same conformers; the metric is the
validity of generated molecules, with uniqueness, atom and molecule stability beside it.

    priorlab train molecules-pretrain                           # QM9, MiDi's schedule
    priorlab train molecules-pretrain dataset=moses with_hydrogens=false n_molecules=20000
    priorlab sweep molecules-pretrain                           # nu_pos 1 vs 2.5
"""

from __future__ import annotations

import math
from typing import Any

from ray import tune

from priorlab.methods.configuration import config_from_dict
from priorlab.methods.molecules.config import PretrainConfig
from priorlab.search_spaces.base import Study, fifo_scheduler, grid_searcher
from priorlab.trainables.molecules_pretrain import train_driver_fn


def space(fixed: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"nu_pos": tune.grid_search([1.0, 2.5])}


def prepare_data(data_root, fixed: dict[str, Any]) -> None:
    """Fail fast on a missing pretraining set (before Ray starts)."""
    from priorlab.data.molecules import load_pretraining_smiles

    cfg = config_from_dict(PretrainConfig, {k: v for k, v in fixed.items()
                                            if k in PretrainConfig.__dataclass_fields__})
    load_pretraining_smiles(cfg.dataset, data_root, limit=1, seed=cfg.seed)


STUDY = Study(
    name="molecules-pretrain",
    description="MiDi-style 3D molecule diffusion on QM9 / MOSES conformers: validity and stability "
                "of generated molecules (Sec. 5.3.2)",
    method="molecules-pretrain",
    config_cls=PretrainConfig,
    trainable=train_driver_fn,
    # Laptop budget: 2,000 QM9 molecules, a 4-layer EGNN, 3,000 steps (~10 CPU-min); the
    # benchmark's model (benchmarks/RESULTS.md) is larger and longer.
    budget=dict(n_molecules=2000, n_valid=200, n_layers=4, hidden=96, steps=3000,
                eval_every=1000, eval_samples=32),
    space=space,
    metric="eval/validity",
    mode="max",
    group_by=("nu_pos",),
    curve=lambda config: {0.0: "eval/validity", 1.0: "eval/atom_stability",
                          2.0: "eval/molecule_stability", 3.0: "eval/uniqueness"},
    curve_label="validity / atom stability / molecule stability / uniqueness",
    make_searcher=grid_searcher,
    make_scheduler=fifo_scheduler,
    reports_per_trial=lambda fixed: math.ceil(int(fixed["steps"]) / int(fixed["eval_every"])),
    prepare_data=prepare_data,
    default_samples=1,
    iters_key="steps",
    extra_columns=("valid/loss", "eval/atom_stability", "eval/molecule_stability", "eval/uniqueness"),
    train_point=dict(nu_pos=2.5),
)

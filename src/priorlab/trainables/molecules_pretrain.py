"""Ray Train trainable of the MiDi-style diffusion pretraining (thesis Sec. 5.3.2, Eq. 5.1-5.4).

The driver (a Tune trial or `priorlab train molecules-pretrain`) first makes sure the conformers
of the training and validation molecules are in the Parquet conformer cache, generating the
missing ones through a Ray Data pipeline (``molecule_data.ensure_conformers``). The workers then
read them from the cache and run ``methods.molecules.pretrain.PretrainFit``: with more than one
worker the loss module is wrapped in DDP (``ray.train.torch.prepare_model``), each rank takes its
share of every step's molecules and gradients are averaged. Every ``eval_every`` steps and at the
end it reports ``valid/loss`` (and its parts), ``eval/validity``, ``eval/uniqueness``,
``eval/atom_stability``, ``eval/molecule_stability`` of ``eval_samples`` generated molecules, with a
checkpoint (weights, Adam state, step; the vocabulary and marginals in meta.json's ``spec``).
A step's draws follow from (seed, step), so a resumed fit repeats what an uninterrupted one does.

    priorlab train molecules-pretrain dataset=qm9 n_molecules=20000 steps=20000
"""

from __future__ import annotations

from typing import Any

import ray.train

from priorlab.methods.molecules.config import PretrainConfig
from priorlab.trainables.common import (build_method_trainer, fit_in_tune, run_stepped_fit,
                                        split_config, worker_setup)

METHOD = "molecules-pretrain"


def train_fn_per_worker(config: dict[str, Any]) -> None:
    from priorlab.methods.molecules.pretrain import PretrainFit, load_pretraining_records

    cfg, res, world = worker_setup(config, PretrainConfig, "batch_size")
    train, valid = load_pretraining_records(cfg, res.data_root)
    context = ray.train.get_context()
    wrap = ray.train.torch.prepare_model if world > 1 else None
    fit = PretrainFit(cfg, train, valid, rank=context.get_world_rank(), world=world, wrap=wrap)
    run_stepped_fit(fit, cfg, METHOD)


def prepare_conformers(config: dict[str, Any], *, progress: bool = True) -> None:
    """Driver side: the conformers of the run's molecules in the cache (Ray Data for the missing)."""
    from priorlab.methods.configuration import config_from_dict
    from priorlab.methods.molecules.pretrain import pretraining_smiles
    from priorlab.trainables.molecule_data import conformer_cache, ensure_conformers

    overrides, res = split_config(config, set(PretrainConfig.__dataclass_fields__))
    cfg = config_from_dict(PretrainConfig, overrides)
    train, valid = pretraining_smiles(cfg, res.data_root)
    cache, params = conformer_cache(res.data_root, cfg.n_conformers, cfg.conformer_seed)
    summary = ensure_conformers(train + valid, params, cache, progress=progress)
    if progress:
        print(f"[priorlab] {summary.text()}", flush=True)


def build_trainer(config: dict[str, Any], callbacks: list | None = None):
    prepare_conformers(config)
    return build_method_trainer(train_fn_per_worker, PretrainConfig, config, callbacks)


def fit(config: dict[str, Any]) -> "ray.train.Result":
    """Run one pretraining (outside Tune) and return Ray Train's Result."""
    return build_trainer(config).fit()


def train_driver_fn(config: dict[str, Any]) -> None:
    """The Tune function trainable: builds and fits the trainer of one trial."""
    fit_in_tune(build_trainer, config)

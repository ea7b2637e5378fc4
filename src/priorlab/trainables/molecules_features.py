"""Ray Train trainable of one feature-set evaluation (thesis Sec. 5.3.3-5.4, Table 5.1).

The driver (a Tune trial or `priorlab train molecules-features`) fills the caches the worker
reads: the data set's conformers (Ray Data, ``molecule_data.ensure_conformers``) and, when the
feature set has ``midi``, the pooled diffusion features at the config's noise level and layer
(Ray Data batch inference, ``molecule_data.ensure_midi_features``). One worker then runs
``methods.molecules.protocol.run_protocol`` (heads over scaffold splits x seeds) and reports
``test/auroc`` with its intervals, ``valid/auroc`` and the ECFP random-forest floor, with a
checkpoint that is a complete molecule scorer (``priorlab score CHECKPOINT --smiles FILE``).

    priorlab train molecules-features feature_set=ecfp+midi midi_checkpoint=runs/train/pre/...
"""

from __future__ import annotations

from typing import Any

import ray.train

from priorlab.methods.configuration import ConfigError
from priorlab.methods.molecules.config import FeaturesConfig
from priorlab.trainables.common import (build_method_trainer, fit_in_tune, report_with_checkpoint,
                                        split_config, with_absolute_path, worker_setup)

METHOD = "molecules-scorer"


def train_fn_per_worker(config: dict[str, Any]) -> None:
    from priorlab.methods.molecules.protocol import run_protocol

    cfg, res, _world = worker_setup(config, FeaturesConfig, "batch_size")
    result = run_protocol(cfg, res.data_root)
    report_with_checkpoint(result.metrics, lambda folder: result.scorer.save(folder), step=1)


def resolve_paths(config: dict[str, Any]) -> dict[str, Any]:
    """Relative checkpoint / model folders become absolute in the launching folder (trials chdir);
    a run or experiment folder given as ``midi_checkpoint`` becomes its checkpoint."""
    config = with_absolute_path(with_absolute_path(config, "midi_checkpoint"), "chemberta_path")
    if config.get("midi_checkpoint"):
        from priorlab.platform.locate import locate_checkpoint

        config = {**config, "midi_checkpoint": str(locate_checkpoint(config["midi_checkpoint"]).checkpoint)}
    return config


def prepare_features(config: dict[str, Any], *, progress: bool = True) -> None:
    """Driver side: conformers and diffusion features of the data set in their caches."""
    from priorlab.data.molecules import load_moleculenet
    from priorlab.methods.configuration import config_from_dict
    from priorlab.methods.molecules.fingerprints import parse_feature_set
    from priorlab.trainables.molecule_data import (conformer_cache, ensure_conformers,
                                                   ensure_midi_features)

    overrides, res = split_config(config, set(FeaturesConfig.__dataclass_fields__))
    cfg = config_from_dict(FeaturesConfig, overrides)
    if "midi" not in parse_feature_set(cfg.feature_set):
        return
    table = load_moleculenet(cfg.dataset, res.data_root)
    cache, params = conformer_cache(res.data_root, cfg.n_conformers, cfg.conformer_seed)
    summary = ensure_conformers(table.smiles, params, cache, progress=progress)
    if progress:
        print(f"[priorlab] {summary.text()}", flush=True)
    ensure_midi_features(table.smiles, cfg, res.data_root, progress=progress)


def _check(cfg: FeaturesConfig, res) -> None:
    if res.workers != 1:
        raise ConfigError(f"workers={res.workers}: a feature-set evaluation runs on one worker "
                          "(heads are small); run more trials in parallel instead")


def build_trainer(config: dict[str, Any], callbacks: list | None = None):
    config = resolve_paths(config)
    prepare_features(config)
    return build_method_trainer(train_fn_per_worker, FeaturesConfig, config, callbacks, check=_check)


def fit(config: dict[str, Any]) -> "ray.train.Result":
    return build_trainer(config).fit()


def train_driver_fn(config: dict[str, Any]) -> None:
    fit_in_tune(build_trainer, config)

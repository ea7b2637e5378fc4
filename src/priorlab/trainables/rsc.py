"""Ray Train trainable for RSC fine-tuning on PACS, leave one domain out (thesis Sec. 3.5, Table 3.8).

``train_fn_per_worker`` fine-tunes ``priorlab.methods.hyper.rsc.RSCLearner`` on the three source
domains (minus ``val_fraction`` held out for model selection) and, every epoch, reports
``train/*``, ``eval/acc`` (top-1 on the held-out ``target_domain``), ``eval/val_acc`` and
``eval/acc_at_best_val`` with a checkpoint (model, optimiser, LR schedule, RNG state, the
architecture under ``config["model"]``). A rerun with the same run name resumes from the latest
checkpoint without reading the pretrained checkpoint again, and reports the same losses as an
uninterrupted run: each epoch's shuffle and augmentation generators are seeded from (seed,
epoch) (``loop.epoch_seed``), and the global RNG (RSC's mode choice) is in the checkpoint. 1..N DDP workers (the
batch is split across them). ``train_driver_fn`` is the Tune function trainable of ``hyper-rsc``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import ray.train
import ray.train.torch
import torch
from torch.utils.data import DataLoader, Subset

from priorlab.data.images import PacsSet, leave_one_domain_out, load_pacs
from priorlab.data.root import MissingDataError
from priorlab.methods.hyper.loop import SHUFFLE, epoch_seed
from priorlab.methods.hyper.rsc import METHOD, RSCConfig, RSCLearner, model_config_from_checkpoint
from priorlab.trainables.common import (
    build_method_trainer, fit_in_tune, report_with_checkpoint, restore_from_train_checkpoint,
    worker_setup,
)


def pacs_splits(cfg: RSCConfig, data_root: str) -> tuple[Subset, Subset | None, PacsSet]:
    """(source train, source validation or None, target test) for ``cfg.target_domain``.

    The validation images are a seeded random ``val_fraction`` of the pooled source images.
    Raises MissingDataError when a domain folder is missing or holds no images.
    """
    sources, (target,) = leave_one_domain_out(cfg.target_domain)
    source = load_pacs(data_root, sources, image_size=cfg.image_size)
    test = load_pacs(data_root, [target], image_size=cfg.image_size)
    for name, ds in ((", ".join(sources), source), (target, test)):
        if len(ds) == 0:
            raise MissingDataError("pacs", data_root, [f"{data_root}/pacs/{name} (no images in the class folders)"])
    order = np.random.default_rng(cfg.seed).permutation(len(source))
    n_val = int(round(cfg.val_fraction * len(source)))
    if n_val >= len(source):
        raise ValueError(f"val_fraction={cfg.val_fraction} leaves no training images of {len(source)}")
    val = Subset(source, order[:n_val].tolist()) if n_val else None
    return Subset(source, order[n_val:].tolist()), val, test


def train_fn_per_worker(config: dict[str, Any]) -> None:
    cfg, res, world = worker_setup(config, RSCConfig, "batch_size")
    train, val, test = pacs_splits(cfg, res.data_root)
    restored = restore_from_train_checkpoint(METHOD)
    learner = RSCLearner(cfg, device=ray.train.torch.get_device(),
                         wrap=ray.train.torch.prepare_model if world > 1 else None,
                         model_cfg=model_config_from_checkpoint(restored) if restored else None)
    if restored is not None:
        learner.restore(restored)
        print(f"[priorlab] resumed at epoch {learner.epoch}")
    gen = torch.Generator()  # reseeded every epoch from (seed, epoch)
    # drop_last: a batch of one sample breaks BatchNorm, and RSC ranks samples within a batch.
    train_loader = DataLoader(train, batch_size=cfg.batch_size // world, shuffle=True, generator=gen,
                              drop_last=len(train) >= cfg.batch_size, num_workers=cfg.loader_workers)
    if world > 1:
        train_loader = ray.train.torch.prepare_data_loader(train_loader, move_to_device=False)
    eval_kw = dict(batch_size=max(64, cfg.batch_size), num_workers=cfg.loader_workers)
    test_loader = DataLoader(test, **eval_kw)
    val_loader = DataLoader(val, **eval_kw) if val is not None else None
    while learner.epoch < cfg.epochs:
        gen.manual_seed(epoch_seed(cfg.seed, learner.epoch, SHUFFLE))
        if world > 1 and hasattr(train_loader, "sampler") and hasattr(train_loader.sampler, "set_epoch"):
            train_loader.sampler.set_epoch(learner.epoch)
        metrics = learner.train_epoch(train_loader)
        val_acc = learner.evaluate(val_loader) if val_loader is not None else None
        metrics.update(learner.record_eval(learner.evaluate(test_loader), val_acc))
        metrics["train/start_epoch"] = float(restored.step if restored else 0)
        report_with_checkpoint(metrics, learner.save, learner.epoch)


def build_trainer(config: dict[str, Any], callbacks: list | None = None):
    return build_method_trainer(train_fn_per_worker, RSCConfig, config, callbacks)


def fit(config: dict[str, Any]) -> "ray.train.Result":
    return build_trainer(config).fit()


def train_driver_fn(config: dict[str, Any]) -> None:
    """The Tune function trainable: builds and fits the trainer of one trial."""
    fit_in_tune(build_trainer, config)

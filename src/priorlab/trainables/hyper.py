"""Ray Train trainable for supervised (Hyper)ResNets / WRNs (thesis Sec. 3.4.1).

``train_fn_per_worker`` runs ``priorlab.methods.hyper.loop.SupervisedLearner`` epoch by epoch
(data-parallel across workers through Ray Train's process group: gloo on CPU, nccl with GPUs;
the batch is split across workers), reports ``train/loss`` and ``eval/acc`` (test split; the SWA
average at the end) with a checkpoint every epoch, and resumes from the latest one (model,
optimiser, LR schedule, SWA state, epoch, RNG). Each epoch's shuffle and augmentation generators
are seeded from (seed, epoch) (``loop.epoch_seed``), so a resumed run trains on the same batches
as an uninterrupted one and reports the same losses. ``strategy=ddp`` wraps the model in DDP;
``strategy=deepspeed`` hands it to DeepSpeed ZeRO (``zero_stage``) over the same process group,
and the checkpoint is gathered from the shards on every rank before rank 0 writes it, in the same
format. ``train_driver_fn`` is the Tune function trainable.
"""

from __future__ import annotations

from typing import Any

import ray.train
import ray.train.torch
import torch
from torch.utils.data import DataLoader, TensorDataset

from priorlab.methods.configuration import ConfigError
from priorlab.methods.hyper.config import HyperConfig
from priorlab.methods.hyper.loop import (
    AUGMENT, METHOD, SHUFFLE, SupervisedLearner, check_precision, epoch_seed, evaluate,
)
from priorlab.trainables.common import (
    build_method_trainer, fit_in_tune, report_with_checkpoint, restore_from_train_checkpoint,
    worker_setup,
)


def load_arrays(cfg: HyperConfig, data_root: str):
    """((x_train, y_train), (x_test, y_test)) as uint8 NCHW / int64 numpy arrays."""
    if cfg.dataset == "imagenet":
        raise ConfigError(
            "dataset=imagenet: the ImageNet recipe (HyperConfig.from_recipe('imagenet')) builds and "
            "trains models, but this trainable has no ImageNet reader yet; use cifar10, cifar100 or omniglot")
    if cfg.dataset == "omniglot":
        from priorlab.data.classification import omniglot_classification

        return omniglot_classification(data_root, "train", n_classes=cfg.num_classes,
                                       test_per_class=cfg.test_per_class, seed=cfg.seed)
    from priorlab.data.cifar import load_cifar

    out = []
    for split in ("train", "test"):
        d = load_cifar(data_root, cfg.dataset, split)
        out.append((d.images.transpose(0, 3, 1, 2).copy(), d.labels))
    return tuple(out)


def cifar_augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Standard CIFAR augmentation: pad 4 + random 32x32 crop, random horizontal flip."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    dx = torch.randint(0, 9, (n,), generator=generator)
    dy = torch.randint(0, 9, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    out = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
    out[flip] = out[flip].flip(-1)
    return out


class _Augmenting:
    def __init__(self, loader, enabled: bool):
        self.loader, self.enabled = loader, enabled
        self.generator = torch.Generator()

    def __iter__(self):
        for x, y in self.loader:
            yield (cifar_augment(x, self.generator) if self.enabled else x), y


def train_fn_per_worker(config: dict[str, Any]) -> None:
    cfg, res, world = worker_setup(config, HyperConfig, "batch_size")
    (xtr, ytr), (xte, yte) = load_arrays(cfg, res.data_root)
    ddp = world > 1 and cfg.strategy == "ddp"
    learner = SupervisedLearner(cfg, device=ray.train.torch.get_device(),
                                wrap=ray.train.torch.prepare_model if ddp else None)
    restored = restore_from_train_checkpoint(METHOD)
    if restored is not None:
        learner.restore(restored)
        print(f"[priorlab] resumed at epoch {learner.epoch}")
    gen = torch.Generator()  # reseeded every epoch from (seed, epoch)
    train_loader = DataLoader(TensorDataset(torch.from_numpy(xtr), torch.from_numpy(ytr)),
                              batch_size=cfg.batch_size // world, shuffle=True, generator=gen)
    if world > 1:
        train_loader = ray.train.torch.prepare_data_loader(train_loader, move_to_device=False)
    test_loader = DataLoader(TensorDataset(torch.from_numpy(xte), torch.from_numpy(yte)),
                             batch_size=256)
    augmented = _Augmenting(train_loader, cfg.dataset.startswith("cifar"))
    while learner.epoch < cfg.epochs:
        gen.manual_seed(epoch_seed(cfg.seed, learner.epoch, SHUFFLE))
        augmented.generator.manual_seed(epoch_seed(cfg.seed, learner.epoch, AUGMENT))
        if world > 1 and hasattr(train_loader, "sampler") and hasattr(train_loader.sampler, "set_epoch"):
            train_loader.sampler.set_epoch(learner.epoch)
        metrics = learner.train_epoch(augmented)
        last = learner.epoch == cfg.epochs
        model = learner.final_model(augmented) if last else learner.bare_model
        metrics["eval/acc"] = evaluate(model, test_loader, learner.device)
        metrics["train/start_epoch"] = float(restored.step if restored else 0)
        state = learner.checkpoint_state()  # collective under DeepSpeed: every rank gathers
        report_with_checkpoint(metrics, lambda d: learner.save(d, state=state), learner.epoch)


def build_trainer(config: dict[str, Any], callbacks: list | None = None):
    return build_method_trainer(
        train_fn_per_worker, HyperConfig, config, callbacks,
        check=lambda cfg, res: check_precision(cfg.precision, "cuda" if res.use_gpu else "cpu"),
        # DeepSpeed sets up its engine over torch.distributed even with one worker.
        process_group=lambda cfg, res: res.workers > 1 or cfg.strategy == "deepspeed")


def fit(config: dict[str, Any]) -> "ray.train.Result":
    return build_trainer(config).fit()


def train_driver_fn(config: dict[str, Any]) -> None:
    """The Tune function trainable: builds and fits the trainer of one trial."""
    fit_in_tune(build_trainer, config)

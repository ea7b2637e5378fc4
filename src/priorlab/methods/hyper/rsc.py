"""Representation Self-Challenging (RSC) fine-tuning of (Hyper)ResNets on PACS (thesis Sec. 3.5, Table 3.8).

Domain generalisation, leave-one-domain-out: fine-tune on three PACS domains, report top-1 on
the fourth, never seen in training. Table 3.8 compares an ImageNet-pretrained ResNet-18 with a
HyperResNet-18 pretrained on ImageNet, both fine-tuned with RSC (Huang et al., ECCV 2020,
thesis ref. [74]). Pure PyTorch; the Ray trainable is ``priorlab.trainables.rsc``.

RSC, one training step (:func:`self_challenge_mask`, :class:`SelfChallengingNet`):

1. Compute the final feature map z (B, C, H, W) (before global average pooling) and, on a
   detached copy, the gradient g of the true-class logit w.r.t. z.
2. Score the features and mute (zero) the top ``drop_percentage`` of them, per sample, with one
   of two modes chosen 50/50 at random each step:

   * channel-wise: score of channel c = mean over space of g[c] (top ceil(p * C) channels);
   * spatial-wise: score of position (i, j) = sum_c z[c, i, j] * mean_space(g[c]), i.e. the
     Grad-CAM map (top ceil(p * H * W) positions). The paper writes the spatial score as the
     channel mean of g, but behind global average pooling g[c, i, j] = W[y, c] / HW does not
     depend on (i, j), so that score is constant; the public RSC code weights by the activations
     as here (``Domain_Generalization/models/resnet.py``; its top-level variant instead uses the
     gradient at layer4's input, downsampled).

3. Keep the mask only for samples whose true-class probability drops after muting (by more than
   ``CONFIDENCE_MARGIN``) and, among those, only the ``batch_percentage`` of the batch with the
   largest drops (round(b * B) samples at most); every other sample keeps its features as they are.
4. The loss is the cross-entropy of the classifier on the masked features (plus the output-L2
   penalty of hypernetwork models). The mask is a constant: gradients flow through the kept
   features only.

Defaults follow Huang et al. 2020 and its code (the thesis gives no training details for Table
3.8): SGD, momentum 0.9, weight decay 5e-4, batch 128, lr 0.004 for 30 epochs, x0.1 at epoch 24
(= int(0.8 * epochs) in the code's StepLR), p = b = 1/3, images 222 x 222, random-resized-crop
(scale 0.8-1) + horizontal flip + colour jitter 0.4 + 10% greyscale, 10% of the source images held
out for model selection. Differences from the code: the channel-wise fraction is 1/3 (one code
variant uses 1/3.2), ties in the scores cannot mute fewer than ceil(p * n) features (top-k instead
of a strict threshold), the batch fraction stays fixed (one code variant raises it 0.3 -> 0.5 -> 0.7
every 10 epochs), no flipped copies of the batch are appended, hue jitter is left out, and images
are scaled to [0, 1] without ImageNet mean/std, like every priorlab image model (a checkpoint
pretrained with another normalisation must be converted first).

Models: ``pretrained_hyper`` / ``pretrained_plain`` name a priorlab ``hyper`` checkpoint (from
``priorlab sweep hyper-design`` or ``trainables.hyper``) for the Hyper and the plain model; the one
matching ``hyper`` is loaded (its SWA average if it has one and ``pretrained_swa``) and its
classifier replaced by a fresh 7-class one. An empty path trains from scratch with the ``arch``
fields. Hypernetwork models keep the output-L2 penalty and no weight decay on embeddings and
hypernetworks (Sec. 3.3). After training, ``export_plain(learner.bare_model)`` is the network to serve.

    learner = RSCLearner(RSCConfig(pretrained_hyper="/abs/ckpt", target_domain="sketch"))
    for epoch in range(cfg.epochs):
        metrics = learner.train_epoch(train_loader)      # (uint8 images, labels) batches
    acc = learner.evaluate(test_loader)
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from priorlab.data.images import PACS_CLASSES, PACS_DOMAINS
from priorlab.methods.checkpoint import (CheckpointError, LoadedCheckpoint, load_checkpoint, read_meta,
                                         save_checkpoint, set_rng_state)
from priorlab.methods.configuration import ConfigError, check_bounds, config_from_dict, config_to_dict
from priorlab.methods.hyper.config import HyperConfig
from priorlab.methods.hyper.hypernet import param_groups
from priorlab.methods.hyper.loop import METHOD as PRETRAIN_METHOD
from priorlab.methods.hyper.loop import AUGMENT, _inputs, classification_loss, epoch_seed, evaluate
from priorlab.methods.hyper.resnets import HyperResNet, HyperWRN, build_model

METHOD = "hyper-rsc"
NUM_CLASSES = len(PACS_CLASSES)  # 7
CONFIDENCE_MARGIN = 1e-4
"""A sample is challenged only if muting lowers its true-class probability by more than this (as
in the RSC code: a numerically unchanged confidence is no drop)."""
MODES = ("spatial", "channel")


@dataclass
class RSCConfig:
    # --- what to fine-tune ---
    hyper: bool = True
    """True: the HyperResNet (loaded from ``pretrained_hyper``); False: the plain ResNet baseline
    (from ``pretrained_plain``). The two rows of Table 3.8."""
    pretrained_hyper: str = ""
    """Absolute path of a priorlab ``hyper`` checkpoint directory whose config has hyper=true
    (e.g. EXPERIMENT/train_runs/train_<trial>/checkpoint_<step> of ``priorlab sweep hyper-design``).
    Used when ``hyper``. Empty: train the Hyper model from scratch from the ``arch`` fields
    (not the thesis setup, which starts from ImageNet pretraining)."""
    pretrained_plain: str = ""
    """Absolute path of a priorlab ``hyper`` checkpoint whose config has hyper=false. Used when not
    ``hyper``. Empty: train the plain model from scratch from the ``arch`` fields."""
    pretrained_swa: bool = True
    """Load the checkpoint's SWA average (with its recomputed BatchNorm statistics) when it has one,
    i.e. the weights that checkpoint was evaluated with; else its current weights."""
    target_domain: Literal["photo", "art_painting", "cartoon", "sketch"] = "photo"
    """The held-out PACS domain (evaluated zero-shot); the other three are the training domains."""

    # --- RSC (Huang et al. 2020) ---
    drop_percentage: float = 1 / 3
    """Fraction of feature-map positions (spatial) or channels (channel-wise) muted per challenged
    sample: ceil(p * n) of n. The paper's p = 33%."""
    batch_percentage: float = 1 / 3
    """Largest fraction of each batch that is challenged: the round(b * B) samples whose true-class
    probability drops most under the mask. 0 = plain fine-tuning (the DeepAll baseline)."""

    # --- data ---
    image_size: int = 222
    """Side of the square training and test images (222 in the RSC code)."""
    augment: bool = True
    """Random-resized crop (scale 0.8-1, aspect 3/4-4/3), horizontal flip, brightness/contrast/
    saturation jitter 0.4 and 10% greyscale on training images (the RSC/JiGen code's recipe, hue aside)."""
    val_fraction: float = 0.1
    """Fraction of the source-domain images held out for model selection (``eval/val_acc``,
    ``eval/acc_at_best_val``: target accuracy at the epoch of best source validation, as the RSC
    code reports). 0 = train on all source images."""
    loader_workers: int = 0
    """DataLoader processes decoding the JPEGs (0 = in the training process). 4-8 on a GPU machine."""

    # --- optimisation (Huang et al. 2020, Sec. 4.1 / its code) ---
    epochs: int = 30
    lr: float = 0.004
    momentum: float = 0.9
    weight_decay: float = 5e-4
    """Weight decay of plain parameters (BN, classifier, plain convs; all of a plain model). Never on
    embeddings or hypernetworks, which get ``lambda_output_l2`` instead (Sec. 3.3)."""
    lr_milestones: list[int] = field(default_factory=lambda: [24])
    lr_gamma: float = 0.1
    batch_size: int = 128
    lambda_output_l2: float = 6.25e-5
    """L2 penalty on generated weights of hypernetwork models (Sec. 3.3, Table 3.2; the ImageNet value of Sec. 3.4.2)."""
    seed: int = 0

    # --- architecture when training from scratch (ignored when a checkpoint is loaded) ---
    arch: Literal["resnet12", "resnet18", "resnet34", "wrn"] = "resnet18"
    """Target network when the chosen pretrained path is empty. A loaded checkpoint brings its own
    architecture (its config) and these fields are ignored."""
    widths: list[int] | None = None
    """Stage widths for a from-scratch model (None = the paper's 64-128-256-512). Tiny values make tests fast."""
    stem: Literal["cifar", "imagenet"] = "imagenet"
    """ResNet-18/34 stem of a from-scratch model: ImageNet 7x7/2 + max-pool suits 222-pixel PACS images."""
    sharing: Literal["global", "stage", "unshared"] = "unshared"
    """Hypernetwork sharing of a from-scratch Hyper model (Sec. 3.3; unshared is Table 3.4's best)."""
    bias: bool = False
    """Hypernetwork bias of a from-scratch Hyper model (off in the paper, Table 3.1)."""
    embedding_dim: int | None = None
    """Embedding channels d of a from-scratch Hyper model (None = C_in of each layer)."""

    def pretrained_path(self) -> str:
        """The checkpoint this run starts from ("" = from scratch): picked by ``hyper``."""
        return self.pretrained_hyper if self.hyper else self.pretrained_plain

    def scratch_model_config(self) -> HyperConfig:
        """The 7-class architecture a from-scratch run builds from the ``arch`` fields."""
        return HyperConfig(arch=self.arch, widths=None if self.widths is None else list(self.widths),
                           stem=self.stem, hyper=self.hyper, sharing=self.sharing, bias=self.bias,
                           embedding_dim=self.embedding_dim, in_channels=3, num_classes=NUM_CLASSES,
                           lambda_output_l2=self.lambda_output_l2, weight_decay=self.weight_decay,
                           lr=self.lr, momentum=self.momentum, epochs=self.epochs,
                           lr_milestones=list(self.lr_milestones), lr_gamma=self.lr_gamma,
                           batch_size=self.batch_size, seed=self.seed)

    def validate(self) -> None:
        if self.target_domain not in PACS_DOMAINS:
            raise ConfigError(f"target_domain={self.target_domain!r}: choose one of {list(PACS_DOMAINS)}")
        for name in ("pretrained_hyper", "pretrained_plain"):
            path = getattr(self, name)
            if path and not os.path.isabs(path):
                raise ConfigError(
                    f"{name}={path!r} must be an absolute path (Ray workers run in another "
                    f"directory), e.g. {name}={os.path.abspath(path)}")
        if not 0 < self.drop_percentage < 1:
            raise ConfigError(f"drop_percentage={self.drop_percentage} must be in (0, 1) "
                              "(the fraction of positions/channels muted; the paper uses 1/3)")
        if not 0 <= self.batch_percentage <= 1:
            raise ConfigError(f"batch_percentage={self.batch_percentage} must be in [0, 1] "
                              "(0 = no self-challenging; the paper uses 1/3)")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction={self.val_fraction} must be in [0, 1)")
        if self.image_size < 16:
            raise ConfigError(f"image_size={self.image_size} must be >= 16 (RSC needs a feature map "
                              "larger than 1x1 to mute positions in)")
        check_bounds(self, at_least_1=("epochs", "batch_size"),
                     non_negative=("momentum", "weight_decay", "lambda_output_l2", "loader_workers"),
                     positive=("lr",))
        if not 0 < self.lr_gamma <= 1:
            raise ConfigError(f"lr_gamma={self.lr_gamma} must be in (0, 1]")
        if any(int(m) < 1 for m in self.lr_milestones):
            raise ConfigError(f"lr_milestones={self.lr_milestones}: epochs are counted from 1")
        self.scratch_model_config().validate()  # arch / widths / sharing / stem errors, named


# ----------------------------------------------------------------------------- the model


def feature_map(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The last feature map of a ``build_model`` network, before global average pooling.

    ``model.fc(pool(feature_map(model, x)))`` equals ``model(x)`` (a test checks it).
    """
    # x: (B, C_in, H, W) -> (B, C, h, w)
    if isinstance(model, HyperWRN):
        x = model.layer3(model.layer2(model.layer1(model.stem(x))))
        return F.relu(model.bn(x))
    if isinstance(model, HyperResNet):
        x = model.stem(x)
        for i in range(4):
            x = getattr(model, f"layer{i + 1}")(x)
        return x
    raise TypeError(f"RSC needs a HyperResNet or HyperWRN from build_model, got {type(model).__name__}")


def pool(fmap: torch.Tensor) -> torch.Tensor:
    """Global average pooling as in the models' ``features``: (B, C, h, w) -> (B, C)."""
    return torch.flatten(F.adaptive_avg_pool2d(fmap, 1), 1)


def n_muted(drop_percentage: float, n: int) -> int:
    """How many of ``n`` positions/channels a challenged sample loses: ceil(p * n), at least 1."""
    return min(n, max(1, math.ceil(drop_percentage * n - 1e-9)))


def n_challenged(batch_percentage: float, batch: int) -> int:
    """The most samples of a batch that are challenged: round(b * B), halves up."""
    return min(batch, int(math.floor(batch_percentage * batch + 0.5)))


def self_challenge_mask(fmap: torch.Tensor, classifier: Callable[[torch.Tensor], torch.Tensor],
                        y: torch.Tensor, *, drop_percentage: float, batch_percentage: float,
                        mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The RSC mask for one batch: (mask, challenged).

    ``mask`` is 0/1, (B, 1, h, w) for ``mode="spatial"`` or (B, C, 1, 1) for ``"channel"``, all ones
    for samples that are not challenged; ``challenged`` is (B,) bool. No gradient flows into
    either; ``classifier`` maps pooled features (B, C) to logits.
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: choose one of {list(MODES)}")
    b, c, h, w = fmap.shape
    z = fmap.detach()
    with torch.enable_grad():
        zg = z.clone().requires_grad_(True)
        logits = classifier(pool(zg))  # (B, K)
        true_logit = logits.gather(1, y[:, None]).sum()
        (grad,) = torch.autograd.grad(true_logit, zg)  # (B, C, h, w)
    logits = logits.detach()
    channel_grad = grad.mean(dim=(2, 3))  # (B, C)
    if mode == "spatial":
        score = (z * channel_grad[:, :, None, None]).sum(1).flatten(1)  # (B, h*w): Grad-CAM map
    else:
        score = channel_grad  # (B, C)
    k = n_muted(drop_percentage, score.shape[1])
    keep = torch.ones_like(score).scatter_(1, score.topk(k, dim=1).indices, 0.0)
    mask = keep.view(b, 1, h, w) if mode == "spatial" else keep.view(b, c, 1, 1)

    with torch.no_grad():
        before = logits.softmax(-1).gather(1, y[:, None]).squeeze(1)
        after = classifier(pool(z * mask)).softmax(-1).gather(1, y[:, None]).squeeze(1)
        drop = before - after  # (B,)
        challenged = torch.zeros(b, dtype=torch.bool, device=z.device)
        n = n_challenged(batch_percentage, b)
        if n > 0:
            challenged[drop.topk(n).indices] = True
        challenged &= drop > CONFIDENCE_MARGIN
        mask[~challenged] = 1.0
    return mask, challenged


class SelfChallengingNet(nn.Module):
    """A ``build_model`` network trained with RSC. ``forward(x)`` = the network's logits;
    ``forward(x, y)`` in training mode = logits on the self-challenged features and the (B,) bool of
    challenged samples. One module, so DDP sees every parameter used in one forward."""

    def __init__(self, backbone: nn.Module, drop_percentage: float, batch_percentage: float):
        super().__init__()
        self.backbone = backbone
        self.drop_percentage, self.batch_percentage = drop_percentage, batch_percentage

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, mode: str | None = None):
        fmap = feature_map(self.backbone, x)  # (B, C, h, w)
        if y is None:
            return self.backbone.fc(pool(fmap))
        challenged = torch.zeros(len(y), dtype=torch.bool, device=fmap.device)
        if self.training and self.batch_percentage > 0:
            if mode is None:  # 50/50 per step, from the (checkpointed) global RNG
                mode = MODES[int(torch.rand(()) < 0.5)]
            mask, challenged = self_challenge_mask(
                fmap, self.backbone.fc, y, drop_percentage=self.drop_percentage,
                batch_percentage=self.batch_percentage, mode=mode)
            fmap = fmap * mask
        return self.backbone.fc(pool(fmap)), challenged


# ----------------------------------------------------------------------------- checkpoints in, out


def pretrained_model_config(cfg: RSCConfig) -> HyperConfig:
    """The 7-class architecture ``cfg`` fine-tunes, read from the pretrained checkpoint's meta.json
    (no weights loaded), or ``cfg.scratch_model_config()`` when the path is empty.

    Raises ConfigError naming the field when the path is not a ``hyper`` checkpoint of the right
    kind (Hyper vs plain, RGB input).
    """
    path = cfg.pretrained_path()
    if not path:
        return cfg.scratch_model_config()
    name = "pretrained_hyper" if cfg.hyper else "pretrained_plain"
    if not Path(path).is_dir():
        raise ConfigError(f"{name}={path!r} does not exist; pass a priorlab `hyper` checkpoint directory "
                          "(EXPERIMENT/train_runs/train_<trial>/checkpoint_<step>), or an empty "
                          "string to train from scratch")
    try:
        meta = read_meta(path)
    except CheckpointError as err:
        raise ConfigError(f"{name}: {err}") from None
    if meta.get("method") != PRETRAIN_METHOD:
        raise ConfigError(f"{name}={path!r} is a {meta.get('method')!r} checkpoint; RSC starts from a "
                          f"{PRETRAIN_METHOD!r} one (priorlab sweep hyper-design / trainables.hyper)")
    try:
        pre = config_from_dict(HyperConfig, meta["config"])
    except ConfigError as err:
        raise ConfigError(f"{name}={path!r} has a config this version cannot read: {err}") from None
    if pre.hyper != cfg.hyper:
        kind = "a hypernetwork" if pre.hyper else "a plain"
        raise ConfigError(f"{name}={path!r} holds {kind} model (hyper={pre.hyper}); {name} must hold "
                          f"hyper={cfg.hyper} (the Hyper checkpoint goes to pretrained_hyper, the "
                          "plain one to pretrained_plain)")
    if pre.in_channels != 3:
        raise ConfigError(f"{name}={path!r} was trained on {pre.in_channels}-channel images; PACS is RGB "
                          "(in_channels=3)")
    return dataclasses.replace(pre, num_classes=NUM_CLASSES)


def _pretrained_state(cfg: RSCConfig) -> dict[str, torch.Tensor]:
    ckpt = load_checkpoint(cfg.pretrained_path(), method=PRETRAIN_METHOD, with_train_state=cfg.pretrained_swa)
    swa = (ckpt.train_state or {}).get("swa_model")
    if cfg.pretrained_swa and swa is not None and int(swa.get("n_averaged", 0)) > 0:
        return {k[len("module."):]: v for k, v in swa.items() if k.startswith("module.")}
    return ckpt.model_state


def load_backbone(model: nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Load every weight but the classifier (replaced: the pretraining task had other classes)."""
    body = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = model.load_state_dict(body, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise ConfigError(f"{source} does not match the model it describes: missing {missing[:5]}, "
                          f"unexpected {unexpected[:5]}")


def model_config_from_checkpoint(ckpt: LoadedCheckpoint | dict[str, Any]) -> HyperConfig:
    """The architecture of an RSC checkpoint (its meta ``config["model"]``)."""
    config = ckpt.config if isinstance(ckpt, LoadedCheckpoint) else ckpt
    return config_from_dict(HyperConfig, config["model"])


def rsc_config_from_checkpoint(ckpt: LoadedCheckpoint | dict[str, Any]) -> RSCConfig:
    config = ckpt.config if isinstance(ckpt, LoadedCheckpoint) else ckpt
    return config_from_dict(RSCConfig, {k: v for k, v in config.items() if k != "model"})


def load_model(path: str | os.PathLike) -> nn.Module:
    """The fine-tuned 7-class network of an RSC checkpoint (eval mode); ``export_plain`` it to serve."""
    ckpt = load_checkpoint(path, method=METHOD, with_train_state=False)
    model = build_model(model_config_from_checkpoint(ckpt))
    model.load_state_dict(ckpt.model_state)
    return model.eval()


# ----------------------------------------------------------------------------- augmentation


def pacs_augment(x: torch.Tensor, generator: torch.Generator, *, min_scale: float = 0.8,
                 jitter: float = 0.4, grayscale_p: float = 0.1) -> torch.Tensor:
    """The RSC/JiGen training augmentation on a float batch in [0, 1]: (B, 3, H, W) -> same shape.

    Random-resized crop (area ``min_scale``-1, aspect 3/4-4/3) resized back, horizontal flip,
    brightness / contrast / saturation factors in [1 - jitter, 1 + jitter], greyscale with
    probability ``grayscale_p``. Random numbers come from ``generator`` (CPU).
    """
    b, _, h, w = x.shape
    rand = lambda *shape: torch.rand(*shape, generator=generator)  # noqa: E731
    crops = []
    for i in range(b):
        area = h * w * (min_scale + (1 - min_scale) * float(rand(())))
        ratio = math.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * float(rand(())))
        ch = min(h, max(1, round(math.sqrt(area / ratio))))
        cw = min(w, max(1, round(math.sqrt(area * ratio))))
        top = int(rand(()) * (h - ch + 1))
        left = int(rand(()) * (w - cw + 1))
        crop = x[i:i + 1, :, top:top + ch, left:left + cw]
        crops.append(F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)
                     if (ch, cw) != (h, w) else crop)
    x = torch.cat(crops)
    flip = (rand(b) < 0.5).to(x.device)
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)

    def gray(t):  # ITU-R 601 luma, (B, 1, H, W)
        return (0.299 * t[:, 0:1] + 0.587 * t[:, 1:2] + 0.114 * t[:, 2:3])

    factors = (1 - jitter + 2 * jitter * rand(b, 3)).to(x.device)  # brightness, contrast, saturation
    x = (x * factors[:, 0, None, None, None]).clamp(0, 1)
    m = gray(x).mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - m) * factors[:, 1, None, None, None] + m).clamp(0, 1)
    g = gray(x)
    x = (g + (x - g) * factors[:, 2, None, None, None]).clamp(0, 1)
    to_gray = (rand(b) < grayscale_p).to(x.device)
    return torch.where(to_gray[:, None, None, None], gray(x).expand_as(x), x)


# ----------------------------------------------------------------------------- the learner


@dataclass
class RSCLearner:
    cfg: RSCConfig
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    wrap: Callable[[nn.Module], nn.Module] | None = None
    """Optional wrapper applied after the optimiser is built (e.g. Ray Train's DDP prepare_model)."""
    model_cfg: HyperConfig | None = None
    """The architecture, when resuming from an RSC checkpoint (``model_config_from_checkpoint``): then
    nothing is read from the pretrained path. None: taken from the pretrained checkpoint (whose
    weights are loaded) or, with an empty path, from the ``arch`` fields."""

    def __post_init__(self):
        self.cfg.validate()
        torch.manual_seed(self.cfg.seed)
        state = None
        if self.model_cfg is None:
            self.model_cfg = pretrained_model_config(self.cfg)
            if self.cfg.pretrained_path():
                state = _pretrained_state(self.cfg)
        backbone = build_model(self.model_cfg)
        if state is not None:
            load_backbone(backbone, state, source=self.cfg.pretrained_path())
        self.is_hyper = self.model_cfg.hyper
        self.net = SelfChallengingNet(backbone, self.cfg.drop_percentage, self.cfg.batch_percentage)
        self.net.to(self.device)
        groups = (param_groups(backbone, self.cfg.weight_decay) if self.is_hyper
                  else [{"params": list(backbone.parameters()), "weight_decay": self.cfg.weight_decay}])
        self.optimizer = torch.optim.SGD(groups, lr=self.cfg.lr, momentum=self.cfg.momentum)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, milestones=list(self.cfg.lr_milestones), gamma=self.cfg.lr_gamma)
        self.aug_generator = torch.Generator()  # reseeded every epoch from (seed, epoch)
        self.epoch = 0
        self.best = {"val_acc": -1.0, "acc": float("nan"), "epoch": 0}
        self.model = self.wrap(self.net) if self.wrap is not None else self.net

    @property
    def bare_model(self) -> nn.Module:
        """The fine-tuned ``build_model`` network (7 classes), without the RSC wrapper or DDP."""
        return self.net.backbone

    def checkpoint_config(self) -> dict[str, Any]:
        return {**config_to_dict(self.cfg), "model": config_to_dict(self.model_cfg)}

    def save(self, directory, metrics: dict | None = None):
        extra = {"scheduler": self.scheduler.state_dict(), "epoch": self.epoch, "best": dict(self.best)}
        return save_checkpoint(directory, method=METHOD, step=self.epoch, config=self.checkpoint_config(),
                               model=self.bare_model, optimizer=self.optimizer, metrics=metrics,
                               extra_state=extra)

    def restore(self, ckpt: LoadedCheckpoint) -> None:
        if ckpt.method != METHOD:
            raise CheckpointError(f"{ckpt.path} is a {ckpt.method!r} checkpoint, expected {METHOD!r}")
        self.bare_model.load_state_dict(ckpt.model_state)
        state = ckpt.train_state or {}
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.best = dict(state["best"])
            set_rng_state(state["rng"])
        self.epoch = int(state.get("epoch", ckpt.step))

    def train_epoch(self, loader: Iterable) -> dict[str, float]:
        """One epoch of RSC over (uint8 or float images, labels) batches; LR schedule stepped after."""
        self.model.train()
        self.aug_generator.manual_seed(epoch_seed(self.cfg.seed, self.epoch, AUGMENT))
        total, correct, challenged, n, sums = 0.0, 0, 0, 0, {}
        for x, y in loader:
            x, y = _inputs(x, self.device), y.to(self.device)
            if self.cfg.augment:
                x = pacs_augment(x, self.aug_generator)
            logits, chal = self.model(x, y)
            loss, terms = classification_loss(  # + output l2 for hypernetwork models (Sec. 3.3)
                logits, y, self.bare_model, self.cfg.lambda_output_l2 if self.is_hyper else 0.0)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += float(loss.detach()) * len(y)
            correct += int((logits.argmax(-1) == y).sum())
            challenged += int(chal.sum())
            n += len(y)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v * len(y)
        self.scheduler.step()
        self.epoch += 1
        metrics = {"train/loss": total / max(n, 1), "train/acc": correct / max(n, 1),
                   "train/challenged_frac": challenged / max(n, 1),
                   "epoch": float(self.epoch), "lr": self.optimizer.param_groups[0]["lr"]}
        metrics.update({k: v / max(n, 1) for k, v in sums.items()})
        return metrics

    def evaluate(self, loader: Iterable) -> float:
        """Top-1 accuracy of the network (eval mode, no self-challenging)."""
        return evaluate(self.bare_model, loader, self.device)

    def record_eval(self, acc: float, val_acc: float | None = None) -> dict[str, float]:
        """Track the target accuracy at the epoch of best source validation accuracy (model
        selection without looking at the target, as the RSC code reports it)."""
        if val_acc is not None and val_acc > self.best["val_acc"]:
            self.best = {"val_acc": float(val_acc), "acc": float(acc), "epoch": self.epoch}
        out = {"eval/acc": float(acc)}
        if val_acc is not None:
            out.update({"eval/val_acc": float(val_acc), "eval/acc_at_best_val": self.best["acc"],
                        "eval/best_val_epoch": float(self.best["epoch"])})
        return out

"""Online few-shot semantic segmentation with layer-distributed memory: config and models.

Thesis Sec. 2.4.4 (task, Table 2.2), App. A.4.1-A.4.4 (data, training, CL U-Net of Fig. A.4).
A stream of images arrives one per step; the model segments the images of the target class
and masks out (predicts all background for) the distractors of another class. At step t it
sees x_t with the ground truth of step t-1 concatenated along the channels: an all -1 plane at
the first step (null label), then the previous image's binary object mask if it was a target,
all zeros if it was a distractor (:func:`shift_labels`, :func:`segmentation_inputs`).

Models (``SegmentationConfig.model``):

* ``cl_unet``: a 10-layer U-Net-like network in which every layer is a ConvLSTM; it adapts
  only through its hidden states. Layer resolutions for an s x s image (56 in the thesis):

      layer  1     2     3     4     5     6     7      8      9      10     head
      cell   CL    CL    CL    CL    CL    CL    TCL    TCL    TCL    CL     1x1 conv
      res    s     s/2   s/4   s/8   s/8   s/8   s/4    s/2    s      s      s
      56x56  56    28    14    7     7     7     14     28     56     56     56

  CL = ConvLSTM (``convlstm.ConvLSTMCell``); a 2x2 max-pool precedes layers 2, 3 and 4.
  TCL = :class:`TConvLSTMCell`, a transposed-ConvLSTM that doubles the resolution. Residual
  skips (App. A.4.4) add the output of layer 2 to that of layer 4, 4 to 6, 6 to 8 (resampled
  to the receiving resolution: area average down, nearest up; a 1x1 projection only when the
  channel counts differ, never with the default widths); there is no U-Net skip from the first
  to the last layer. The label planes enter layer ``injection_layer`` (1..10).
* ``finetune_cnn``: the baseline: the same topology with plain convolutions (ReLU; transposed
  convolutions up), no memory and no label input; pre-trained with MAML and fine-tuned online
  by SGD at evaluation (``segmentation_loop``).

What the thesis does not specify, and what we chose:

* Widths: none given. ``channels=w`` (default 32) gives [w, 2w, 2w, 2w, 2w, 2w, 2w, 2w, w, w]:
  the skip endpoints (layers 2, 4, 6, 8) share 2w channels, so every skip is an identity add
  after resampling; a list of 10 widths sets each layer.
* The resolutions of Fig. A.4 (the figure is not in our copy): the table above.
* TConvLSTM: input-to-state by a 4x4 transposed convolution of stride 2 (padding 1, output
  size matched to the mirrored down-path size, so odd sizes such as 7 -> 14 -> 28 or 3 -> 7
  work), state-to-state by a ``kernel_size`` convolution at the output resolution.
* Label injection: a single label plane (values -1 / 0 / 1) area-resampled to the layer's
  output resolution, concatenated to the layer's input (ConvLSTM) or to its hidden-state input
  (TConvLSTM, whose input is at half resolution): the same as feeding it to the gate
  convolution at the layer's own resolution. Injection at 9 (Table 2.2) and 10 (Fig. A.4) both
  run at full resolution here.
* Initialisation: PyTorch's default conv init fades the signal over 10 layers until the output
  ignores the input and training stalls at a constant prediction; the `scaled` init
  (``SegmentationConfig.init``, ``init_gain``) keeps the activations' spread through the
  depth. Images in [0, 1] are centred to [-1, 1] inside the models.
* Output: one logit per pixel; the prediction is sigmoid(logit) and a pixel is foreground when
  it exceeds 0.5 (logit > 0). The MSE loss of App. A.4.3 compares sigmoid probabilities with
  the binary ground truth.

    cfg = SegmentationConfig(model="cl_unet", injection_layer=9)
    model = build_segmentation_model(cfg)
    logits = model(x, label)    # x (B, T, 3, H, W) float [0, 1]; label (B, T, H, W) -> (B, T, H, W)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from priorlab.methods.configuration import ConfigError, check_bounds
from priorlab.methods.memory.convlstm import ConvLSTMCell

MODELS = ("cl_unet", "finetune_cnn")
SOURCES = ("omniglot", "fss1000")
N_LAYERS = 10
LEVELS = (0, 1, 2, 3, 3, 3, 2, 1, 0, 0)
"""Resolution level of layers 1..10: the layer runs at image_size // 2**level (floor halving)."""
POOL_BEFORE = (2, 3, 4)
"""Layers (1-based) whose input is max-pooled by 2."""
TRANSPOSED = (7, 8, 9)
"""Layers (1-based) that upsample by 2 (TConvLSTM in the CL U-Net, ConvTranspose in the CNN)."""
SKIPS = ((2, 4), (4, 6), (6, 8))
"""Residual skips (from, to), 1-based (App. A.4.4); no first-to-last skip."""
NULL_LABEL = -1.0


@dataclass
class SegmentationConfig:
    # --- model (Sec. 2.4.4, App. A.4.4) ---
    model: Literal["cl_unet", "finetune_cnn"] = "cl_unet"
    """`cl_unet`: the 10-layer ConvLSTM U-Net (adapts in its hidden states); `finetune_cnn`: the
    same topology with plain convolutions, MAML pre-trained, fine-tuned online by SGD."""
    injection_layer: int = 1
    """CL U-Net layer (1..10) that receives the previous step's label plane. 1 is the best
    model of Table 2.2; Table 2.2 compares 9 (Fig. A.4 says 10). Ignored by `finetune_cnn`."""
    channels: int | list[int] = 32
    """Widths (not given in the thesis). An int w: [w, 2w, 2w, 2w, 2w, 2w, 2w, 2w, w, w]; or a
    list of 10 widths, one per layer."""
    kernel_size: int = 3
    """Kernel of every ConvLSTM gate convolution, of the TConvLSTM state-to-state convolution and
    of the CNN's convolutions (not stated; 3x3)."""
    forget_bias: float = 1.0
    """Initial forget-gate bias of every (T)ConvLSTM cell (not stated; 1 = remember by default)."""
    init: Literal["scaled", "pytorch"] = "scaled"
    """Weight init (not stated). `scaled`: every (T)ConvLSTM / CNN convolution weight drawn from
    N(0, init_gain^2 / fan_in); `pytorch`: PyTorch's default (std 1/sqrt(3 fan_in)), with which
    the signal fades ~3x per layer over the 10 layers (spatial std of h: 4e-2 at layer 1, 4e-4 at
    layer 10 on 28x28 Omniglot episodes), the output does not depend on the input, and training
    stalls at a constant prediction (both models, measured on CPU)."""
    init_gain: float | None = None
    """Gain of the `scaled` init; None: 4 for the CL U-Net (an LSTM cell at zero gate biases passes
    about a quarter of its gate input's amplitude: h ~ s(o) tanh(s(i) tanh(g)) ~ g / 4), sqrt(2)
    (He) for the ReLU CNN."""

    # --- task (Sec. 2.4.4, App. A.4.1-A.4.2) ---
    source: Literal["omniglot", "fss1000"] = "fss1000"
    """Episode images: FSS-1000 (the thesis) or Omniglot characters composited on backgrounds
    (``priorlab.data.segmentation``; for runs without FSS-1000)."""
    image_size: int = 56
    """Images are resized to 56x56 (App. A.4.1); must be >= 8 (three halvings)."""
    n_targets: int = 9
    """Images of the target class (to segment) per episode (9)."""
    n_distractors: int = 9
    """Distractor images (to mask out) per episode once distractors are on (9; 18 steps in all)."""
    report_shots: list[int] = field(default_factory=lambda: [1, 6])
    """k of the k-shot scores (Table 2.2: 1 and 6): the (k+1)-th target / distractor image."""
    train_split: str = "train"
    eval_split: str = "val"
    """Class splits for training and periodic evaluation, passed to
    ``priorlab.data.segmentation.load_segmentation_source`` (the thesis splits FSS-1000 700 / 60 /
    240; see ``priorlab.data.fss1000`` for the published split files used here)."""

    # --- optimisation (App. A.4.3) ---
    lr: float = 1e-3
    """Adam learning rate (CL U-Net; outer loop of the MAML pre-training)."""
    meta_batch: int = 4
    """Episodes per iteration (4)."""
    max_iters: int = 200_000
    """Iterations in all (100k without distractors, then 100k with them)."""
    curriculum_steps: int = 100_000
    """Iterations without distractors before distractors start (Sec. 2.4.4: 100k, then 100k with
    them; the thesis counts "episodes", we read iterations). 0: distractors from the start.
    `finetune_cnn` never trains with distractors (App. A.4.3)."""
    inner_lr: float = 1e-2
    """MAML inner-loop SGD learning rate of the `finetune_cnn` pre-training (1e-2)."""
    maml_inner_steps: int = 1
    """SGD steps on each label as it arrives, in the MAML inner loop and in the online
    fine-tuning at evaluation (1: "one SGD step on it")."""
    maml_first_order: bool = False
    """Drop the second-order terms of the MAML pre-training (not stated; off)."""
    finetune_lr: float = 1e-2
    """SGD learning rate of the online fine-tuning at evaluation (not stated; the inner_lr)."""

    # --- bookkeeping ---
    eval_every: int = 1000
    """Iterations between evaluations (each reports eval/iou_{k}shot, eval/mask_{k}shot)."""
    eval_episodes: int = 200
    """Episodes (with distractors) per evaluation."""
    seed: int = 0

    def layer_channels(self) -> list[int]:
        """Widths of layers 1..10."""
        if isinstance(self.channels, int):
            w = self.channels
            return [w] + [2 * w] * 7 + [w, w]
        return [int(c) for c in self.channels]

    def validate(self) -> None:
        if self.model not in MODELS:
            raise ConfigError(f"model={self.model!r}: choose one of {list(MODELS)}")
        if self.source not in SOURCES:
            raise ConfigError(f"source={self.source!r}: choose one of {list(SOURCES)}")
        if not 1 <= self.injection_layer <= N_LAYERS:
            raise ConfigError(f"injection_layer={self.injection_layer}: give a layer 1..{N_LAYERS} "
                              "(1 = first ConvLSTM layer, 9 or 10 = late injection of Table 2.2 / Fig. A.4)")
        widths = self.channels if isinstance(self.channels, list) else [self.channels]
        if isinstance(self.channels, list) and len(self.channels) != N_LAYERS:
            raise ConfigError(f"channels={self.channels}: give one int (base width) or a list of "
                              f"{N_LAYERS} widths, one per layer (got {len(self.channels)})")
        if any(int(c) < 1 for c in widths):
            raise ConfigError(f"channels={self.channels}: every width must be >= 1")
        if self.init not in ("scaled", "pytorch"):
            raise ConfigError(f"init={self.init!r}: choose 'scaled' or 'pytorch'")
        if self.init_gain is not None and self.init_gain <= 0:
            raise ConfigError(f"init_gain={self.init_gain} must be > 0 (or None for the model's default)")
        check_bounds(self, at_least_1=("kernel_size", "n_targets", "meta_batch", "max_iters",
                                       "maml_inner_steps", "eval_every", "eval_episodes"),
                     non_negative=("n_distractors", "curriculum_steps"),
                     positive=("lr", "inner_lr", "finetune_lr"))
        if self.kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size={self.kernel_size} must be odd ('same' padding)")
        if self.image_size < 8:
            raise ConfigError(f"image_size={self.image_size} is too small: the U-Net halves it three "
                              "times (layers 4-6 run at image_size // 8); use >= 8 (56 in the thesis)")
        limit = min(self.n_targets, self.n_distractors) if self.n_distractors else self.n_targets
        bad = [k for k in self.report_shots if not 0 <= int(k) < limit]
        if bad or not self.report_shots:
            raise ConfigError(f"report_shots={self.report_shots}: k-shot scores need a (k+1)-th target and "
                              f"distractor image, so 0 <= k < {limit} (n_targets={self.n_targets}, "
                              f"n_distractors={self.n_distractors}) and the list must not be empty")

    @property
    def episode_length(self) -> int:
        """Steps of an episode with distractors (18)."""
        return self.n_targets + self.n_distractors


def layer_sizes(image_size: int) -> list[int]:
    """Output resolution of layers 1..10 (see the module table)."""
    return [image_size >> level for level in LEVELS]


def shift_labels(label: torch.Tensor) -> torch.Tensor:
    """The label planes the model sees: step 0 gets the null label (all -1), step t the label of
    step t-1 (the object mask of a target, zeros for a distractor).

    label: (B, T, H, W) binary, aligned with x -> (B, T, 1, H, W) float in {-1, 0, 1}
    """
    y = (label > 0).to(torch.float32)
    null = torch.full_like(y[:, :1], NULL_LABEL)
    return torch.cat([null, y[:, :-1]], 1).unsqueeze(2)


def segmentation_inputs(x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Images with the shifted label planes concatenated along the channels (Sec. 2.4.4):
    x (B, T, C, H, W), label (B, T, H, W) -> (B, T, C + 1, H, W). The first-layer input of the
    CL U-Net with ``injection_layer=1``."""
    return torch.cat([x, shift_labels(label).to(x.dtype)], 2)


def _resample(h: torch.Tensor, size: int) -> torch.Tensor:
    if h.shape[-1] == size:
        return h
    if h.shape[-1] > size:
        return F.adaptive_avg_pool2d(h, size)
    return F.interpolate(h, size=(size, size), mode="nearest")


class TConvLSTMCell(nn.Module):
    """Transposed-convolutional LSTM: a ConvLSTM whose input-to-state map is a stride-2
    transposed convolution, so it takes x at s and keeps h, c at the upsampled size.

    gates = TConv4x4/2(x) + Conv_k([h_{t-1}, extra]); ``extra`` (e.g. label planes at the output
    resolution) is optional and enters with the hidden state."""

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3,
                 forget_bias: float = 1.0, extra_channels: int = 0):
        super().__init__()
        self.hidden_channels = hidden_channels
        self.input = nn.ConvTranspose2d(in_channels, 4 * hidden_channels, 4, stride=2, padding=1)
        self.hidden = nn.Conv2d(hidden_channels + extra_channels, 4 * hidden_channels, kernel_size,
                                padding=kernel_size // 2, bias=False)
        with torch.no_grad():
            self.input.bias.zero_()
            self.input.bias[hidden_channels:2 * hidden_channels].fill_(forget_bias)  # i, f, o, g

    def initial_state(self, batch: int, size: int, like: torch.Tensor):
        zeros = like.new_zeros(batch, self.hidden_channels, size, size)
        return zeros, zeros

    def forward(self, x, state, extra: torch.Tensor | None = None):
        h, c = state
        rec = h if extra is None else torch.cat([h, extra], 1)
        gates = self.input(x, output_size=h.shape[-2:]) + self.hidden(rec)
        i, f, o, g = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


def _scaled_init(modules: nn.Module, gain: float) -> None:
    """Convolution weights ~ N(0, gain^2 / fan_in); fan_in of a stride-2 transposed 4x4
    convolution is in_channels * 4 (the taps that reach one output pixel)."""
    for m in modules.modules():
        if isinstance(m, nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, gain / (m.in_channels * 4) ** 0.5)
        elif isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, gain / (m.in_channels * m.kernel_size[0] * m.kernel_size[1]) ** 0.5)


def _skip_projections(widths: list[int]) -> nn.ModuleDict:
    """1x1 projections for skips whose endpoints differ in width (none with the default widths)."""
    return nn.ModuleDict({f"{a}_{b}": nn.Conv2d(widths[a - 1], widths[b - 1], 1, bias=False)
                          for a, b in SKIPS if widths[a - 1] != widths[b - 1]})


def _skip(net: nn.Module, j: int, outputs: dict[int, torch.Tensor]):
    """The residual into layer j (1-based): layer a's output resampled (and projected), or 0."""
    for a, b in SKIPS:
        if b == j:
            src = _resample(outputs[a], net.sizes[b - 1])
            key = f"{a}_{b}"
            return net.projections[key](src) if key in net.projections else src
    return 0.0


class CLUNet(nn.Module):
    """CL U-Net (Fig. A.4): 10 (T)ConvLSTM layers, residual skips 2->4, 4->6, 6->8, a 1x1 conv head
    to per-pixel logits; the shifted label planes enter layer ``cfg.injection_layer``."""

    def __init__(self, cfg: SegmentationConfig, in_channels: int = 3):
        super().__init__()
        self.cfg = cfg
        self.inject = cfg.injection_layer
        self.sizes = layer_sizes(cfg.image_size)
        widths = cfg.layer_channels()
        cells = []
        for j in range(1, N_LAYERS + 1):
            c_in = in_channels if j == 1 else widths[j - 2]
            label_ch = 1 if j == self.inject else 0
            if j in TRANSPOSED:
                cells.append(TConvLSTMCell(c_in, widths[j - 1], cfg.kernel_size, cfg.forget_bias,
                                           extra_channels=label_ch))
            else:
                cells.append(ConvLSTMCell(c_in + label_ch, widths[j - 1], cfg.kernel_size,
                                          cfg.forget_bias))
        self.cells = nn.ModuleList(cells)
        self.projections = _skip_projections(widths)
        self.head = nn.Conv2d(widths[-1], 1, 1)
        if cfg.init == "scaled":
            _scaled_init(self.cells, 4.0 if cfg.init_gain is None else cfg.init_gain)
            _scaled_init(self.projections, 1.0)

    def initial_state(self, batch: int, like: torch.Tensor):
        return [cell.initial_state(batch, s, like) for cell, s in zip(self.cells, self.sizes)]

    def step(self, x: torch.Tensor, y_prev: torch.Tensor, state):
        """One time step. x: (B, C, H, W) in [0, 1]; y_prev: (B, 1, H, W) label plane -> (B, H, W) logits."""
        h, outputs, new_state = 2 * x - 1, {}, []        # images centred to [-1, 1]
        for j, cell in enumerate(self.cells, start=1):
            if j in POOL_BEFORE:
                h = F.max_pool2d(h, 2)
            plane = _resample(y_prev, self.sizes[j - 1]) if j == self.inject else None
            if j in TRANSPOSED:
                hj, cj = cell(h, state[j - 1], plane)
            else:
                hj, cj = cell(h if plane is None else torch.cat([h, plane], 1), state[j - 1])
            new_state.append((hj, cj))
            h = hj + _skip(self, j, outputs)
            outputs[j] = h
        return self.head(h).squeeze(1), new_state

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """x: (B, T, C, H, W) float, label: (B, T, H, W) aligned with x -> logits (B, T, H, W);
        step t sees only labels of steps < t."""
        planes = shift_labels(label).to(x.dtype)
        state = self.initial_state(x.shape[0], x)
        logits = []
        for t in range(x.shape[1]):
            out, state = self.step(x[:, t], planes[:, t], state)
            logits.append(out)
        return torch.stack(logits, 1)


class UNetCNN(nn.Module):
    """The fine-tuning baseline (App. A.4.4): the CL U-Net with every (T)ConvLSTM replaced by a
    plain (transposed) convolution + ReLU; same pooling, skips and head; no label input."""

    def __init__(self, cfg: SegmentationConfig, in_channels: int = 3):
        super().__init__()
        self.cfg = cfg
        self.sizes = layer_sizes(cfg.image_size)
        widths = cfg.layer_channels()
        layers = []
        for j in range(1, N_LAYERS + 1):
            c_in = in_channels if j == 1 else widths[j - 2]
            if j in TRANSPOSED:
                layers.append(nn.ConvTranspose2d(c_in, widths[j - 1], 4, stride=2, padding=1))
            else:
                layers.append(nn.Conv2d(c_in, widths[j - 1], cfg.kernel_size,
                                        padding=cfg.kernel_size // 2))
        self.layers = nn.ModuleList(layers)
        self.projections = _skip_projections(widths)
        self.head = nn.Conv2d(widths[-1], 1, 1)
        if cfg.init == "scaled":
            _scaled_init(self.layers, 2 ** 0.5 if cfg.init_gain is None else cfg.init_gain)
            _scaled_init(self.projections, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W) -> logits (N, H, W); a (B, T, C, H, W) episode -> (B, T, H, W)."""
        if x.dim() == 5:
            return self(x.flatten(0, 1)).unflatten(0, x.shape[:2])
        h, outputs = 2 * x - 1, {}                        # images centred to [-1, 1]
        for j, layer in enumerate(self.layers, start=1):
            if j in POOL_BEFORE:
                h = F.max_pool2d(h, 2)
            size = self.sizes[j - 1]
            h = F.relu(layer(h, output_size=(size, size)) if j in TRANSPOSED else layer(h))
            h = h + _skip(self, j, outputs)
            outputs[j] = h
        return self.head(h).squeeze(1)


def build_segmentation_model(cfg: SegmentationConfig) -> nn.Module:
    cfg.validate()
    return CLUNet(cfg) if cfg.model == "cl_unet" else UNetCNN(cfg)

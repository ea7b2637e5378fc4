"""Configuration of the layer-distributed memory method (thesis Ch. 2).

Defaults are the paper's: Sec. 2.3.3 (architecture, label injection), Sec. 2.3.4 and App. A.1.4
(Adam 1e-3, meta-batch 16, 100k iterations), App. A.1.1 (5-way tasks with 10 samples per
class on 28x28 Omniglot, rotations as extra classes), App. A.2 (skip from layer 2 to layer 4).

Override any field from the CLI, e.g. ``priorlab train memory-label-injection channels=32 lr=3e-4``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from priorlab.data.fewshot_sources import EPISODE_DATASETS as DATASET_CHANNELS
from priorlab.methods.configuration import ConfigError

INJECTION_MODES = ("first", "every", "lstm")
MODELS = ("cl_lstm", "lstm", "opn", "cpm", "ntm", "apl")
ACCELS = ("auto", "eager", "compile", "cuda_graph", "compile_cuda_graph")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs")
PRECISIONS = ("fp32", "bf16")


@dataclass
class MemoryConfig:
    # --- model (Sec. 2.3.3, App. A.1.4) ---
    model: Literal["cl_lstm", "lstm", "opn", "cpm", "ntm", "apl"] = "cl_lstm"
    """`cl_lstm`: ConvLSTM stack + LSTM + classifier; `lstm`: the LSTM baseline of Santoro et al.;
    `opn` / `cpm`: Online Prototypical Networks / Contextual Prototypical Memory (Ren et al.;
    `prototypes.py`); `ntm`: the memory-augmented network of Santoro et al. (`mann.py`);
    `apl`: Adaptive Posterior Learning (Ramalho & Garnelo; `apl.py`)."""
    conv_layers: int = 4
    """Number of ConvLSTM layers (4 in the paper); for `opn`, layers of its CNN (4)."""
    channels: int = 64
    """Channels of every ConvLSTM layer (64 in the paper); for `opn`, of every CNN layer (64)."""
    kernel_size: int = 3
    """ConvLSTM kernel size (3x3; the thesis does not state it, 3x3 gives its 0.40 GFLOPs)."""
    lstm_hidden: int = 400
    """Hidden size of the LSTM after the ConvLSTM stack, of the LSTM baseline and of CPM's
    context LSTM (400 each, App. A.1.4)."""
    label_injection: str | list[int] = "first"
    """Where y_{i-1} enters: `first` ConvLSTM layer, `every` ConvLSTM layer, the `lstm`,
    or an explicit list of layer indices (0..conv_layers-1 are ConvLSTM layers,
    conv_layers is the LSTM)."""
    memory_slots: int = 120
    """`ntm`: memory slots (120 x 40, App. A.1.4)."""
    memory_width: int = 40
    """`ntm`: width of a memory slot."""
    read_heads: int = 4
    """`ntm`: read heads (Santoro et al. use 4)."""
    lru_decay: float = 0.95
    """`ntm`: decay of the usage weights of least-recently-used access (0.95, App. A.1.4)."""
    apl_neighbours: int = 5
    """`apl`: nearest neighbours read from the memory for each sample (5, App. A.1.4)."""
    apl_surprise: float | None = None
    """`apl`: a sample is written to memory when its surprise (-log p of its label, known one
    step later) exceeds this; None: log(n_way) / 2, half the surprise of a uniform guess."""
    skip: bool = True
    """Residual skip from ConvLSTM layer 2 to layer 4 (App. A.2): long episodes do not train without it."""
    skip_pair: list[int] | None = None
    """The (from, to) ConvLSTM layers (0-based) of that skip; None: (1, 3), the thesis', when
    there are >= 4 layers, and no skip with fewer. App. A.2's depth-4 models (2 ConvLSTM layers)
    have a skip too without saying where: ``skip_pair=[0,1]`` is our reading (study memory-depth)."""
    forget_bias: float = 1.0
    """Initial forget-gate bias of every ConvLSTM cell (the other gate biases start at 0). The
    thesis does not state it; 1 is the usual "remember by default" initialisation."""
    lstm_forget_bias: float | None = None
    """Initial forget-gate bias of the LSTM (after the ConvLSTM stack, and of the LSTM baseline).
    None keeps PyTorch's default uniform initialisation of all LSTM biases; a number sets the
    forget gate's total bias (b_ih + b_hh) to it, the other gates keep PyTorch's init."""

    # --- task (Sec. 2.3.1, App. A.1) ---
    dataset: Literal["omniglot", "cifar_fs"] = "omniglot"
    """`omniglot` (28x28, App. A.1.1) or `cifar_fs` (CIFAR-100's 64/16/20-class CIFAR-FS split,
    32x32 RGB: set image_size=32; needs cifar/cifar-100-python.tar.gz in the data root)."""
    n_way: int = 5
    """Classes per episode."""
    n_shot: int = 10
    """Samples per class in an episode; the episode has n_way * n_shot time steps."""
    image_size: int = 28
    """Omniglot images are resized to 28x28 (App. A.1.1)."""
    label_delay: int = 1
    """Steps after its sample that a label arrives (Sec. 2.1): 1 is the protocol of Table 2.1
    (y_{i-1} at step i); d > 1 gives y_{i-d}, the null label at the first d steps."""
    report_shots: list[int] = field(default_factory=lambda: [1, 5, 8])
    """k for which k-shot accuracy (the (k+1)-th appearance of a class) is reported (Table 2.1)."""
    train_split: str = "train"
    eval_split: str = "val"
    """The thesis reports validation performance (App. A.1.1); `priorlab eval` uses the test split."""

    # --- optimisation (Sec. 2.3.4, App. A.1.4) ---
    lr: float = 1e-3
    meta_batch: int = 16
    max_iters: int = 100_000
    grad_clip: float | None = None
    """Optional global-norm gradient clipping (not used in the thesis)."""

    # --- execution: how a training step runs; none of these changes the method ---
    accel: Literal["auto", "eager", "compile", "cuda_graph", "compile_cuda_graph"] = "auto"
    """`eager`: plain PyTorch. `compile`: torch.compile (inductor) of one time step of the
    CL+LSTM (of the whole forward for the LSTM baseline). `cuda_graph`: the whole static-shape
    training step (forward, backward, Adam) captured once as one CUDA graph and replayed (CUDA
    only). `compile_cuda_graph`: both (the compiled kernels inside the captured graph). `auto`:
    the measured per-device default of ``priorlab.methods.memory.accel.DEFAULT_ACCEL``.
    Evaluation always runs the plain module; checkpoints are the same whatever the choice."""
    compile_mode: Literal["default", "reduce-overhead", "max-autotune-no-cudagraphs"] = "default"
    """torch.compile mode for `compile` / `compile_cuda_graph`. `reduce-overhead` (CUDA only,
    `compile` only) lets torch record CUDA graphs of each compiled call itself."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """`bf16`: forward under torch.autocast(bfloat16) on the learner's device (CPU or CUDA), loss
    and optimiser in fp32. Not exact: the forward rounds to bf16 (benchmarks/memory_speed.py holds
    it to 3e-2 relative of fp32's losses; on the CPU it stayed within 1e-4)."""
    channels_last: bool = False
    """Store the ConvLSTM weights, states and inputs in NHWC (torch.channels_last) order; the
    layout tensor cores prefer for bf16 convolutions. CL+LSTM only."""

    # --- bookkeeping ---
    eval_every: int = 1000
    """Iterations between evaluations (each reports eval/acc_{k}shot with a checkpoint)."""
    eval_episodes: int = 200
    seed: int = 0

    def injection_layers(self) -> tuple[int, ...]:
        """Indices of the layers that receive the label (conv_layers = the LSTM)."""
        mode = self.label_injection
        if mode == "first":
            return (0,)
        if mode == "every":
            return tuple(range(self.conv_layers))
        if mode == "lstm":
            return (self.conv_layers,)
        return tuple(sorted(set(int(i) for i in mode)))

    def validate(self) -> None:
        if self.model not in MODELS:
            raise ConfigError(f"model={self.model!r}: choose one of {list(MODELS)}")
        if isinstance(self.label_injection, str):
            if self.label_injection not in INJECTION_MODES:
                raise ConfigError(
                    f"label_injection={self.label_injection!r}: choose one of "
                    f"{list(INJECTION_MODES)} or a list of layer indices like [0,2]"
                )
        else:
            bad = [i for i in self.label_injection if not 0 <= int(i) <= self.conv_layers]
            if bad or not self.label_injection:
                raise ConfigError(
                    f"label_injection={self.label_injection!r}: indices must be in "
                    f"0..{self.conv_layers} (0..{self.conv_layers - 1} ConvLSTM layers, "
                    f"{self.conv_layers} the LSTM) and the list must not be empty"
                )
        for name in ("conv_layers", "channels", "kernel_size", "lstm_hidden", "n_shot",
                     "image_size", "meta_batch", "max_iters", "eval_every", "eval_episodes",
                     "label_delay", "memory_slots", "memory_width", "read_heads", "apl_neighbours"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 1")
        if self.n_way < 2:
            raise ConfigError(f"n_way={self.n_way} must be >= 2")
        if self.kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size={self.kernel_size} must be odd ('same' padding)")
        if self.image_size >> (self.conv_layers - 1) < 1:
            raise ConfigError(
                f"image_size={self.image_size} is too small for conv_layers={self.conv_layers} "
                "(each layer after the first halves the resolution)"
            )
        if self.skip_pair is not None:
            pair = [int(i) for i in self.skip_pair]
            if len(pair) != 2 or not 0 <= pair[0] < pair[1] < self.conv_layers:
                raise ConfigError(f"skip_pair={self.skip_pair!r}: give [from, to] ConvLSTM layers with "
                                  f"0 <= from < to <= {self.conv_layers - 1} (conv_layers={self.conv_layers})")
        if self.apl_surprise is not None and self.apl_surprise < 0:
            raise ConfigError(f"apl_surprise={self.apl_surprise} must be >= 0 (a negative log-probability)")
        if self.dataset not in DATASET_CHANNELS:
            raise ConfigError(f"dataset={self.dataset!r}: choose one of {sorted(DATASET_CHANNELS)}")
        if self.dataset == "cifar_fs" and self.image_size != 32:
            raise ConfigError(f"image_size={self.image_size}: CIFAR-FS images are 32x32; set image_size=32 "
                              "with dataset=cifar_fs")
        if not 0.0 < self.lru_decay < 1.0:
            raise ConfigError(f"lru_decay={self.lru_decay} must be in (0, 1) (0.95 in the paper)")
        if self.read_heads > self.memory_slots:
            raise ConfigError(f"read_heads={self.read_heads} must be <= memory_slots={self.memory_slots}")
        if self.model in ("opn", "cpm", "apl") and self.image_size >> self.conv_layers < 1:
            raise ConfigError(f"image_size={self.image_size} is too small for the {self.conv_layers}"
                              f"-layer CNN of model={self.model} (each layer halves the resolution): use "
                              f"image_size >= {2 ** self.conv_layers} or fewer conv_layers")
        choices = (("accel", ACCELS), ("compile_mode", COMPILE_MODES), ("precision", PRECISIONS))
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}={getattr(self, name)!r}: choose one of {list(allowed)}")
        if self.compile_mode == "reduce-overhead" and self.accel == "compile_cuda_graph":
            raise ConfigError(
                "compile_mode='reduce-overhead' records CUDA graphs itself and cannot run inside "
                "the captured step of accel='compile_cuda_graph': use accel=compile with it, or "
                "compile_mode=default with accel=compile_cuda_graph")
        if self.channels_last and self.model != "cl_lstm":
            raise ConfigError(f"channels_last=true applies to the ConvLSTM layers; model={self.model} has "
                              "none: drop channels_last or use model=cl_lstm")
        if self.lr <= 0:
            raise ConfigError(f"lr={self.lr} must be > 0")
        bad_shots = [k for k in self.report_shots if not 0 <= k < self.n_shot]
        if bad_shots:
            raise ConfigError(
                f"report_shots {bad_shots} impossible with n_shot={self.n_shot}: k-shot "
                f"accuracy needs a (k+1)-th sample, so k must be < n_shot"
            )

    @property
    def in_channels(self) -> int:
        """Image channels of ``dataset`` (1 for Omniglot, 3 for CIFAR-FS)."""
        return DATASET_CHANNELS[self.dataset]

    @property
    def episode_length(self) -> int:
        return self.n_way * self.n_shot

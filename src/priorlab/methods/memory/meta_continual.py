"""Gradient-based continual-learning baselines of thesis Sec. 2.4.3: OML and ANML (App. A.3.2,
A.3.3), on the tasks of :mod:`priorlab.methods.memory.continual` (same call as the CL+LSTM).

Both adapt by gradient descent, one step per support sample in stream order (online, a batch
of one), starting from meta-learned weights; the query set is then classified with the adapted
weights, and the query cross-entropy is the meta-loss. The outer loop (Adam) differentiates
through the whole inner loop.

- **OML** (Javed & White 2019, reference code khurramjaved96/mrcl): a representation network
  (RLN, a ``conv_layers``-layer CNN) that the inner loop leaves alone, followed by a prediction
  network (PLN, two fully connected layers) adapted by SGD (lr 0.03); the outer loop (Adam
  1e-4) updates both. Meta-test adaptation: SGD (App. A.3.2).
- **ANML** (Beaulieu et al. 2020, reference code uvm-neurobotics-lab/ANML): a trunk (a
  ``conv_layers``-layer CNN of ``anml_channels`` filters + a linear classifier) whose CNN
  features are multiplied elementwise by the sigmoid output of a neuromodulatory network (a
  3-layer CNN + a linear layer) that sees the same image. The inner loop adapts the trunk; the
  outer loop (Adam 1e-3) updates the trunk's initial weights and the neuromodulatory network.
  Meta-test adaptation: Adam by default (App. A.3.3; ``inner_optimizer``).

``model.train()``: meta-training (SGD inner loop in the autograd graph: full second order, or
first order with ``first_order=True``). ``model.eval()``: meta-test (``inner_optimizer`` at
``test_inner_lr``); it starts from detached copies of the weights, so it works inside
``torch.no_grad()`` (the inner loop enables grad for its own steps), builds no graph to the
meta-parameters, never changes them, and returns detached logits.

The inner loop is functional: ``torch.func.functional_call`` on a dict of per-task weights
(leading dimension = the meta-batch), vmapped over the tasks with ``torch.func.vmap``; the
per-task gradients of one support step come from one ``torch.autograd.grad`` of the summed
loss (``create_graph=True`` for the second-order meta-gradient; ``torch.func.grad`` would do
the same, but its first call imports TorchDynamo, ~2.5 s here). The layers that are not
adapted (OML's RLN, ANML's neuromodulator) run once, batched, over all support and query images.

    model = build_continual_model(ContinualConfig(model="oml"))   # or "anml"
    logits = model.train()(sx, sy, qx)     # meta-training: (B, Q, n_labels), graph to the init
    fast = model.eval().adapt(sx, sy)      # meta-test weights {name: (B, ...)}, detached

Where this deviates from the reference implementations (both 84x84 or 28x28 Omniglot with
batch-norm'd 3-6 layer CNNs of 256 filters and a fixed label per class):
- CNN layout: ``conv_layers`` 3x3 'same' convolutions + ReLU with a 2x2 max-pool before every
  layer but the first (the CL+LSTM's resolutions, 28-14-7-3), no batch norm (the reference
  code normalises each single image in training mode); Kaiming-normal weights, zero biases.
- Widths are config fields: OML ``channels`` (64) and ``pln_hidden`` (400), ANML
  ``anml_channels`` (256, App. A.3.3) and ``nm_channels`` (112, the ANML code).
- Labels are re-drawn per task from ``n_labels`` outputs (Sec. 2.4.3), so the reference
  code's re-initialisation of the classifier rows of the task's classes is not done.
- The meta-loss is the query loss only (the reference code adds a batch of random samples
  from other classes, which measures forgetting more broadly).
- ANML's inner learning rate defaults to 0.01, not the reference command's 0.1 (which goes
  with batch norm; see ``continual.DEFAULT_INNER_LR``).
- ANML's reference meta-test adapts only the classifier and searches the Adam learning rate;
  here meta-test adapts the same weights as training at one configured rate.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from priorlab.methods.memory.continual import ContinualConfig

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8

Params = dict[str, torch.Tensor]


class ConvNet(nn.Module):
    """3x3 'same' conv + ReLU layers; 2x2 max-pool before every layer but the first.

    (N, C, H, W) -> flattened features (N, channels * (H >> (layers - 1)) ** 2).
    """

    def __init__(self, in_channels: int, channels: int, layers: int, image_size: int):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels if j == 0 else channels, channels, 3, padding=1) for j in range(layers))
        for conv in self.convs:
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        self.out_features = channels * (image_size >> (layers - 1)) ** 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for j, conv in enumerate(self.convs):
            if j > 0:
                x = F.max_pool2d(x, 2)
            x = F.relu(conv(x))
        return x.flatten(1)


def _linear(n_in: int, n_out: int) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    nn.init.zeros_(layer.bias)
    return layer


def inner_loop(apply: Callable[..., torch.Tensor], fast: Params, inputs: tuple[torch.Tensor, ...],
               y: torch.Tensor, *, lr: float, optimizer: str = "sgd", create_graph: bool = True,
               keep_graph: bool = True) -> Params:
    """Online adaptation: one update per support step, for every task of the meta-batch at once.

    ``apply(params, *inputs) -> logits (N, k)`` runs the adapted module for ONE task (it is
    vmapped over the tasks); ``fast``: {name: (B, ...)} initial weights; ``inputs``: tensors
    (B, S, ...); ``y``: (B, S). Task b's loss depends only on its own slice of ``fast``, so the
    gradient of the summed loss is every task's own gradient.

    - ``create_graph``: differentiate through the inner gradients (full second order).
    - ``keep_graph``: keep the updates in the autograd graph at all (False at meta-test: every
      step starts from detached weights, and nothing reaches the meta-parameters). With
      ``keep_graph`` and not ``create_graph`` the meta-gradient is first order.
    - ``optimizer``: ``sgd``, or ``adam`` (meta-test only; PyTorch's defaults, fresh per task).
    """
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer={optimizer!r}: choose 'sgd' or 'adam'")
    if optimizer == "adam" and keep_graph:
        raise ValueError("the Adam inner loop is for meta-test adaptation only (keep_graph=False)")
    create_graph = create_graph and keep_graph
    batched = vmap(apply)
    if not keep_graph:
        fast = {k: v.detach().requires_grad_() for k, v in fast.items()}
    m = {k: torch.zeros_like(v) for k, v in fast.items()}
    v2 = {k: torch.zeros_like(v) for k, v in fast.items()}
    b1, b2 = ADAM_BETAS
    for t in range(y.shape[1]):
        with torch.enable_grad():   # meta-test is usually called under no_grad
            logits = batched(fast, *(x[:, t:t + 1] for x in inputs))[:, 0]          # (B, k)
            loss = F.cross_entropy(logits, y[:, t], reduction="sum")
            g = dict(zip(fast, torch.autograd.grad(loss, list(fast.values()), create_graph=create_graph)))
        if keep_graph:
            fast = {k: fast[k] - lr * g[k] for k in fast}
            continue
        with torch.no_grad():
            if optimizer == "sgd":
                fast = {k: fast[k] - lr * g[k] for k in fast}
            else:
                m = {k: b1 * m[k] + (1 - b1) * g[k] for k in fast}
                v2 = {k: b2 * v2[k] + (1 - b2) * g[k] ** 2 for k in fast}
                c1, c2 = 1 - b1 ** (t + 1), 1 - b2 ** (t + 1)
                fast = {k: fast[k] - lr * (m[k] / c1) / ((v2[k] / c2).sqrt() + ADAM_EPS) for k in fast}
        fast = {k: v.requires_grad_() for k, v in fast.items()}
    return fast if keep_graph else {k: v.detach() for k, v in fast.items()}


class _OnlineGradientLearner(nn.Module):
    """Shared meta-train / meta-test logic; subclasses say what is adapted and how it is fed."""

    adapted_module: str
    """Attribute name of the submodule the inner loop adapts."""

    def __init__(self, cfg: ContinualConfig):
        super().__init__()
        self.cfg = cfg
        self.n_labels = cfg.n_labels

    # -- to define in subclasses
    def per_sample_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, N, C, H, W) images -> the adapted module's inputs, each (B, N, ...)."""
        raise NotImplementedError

    # -- shared
    @property
    def adapted(self) -> nn.Module:
        return getattr(self, self.adapted_module)

    def adapted_names(self) -> list[str]:
        return [n for n, _ in self.adapted.named_parameters()]

    def _run_adapted(self, params: Params, *inputs: torch.Tensor) -> torch.Tensor:
        return functional_call(self.adapted, params, inputs)

    def initial_fast(self, batch: int, *, detach: bool) -> Params:
        params = dict(self.adapted.named_parameters())
        return {k: (p.detach() if detach else p).unsqueeze(0).expand(batch, *p.shape)
                for k, p in params.items()}

    def adapt(self, support_x: torch.Tensor, support_y: torch.Tensor) -> Params:
        """The adapted weights {name: (B, ...)} after the support stream; meta-training or
        meta-test adaptation as ``self.training`` says."""
        meta_test = not self.training
        with torch.no_grad() if meta_test else nullcontext():
            inputs = self.per_sample_inputs(support_x)
        return self._adapt(inputs, support_y, meta_test)

    def _adapt(self, inputs, support_y, meta_test: bool) -> Params:
        cfg = self.cfg
        fast = self.initial_fast(support_y.shape[0], detach=meta_test)
        if meta_test:
            return inner_loop(self._run_adapted, fast, inputs, support_y, keep_graph=False,
                              lr=cfg.resolved_test_inner_lr(), optimizer=cfg.resolved_inner_optimizer())
        # Meta-training's computation; under no_grad (e.g. a loss-only pass) without its graph.
        return inner_loop(self._run_adapted, fast, inputs, support_y, lr=cfg.resolved_inner_lr(),
                          create_graph=not cfg.first_order, keep_graph=torch.is_grad_enabled())

    def query_logits(self, fast: Params, query_x: torch.Tensor) -> torch.Tensor:
        """(B, Q, C, H, W) -> (B, Q, k) with each task's adapted weights; queries independent."""
        with torch.no_grad() if not self.training else nullcontext():
            inputs = self.per_sample_inputs(query_x)
        return vmap(self._run_adapted)(fast, *inputs)

    def forward(self, support_x: torch.Tensor, support_y: torch.Tensor,
                query_x: torch.Tensor) -> torch.Tensor:
        meta_test = not self.training
        logits = self.query_logits(self.adapt(support_x, support_y), query_x)
        return logits.detach() if meta_test else logits


class PLN(nn.Module):
    """OML's prediction network: two fully connected layers (adapted in the inner loop)."""

    def __init__(self, n_in: int, hidden: int, n_out: int):
        super().__init__()
        self.fc1, self.fc2 = _linear(n_in, hidden), _linear(hidden, n_out)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(feat)))


class OML(_OnlineGradientLearner):
    """RLN (CNN, meta-learned only) + PLN (2 FC layers, adapted online by SGD)."""

    adapted_module = "pln"

    def __init__(self, cfg: ContinualConfig, in_channels: int = 1):
        super().__init__(cfg)
        self.rln = ConvNet(in_channels, cfg.channels, cfg.conv_layers, cfg.image_size)
        self.pln = PLN(self.rln.out_features, cfg.pln_hidden, cfg.n_labels)

    def per_sample_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        b, n = x.shape[:2]
        return (self.rln(x.flatten(0, 1)).view(b, n, -1),)                   # (B, N, D)


class Trunk(nn.Module):
    """ANML's prediction network: CNN, features gated elementwise, linear classifier."""

    def __init__(self, cfg: ContinualConfig, in_channels: int = 1):
        super().__init__()
        self.cnn = ConvNet(in_channels, cfg.anml_channels, cfg.conv_layers, cfg.image_size)
        self.classifier = _linear(self.cnn.out_features, cfg.n_labels)

    def forward(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.cnn(x) * gate)                          # (N, D) * (N, D)


class Neuromodulator(nn.Module):
    """ANML's neuromodulatory network: 3-layer CNN + linear, sigmoid gates of the trunk's size."""

    def __init__(self, cfg: ContinualConfig, gate_size: int, in_channels: int = 1):
        super().__init__()
        self.cnn = ConvNet(in_channels, cfg.nm_channels, 3, cfg.image_size)
        self.out = _linear(self.cnn.out_features, gate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.out(self.cnn(x)))


class ANML(_OnlineGradientLearner):
    """Trunk (adapted online) gated by a neuromodulatory network (meta-learned only)."""

    adapted_module = "trunk"

    def __init__(self, cfg: ContinualConfig, in_channels: int = 1):
        super().__init__(cfg)
        self.trunk = Trunk(cfg, in_channels)
        self.neuromodulator = Neuromodulator(cfg, self.trunk.cnn.out_features, in_channels)

    def per_sample_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, n = x.shape[:2]
        gates = self.neuromodulator(x.flatten(0, 1)).view(b, n, -1)          # (B, N, D)
        return x, gates

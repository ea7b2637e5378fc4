"""MAML as a wrapper around any model (thesis Sec. 3.3.1-3.3.2, Eq. 3.1-3.2, Alg. 1 and 2).

    maml = MAML(model, inner_lr=0.01, adapt=lambda name: "embedding" in name or "classifier" in name)
    learner = maml.clone()                  # functional view of the current parameters
    learner.adapt(loss_fn(learner(x_support), y_support))     # Eq. 3.1 (steps: call again)
    outer_loss = loss_fn(learner(x_query), y_query)           # Eq. 3.2: backprop to the model
    outer_loss.backward()

The wrapper never subclasses the model: the learner evaluates it with
``torch.func.functional_call`` on a dict of (possibly adapted) parameters, so adapted weights
are ordinary tensors in the autograd graph. ``adapt`` restricts the inner loop to a subset of
parameters: for hypernetwork models Alg. 2 adapts the embeddings and the classifier while the
outer loop updates everything. ``first_order=True`` drops the second-order terms (the
gradients of the inner step are detached). ``learn_preconditioner=True`` adds Alg. 1's
preconditioner P: an elementwise, meta-learned scale on every adapted parameter's inner
gradient (initialised to 1), trained by the outer loop.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call


def _key(name: str) -> str:
    return name.replace(".", "__")


class MAML(nn.Module):
    def __init__(
        self,
        model: nn.Module,
        inner_lr: float = 0.01,
        *,
        first_order: bool = False,
        adapt: Callable[[str], bool] | None = None,
        learn_preconditioner: bool = False,
    ):
        super().__init__()
        self.module = model
        self.inner_lr = inner_lr
        self.first_order = first_order
        self.adapt_names = [n for n, p in model.named_parameters()
                            if p.requires_grad and (adapt is None or adapt(n))]
        if not self.adapt_names:
            raise ValueError("MAML: the `adapt` filter selects no parameter of the model")
        self.preconditioner = None
        if learn_preconditioner:
            params = dict(model.named_parameters())
            self.preconditioner = nn.ParameterDict(
                {_key(n): nn.Parameter(torch.ones_like(params[n])) for n in self.adapt_names})

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def clone(self) -> "MAMLLearner":
        """A learner whose parameters start as the model's own (same values, same graph)."""
        return MAMLLearner(self, dict(self.module.named_parameters()))


class MAMLLearner:
    """The task-specific model of one inner loop: the wrapped model at adapted parameters."""

    def __init__(self, maml: MAML, params: dict[str, torch.Tensor]):
        self.maml = maml
        self.params = params

    def __call__(self, *args, **kwargs):
        buffers = dict(self.maml.module.named_buffers())
        return functional_call(self.maml.module, {**self.params, **buffers}, args, kwargs)

    def adapt(self, loss: torch.Tensor, lr: float | None = None,
              keep_graph: bool | None = None) -> "MAMLLearner":
        """One inner gradient step on ``loss`` (Eq. 3.1 / Alg. 1 line 9); returns self.

        ``keep_graph=False`` skips building the second-order graph (evaluation)."""
        maml = self.maml
        lr = maml.inner_lr if lr is None else lr
        create_graph = (not maml.first_order) if keep_graph is None else keep_graph
        tensors = [self.params[n] for n in maml.adapt_names]
        grads = torch.autograd.grad(loss, tensors, create_graph=create_graph, allow_unused=True)
        new = dict(self.params)
        for name, param, grad in zip(maml.adapt_names, tensors, grads):
            if grad is None:
                continue
            if not create_graph:
                grad = grad.detach()
            if maml.preconditioner is not None:
                grad = maml.preconditioner[_key(name)] * grad
            new[name] = param - lr * grad
        self.params = new
        return self

    def movement(self) -> dict[str, float]:
        """||adapted - initial|| per adapted parameter (Fig. 3.5's inner-loop movement)."""
        initial = dict(self.maml.module.named_parameters())
        return {n: float((self.params[n] - initial[n]).detach().norm()) for n in self.maml.adapt_names}


def _inputs(x, device, transform=None) -> torch.Tensor:
    x = torch.as_tensor(x, device=device)
    x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
    return transform(x) if transform is not None else x


def meta_train_step(maml: MAML, optimizer: torch.optim.Optimizer, tasks, *, inner_steps: int = 1,
                    device: torch.device | str = "cpu", n_total: int | None = None,
                    regularizer: Callable[[], torch.Tensor] | None = None,
                    sync: Callable[[], None] | None = None,
                    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                    ) -> dict[str, float]:
    """One outer update (Eq. 3.2) on a meta-batch of FewShotTasks; returns query loss / accuracy.

    With data-parallel workers each one passes its share of the meta-batch, ``n_total`` (the
    whole meta-batch size, the loss normaliser) and ``sync`` (called after backward, before the
    step: e.g. an all-reduce of gradients). ``regularizer()`` is added to the outer loss once
    (e.g. the l2 penalty on generated weights); ``transform`` maps float inputs to model inputs.
    """
    device = torch.device(device)
    n_total = n_total or len(tasks)
    optimizer.zero_grad(set_to_none=True)
    losses, correct, total = [], 0, 0
    for task in tasks:
        xs = _inputs(task.x_support, device, transform)
        ys = torch.as_tensor(task.y_support, device=device)
        xq = _inputs(task.x_query, device, transform)
        yq = torch.as_tensor(task.y_query, device=device)
        learner = maml.clone()
        for _ in range(inner_steps):
            learner.adapt(F.cross_entropy(learner(xs), ys))
        logits = learner(xq)
        loss = F.cross_entropy(logits, yq)
        (loss / n_total).backward()
        losses.append(float(loss.detach()))
        correct += int((logits.argmax(-1) == yq).sum())
        total += len(yq)
    if regularizer is not None:
        regularizer().backward()
    if sync is not None:
        sync()
    optimizer.step()
    return {"train/loss": sum(losses) / max(len(losses), 1), "train/acc": correct / max(total, 1)}


def adapt_to_task(maml: MAML, task, *, inner_steps: int = 1, device: torch.device | str = "cpu",
                  transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                  ) -> tuple["MAMLLearner", float]:
    """Adapt a clone to ``task``'s support set (no second-order graph); the learner and its
    query accuracy."""
    device = torch.device(device)
    xs = _inputs(task.x_support, device, transform)
    ys = torch.as_tensor(task.y_support, device=device)
    xq = _inputs(task.x_query, device, transform)
    yq = torch.as_tensor(task.y_query, device=device)
    learner = maml.clone()
    with torch.enable_grad():
        for _ in range(inner_steps):
            learner.adapt(F.cross_entropy(learner(xs), ys), keep_graph=False)
    with torch.no_grad():
        acc = float((learner(xq).argmax(-1) == yq).float().mean())
    return learner, acc


def mean_ci95(values) -> tuple[float, float]:
    """Mean and the half-width of its normal 95% interval (nan for fewer than two values)."""
    a = torch.tensor(list(values), dtype=torch.float64)
    ci = float(1.96 * a.std(unbiased=True) / len(a) ** 0.5) if len(a) > 1 else float("nan")
    return float(a.mean()), ci


def evaluate_tasks(maml: MAML, tasks, *, inner_steps: int = 1,
                   device: torch.device | str = "cpu",
                   transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                   ) -> tuple[float, float]:
    """Mean query accuracy after adaptation and its 95% interval half-width over tasks."""
    accs = [adapt_to_task(maml, t, inner_steps=inner_steps, device=device, transform=transform)[1]
            for t in tasks]
    return mean_ci95(accs)

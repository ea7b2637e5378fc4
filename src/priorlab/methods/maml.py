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


def _inputs(x, device) -> torch.Tensor:
    x = torch.as_tensor(x, device=device)
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def meta_train_step(maml: MAML, optimizer: torch.optim.Optimizer, tasks, *, inner_steps: int = 1,
                    device: torch.device | str = "cpu") -> dict[str, float]:
    """One outer update (Eq. 3.2) on a meta-batch of FewShotTasks; returns query loss / accuracy."""
    device = torch.device(device)
    optimizer.zero_grad(set_to_none=True)
    losses, correct, total = [], 0, 0
    for task in tasks:
        xs, ys = _inputs(task.x_support, device), torch.as_tensor(task.y_support, device=device)
        xq, yq = _inputs(task.x_query, device), torch.as_tensor(task.y_query, device=device)
        learner = maml.clone()
        for _ in range(inner_steps):
            learner.adapt(F.cross_entropy(learner(xs), ys))
        logits = learner(xq)
        loss = F.cross_entropy(logits, yq) / len(tasks)
        loss.backward()
        losses.append(float(loss.detach()) * len(tasks))
        correct += int((logits.argmax(-1) == yq).sum())
        total += len(yq)
    optimizer.step()
    return {"train/loss": sum(losses) / len(losses), "train/acc": correct / total}


def evaluate_tasks(maml: MAML, tasks, *, inner_steps: int = 1,
                   device: torch.device | str = "cpu") -> tuple[float, float]:
    """Mean query accuracy after adaptation and its 95% interval half-width over tasks."""
    device = torch.device(device)
    accs = []
    for task in tasks:
        xs, ys = _inputs(task.x_support, device), torch.as_tensor(task.y_support, device=device)
        xq, yq = _inputs(task.x_query, device), torch.as_tensor(task.y_query, device=device)
        learner = maml.clone()
        with torch.enable_grad():
            for _ in range(inner_steps):
                learner.adapt(F.cross_entropy(learner(xs), ys), keep_graph=False)
        with torch.no_grad():
            accs.append(float((learner(xq).argmax(-1) == yq).float().mean()))
    a = torch.tensor(accs, dtype=torch.float64)
    ci = float(1.96 * a.std(unbiased=True) / len(accs) ** 0.5) if len(accs) > 1 else float("nan")
    return float(a.mean()), ci

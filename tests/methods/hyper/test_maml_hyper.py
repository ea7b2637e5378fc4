"""MAML over a HyperResNet (Alg. 2): the inner loop moves embeddings + classifier only; the outer
loop reaches every parameter, hypernetworks included."""

import torch
import torch.nn.functional as F

from priorlab.methods.hyper.config import HyperConfig
from priorlab.methods.hyper.resnets import build_model
from priorlab.methods.maml import MAML


def alg2_filter(name: str) -> bool:
    return name.endswith("embedding") or name.startswith("fc.")


def test_hyper_maml_clone_equals_original_and_adapts_embeddings_and_classifier():
    torch.manual_seed(0)
    cfg = HyperConfig(arch="resnet12", widths=[4, 4, 4, 4], in_channels=1, num_classes=5)
    model = build_model(cfg).train()
    maml = MAML(model, inner_lr=0.1, adapt=alg2_filter)
    assert maml.adapt_names and all(alg2_filter(n) for n in maml.adapt_names)
    assert any(n.endswith("embedding") for n in maml.adapt_names)
    x = torch.rand(10, 1, 28, 28)
    y = torch.arange(10) % 5
    learner = maml.clone()
    model.eval()
    with torch.no_grad():
        assert torch.allclose(learner(x), model(x))
    model.train()
    learner.adapt(F.cross_entropy(learner(x), y))
    moved = learner.movement()
    assert all(v > 0 for v in moved.values())
    loss = F.cross_entropy(learner(x), y)
    loss.backward()  # the outer loop reaches every parameter (hypernetworks included)
    hyper_grads = [p.grad for n, p in model.named_parameters() if n.startswith("hypernets")]
    assert hyper_grads and all(g is not None and g.abs().sum() > 0 for g in hyper_grads)

import torch

from priorlab.methods.hyper.config import HyperConfig
from priorlab.methods.hyper.export import export_plain
from priorlab.methods.hyper.loop import SupervisedLearner, evaluate


def cfg(**kw):
    base = dict(arch="resnet18", widths=[4, 8, 8, 8], in_channels=1, num_classes=4, lr=0.05,
                epochs=6, lr_milestones=[4], sharing="stage")
    base.update(kw)
    return HyperConfig(**base)


def test_supervised_hyper_training_learns_and_reports_terms(loader):
    data = loader()
    learner = SupervisedLearner(cfg())
    first = learner.train_epoch(data)
    for _ in range(5):
        last = learner.train_epoch(data)
    assert "train/loss_output_l2" in last and "diag/embedding_grad_ratio_median" in last
    assert last["train/loss"] < first["train/loss"]
    assert evaluate(learner.final_model(), data) >= 0.75
    assert last["lr"] == 0.05 * 0.2  # one milestone passed


def test_swa_average_exports_to_same_logits(loader):
    data = loader()
    learner = SupervisedLearner(cfg(swa=True, swa_start_epoch=2, swa_lr=0.01))
    for _ in range(4):
        learner.train_epoch(data)
    assert learner.swa_model.n_averaged.item() == 2
    final = learner.final_model(data).eval()
    plain = export_plain(final).eval()
    x = data[0][0]
    with torch.no_grad():
        assert torch.allclose(plain(x), final(x), atol=1e-5)


def test_plain_twin_gets_weight_decay_everywhere(loader):
    learner = SupervisedLearner(cfg(hyper=False))
    groups = learner.optimizer.param_groups
    assert len(groups) == 1 and groups[0]["weight_decay"] == 5e-4
    metrics = learner.train_epoch(loader(n=16))
    assert "train/loss_output_l2" not in metrics

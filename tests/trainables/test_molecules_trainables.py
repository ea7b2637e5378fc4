"""The molecules trainables on Ray: pretraining (checkpoints, exact resume under DDP on two
workers, conformers through Ray Data) and the feature-set evaluation whose checkpoint is a scorer."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration

TINY_PRETRAIN = dict(n_molecules=24, n_valid=6, n_layers=1, hidden=8, edge_hidden=4,
                     diffusion_steps=10, batch_size=4, eval_every=2, eval_samples=2, max_atoms=20)


def test_ddp_pretraining_resumes_exactly(ray_session, molecule_root, tmp_path, one_thread):
    """Two DDP workers (each its share of a step's molecules), conformers through Ray Data in the
    driver: interrupted at step 2 and resumed to 4 == run straight to 4 (same weights)."""
    import torch

    from priorlab.methods.checkpoint import load_checkpoint
    from priorlab.methods.molecules.pretrain import load_diffusion
    from priorlab.trainables.molecules_pretrain import fit

    base = dict(TINY_PRETRAIN, steps=4, workers=2, cpus_per_worker=0.5,
                data_root=str(molecule_root), storage_path=str(tmp_path))
    straight = fit(dict(base, run_name="straight"))
    assert straight.metrics["step"] == 4
    assert {"train/loss", "valid/loss", "eval/validity", "eval/atom_stability",
            "eval/molecule_stability", "eval/uniqueness"} <= set(straight.metrics)
    fit(dict(base, run_name="cut", steps=2))
    resumed = fit(dict(base, run_name="cut"))
    assert resumed.metrics["train/start_step"] == 2 and resumed.metrics["step"] == 4
    a = load_checkpoint(tmp_path / "straight" / "checkpoint_000000004", method="molecules-pretrain")
    b = load_checkpoint(tmp_path / "cut" / "checkpoint_000000004", method="molecules-pretrain")
    for name, tensor in a.model_state.items():
        torch.testing.assert_close(b.model_state[name], tensor, rtol=1e-6, atol=1e-6)
    model, meta = load_diffusion(tmp_path / "straight" / "checkpoint_000000004")
    assert model.vocab.with_hydrogens and meta["step"] == 4


def test_feature_evaluation_writes_a_scorer(ray_session, molecule_root, tiny_diffusion_checkpoint,
                                            tmp_path, one_thread):
    from priorlab.methods.molecules.scorer import MoleculeScorer
    from priorlab.trainables.molecules_features import fit

    result = fit(dict(feature_set="ecfp+midi", midi_checkpoint=str(tiny_diffusion_checkpoint),
                      noise_t=5, layer=1, n_splits=2, epochs=10, patience=5, n_boot=20, hidden=16,
                      data_root=str(molecule_root), storage_path=str(tmp_path), run_name="feat"))
    m = result.metrics
    assert m["runs"] == 2 and 0 <= m["test/auroc"] <= 1 and m["data/n_excluded"] == 0
    scorer = MoleculeScorer.load(tmp_path / "feat" / "checkpoint_000000001")
    out = scorer.score(["CCO", "nonsense("])
    assert out[0].score is not None and out[1].error.startswith("unparseable")


def test_bad_feature_runs_are_refused_in_the_driver(tmp_path):
    from priorlab.methods.configuration import ConfigError
    from priorlab.platform.studies import get_study
    from priorlab.trainables.molecules_features import build_trainer

    base = dict(data_root=str(tmp_path), storage_path=str(tmp_path))
    with pytest.raises(ConfigError, match="midi_checkpoint"):
        build_trainer(dict(base, feature_set="ecfp+midi"))
    with pytest.raises(ConfigError, match="unknown|valid"):
        build_trainer(dict(base, feature_set="ecfp+morgan"))
    study = get_study("molecules-features")
    assert study.metric == "valid/auroc" and study.method == "molecules-scorer"
    assert [str(v) for v in study.space({})["feature_set"].categories] == ["ecfp"]
    assert "ecfp+midi" in study.space({"midi_checkpoint": "x"})["feature_set"].categories

"""Diffusion features (Sec. 5.3.3), the Table 5.1 protocol and the scorer checkpoint: invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from priorlab.data.molecules import ConformerParams, generate_conformers
from priorlab.methods.molecules.config import FeaturesConfig
from priorlab.methods.molecules.midi_features import midi_features, molecule_feature
from priorlab.methods.molecules.pretrain import load_diffusion

# No two heavy atoms of this molecule are topologically equivalent: its canonical ranks, and so
# its noise draws, follow any permutation of the atoms.
ASYMMETRIC = "CC(O)C(=O)NCCS"


def _rotation(seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed),
                                       dtype=torch.float64))
    return q * torch.sign(torch.linalg.det(q))


def _moved(record: dict, rot: torch.Tensor, shift) -> dict:
    pos = torch.tensor(record["positions"], dtype=torch.float64).view(-1, 3)
    return {**record, "positions": (pos @ rot.T + torch.tensor(shift)).flatten().tolist()}


def _permuted(record: dict, perm: list[int]) -> dict:
    """The same conformer with atoms listed in another order (bonds renumbered)."""
    inv = {old: new for new, old in enumerate(perm)}
    pos = np.asarray(record["positions"]).reshape(-1, 3)
    src, dst = zip(*[(min(inv[a], inv[b]), max(inv[a], inv[b]))
                     for a, b in zip(record["bond_src"], record["bond_dst"])])
    return {**record, "atomic_numbers": [record["atomic_numbers"][i] for i in perm],
            "formal_charges": [record["formal_charges"][i] for i in perm],
            "positions": pos[perm].flatten().tolist(), "bond_src": list(src), "bond_dst": list(dst)}


@pytest.fixture(scope="module")
def model(tiny_diffusion_checkpoint):
    return load_diffusion(tiny_diffusion_checkpoint)[0].double()


@pytest.fixture(scope="module")
def record():
    return generate_conformers(ASYMMETRIC, ConformerParams())[0]


@pytest.mark.parametrize("t", [0, 10, 40])
def test_features_invariant_to_rotation_translation_and_permutation(model, record, t):
    base = molecule_feature(model, [record], t=t, layer=2)
    moved = molecule_feature(model, [_moved(record, _rotation(1), [3.0, -2.0, 7.5])], t=t, layer=2)
    perm = list(np.random.default_rng(0).permutation(len(record["atomic_numbers"])))
    permuted = molecule_feature(model, [_permuted(record, perm)], t=t, layer=2)
    np.testing.assert_allclose(moved, base, atol=1e-4)
    np.testing.assert_allclose(permuted, base, atol=1e-4)


def test_noise_changes_features_and_layers_differ(model, record):
    clean = molecule_feature(model, [record], t=0, layer=2)
    noisy = molecule_feature(model, [record], t=45, layer=2)
    assert not np.allclose(clean, noisy)
    assert not np.allclose(molecule_feature(model, [record], t=0, layer=1), clean)
    assert molecule_feature(model, [record], t=0, layer=1, pool="meanmax").shape == (32,)


def test_batch_reports_each_failure_without_dropping(model, record):
    iodine = generate_conformers("ICCO", ConformerParams())
    failed = generate_conformers("C1=CC=CC=C1=C", ConformerParams())   # RDKit rejects it
    X, errors = midi_features(model, [[record], iodine, failed, [record]], t=10, layer=1)
    assert X.shape == (4, 16)
    assert set(errors) == {1, 2}
    assert "I" in errors[1] and "vocabulary" in errors[1]
    assert errors[2].startswith("no conformer")
    assert np.isnan(X[1]).all() and np.isnan(X[2]).all()
    np.testing.assert_array_equal(X[0], X[3])
    with pytest.raises(ValueError, match="layer=9"):
        molecule_feature(model, [record], t=0, layer=9)


def test_protocol_and_scorer_round_trip(molecule_root, tiny_diffusion_checkpoint, tmp_path):
    from priorlab.methods.molecules.protocol import run_protocol
    from priorlab.methods.molecules.scorer import MoleculeScorer

    cfg = FeaturesConfig(feature_set="ecfp+midi", midi_checkpoint=str(tiny_diffusion_checkpoint),
                         noise_t=5, layer=1, n_splits=2, epochs=15, patience=5, n_boot=50,
                         hidden=16)
    result = run_protocol(cfg, molecule_root, progress=False)
    m = result.metrics
    assert m["runs"] == 2 and 0 <= m["test/auroc"] <= 1 and 0 <= m["floor/auroc"] <= 1
    assert m["test/auroc_lo"] <= m["test/auroc_hi"]
    assert m["data/feature_dim"] == 2048 + 16 and m["data/n_excluded"] == 0
    folder = result.scorer.save(tmp_path / "scorer")
    loaded = MoleculeScorer.load(folder)
    assert loaded.task_names == ["Class"] and loaded.task_index("Class") == loaded.task_index(None) == 0
    with pytest.raises(ValueError, match="Class"):
        loaded.task_index("pIC50")
    import json                     # a scorer saved before task names were recorded: BACE's column

    meta = json.loads((folder / "meta.json").read_text())
    meta["spec"]["task_names"] = []
    (folder / "meta.json").write_text(json.dumps(meta))
    assert MoleculeScorer.load(folder).task_names == ["Class"]
    inputs = ["CC(=O)Nc1ccc(O)cc1", "", "not a smiles", "ICCO", "CC(=O)Nc1ccc(O)cc1.Cl", "C" * 200]
    a, b = result.scorer.score(inputs), loaded.score(inputs)
    assert [r.input for r in b] == inputs
    assert a[0].score == pytest.approx(b[0].score, abs=1e-6) and 0 <= b[0].score <= 1
    assert b[1].error.startswith("empty") and b[2].error.startswith("unparseable")
    assert "vocabulary" in b[3].error                      # an element the model never saw
    assert b[4].score == pytest.approx(b[0].score, abs=1e-6)   # the salt is stripped
    assert b[5].error.startswith("too_large")


def test_features_config_names_missing_models():
    from priorlab.methods.configuration import ConfigError

    with pytest.raises(ConfigError, match="midi_checkpoint"):
        FeaturesConfig(feature_set="midi").validate()
    with pytest.raises(ConfigError, match="chemberta_path"):
        FeaturesConfig(feature_set="chemberta+midi", midi_checkpoint="x").validate()
    assert math.isfinite(FeaturesConfig(feature_set="ecfp").noise_t)


def test_score_command_prints_one_line_per_input(molecule_root, tmp_path, monkeypatch, capsys):
    import io

    from priorlab.methods.molecules.protocol import run_protocol
    from priorlab.platform.cli import main

    cfg = FeaturesConfig(feature_set="ecfp", n_splits=1, epochs=5, patience=2, n_boot=10, hidden=8)
    folder = run_protocol(cfg, molecule_root, progress=False).scorer.save(tmp_path / "ckpt")
    monkeypatch.setattr("sys.stdin", io.StringIO("CCO\n\n# a comment\nC1CC\nc1ccccc1O ethanol-like\n"))
    assert main(["score", str(folder), "--smiles", "-"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4
    assert lines[0].endswith("\tCCO") and 0 <= float(lines[0].split("\t")[0]) <= 1
    assert lines[1].startswith("error\t\tempty")
    assert lines[2].startswith("error\tC1CC\tunparseable")
    assert lines[3].endswith("\tc1ccccc1O")
    assert main(["score", str(folder), "--smiles", str(tmp_path / "missing.txt")]) == 2


def test_chemberta_features_travel_inside_the_scorer(molecule_root, tmp_path):
    """A ChemBERTa-style feature set (a tiny random RoBERTa: no weights here) through the protocol;
    the scorer checkpoint carries a copy of the model folder, so it scores without the original."""
    import shutil

    from priorlab.methods.molecules.fingerprints import build_tiny_roberta
    from priorlab.methods.molecules.protocol import run_protocol
    from priorlab.methods.molecules.scorer import MoleculeScorer

    model_dir = build_tiny_roberta(tmp_path / "tiny-roberta", hidden=16)
    cfg = FeaturesConfig(feature_set="chemberta+ecfp", chemberta_path=str(model_dir), n_splits=1,
                         epochs=5, patience=2, n_boot=10, hidden=8, ecfp_bits=256)
    result = run_protocol(cfg, molecule_root, progress=False)
    assert result.metrics["data/feature_dim"] == 16 + 256
    folder = result.scorer.save(tmp_path / "ckpt")
    shutil.rmtree(model_dir)
    before = result.scorer.score(["CCO", "c1ccccc1N"])
    after = MoleculeScorer.load(folder).score(["CCO", "c1ccccc1N"])
    assert [a.score for a in after] == pytest.approx([b.score for b in before], abs=1e-5)


def test_conformers_command_names_an_unknown_data_set(capsys):
    from priorlab.platform.cli import main

    assert main(["molecules", "conformers", "zinc", "--serial"]) == 2
    assert "unknown data set 'zinc'" in capsys.readouterr().err

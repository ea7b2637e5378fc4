"""ECFP, the ChemBERTa encoder (on a tiny random RoBERTa) and feature-set names."""

import warnings

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import rdFingerprintGenerator

from priorlab.methods.molecules.fingerprints import (
    FEATURE_SETS, SmilesEncoder, SmilesEncoderError, build_tiny_roberta, concat_features, ecfp,
    ecfp_one, finite_rows, parse_feature_set)

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
SMILES = ["CCO", ASPIRIN, "c1ccncc1", "CN1CCC[C@H]1c1cccnc1", "O=C([O-])CC[NH3+]"]


# ----------------------------------------------------------------------------- ECFP

def test_ecfp_bits_match_rdkit_directly():
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    expected = np.zeros(2048, dtype=np.float32)
    expected[list(gen.GetFingerprint(Chem.MolFromSmiles(ASPIRIN)).GetOnBits())] = 1
    got = ecfp_one(ASPIRIN)
    assert got.dtype == np.float32 and got.shape == (2048,)
    np.testing.assert_array_equal(got, expected)
    counts = ecfp_one(ASPIRIN, counts=True, n_bits=1024, radius=3)
    direct = rdFingerprintGenerator.GetMorganGenerator(radius=3, fpSize=1024)
    np.testing.assert_array_equal(
        counts, direct.GetCountFingerprintAsNumPy(Chem.MolFromSmiles(ASPIRIN)).astype(np.float32))
    assert counts.max() > 1  # aspirin repeats environments: counts differ from bits


def test_ecfp_is_deterministic_and_row_aligned():
    a, errs_a = ecfp(SMILES)
    b, errs_b = ecfp(list(reversed(SMILES)))
    assert errs_a == errs_b == {}
    np.testing.assert_array_equal(a, b[::-1])
    assert a.shape == (len(SMILES), 2048) and set(np.unique(a)) <= {0.0, 1.0}


def test_bad_smiles_give_nan_rows_and_messages_not_a_crash():
    batch = ["CCO", "C1CC", "C(C)(C)(C)(C)C", "", None, ASPIRIN]
    X, errors = ecfp(batch, n_bits=256)
    assert sorted(errors) == [1, 2, 3, 4]
    assert "C1CC" in errors[1] and "valence" in errors[2].lower()
    assert np.isnan(X[sorted(errors)]).all()
    np.testing.assert_array_equal(X[5], ecfp_one(ASPIRIN, n_bits=256))
    np.testing.assert_array_equal(finite_rows(X), [True, False, False, False, False, True])
    with pytest.raises(ValueError, match="cannot parse"):
        ecfp_one("C1CC")
    with pytest.raises(TypeError, match="list of SMILES"):
        ecfp("CCO")


# ----------------------------------------------------------------------------- feature sets

def test_parse_feature_set():
    assert parse_feature_set("chemberta+midi") == ("chemberta", "midi")
    assert parse_feature_set(" ECFP + midi ") == ("ecfp", "midi")
    assert parse_feature_set("ecfp") == ("ecfp",)
    with pytest.raises(ValueError, match="valid names") as err:
        parse_feature_set("ecfp+morgan")
    assert all(name in str(err.value) for name in FEATURE_SETS)
    for bad, why in (("", "empty"), ("ecfp++midi", "empty part"), ("midi+", "empty part"),
                     ("midi+ecfp+midi", "more than once")):
        with pytest.raises(ValueError, match=why):
            parse_feature_set(bad)


def test_concat_features_orders_and_checks_blocks():
    a, b = np.ones((3, 2)), np.zeros((3, 4))
    X = concat_features({"ecfp": a, "midi": b}, ("midi", "ecfp"))
    assert X.shape == (3, 6) and X.dtype == np.float32
    np.testing.assert_array_equal(X[:, 4:], 1)
    np.testing.assert_array_equal(concat_features({"ecfp": a, "midi": b}, "ecfp+midi")[:, :2], 1)
    with pytest.raises(KeyError, match="chemberta"):
        concat_features({"ecfp": a}, ("ecfp", "chemberta"))
    with pytest.raises(ValueError, match="number of molecules"):
        concat_features({"ecfp": a, "midi": np.zeros((2, 4))}, ("ecfp", "midi"))


# ----------------------------------------------------------------------------- ChemBERTa

@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_tiny_roberta(tmp_path_factory.mktemp("tiny") / "roberta", hidden=32, layers=2,
                              heads=2, seed=0, max_length=64)


def test_tiny_roberta_encodes_deterministically(tiny_model):
    enc = SmilesEncoder(tiny_model)
    Z = enc.encode(SMILES)
    assert Z.shape == (len(SMILES), 32) == (len(SMILES), enc.dim) and Z.dtype == np.float32
    assert np.isfinite(Z).all() and enc.last_truncated == {}
    np.testing.assert_array_equal(Z, SmilesEncoder(tiny_model).encode(SMILES))
    assert not np.allclose(Z[0], Z[1])
    cls = enc.encode(SMILES, pool="cls")
    assert cls.shape == Z.shape and not np.allclose(cls, Z)
    # same seed, same folder contents: a rebuilt model gives the same numbers
    rebuilt = build_tiny_roberta(tiny_model.parent / "again", hidden=32, layers=2, heads=2,
                                 seed=0, max_length=64)
    np.testing.assert_allclose(SmilesEncoder(rebuilt).encode(SMILES), Z, atol=1e-6)


def test_padding_does_not_leak_between_molecules(tiny_model):
    enc = SmilesEncoder(tiny_model)
    full = enc.encode(SMILES, batch_size=len(SMILES))
    one_by_one = enc.encode(SMILES, batch_size=1)
    np.testing.assert_allclose(full, one_by_one, atol=1e-5)
    # "CCO" padded beside a long molecule equals "CCO" alone, for both poolings
    for pool in ("mean", "cls"):
        alone = enc.encode(["CCO"], pool=pool)
        padded = enc.encode(["CCO", "CC(C)(C)c1ccc(cc1)C(=O)NCCCCCCCCCC"], pool=pool)
        np.testing.assert_allclose(padded[0], alone[0], atol=1e-5)


def test_truncation_is_recorded_and_warned(tiny_model):
    enc = SmilesEncoder(tiny_model, max_length=8)
    with pytest.warns(UserWarning, match="truncated"):
        Z = enc.encode(["CCO", "CCCCCCCCCCCCCCCC"])
    assert enc.last_truncated == {1: 18} and np.isfinite(Z).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        enc.encode(["CCO"])
    assert enc.last_truncated == {}


def test_missing_or_invalid_model_folder_says_what_to_pass(tmp_path):
    with pytest.raises(SmilesEncoderError, match="ChemBERTa-zinc-base-v1"):
        SmilesEncoder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SmilesEncoderError, match="config.json"):
        SmilesEncoder(tmp_path / "empty")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(SmilesEncoderError, match="save_pretrained"):
        SmilesEncoder(broken)

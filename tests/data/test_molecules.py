"""SMILES parsing, MoleculeNet / QM9 / MOSES loaders, splits, conformers and their Parquet cache.

Loaders read small files written here in the canonical formats (DeepChem's BACE, chemprop's
MoleculeNet copies, QM9's smiles CSV, MOSES' gzipped CSVs); conformers are real RDKit runs on
small molecules.
"""

from __future__ import annotations

import gzip
import math
import pickle

import numpy as np
import pytest
from rdkit import Chem

from priorlab.data import conformers
from priorlab.data.molecules import (
    MOLECULENET,
    ConformerCache,
    ConformerParams,
    CorruptCacheError,
    MoleculeInputError,
    cache_lookup,
    conformer_key,
    generate_conformers,
    load_moleculenet,
    load_pretraining_smiles,
    parse_smiles,
    qm9_split_rows,
    random_split,
    records_to_mol,
    scaffold_of,
    scaffold_split,
)
from priorlab.data.root import MissingDataError

# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("smiles, kwargs, kind, says", [
    ("", {}, "empty", "empty"),
    ("   ", {}, "empty", "empty"),
    (None, {}, "empty", "missing"),
    ("C1CC", {}, "unparseable", "unclosed ring"),
    ("CC(C)(C)(C)(C)C", {}, "unparseable", "valence"),
    ("C" * 2001, {}, "too_large", "2001 characters"),
    ("C" * 12, {"max_heavy_atoms": 10}, "too_large", "12 heavy atoms"),
    ("CCO.Cl", {"salts": "error"}, "salt", "2 fragments"),
    ("CCBr", {"allowed_elements": {"C", "N", "O"}}, "element", "Br"),
])
def test_each_bad_input_gets_its_kind(smiles, kwargs, kind, says):
    with pytest.raises(MoleculeInputError) as info:
        parse_smiles(smiles, **kwargs)
    assert info.value.kind == kind
    assert says in str(info.value)
    assert isinstance(info.value, ValueError)
    if kind == "unparseable":
        assert "RDKit could not parse" in str(info.value)
    if kind == "element":
        assert "C, H, N, O" in str(info.value)  # the allowed set is named
    again = pickle.loads(pickle.dumps(info.value))
    assert (again.kind, str(again)) == (kind, str(info.value))


def test_parse_is_canonical_and_strips_salts_with_a_record():
    a, b = parse_smiles("OCC"), parse_smiles(" CCO ")
    assert a.smiles == b.smiles == "CCO" and a.stripped == () and a.input == "OCC"
    salt = parse_smiles("[Na+].CC(=O)[O-]")
    assert salt.smiles == "CC(=O)[O-]" and salt.stripped == ("[Na+]",)
    hydrate = parse_smiles("O.O.c1ccccc1N")
    assert hydrate.smiles == "Nc1ccccc1" and hydrate.stripped == ("O", "O")
    assert hydrate.mol.GetNumAtoms() == 7  # heavy atoms only, no explicit H
    assert parse_smiles("CCBr", allowed_elements={"C", "Br"}).smiles == "CCBr"
    with pytest.raises(ValueError, match="salts="):
        parse_smiles("CCO", salts="keep")


# ----------------------------------------------------------------------------- MoleculeNet

def _write(path, text, gz=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)


TOX21_HEADER = "smiles," + ",".join(MOLECULENET["tox21"].label_columns)


def test_loader_lists_unparseable_rows_and_keeps_missing_labels(tmp_path):
    rows = [
        "CCOc1ccc2nc(S(N)(=O)=O)sc2c1,0,0,1,,,0,0,1,0,0,0,0",
        "C1CC,1,1,1,1,1,1,1,1,1,1,1,1",                      # row 1: unclosed ring
        "CCCCCCCC(=O)[O-].[Zn+2],,,,,,,,0,,0,,",            # row 2: salt stripped
        ",0,0,0,0,0,0,0,0,0,0,0,0",                         # row 3: empty SMILES
        "c1ccccc1O,0,0,0,0,0,0,0,0,0,0,0,1",
    ]
    _write(tmp_path / "moleculenet" / "tox21.csv", "\n".join([TOX21_HEADER, *rows]) + "\n")
    table = load_moleculenet("tox21", tmp_path)
    assert table.rows.tolist() == [0, 2, 4]
    assert [f[0] for f in table.failures] == [1, 3]
    assert [f[2] for f in table.failures] == ["unparseable", "empty"]
    assert table.failures[0][1] == "C1CC"
    assert table.stripped == [(2, ("[Zn+2]",))]
    assert table.smiles[1] == "CCCCCCCC(=O)[O-]"
    assert table.raw_smiles[1] == "CCCCCCCC(=O)[O-].[Zn+2]"
    assert table.labels.shape == (3, 12) and table.task_type == "classification"
    assert np.isnan(table.labels[0, 3]) and np.isnan(table.labels[0, 4])
    assert table.labels[0, 2] == 1.0 and table.labels[2, 11] == 1.0
    assert int(np.isnan(table.labels[1]).sum()) == 10
    assert table.predefined_split is None
    text = table.summary()
    assert "5 rows, 3 molecules kept, 2 failed" in text and "row 1 (unparseable)" in text


@pytest.mark.parametrize("smiles_column", ["mol", "smiles"])
def test_bace_keeps_its_predefined_split(tmp_path, smiles_column):
    body = (f"{smiles_column},CID,Class,Model,pIC50\n"
            "O1CC[C@@H](NC(=O)C)CC1(C)C,BACE_1,1,Train,9.15\n"
            "c1ccccc1C(=O)N,BACE_2,0,Valid,5.1\n"
            "CCC(,BACE_3,1,Test,7.0\n"
            "CCN,BACE_4,0,Test,4.0\n")
    _write(tmp_path / "moleculenet" / "bace.csv", body)
    table = load_moleculenet("bace", tmp_path)
    assert table.task_names == ["Class"]
    assert table.predefined_split.tolist() == ["train", "valid", "test"]
    assert table.labels[:, 0].tolist() == [1.0, 0.0, 0.0]
    assert table.failures[0][:3] == (2, "CCC(", "unparseable")


def test_regression_gzip_and_bad_files(tmp_path):
    _write(tmp_path / "moleculenet" / "hiv.csv.gz", "smiles,HIV_active\nCCO,0\nCCN,1\n", gz=True)
    assert load_moleculenet("hiv", tmp_path).labels[:, 0].tolist() == [0.0, 1.0]
    _write(tmp_path / "moleculenet" / "delaney.csv", "smiles,logp\nCCO,-0.77\nCCCCCC,-3.5\n")
    table = load_moleculenet("delaney", tmp_path)
    assert table.task_type == "regression" and table.labels[:, 0].tolist() == [-0.77, -3.5]
    _write(tmp_path / "moleculenet" / "lipo.csv", "smiles,lipo\nCCO,high\n")
    with pytest.raises(ValueError, match="row 0 column 'lipo' holds 'high'"):
        load_moleculenet("lipo", tmp_path)
    _write(tmp_path / "moleculenet" / "bbbp.csv", "smiles,other\nCCO,1\n")
    with pytest.raises(ValueError, match="lacks p_np"):
        load_moleculenet("bbbp", tmp_path)
    with pytest.raises(MissingDataError, match="priorlab data download clintox"):
        load_moleculenet("clintox", tmp_path)
    with pytest.raises(ValueError, match="unknown MoleculeNet set"):
        load_moleculenet("muv", tmp_path)


# ----------------------------------------------------------------------------- pretraining sets

def test_qm9_split_is_fixed_disjoint_and_subsets_are_seeded(tmp_path):
    smiles = [f"C{'C' * (i % 7)}{'O' * (i // 7)}" for i in range(200)]
    _write(tmp_path / "qm9" / "qm9.csv", "smiles\n" + "\n".join(smiles) + "\n")
    parts = {s: load_pretraining_smiles("qm9", tmp_path, split=s) for s in ("train", "valid", "test")}
    assert [len(parts[s]) for s in ("train", "valid", "test")] == [180, 10, 10]
    rows = qm9_split_rows(200)
    assert sorted(np.concatenate(list(rows.values())).tolist()) == list(range(200))
    assert parts["test"] == [smiles[i] for i in rows["test"]]
    a = load_pretraining_smiles("qm9", tmp_path, limit=20, seed=1)
    assert a == load_pretraining_smiles("qm9", tmp_path, limit=20, seed=1)
    assert a != load_pretraining_smiles("qm9", tmp_path, limit=20, seed=2)
    assert len(a) == 20 and set(a) <= set(parts["train"])
    with pytest.raises(ValueError, match="limit"):
        load_pretraining_smiles("qm9", tmp_path, limit=0)


def test_moses_reads_its_own_files(tmp_path):
    for split, body in (("train", "CCO\nCCN\nCCC\n"), ("test", "c1ccccc1\n"), ("test_scaffolds", "C1CC1\n")):
        _write(tmp_path / "moses" / f"{split}.csv.gz", "SMILES\n" + body, gz=True)
    assert load_pretraining_smiles("moses", tmp_path) == ["CCO", "CCN", "CCC"]
    assert load_pretraining_smiles("moses", tmp_path, split="test_scaffolds") == ["C1CC1"]
    assert len(load_pretraining_smiles("moses", tmp_path, limit=2)) == 2
    with pytest.raises(ValueError, match="test_scaffolds"):
        load_pretraining_smiles("moses", tmp_path, split="valid")
    with pytest.raises(MissingDataError, match="priorlab data download qm9"):
        load_pretraining_smiles("qm9", tmp_path)
    _write(tmp_path / "qm9" / "qm9.csv", "SMILES\nC\n")
    with pytest.raises(ValueError, match="no column 'smiles'"):
        load_pretraining_smiles("qm9", tmp_path)


# ----------------------------------------------------------------------------- splits

RINGS = ["c1ccccc1", "C1CCCCC1", "c1ccncc1", "C1CCNCC1", "c1ccc2ccccc2c1", "C1CCOC1", "c1ccsc1",
         "c1ccoc1", "C1CC1", "C1CCC1", "C1CCC(=O)N1", "c1ccc(-c2ccccc2)cc1"]
SUBSTITUENTS = ["C", "CC", "O", "N", "Cl"]
MOLS = [sub + ring for ring in RINGS for sub in SUBSTITUENTS] + ["CCO", "CCCC", "CCN", "CC(=O)O"]


def test_scaffold_of():
    assert scaffold_of("CCO") == ""
    assert scaffold_of("CCc1ccccc1") == "c1ccccc1"
    assert scaffold_of("Clc1ccc(-c2ccccc2)cc1") == "c1ccc(-c2ccccc2)cc1"
    with pytest.raises(MoleculeInputError):
        scaffold_of("C1CC")


def test_scaffold_split_invariants():
    scaffolds = [scaffold_of(s) for s in MOLS]
    splits = [scaffold_split(MOLS, seed) for seed in range(4)]
    for parts in splits:
        assert sorted(np.concatenate(parts).tolist()) == list(range(len(MOLS)))
        owners = [{scaffolds[i] for i in part} for part in parts]
        assert not (owners[0] & owners[1] or owners[0] & owners[2] or owners[1] & owners[2])
        assert all(len(p) for p in parts)
    again = scaffold_split(MOLS, 0)
    assert all(np.array_equal(x, y) for x, y in zip(splits[0], again))
    assert any(not np.array_equal(splits[0][2], s[2]) for s in splits[1:])
    with pytest.raises(ValueError, match="empty"):
        scaffold_split(["Cc1ccccc1", "CCc1ccccc1", "Oc1ccccc1", "Nc1ccccc1"], 0)
    with pytest.raises(ValueError, match="sum to 1"):
        scaffold_split(MOLS, 0, sizes=(0.8, 0.1, 0.2))


def test_random_split_invariants():
    a = random_split(50, 0)
    assert sorted(np.concatenate(a).tolist()) == list(range(50))
    assert [len(p) for p in a] == [40, 5, 5]
    assert all(np.array_equal(x, y) for x, y in zip(a, random_split(50, 0)))
    assert not np.array_equal(a[2], random_split(50, 1)[2])
    with pytest.raises(ValueError, match="empty"):
        random_split(5, 0)


# ----------------------------------------------------------------------------- conformers

PARAMS = ConformerParams(n_conformers=1, seed=0)


def _same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    return all(a[k] == b[k] or (isinstance(a[k], float) and math.isnan(a[k]) and math.isnan(b[k]))
               for k in a)


def test_params_key_changes_with_every_field():
    base = ConformerParams()
    other = dict(n_conformers=2, seed=1, max_attempts=10, mmff=False, max_mmff_iters=7,
                 prune_rms=0.1, timeout_s=5)
    assert set(other) == {f for f in base.__dataclass_fields__}
    keys = {base.key()} | {ConformerParams(**{name: value}).key() for name, value in other.items()}
    assert len(keys) == len(other) + 1
    assert conformer_key("CCO", base) == conformer_key("CCO", ConformerParams())
    assert len(conformer_key("CCO", base)) == 24
    with pytest.raises(ValueError, match="n_conformers"):
        ConformerParams(n_conformers=0)
    with pytest.raises(ValueError, match="seed"):
        ConformerParams(seed=-1)


@pytest.mark.parametrize("smiles", ["c1ccccc1O", "C[NH3+]", "[Na+].OC(=O)C[O-]", "N[C@@H](C)C(=O)O"])
def test_conformer_records_are_consistent_and_deterministic(smiles):
    records = generate_conformers(smiles, PARAMS)
    again = generate_conformers(smiles, PARAMS)
    assert len(records) == 1 and all(_same(a, b) for a, b in zip(records, again))
    r = records[0]
    parsed = parse_smiles(smiles)
    assert r["status"] == "ok" and r["reason"] == "" and r["forcefield"] == "mmff94"
    assert r["smiles"] == parsed.smiles and r["key"] == conformer_key(parsed.smiles, PARAMS)
    n = len(r["atomic_numbers"])
    with_h = Chem.AddHs(parsed.mol)
    assert n == with_h.GetNumAtoms() == len(r["formal_charges"]) and len(r["positions"]) == 3 * n
    assert r["atomic_numbers"].count(1) == sum(a.GetAtomicNum() == 1 for a in with_h.GetAtoms())
    assert sum(r["formal_charges"]) == Chem.GetFormalCharge(parsed.mol)
    assert len(r["bond_src"]) == len(r["bond_dst"]) == len(r["bond_type"]) == with_h.GetNumBonds()
    assert all(0 <= s < d < n for s, d in zip(r["bond_src"], r["bond_dst"]))
    assert set(r["bond_type"]) <= {1, 2, 3, 4}
    assert (4 in r["bond_type"]) == any(b.GetIsAromatic() for b in parsed.mol.GetBonds())
    assert math.isfinite(r["energy"]) and all(math.isfinite(x) for x in r["positions"])
    rebuilt = records_to_mol(r)
    assert Chem.MolToSmiles(Chem.RemoveHs(rebuilt)) == r["smiles"]
    assert np.array_equal(rebuilt.GetConformer().GetPositions().reshape(-1), r["positions"])
    # seeds 0 and 1 are the same in RDKit's generator: ConformerParams keeps them apart
    moved = [generate_conformers(smiles, ConformerParams(seed=k))[0] for k in (1, 2)]
    assert len({tuple(m["positions"]) for m in [r, *moved]}) == 3
    assert len({m["key"] for m in [r, *moved]}) == 3


def test_every_spelling_of_a_molecule_gets_the_same_conformer():
    a = generate_conformers("CC(=O)Nc1ccc(O)cc1", PARAMS)
    b = generate_conformers("Oc1ccc(NC(C)=O)cc1", PARAMS)
    assert a[0]["key"] == b[0]["key"] and a[0]["smiles"] == b[0]["smiles"]
    assert all(_same(x, y) for x, y in zip(a, b))


def test_several_conformers_are_numbered():
    records = generate_conformers("CCCCCCO", ConformerParams(n_conformers=3, prune_rms=-1.0))
    assert [r["conf_id"] for r in records] == [0, 1, 2]
    assert len({tuple(r["positions"]) for r in records}) == 3
    assert len({r["key"] for r in records}) == 1


def test_bad_molecules_give_a_failure_record_not_an_exception(monkeypatch):
    (bad,) = generate_conformers("C1CC", PARAMS)
    assert bad["status"] == "failed" and bad["smiles"] == "C1CC" and "unparseable" in bad["reason"]
    assert bad["key"] == conformer_key("C1CC", PARAMS)
    (strained,) = generate_conformers("C1#CC1", PARAMS)  # cyclopropyne: no geometry exists
    assert strained["status"] == "failed" and "ETKDGv3 could not embed" in strained["reason"]
    (dative,) = generate_conformers("N->[Pt]", PARAMS)
    assert "DATIVE" in dative["reason"]
    with pytest.raises(ValueError, match="failure"):
        records_to_mol(bad)

    def boom(*args, **kwargs):
        raise RuntimeError("simulated embedding crash")

    monkeypatch.setattr(conformers.rdDistGeom, "EmbedMultipleConfs", boom)
    (crashed,) = generate_conformers("CCO", PARAMS)
    assert crashed["status"] == "failed" and "simulated embedding crash" in crashed["reason"]
    monkeypatch.setattr(conformers.rdDistGeom, "EmbedMultipleConfs", lambda *a, **k: [])
    (empty,) = generate_conformers("CCO", PARAMS)
    assert "max_attempts=200" in empty["reason"]


def test_forcefield_fallbacks_are_named():
    (uff,) = generate_conformers("CC(=O)O[Fe]", PARAMS)  # MMFF94 has no iron
    assert uff["forcefield"] == "uff" and math.isnan(uff["energy"])
    (raw,) = generate_conformers("CCO", ConformerParams(mmff=False))
    assert raw["forcefield"] == "none" and math.isnan(raw["energy"])


# ----------------------------------------------------------------------------- cache

@pytest.fixture(scope="module")
def records():
    return {s: generate_conformers(s, PARAMS) for s in ("CCO", "c1ccccc1N", "C1CC", "CC(=O)[O-]")}


def test_cache_round_trip_is_exact(tmp_path, records):
    cache = ConformerCache(tmp_path / "conformers")
    assert len(cache) == 0 and cache.get(["x"]) == {}
    cache.put(records["CCO"] + records["C1CC"])
    cache.put(records["c1ccccc1N"])
    got = cache.get([r[0]["key"] for r in records.values()])
    assert len(got) == 3 and len(cache) == 3
    for s in ("CCO", "c1ccccc1N"):
        assert all(_same(a, b) for a, b in zip(got[records[s][0]["key"]], records[s]))
    assert got[records["C1CC"][0]["key"]] == records["C1CC"]  # the failure, with its reason
    fresh = generate_conformers("OCC", PARAMS)  # the same molecule, written another way
    assert cache.get([fresh[0]["key"]])[fresh[0]["key"]][0]["positions"] == fresh[0]["positions"]
    cache.put(records["CCO"])  # a second writer of the same key: no duplicates
    assert len(cache.get([records["CCO"][0]["key"]])[records["CCO"][0]["key"]]) == 1
    padded = {**records["C1CC"][0], "conf_id": -1, "positions": [], "energy": math.nan}
    cache.put([padded])  # a failure with every column filled in (as a Ray Data block has it)
    assert cache.get([padded["key"]])[padded["key"]] == records["C1CC"]
    reopened = ConformerCache(tmp_path / "conformers")
    assert reopened.keys() == cache.keys()
    lookup = cache_lookup(reopened, ["OCC", "CCN", "C1CC"], PARAMS)
    assert set(lookup) == {"OCC", "C1CC"} and lookup["C1CC"][0]["status"] == "failed"
    before = cache.get(cache.keys())
    merged = cache.compact()
    assert list((tmp_path / "conformers").iterdir()) == [merged]
    after = ConformerCache(tmp_path / "conformers").get(cache.keys())
    assert before.keys() == after.keys()
    assert all(len(before[k]) == len(after[k]) and all(map(_same, before[k], after[k])) for k in before)


def test_missing_counts_unparseable_until_their_failure_is_cached(tmp_path, records):
    cache = ConformerCache(tmp_path)
    wanted = ["CCO", "OCC", "C1CC", "c1ccccc1N", "CC(=O)[O-]"]
    assert cache.missing(wanted, PARAMS) == ["CCO", "C1CC", "c1ccccc1N", "CC(=O)[O-]"]
    cache.put(records["CCO"] + records["c1ccccc1N"])
    assert cache.missing(wanted, PARAMS) == ["C1CC", "CC(=O)[O-]"]
    cache.put(records["C1CC"])
    assert cache.missing(wanted, PARAMS) == ["CC(=O)[O-]"]
    assert cache.missing(wanted, ConformerParams(seed=3)) == ["CCO", "C1CC", "c1ccccc1N", "CC(=O)[O-]"]


def test_writes_are_atomic_and_corrupt_parts_are_named(tmp_path, records, monkeypatch):
    cache = ConformerCache(tmp_path)
    cache.put(records["CCO"])
    assert [p.name.startswith("part-") and p.suffix == ".parquet" for p in tmp_path.iterdir()] == [True]

    import pyarrow.parquet as pq

    def dies_midway(table, where, **kwargs):
        where.write(b"PAR1 half a file")
        raise KeyboardInterrupt  # a killed writer

    monkeypatch.setattr(pq, "write_table", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        cache.put(records["c1ccccc1N"])
    monkeypatch.undo()
    assert len(list(tmp_path.iterdir())) == 1  # no temp file, no partial part
    assert cache.missing(["CCO", "c1ccccc1N"], PARAMS) == ["c1ccccc1N"]

    broken = tmp_path / "part-0000.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(CorruptCacheError) as info:
        ConformerCache(tmp_path).get([records["CCO"][0]["key"]])
    assert str(broken) in str(info.value) and "Delete that file" in str(info.value)
    broken.unlink()
    assert records["CCO"][0]["key"] in ConformerCache(tmp_path)
    with pytest.raises(ValueError, match="not a conformer record"):
        cache.put([{"key": "k", "smiles": "C"}])

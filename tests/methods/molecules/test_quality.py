"""RDKit scoring of generated molecules (MiDi's metrics)."""

import math

import pytest
from rdkit import Chem

from priorlab.methods.molecules.quality import (
    atom_stability,
    atom_stable,
    build_molecule,
    novelty,
    score_samples,
    valid_smiles,
    write_sdf,
)


def sample(zs, pos, bonds, charges=None):
    return {"atomic_numbers": list(zs), "formal_charges": list(charges or [0] * len(zs)),
            "positions": [float(c) for p in pos for c in p],
            "bond_src": [b[0] for b in bonds], "bond_dst": [b[1] for b in bonds],
            "bond_type": [b[2] for b in bonds]}


ETHANOL = sample(
    [6, 6, 8, 1, 1, 1, 1, 1, 1],
    [(0, 0, 0), (1.52, 0, 0), (2.0, 1.33, 0), (-0.39, 1.02, 0), (-0.39, -0.51, 0.89),
     (-0.39, -0.51, -0.89), (1.9, -0.51, 0.89), (1.9, -0.51, -0.89), (2.96, 1.3, 0)],
    [(0, 1, 1), (1, 2, 1), (0, 3, 1), (0, 4, 1), (0, 5, 1), (1, 6, 1), (1, 7, 1), (2, 8, 1)])
WATER = sample([8, 1, 1], [(0, 0, 0), (0.96, 0, 0), (-0.24, 0.93, 0)], [(0, 1, 1), (0, 2, 1)])
# Methane with a fifth hydrogen bonded to the carbon.
PENTAVALENT = sample([6, 1, 1, 1, 1, 1], [(0, 0, 0), (1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0),
                                          (0, 0, 1)], [(0, i, 1) for i in range(1, 6)])
HEXAGON = [(1.39, 0, 0), (0.695, 1.204, 0), (-0.695, 1.204, 0), (-1.39, 0, 0),
           (-0.695, -1.204, 0), (0.695, -1.204, 0)]
BENZENE = sample([6] * 6 + [1] * 6, HEXAGON + [(2 * x, 2 * y, 0) for x, y, _ in HEXAGON],
                 [(i, (i + 1) % 6, 4) if i < 5 else (0, 5, 4) for i in range(6)]
                 + [(i, i + 6, 1) for i in range(6)])


def test_ethanol_is_valid_and_stable():
    mol = build_molecule(ETHANOL)
    assert mol.GetNumAtoms() == 9 and mol.GetNumConformers() == 1
    assert mol.GetConformer().GetAtomPosition(1).x == pytest.approx(1.52)
    assert valid_smiles(ETHANOL) == ("CCO", 1)
    assert all(atom_stability(ETHANOL))
    scores = score_samples([ETHANOL])
    assert scores["validity"] == scores["connected"] == scores["uniqueness"] == 1.0
    assert scores["atom_stability"] == scores["molecule_stability"] == 1.0 and scores["n"] == 1


def test_pentavalent_carbon_is_unstable_and_invalid():
    assert not atom_stable(6, 0, [1] * 5) and atom_stable(6, 0, [1] * 4)
    assert atom_stability(PENTAVALENT) == [False] + [True] * 5
    assert valid_smiles(PENTAVALENT)[0] is None
    scores = score_samples([PENTAVALENT, ETHANOL])
    assert scores["validity"] == 0.5 and scores["molecule_stability"] == 0.5
    assert scores["atom_stability"] == pytest.approx(14 / 15)


def test_charges_change_the_allowed_valence():
    assert atom_stable(7, 1, [1] * 4) and not atom_stable(7, 0, [1] * 4)
    assert atom_stable(8, -1, [1]) and not atom_stable(8, 0, [1])


def test_aromatic_bonds_accept_any_kekule_valence():
    assert all(atom_stability(BENZENE)) and valid_smiles(BENZENE) == ("c1ccccc1", 1)
    assert atom_stable(7, 0, [4, 4, 1])   # pyrrole N-H: no double bond in its Kekulé form
    assert atom_stable(8, 0, [4, 4])      # furan O
    assert not atom_stable(6, 0, [4, 4, 1, 1, 1]) and not atom_stable(8, 0, [4, 4, 1])


def test_uniqueness_counts_duplicates_and_validity_the_largest_fragment():
    scores = score_samples([ETHANOL, ETHANOL, WATER])
    assert scores["validity"] == 1.0 and scores["uniqueness"] == pytest.approx(2 / 3)
    assert scores["valid_smiles"] == ["CCO", "CCO", "O"]
    both = sample(ETHANOL["atomic_numbers"] + WATER["atomic_numbers"],
                  [tuple(ETHANOL["positions"][i:i + 3]) for i in range(0, 27, 3)]
                  + [(9, 9, 9), (9.96, 9, 9), (8.76, 9.93, 9)],
                  list(zip(ETHANOL["bond_src"], ETHANOL["bond_dst"], ETHANOL["bond_type"]))
                  + [(9, 10, 1), (9, 11, 1)])
    assert valid_smiles(both) == ("CCO", 2)
    scores = score_samples([both, WATER])
    assert scores["validity"] == 1.0 and scores["connected"] == 0.5


def test_novelty_compares_canonical_smiles():
    assert novelty(["CCO", "O", "O"], ["OCC"]) == 0.5
    assert score_samples([ETHANOL, WATER], train_smiles=["[H]OC([H])([H])C"])["novelty"] == 0.5
    assert math.isnan(novelty([], ["C"]))
    with pytest.raises(ValueError, match="does not parse"):
        novelty(["C"], ["not a smiles"])


def test_malformed_samples_and_unbuildable_graphs():
    twice = dict(WATER, bond_src=[0, 0], bond_dst=[1, 1], bond_type=[1, 2])
    assert build_molecule(twice) is None and valid_smiles(twice) == (None, 0)
    with pytest.raises(ValueError, match="malformed sample"):
        build_molecule(dict(WATER, bond_dst=[1, 7]))
    assert math.isnan(score_samples([WATER], with_hydrogens=False)["atom_stability"])


def test_write_sdf_keeps_coordinates_and_flags_invalid_samples(tmp_path):
    twice = dict(WATER, bond_src=[0, 0], bond_dst=[1, 1], bond_type=[1, 2])
    path = write_sdf([ETHANOL, PENTAVALENT, twice, BENZENE], tmp_path / "out" / "gen.sdf")
    mols = list(Chem.SDMolSupplier(str(path), sanitize=False, removeHs=False))
    assert [m.GetIntProp("index") for m in mols] == [0, 1, 3]
    assert [m.GetIntProp("valid") for m in mols] == [1, 0, 1]
    assert mols[0].GetProp("smiles") == "CCO" and mols[0].GetNumAtoms() == 9
    assert mols[0].GetConformer().GetAtomPosition(8).x == pytest.approx(2.96, abs=1e-3)
    assert [p.name for p in path.parent.iterdir()] == ["gen.sdf"]

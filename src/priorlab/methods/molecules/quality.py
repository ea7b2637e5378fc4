"""RDKit scoring of generated molecules: MiDi's sample-quality metrics (Vignac et al. 2023), the
evidence that the pretrained diffusion model of thesis Sec. 5.3.1 has learnt chemistry.

A sample is a record-like dict (``MolecularDiffusion.sample``: ``atomic_numbers``,
``formal_charges``, flattened ``positions``, ``bond_src``/``bond_dst``/``bond_type`` with types
1 single, 2 double, 3 triple, 4 aromatic)::

    scores = score_samples(samples, train_smiles=train_smiles)
    # {"n", "validity", "connected", "uniqueness", "atom_stability", "molecule_stability",
    #  "novelty", "valid_smiles"}
    write_sdf(samples, "generated.sdf")                   # 3D molecules to open in a viewer

What is counted (MiDi's current ``compute_validity``):
- ``validity``: fraction of all samples whose molecule RDKit builds and whose *largest fragment*
  sanitises (``Chem.SanitizeMol``). Hydrogens RDKit would add implicitly are allowed, as in MiDi.
- ``connected``: fraction of all samples that are one fragment.
- ``uniqueness``: distinct canonical SMILES among the valid ones / number valid (0 if none).
- ``novelty``: distinct valid SMILES absent from the training SMILES / distinct valid SMILES.
  SMILES on both sides are RDKit canonical, hydrogens removed and stereo dropped (a generated
  3D graph carries no assigned stereo), so that training records' SMILES compare.
- ``atom_stability`` / ``molecule_stability``: an atom is stable when its total bond order is
  one MiDi allows for its element and formal charge (:data:`ALLOWED_VALENCES`); a molecule when
  all its atoms are. Only meaningful with explicit hydrogens (MiDi reports it only then); pass
  ``with_hydrogens=False`` to get NaN instead. Aromatic bonds: MiDi kekulises its data and counts
  an aromatic bond as 1.5; bonds stay aromatic here, so an atom with k aromatic bonds may have
  valence base + k (no double bond in its Kekulé form, pyrrole N, furan O) or base + k + 1 (one).
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from rdkit import Chem, rdBase
from rdkit.Geometry import Point3D

ALLOWED_VALENCES: dict[str, dict[int, tuple[int, ...]]] = {
    "H": {0: (1,), 1: (0,), -1: (0,)},
    "C": {0: (3, 4), 1: (3,), -1: (3,)},
    "N": {0: (2, 3), 1: (2, 3, 4), -1: (2,)},
    "O": {0: (2,), 1: (3,), -1: (1,)},
    "F": {0: (1,), -1: (0,)},
    "B": {0: (3,)}, "Al": {0: (3,)}, "Si": {0: (4,)},
    "P": {0: (3, 5), 1: (4,)},
    "S": {0: (2, 6), 1: (2, 3), 2: (4,), 3: (5,), -1: (3,)},
    "Cl": {0: (1,)}, "As": {0: (3,)},
    "Br": {0: (1,), 1: (2,)},
    "I": {0: (1,)}, "Hg": {0: (1, 2)}, "Bi": {0: (3, 5)}, "Se": {0: (2, 4, 6)},
}
"""MiDi's ``allowed_bonds`` (element -> formal charge -> allowed total bond orders). As in MiDi,
a charge without an entry falls back to the neutral one, and neutral C also accepts 3."""

_BOND_TYPES = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE,
               4: Chem.BondType.AROMATIC}


def _check_sample(sample: Mapping[str, Any]) -> int:
    n = len(sample["atomic_numbers"])
    m = len(sample["bond_src"])
    if (len(sample["formal_charges"]) != n or len(sample["positions"]) != 3 * n
            or len(sample["bond_dst"]) != m or len(sample["bond_type"]) != m):
        raise ValueError(
            f"malformed sample: {n} atoms, {len(sample['formal_charges'])} charges, "
            f"{len(sample['positions'])} coordinates (want {3 * n}), bond lists of lengths "
            f"{m}/{len(sample['bond_dst'])}/{len(sample['bond_type'])}")
    for i, j, b in zip(sample["bond_src"], sample["bond_dst"], sample["bond_type"]):
        if not (0 <= i < n and 0 <= j < n) or i == j or b not in _BOND_TYPES:
            raise ValueError(f"malformed sample: bond ({i}, {j}, type {b}) with {n} atoms; "
                             "bonds join two distinct atoms with type 1..4")
    return n


def build_molecule(sample: Mapping[str, Any]) -> Chem.Mol | None:
    """The unsanitised RDKit molecule of a sample, with its 3D conformer; None when RDKit refuses
    the graph itself (e.g. a bond listed twice). Sanitisation is left to the caller."""
    n = _check_sample(sample)
    mol = Chem.RWMol()
    for z, q in zip(sample["atomic_numbers"], sample["formal_charges"]):
        atom = Chem.Atom(int(z))
        atom.SetFormalCharge(int(q))
        mol.AddAtom(atom)
    try:
        for i, j, b in zip(sample["bond_src"], sample["bond_dst"], sample["bond_type"]):
            mol.AddBond(int(i), int(j), _BOND_TYPES[int(b)])
        mol = mol.GetMol()
    except (RuntimeError, ValueError):
        return None
    conf = Chem.Conformer(n)
    pos = sample["positions"]
    for i in range(n):
        conf.SetAtomPosition(i, Point3D(float(pos[3 * i]), float(pos[3 * i + 1]),
                                        float(pos[3 * i + 2])))
    mol.AddConformer(conf, assignId=True)
    return mol


def atom_stable(atomic_number: int, charge: int, bond_types: Iterable[int]) -> bool:
    """Whether an atom with these bonds (types 1-4) has a valence MiDi allows (module docstring)."""
    symbol = Chem.GetPeriodicTable().GetElementSymbol(int(atomic_number))
    table = ALLOWED_VALENCES.get(symbol)
    if table is None:
        return False
    allowed = table.get(int(charge), table[0])
    bonds = list(bond_types)
    n_aromatic = sum(1 for b in bonds if b == 4)
    base = sum(b for b in bonds if b != 4) + n_aromatic
    options = {base, base + 1} if n_aromatic else {base}
    return any(v in allowed for v in options)


def atom_stability(sample: Mapping[str, Any]) -> list[bool]:
    """Per-atom stability of a sample."""
    n = _check_sample(sample)
    bonds: list[list[int]] = [[] for _ in range(n)]
    for i, j, b in zip(sample["bond_src"], sample["bond_dst"], sample["bond_type"]):
        bonds[i].append(int(b))
        bonds[j].append(int(b))
    return [atom_stable(z, q, bonds[i]) for i, (z, q) in
            enumerate(zip(sample["atomic_numbers"], sample["formal_charges"]))]


def canonical_smiles(mol: Chem.Mol) -> str:
    """Canonical SMILES without explicit hydrogens or stereo (how valid samples are compared)."""
    return Chem.MolToSmiles(Chem.RemoveHs(mol, sanitize=False), isomericSmiles=False)


def valid_smiles(sample: Mapping[str, Any]) -> tuple[str | None, int]:
    """(canonical SMILES of the largest fragment if it sanitises else None, number of fragments;
    0 when RDKit cannot build the molecule)."""
    mol = build_molecule(sample)
    if mol is None:
        return None, 0
    frags = Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=False)
    if not frags:
        return None, 0
    largest = Chem.Mol(max(frags, key=lambda m: m.GetNumAtoms()))
    try:
        with rdBase.BlockLogs():  # invalid samples are expected: counted, not logged
            Chem.SanitizeMol(largest)
            return canonical_smiles(largest), len(frags)
    except (Chem.MolSanitizeException, ValueError, RuntimeError):
        return None, len(frags)


def novelty(valid: Sequence[str], train_smiles: Iterable[str]) -> float:
    """Fraction of the distinct valid SMILES absent from ``train_smiles`` (canonicalised the same
    way; NaN when there is no valid SMILES)."""
    unique = set(valid)
    if not unique:
        return math.nan
    known = set()
    for s in train_smiles:
        mol = Chem.MolFromSmiles(s)
        if mol is None:
            raise ValueError(f"training SMILES {s!r} does not parse; pass the conformer records' "
                             "canonical SMILES")
        known.add(canonical_smiles(mol))
    return sum(1 for s in unique if s not in known) / len(unique)


def score_samples(samples: Sequence[Mapping[str, Any]], *,
                  train_smiles: Iterable[str] | None = None,
                  with_hydrogens: bool = True) -> dict[str, Any]:
    """MiDi's metrics of ``samples`` (see the module docstring) as floats, plus ``valid_smiles``
    (the list, one per valid sample, for :func:`novelty` later); ``novelty`` only with
    ``train_smiles``; the stabilities are NaN when ``with_hydrogens`` is False."""
    n = len(samples)
    if n == 0:
        raise ValueError("score_samples needs at least one sample")
    valid, n_connected, n_atoms, n_stable_atoms, n_stable_mols = [], 0, 0, 0, 0
    for sample in samples:
        smiles, n_frags = valid_smiles(sample)
        if smiles is not None:
            valid.append(smiles)
        n_connected += int(n_frags == 1)
        stable = atom_stability(sample)
        n_atoms += len(stable)
        n_stable_atoms += sum(stable)
        n_stable_mols += int(all(stable))
    out = {
        "n": float(n),
        "validity": len(valid) / n,
        "connected": n_connected / n,
        "uniqueness": len(set(valid)) / len(valid) if valid else 0.0,
        "atom_stability": n_stable_atoms / max(n_atoms, 1) if with_hydrogens else math.nan,
        "molecule_stability": n_stable_mols / n if with_hydrogens else math.nan,
    }
    if train_smiles is not None:
        out["novelty"] = novelty(valid, train_smiles)
    out["valid_smiles"] = valid
    return out


def write_sdf(samples: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Write the samples as one SDF with their 3D coordinates; each entry is named
    ``sample_<i>`` and carries ``index``, ``valid`` (1/0) and ``smiles`` (of the largest fragment,
    empty when invalid). Samples RDKit cannot build at all (``build_molecule`` gives None) have
    no entry, so their indices are absent. Written to a temporary file and renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        writer = Chem.SDWriter(tmp)
        writer.SetKekulize(False)  # invalid aromatic systems must still be written as generated
        for i, sample in enumerate(samples):
            mol = build_molecule(sample)
            if mol is None:
                continue
            smiles, _ = valid_smiles(sample)
            mol.UpdatePropertyCache(strict=False)
            mol.SetProp("_Name", f"sample_{i}")
            mol.SetIntProp("index", i)
            mol.SetIntProp("valid", int(smiles is not None))
            mol.SetProp("smiles", smiles or "")
            writer.write(mol)
        writer.close()
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path

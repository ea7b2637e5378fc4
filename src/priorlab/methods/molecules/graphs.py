"""Molecules as graphs for the joint 3D diffusion model (thesis Sec. 5.3.2: atom coordinates
X in R^{n x 3} and discrete atom types C, here with formal charges and bond classes as MiDi has).

A conformer record (``priorlab.data.molecules``: atomic numbers, formal charges, flattened
positions, bonds listed once) becomes a ``torch_geometric.data.Data`` through an
:class:`AtomVocab`; a list of them becomes a dense padded batch, as MiDi batches graphs::

    vocab = vocab_from_records(records, with_hydrogens=True)     # or QM9_VOCAB / DRUGS_VOCAB
    graphs = [encode_record(r, vocab) for r in records]          # UnknownElementError per molecule
    dense = collate(graphs)                                      # DenseMolecules, (B, N, ...)
    stats = marginals(graphs, vocab)                             # priors of the discrete noise

Bond classes are fixed: 0 none, 1 single, 2 double, 3 triple, 4 aromatic. Aromatic bonds stay
class 4 (RDKit's aromatic flag on the sanitised molecule, as the records store them); MiDi
kekulises instead. Keeping them means a generated aromatic bond is scored by RDKit's own
kekulisation (``quality.build_molecule``) and the stability check accepts any Kekulé valence.

Positions are centred at the unweighted centroid of the kept atoms ("zero centre of mass" in
MiDi/EDM's sense: atom masses play no part), so that the diffusion lives in the zero-CoM subspace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import torch
from torch_geometric.data import Batch, Data
from torch_geometric.utils import to_dense_adj, to_dense_batch

BOND_CLASSES = ("none", "single", "double", "triple", "aromatic")
"""Bond class names by index; 4 is RDKit's aromatic bond."""
N_BOND_CLASSES = len(BOND_CLASSES)


def _periodic_table():
    from rdkit import Chem

    return Chem.GetPeriodicTable()


def element_symbol(z: int) -> str:
    """Element symbol of atomic number ``z`` (``53 -> "I"``)."""
    return _periodic_table().GetElementSymbol(int(z))


def atomic_number(symbol: str) -> int:
    """Atomic number of an element symbol (``"Cl" -> 17``); ValueError for an unknown symbol."""
    try:
        z = _periodic_table().GetAtomicNumber(symbol)
    except RuntimeError:
        z = 0
    if z <= 0:
        raise ValueError(f"{symbol!r} is not an element symbol (e.g. 'C', 'Cl', 'Br')")
    return int(z)


@dataclass(frozen=True)
class AtomVocab:
    """What the model can see: element types, formal charges, and whether hydrogens are atoms."""

    elements: tuple[str, ...]
    """Element symbols in model index order, e.g. ("H", "C", "N", "O", "F")."""
    charges: tuple[int, ...] = (-1, 0, 1)
    """Formal charges in model index order; must contain 0."""
    with_hydrogens: bool = True
    """True: hydrogens are explicit atoms (and "H" must be an element). False: they are dropped
    from every molecule, with their bonds (and "H" must not be an element)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "elements", tuple(str(e) for e in self.elements))
        object.__setattr__(self, "charges", tuple(int(c) for c in self.charges))
        if not self.elements:
            raise ValueError("AtomVocab needs at least one element, e.g. elements=('C', 'N', 'O')")
        if len(set(self.elements)) != len(self.elements):
            raise ValueError(f"AtomVocab elements {self.elements} repeat a symbol")
        if len(set(self.charges)) != len(self.charges) or 0 not in self.charges:
            raise ValueError(f"AtomVocab charges {self.charges} must be distinct and contain 0")
        for e in self.elements:
            atomic_number(e)
        if self.with_hydrogens and "H" not in self.elements:
            raise ValueError("with_hydrogens=True but 'H' is not among the elements "
                             f"{self.elements}: add it, or set with_hydrogens=False")
        if not self.with_hydrogens and "H" in self.elements:
            raise ValueError("with_hydrogens=False drops every hydrogen, so 'H' cannot be an "
                             f"element ({self.elements}): remove it, or set with_hydrogens=True")

    @property
    def n_types(self) -> int:
        return len(self.elements)

    @property
    def n_charges(self) -> int:
        return len(self.charges)

    @property
    def atomic_numbers(self) -> tuple[int, ...]:
        return tuple(atomic_number(e) for e in self.elements)

    def to_dict(self) -> dict[str, Any]:
        return {"elements": list(self.elements), "charges": list(self.charges),
                "with_hydrogens": self.with_hydrogens}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "AtomVocab":
        return cls(tuple(d["elements"]), tuple(d["charges"]), bool(d["with_hydrogens"]))


QM9_VOCAB = AtomVocab(("H", "C", "N", "O", "F"), (-1, 0, 1), with_hydrogens=True)
"""MiDi's QM9 with explicit hydrogens."""
DRUGS_VOCAB = AtomVocab(("C", "N", "O", "F", "S", "Cl", "Br"), (-1, 0, 1), with_hydrogens=False)
"""MOSES' heavy atoms (its filter keeps C, N, O, F, S, Cl, Br and H), hydrogens implicit."""


class UnknownElementError(ValueError):
    """A molecule has an element the model's vocabulary lacks (the model never saw it)."""


class UnknownChargeError(ValueError):
    """A molecule has a formal charge the model's vocabulary lacks."""


def _ok_records(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in records if r.get("status", "ok") == "ok"]


def vocab_from_records(records: Iterable[Mapping[str, Any]], with_hydrogens: bool) -> AtomVocab:
    """The elements (ordered by atomic number) and charges (with 0) seen in successful records;
    hydrogens count only when ``with_hydrogens``."""
    zs: set[int] = set()
    charges: set[int] = {0}
    for r in _ok_records(records):
        for z, q in zip(r["atomic_numbers"], r["formal_charges"]):
            if z == 1 and not with_hydrogens:
                continue
            zs.add(int(z))
            charges.add(int(q))
    if with_hydrogens:
        zs.add(1)
    if not zs:
        raise ValueError("vocab_from_records: no successful record with an atom the model keeps; "
                         "pass conformer records with status 'ok'")
    return AtomVocab(tuple(element_symbol(z) for z in sorted(zs)), tuple(sorted(charges)),
                     with_hydrogens)


def _check_record(record: Mapping[str, Any]) -> tuple[int, str]:
    smiles = record.get("smiles", "?")
    if record.get("status", "ok") != "ok":
        raise ValueError(f"record {smiles!r} is a failed conformer record "
                         f"({record.get('reason')}); keep records with status == 'ok' to encode")
    n = len(record["atomic_numbers"])
    if n == 0:
        raise ValueError(f"record {smiles!r} has no atoms")
    if len(record["formal_charges"]) != n or len(record["positions"]) != 3 * n:
        raise ValueError(
            f"record {smiles!r}: {n} atoms but {len(record['formal_charges'])} charges and "
            f"{len(record['positions'])} coordinates (expected {n} and {3 * n}, flattened xyz)")
    m = len(record["bond_src"])
    if len(record["bond_dst"]) != m or len(record["bond_type"]) != m:
        raise ValueError(f"record {smiles!r}: bond_src, bond_dst and bond_type differ in length")
    return n, smiles


def encode_record(record: Mapping[str, Any], vocab: AtomVocab) -> Data:
    """One conformer record -> ``Data(atom, charge, pos, edge_index, edge_attr)``.

    ``atom`` and ``charge`` are indices into ``vocab.elements`` / ``vocab.charges``; ``pos`` is
    centred at zero; ``edge_index`` holds each bond in both directions with its class in
    ``edge_attr``. Hydrogens and their bonds are dropped unless ``vocab.with_hydrogens``.
    Raises :class:`UnknownElementError` / :class:`UnknownChargeError` for the first atom the
    vocabulary cannot encode (one error per molecule).
    """
    n, smiles = _check_record(record)
    z = torch.as_tensor(record["atomic_numbers"], dtype=torch.long)
    q = torch.as_tensor(record["formal_charges"], dtype=torch.long)
    pos = torch.as_tensor(record["positions"], dtype=torch.float32).reshape(n, 3)
    keep = torch.ones(n, dtype=torch.bool) if vocab.with_hydrogens else z != 1
    if not bool(keep.any()):
        raise ValueError(f"record {smiles!r} has no heavy atom; a model without hydrogens "
                         "cannot encode it")
    element_index = {zz: i for i, zz in enumerate(vocab.atomic_numbers)}
    charge_index = {c: i for i, c in enumerate(vocab.charges)}
    atoms, charges = [], []
    for zi, qi in zip(z[keep].tolist(), q[keep].tolist()):
        if zi not in element_index:
            raise UnknownElementError(
                f"molecule {smiles!r}: element {element_symbol(zi)} (Z={zi}) is not in the "
                f"model's vocabulary ({', '.join(vocab.elements)}); the model never saw it. "
                "Leave this molecule out, or pretrain with a vocabulary that has it")
        if qi not in charge_index:
            raise UnknownChargeError(
                f"molecule {smiles!r}: formal charge {qi:+d} on {element_symbol(zi)} is not in the "
                f"model's vocabulary (charges {vocab.charges}); the model never saw it. "
                "Leave this molecule out, or pretrain with a vocabulary that has it")
        atoms.append(element_index[zi])
        charges.append(charge_index[qi])

    new_index = torch.full((n,), -1, dtype=torch.long)
    new_index[keep] = torch.arange(int(keep.sum()))
    src = torch.as_tensor(record["bond_src"], dtype=torch.long)
    dst = torch.as_tensor(record["bond_dst"], dtype=torch.long)
    btype = torch.as_tensor(record["bond_type"], dtype=torch.long)
    if src.numel() and (min(int(src.min()), int(dst.min())) < 0
                        or max(int(src.max()), int(dst.max())) >= n or bool((src == dst).any())):
        raise ValueError(f"record {smiles!r}: a bond index is outside 0..{n - 1} or a self bond")
    if btype.numel() and (int(btype.min()) < 1 or int(btype.max()) >= N_BOND_CLASSES):
        raise ValueError(f"record {smiles!r}: bond types must be 1 single, 2 double, 3 triple or "
                         f"4 aromatic, got {sorted(set(btype.tolist()))}")
    kept_bond = keep[src] & keep[dst]
    src, dst, btype = new_index[src[kept_bond]], new_index[dst[kept_bond]], btype[kept_bond]

    pos = pos[keep]
    pos = pos - pos.mean(dim=0, keepdim=True)
    return Data(
        atom=torch.tensor(atoms, dtype=torch.long),
        charge=torch.tensor(charges, dtype=torch.long),
        pos=pos,
        edge_index=torch.stack([torch.cat([src, dst]), torch.cat([dst, src])]),
        edge_attr=torch.cat([btype, btype]),
        num_nodes=len(atoms),
    )


@dataclass
class DenseMolecules:
    """A padded batch of B molecules of at most N atoms."""

    pos: torch.Tensor
    """(B, N, 3) float; padding atoms at 0."""
    atom: torch.Tensor
    """(B, N) long index into the vocabulary's elements; 0 on padding."""
    charge: torch.Tensor
    """(B, N) long index into the vocabulary's charges; 0 on padding."""
    bond: torch.Tensor
    """(B, N, N) long bond class, symmetric, 0 on the diagonal and on padding."""
    mask: torch.Tensor
    """(B, N) bool, True on real atoms."""

    @property
    def n_atoms(self) -> torch.Tensor:
        """(B,) long number of real atoms per molecule."""
        return self.mask.sum(dim=1)

    def __len__(self) -> int:
        return self.mask.shape[0]

    def to(self, device: torch.device | str) -> "DenseMolecules":
        return DenseMolecules(self.pos.to(device), self.atom.to(device), self.charge.to(device),
                              self.bond.to(device), self.mask.to(device))

    def select(self, index: torch.Tensor | Sequence[int]) -> "DenseMolecules":
        """The molecules at ``index`` (same padding N)."""
        return DenseMolecules(self.pos[index], self.atom[index], self.charge[index],
                              self.bond[index], self.mask[index])


def to_dense(batch: Batch) -> DenseMolecules:
    """A PyG ``Batch`` of encoded molecules -> :class:`DenseMolecules` (N: the largest size)."""
    pos, mask = to_dense_batch(batch.pos, batch.batch)
    atom, _ = to_dense_batch(batch.atom, batch.batch, fill_value=0)
    charge, _ = to_dense_batch(batch.charge, batch.batch, fill_value=0)
    n = mask.shape[1]
    bond = to_dense_adj(batch.edge_index, batch.batch, edge_attr=batch.edge_attr.float(),
                        max_num_nodes=n).round().long()
    return DenseMolecules(pos=pos, atom=atom, charge=charge, bond=bond, mask=mask)


def collate(data_list: Sequence[Data]) -> DenseMolecules:
    """Encoded molecules -> one dense padded batch."""
    if not data_list:
        raise ValueError("collate needs at least one molecule")
    return to_dense(Batch.from_data_list(list(data_list)))


def marginals(data_list: Sequence[Data], vocab: AtomVocab) -> dict[str, torch.Tensor]:
    """Empirical distributions over ``data_list``: ``atom`` (n_types,), ``charge`` (n_charges,),
    ``bond`` (5,) over all ordered pairs of distinct atoms ("none" included), and ``n_atoms``
    (max_atoms + 1,), the distribution of molecule sizes (index = number of atoms)."""
    if not data_list:
        raise ValueError("marginals needs at least one encoded molecule")
    atom = torch.zeros(vocab.n_types, dtype=torch.float64)
    charge = torch.zeros(vocab.n_charges, dtype=torch.float64)
    bond = torch.zeros(N_BOND_CLASSES, dtype=torch.float64)
    sizes = []
    for d in data_list:
        n = int(d.num_nodes)
        sizes.append(n)
        atom += torch.bincount(d.atom, minlength=vocab.n_types).double()
        charge += torch.bincount(d.charge, minlength=vocab.n_charges).double()
        # edge_index holds both directions, so these are ordered-pair counts already.
        counts = torch.bincount(d.edge_attr, minlength=N_BOND_CLASSES).double()
        counts[0] = n * (n - 1) - counts[1:].sum()
        bond += counts
    size = torch.bincount(torch.tensor(sizes)).double()
    if bond.sum() == 0:
        # Only single atoms: no pair exists, "none" is the only sensible prior.
        bond[0] = 1.0
    return {"atom": (atom / atom.sum()).float(), "charge": (charge / charge.sum()).float(),
            "bond": (bond / bond.sum()).float(), "n_atoms": (size / size.sum()).float()}

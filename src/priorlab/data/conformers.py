"""Conformers for thesis Ch. 5: RDKit ETKDGv3 + MMFF94 3D geometries and their Parquet cache.

The input representation of Sec. 5.3.2: each molecule enters the diffusion model as the
coordinates X and atom types C (with bonds) of an embedded conformer (Eq. 5.1-5.4). This
module makes those conformers and keeps them, in pure RDKit/pyarrow (no torch, no Ray):

* :class:`ConformerParams`: how conformers are generated; every field enters the cache key
  (:func:`conformer_key`), so changing any parameter never reuses stale geometry.
* :func:`generate_conformers`: ETKDGv3 + MMFF94 conformers as plain records (below), a pure
  function of the SMILES and :class:`ConformerParams`; bad molecules give a failure record.
* :func:`records_to_mol`: an ok record back as an RDKit molecule with its conformer.
* :class:`ConformerCache`: those records in Parquet part files, written atomically;
  :func:`cache_lookup` maps SMILES to their cached records.

SMILES are parsed (salts stripped) by :func:`priorlab.data.molecules.parse_smiles`; that module
also re-exports every public name here, so ``from priorlab.data.molecules import ...`` works too.

A conformer record is a dict (a Parquet row): ``key`` (:func:`conformer_key`), ``smiles``
(canonical, after salt stripping), ``conf_id``, ``atomic_numbers`` / ``formal_charges`` (every
atom *including* explicit hydrogens, RDKit order), ``positions`` (flattened n*3, Angstrom),
``bond_src`` < ``bond_dst`` and ``bond_type`` (1 single, 2 double, 3 triple, 4 aromatic), ``energy``
(MMFF94 after optimisation; nan when MMFF94 was not used), ``forcefield`` (``mmff94``/``uff``/
``none``), ``status`` (``ok``) and ``reason`` (``""``). A failure is ``{key, smiles (as given),
status="failed", reason}``.

Usage::

    from priorlab.data.conformers import ConformerCache, ConformerParams, cache_lookup, ...
    from priorlab.data.molecules import load_moleculenet
    from priorlab.data.root import resolve_cache_dir

    table = load_moleculenet("bace", data_root)
    params = ConformerParams(n_conformers=1, seed=0)
    cache = ConformerCache(resolve_cache_dir(data_root, "conformers"))
    todo = cache.missing(table.smiles, params)
    cache.put([r for s in todo for r in generate_conformers(s, params)])
    records = cache_lookup(cache, table.smiles, params)   # {smiles: [record, ...]}
    mol = records_to_mol(records[table.smiles[0]][0])     # RDKit Mol with explicit H + 3D
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import rdDistGeom, rdForceFieldHelpers
from rdkit.Geometry import Point3D

# parse_smiles, MoleculeInputError and _rdkit_log come from priorlab.data.molecules, imported
# inside the functions that use them: molecules re-exports this module, so a top-level import
# would be circular.

# ----------------------------------------------------------------------------- conformers

@dataclass(frozen=True)
class ConformerParams:
    """How conformers are generated; every field enters the cache key (:meth:`key`)."""

    n_conformers: int = 1
    """Conformers requested per molecule (``EmbedMultipleConfs``); pruning may return fewer."""
    seed: int = 0
    """Same seed, same coordinates. ETKDG gets ``randomSeed=seed + 1``: RDKit's generator makes
    seeds 0 and 1 (and 2**31-1) identical, so 0 would otherwise repeat 1."""
    max_attempts: int = 200
    """ETKDG ``maxIterations``: embedding attempts per conformer before giving up."""
    mmff: bool = True
    """Optimise with MMFF94 (UFF when MMFF94 lacks parameters); False keeps the ETKDG geometry."""
    max_mmff_iters: int = 500
    """Force-field optimisation iterations (RDKit's default is 200)."""
    prune_rms: float = 0.5
    """ETKDG ``pruneRmsThresh`` (Angstrom, heavy atoms): drops near-duplicate conformers; <0 off."""
    timeout_s: int = 30
    """ETKDG ``timeout``: seconds per conformer of one fragment; 0 means none."""

    def __post_init__(self):
        for name in ("n_conformers", "max_attempts", "max_mmff_iters"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ConformerParams.{name}={getattr(self, name)}: must be >= 1")
        if not 0 <= self.seed < 2**31 - 2:
            raise ValueError(f"ConformerParams.seed={self.seed}: must be in [0, 2**31 - 3]")
        if self.timeout_s < 0:
            raise ValueError(f"ConformerParams.timeout_s={self.timeout_s}: must be >= 0 (0: none)")

    def key(self) -> str:
        """``name=value`` of every field, sorted by name: changes whenever any parameter does."""
        return ",".join(f"{f.name}={getattr(self, f.name)!r}"
                        for f in sorted(dataclasses.fields(self), key=lambda f: f.name))


def conformer_key(canonical_smiles: str, params: ConformerParams) -> str:
    """Cache key: first 24 hex digits of sha256 of ``f"{canonical_smiles}|{params.key()}"``."""
    return hashlib.sha256(f"{canonical_smiles}|{params.key()}".encode()).hexdigest()[:24]


_BOND_CODE = {Chem.BondType.SINGLE: 1, Chem.BondType.DOUBLE: 2, Chem.BondType.TRIPLE: 3}
_BOND_TYPE = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE,
              4: Chem.BondType.AROMATIC}


def _failure(key: str, smiles: str, reason: str) -> dict[str, Any]:
    return {"key": key, "smiles": smiles, "status": "failed", "reason": reason}


def _embed(mol_h: Chem.Mol, params: ConformerParams) -> list[int]:
    etkdg = rdDistGeom.ETKDGv3()
    etkdg.randomSeed = int(params.seed) + 1  # see ConformerParams.seed
    etkdg.maxIterations = int(params.max_attempts)
    etkdg.pruneRmsThresh = float(params.prune_rms)
    etkdg.timeout = int(params.timeout_s)
    etkdg.numThreads = 1  # one thread: the same conformers on every machine
    ids = list(rdDistGeom.EmbedMultipleConfs(mol_h, int(params.n_conformers), etkdg))
    if not ids:  # random starting coordinates rescue strained/caged systems
        etkdg.useRandomCoords = True
        ids = list(rdDistGeom.EmbedMultipleConfs(mol_h, int(params.n_conformers), etkdg))
    return ids


def _optimise(mol_h: Chem.Mol, params: ConformerParams) -> tuple[str, list[float]]:
    n = mol_h.GetNumConformers()
    if not params.mmff:
        return "none", [math.nan] * n
    if rdForceFieldHelpers.MMFFHasAllMoleculeParams(mol_h):
        out = rdForceFieldHelpers.MMFFOptimizeMoleculeConfs(
            mol_h, numThreads=1, maxIters=int(params.max_mmff_iters))
        return "mmff94", [float(e) for _, e in out]
    if rdForceFieldHelpers.UFFHasAllMoleculeParams(mol_h):
        rdForceFieldHelpers.UFFOptimizeMoleculeConfs(mol_h, numThreads=1,
                                                     maxIters=int(params.max_mmff_iters))
        return "uff", [math.nan] * n  # ``energy`` is an MMFF energy by contract
    return "none", [math.nan] * n


def generate_conformers(smiles: str, params: ConformerParams, *, salts: str = "largest",
                        max_heavy_atoms: int = 150) -> list[dict[str, Any]]:
    """Conformer records of ``smiles`` (see the module docstring); never raises for a bad molecule.

    Parse (salts stripped), add hydrogens, embed with ETKDGv3 (seeded by ``params.seed``; once
    more from random coordinates if that fails), optimise with MMFF94 (else UFF, else none).
    A molecule that cannot be parsed or embedded gives one failure record with the reason.
    """
    from priorlab.data.molecules import MoleculeInputError, _rdkit_log, parse_smiles

    try:
        parsed = parse_smiles(smiles, max_heavy_atoms=max_heavy_atoms, salts=salts)
    except MoleculeInputError as err:
        raw = smiles.strip() if isinstance(smiles, str) else str(smiles)
        return [_failure(conformer_key(raw, params), smiles, f"{err.kind}: {err}")]
    key = conformer_key(parsed.smiles, params)
    with rdBase.BlockLogs():  # canonical atom order: every spelling of a molecule embeds alike
        mol = Chem.MolFromSmiles(parsed.smiles)
    if mol is None:
        return [_failure(key, smiles, f"RDKit cannot re-read its canonical SMILES {parsed.smiles}")]
    odd = sorted({str(b.GetBondType()) for b in mol.GetBonds()
                  if not b.GetIsAromatic() and b.GetBondType() not in _BOND_CODE})
    if odd:
        return [_failure(key, smiles, f"bond type(s) {', '.join(odd)} cannot be stored as "
                         "single/double/triple/aromatic")]
    mol_h = Chem.AddHs(mol)
    with rdBase.BlockLogs(), rdBase.CaptureErrorLog() as log:  # into reasons, not onto stderr
        try:
            ids = _embed(mol_h, params)
            forcefield, energies = _optimise(mol_h, params) if ids else ("none", [])
        except Exception as err:  # noqa: BLE001 - RDKit raises many types; recorded, not swallowed
            return [_failure(key, smiles, f"RDKit failed on {parsed.smiles}: "
                             f"{type(err).__name__}: {err}")]
    if not ids:
        detail = _rdkit_log(log.messages)
        return [_failure(key, smiles, f"ETKDGv3 could not embed {parsed.smiles} in "
                         f"max_attempts={params.max_attempts} attempts, nor from random "
                         f"coordinates{(' (' + detail + ')') if detail else ''}; the geometry may be "
                         "impossible (strained ring) or need more attempts")]

    atoms = list(mol_h.GetAtoms())
    numbers = [a.GetAtomicNum() for a in atoms]
    charges = [a.GetFormalCharge() for a in atoms]
    src, dst, types = [], [], []
    for b in mol_h.GetBonds():
        i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        src.append(min(i, j))
        dst.append(max(i, j))
        types.append(4 if b.GetIsAromatic() else _BOND_CODE[b.GetBondType()])
    records = []
    for conf_id, (cid, energy) in enumerate(zip(ids, energies)):
        positions = mol_h.GetConformer(cid).GetPositions().astype(np.float64)
        records.append({
            "key": key, "smiles": parsed.smiles, "conf_id": conf_id,
            "atomic_numbers": list(numbers), "formal_charges": list(charges),
            "positions": positions.reshape(-1).tolist(),
            "bond_src": list(src), "bond_dst": list(dst), "bond_type": list(types),
            "energy": energy, "forcefield": forcefield, "status": "ok", "reason": "",
        })
    return records


def records_to_mol(record: dict[str, Any]) -> Chem.Mol:
    """The sanitised RDKit molecule (explicit H) of one ok record, with its conformer.

    Stereo tags are assigned from the 3D coordinates, so the molecule has the chirality of the
    embedded geometry.
    """
    if record.get("status", "ok") != "ok":
        raise ValueError(f"record {record.get('key')} is a failure ({record.get('reason')}): it has "
                         "no atoms to rebuild")
    rw = Chem.RWMol()
    for z, q in zip(record["atomic_numbers"], record["formal_charges"]):
        atom = Chem.Atom(int(z))
        atom.SetFormalCharge(int(q))
        atom.SetNoImplicit(True)  # every hydrogen is an explicit atom of the record
        rw.AddAtom(atom)
    for i, j, t in zip(record["bond_src"], record["bond_dst"], record["bond_type"]):
        rw.AddBond(int(i), int(j), _BOND_TYPE[int(t)])
        if int(t) == 4:
            rw.GetBondBetweenAtoms(int(i), int(j)).SetIsAromatic(True)
            rw.GetAtomWithIdx(int(i)).SetIsAromatic(True)
            rw.GetAtomWithIdx(int(j)).SetIsAromatic(True)
    xyz = np.asarray(record["positions"], dtype=np.float64).reshape(-1, 3)
    conf = Chem.Conformer(len(xyz))
    for i, (x, y, z) in enumerate(xyz):
        conf.SetAtomPosition(i, Point3D(float(x), float(y), float(z)))
    mol = rw.GetMol()
    mol.AddConformer(conf, assignId=True)
    Chem.SanitizeMol(mol)
    Chem.AssignStereochemistryFrom3D(mol)
    return mol


# ----------------------------------------------------------------------------- Parquet cache

class CorruptCacheError(RuntimeError):
    """A conformer cache part file cannot be read."""


_FAILURE_FIELDS = ("key", "smiles", "status", "reason")
_DEFAULTS = {"conf_id": -1, "atomic_numbers": [], "formal_charges": [], "positions": [],
             "bond_src": [], "bond_dst": [], "bond_type": [], "energy": math.nan,
             "forcefield": "none", "reason": ""}


def complete_record(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with every column of the cache's schema (a failure has no atoms): Parquet parts
    and Ray Data blocks need one schema."""
    return {**_DEFAULTS, "status": "ok", **record}


def _schema():
    import pyarrow as pa

    ints = pa.list_(pa.int32())
    return pa.schema([
        ("key", pa.string()), ("smiles", pa.string()), ("conf_id", pa.int32()),
        ("atomic_numbers", ints), ("formal_charges", ints),
        ("positions", pa.list_(pa.float64())),  # float64: cached coordinates equal generated ones
        ("bond_src", ints), ("bond_dst", ints), ("bond_type", ints),
        ("energy", pa.float64()), ("forcefield", pa.string()),
        ("status", pa.string()), ("reason", pa.string()),
    ])


class ConformerCache:
    """Conformer records in ``root/part-<uuid>.parquet`` files (one per :meth:`put`).

    A part file is written to a temporary file in ``root`` and renamed into place, so a killed
    writer never leaves a partial part, and concurrent writers never touch each other's files.
    Where a key is in several parts (two writers raced), ok records beat failures, then the
    part with the smallest name wins. Where the cache lives is up to the caller.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._index: dict[str, set[str]] = {}  # part file name -> keys (parts are immutable)

    def _parts(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(self.root.glob("part-*.parquet"))

    def _read(self, path: Path, columns=None):
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path, columns=columns, schema=_schema())
        except Exception as err:  # noqa: BLE001 - every reader error means the same fix
            raise CorruptCacheError(
                f"conformer cache part file {path} cannot be read ({type(err).__name__}: {err}). "
                f"Delete that file (rm '{path}'); the other part files are kept and its molecules "
                "are generated again on the next run.") from err

    def _refresh(self) -> dict[str, set[str]]:
        parts = {p.name: p for p in self._parts()}
        for name in list(self._index):
            if name not in parts:
                del self._index[name]
        for name, path in parts.items():
            if name not in self._index:
                self._index[name] = set(self._read(path, ["key"]).column("key").to_pylist())
        return self._index

    def put(self, records: Iterable[dict[str, Any]]) -> Path | None:
        """Write ``records`` as one new part file (atomically); return its path (None if empty)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = []
        for r in records:
            missing = [f for f in _FAILURE_FIELDS[:3] if f not in r]
            if missing or (r["status"] == "ok" and any(f not in r for f in _DEFAULTS)):
                raise ValueError(f"not a conformer record (fields {sorted(r)}): see the record "
                                 "format in priorlab.data.molecules")
            rows.append(complete_record(r))
        if not rows:
            return None
        table = pa.Table.from_pylist(rows, schema=_schema())
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / f"part-{uuid.uuid4().hex}.parquet"
        fd, tmp_name = tempfile.mkstemp(prefix=".part-", suffix=".tmp", dir=self.root)
        try:
            with os.fdopen(fd, "wb") as fh:
                pq.write_table(table, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp_name, final)
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
        self._index[final.name] = {r["key"] for r in rows}
        return final

    def get(self, keys: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        """Records of each cached key of ``keys``: ok ones sorted by ``conf_id``, or the failure."""
        wanted = set(keys)
        index = self._refresh()
        found: dict[str, list[dict[str, Any]]] = {}
        for name in sorted(index):
            if not wanted & index[name]:
                continue
            per_key: dict[str, list[dict[str, Any]]] = {}
            for r in self._read(self.root / name).to_pylist():
                if r["key"] in wanted:
                    per_key.setdefault(r["key"], []).append(r)
            for k, recs in per_key.items():
                ok = [r for r in recs if r["status"] == "ok"]
                have_ok = k in found and found[k][0]["status"] == "ok"
                if have_ok or (k in found and not ok):
                    continue
                found[k] = (sorted(ok, key=lambda r: r["conf_id"]) if ok
                            else [{f: recs[0][f] for f in _FAILURE_FIELDS}])
        return found

    def keys(self) -> set[str]:
        return set().union(*self._refresh().values())

    def compact(self) -> Path | None:
        """Merge every part file into one (one record set per key); return it.

        Many small writes (a Ray Data block each) make many parts; reading them all is what
        gets slow. The merged part is written atomically before the old parts are deleted, and
        parts another writer adds meanwhile are left alone. Holds every record in memory once.
        """
        parts = self._parts()
        if len(parts) < 2:
            return parts[0] if parts else None
        merged = self.put(r for recs in self.get(self.keys()).values() for r in recs)
        for path in parts:
            path.unlink(missing_ok=True)
            self._index.pop(path.name, None)
        return merged

    def __len__(self) -> int:
        return len(self.keys())

    def __contains__(self, key: str) -> bool:
        return key in self.keys()

    def missing(self, smiles: Sequence[str], params: ConformerParams, *, salts: str = "largest",
                max_heavy_atoms: int = 150) -> list[str]:
        """SMILES of ``smiles`` with nothing cached for ``params`` (first of each key, in order).

        Unparseable SMILES are keyed by their stripped text, so they are missing until their
        failure record has been put once.
        """
        cached = self.keys()
        out: dict[str, str] = {}
        for s, k in zip(smiles, _keys_of(smiles, params, salts, max_heavy_atoms)):
            if k not in cached and k not in out:
                out[k] = s
        return list(out.values())


def _keys_of(smiles: Sequence[str], params: ConformerParams, salts: str,
             max_heavy_atoms: int) -> list[str]:
    from priorlab.data.molecules import MoleculeInputError, parse_smiles

    keys = []
    for s in smiles:
        try:
            canonical = parse_smiles(s, max_heavy_atoms=max_heavy_atoms, salts=salts).smiles
        except MoleculeInputError:
            canonical = s.strip() if isinstance(s, str) else str(s)
        keys.append(conformer_key(canonical, params))
    return keys


def cached_records(cache: ConformerCache, smiles: Sequence[str], params: ConformerParams, *,
                   on_missing=None) -> list[list[dict[str, Any]]]:
    """The cached records of each SMILES of ``smiles``, in order, after embedding the missing ones
    in this process and caching them (their failures included: a molecule without a conformer
    gets its failure record). ``on_missing(n)`` is called first when n > 0 are missing."""
    todo = cache.missing(list(smiles), params)
    if todo:
        if on_missing is not None:
            on_missing(len(todo))
        cache.put([r for s in todo for r in generate_conformers(s, params)])
    found = cache_lookup(cache, smiles, params)
    return [found.get(s, []) for s in smiles]


def cache_lookup(cache: ConformerCache, smiles: Sequence[str], params: ConformerParams, *,
                 salts: str = "largest", max_heavy_atoms: int = 150) -> dict[str, list[dict[str, Any]]]:
    """``{smiles: records}`` for each SMILES of ``smiles`` whose key is cached (see :meth:`ConformerCache.get`)."""
    keys = _keys_of(smiles, params, salts, max_heavy_atoms)
    found = cache.get(keys)
    return {s: found[k] for s, k in zip(smiles, keys) if k in found}

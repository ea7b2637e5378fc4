"""Molecules for thesis Ch. 5: SMILES parsing, MoleculeNet and pretraining sets, splits.

Ch. 5 feeds 3D conformers of molecules through a pretrained MiDi-style diffusion model
(Sec. 5.3.1-5.3.3: coordinates X and atom types C of Eq. 5.1-5.4) and evaluates the pooled
features on property prediction (Sec. 5.3.4, 5.4). This module supplies the molecules and their
splits, in pure RDKit/pandas (no torch, no Ray); their conformers and the Parquet conformer cache
are in :mod:`priorlab.data.conformers`, whose public names are re-exported here (:data:`__all__`):

* :func:`parse_smiles`: one SMILES -> sanitised, canonical molecule, or a
  :class:`MoleculeInputError` whose ``kind`` says what was wrong (``empty``, ``unparseable``,
  ``too_large``, ``salt``, ``element``). Salts and counter-ions (``'.'``-separated fragments)
  are by default stripped to the largest organic fragment, and what was dropped is recorded.
* :func:`load_moleculenet`: the canonical MoleculeNet CSVs under ``<data root>/moleculenet/``
  (:data:`MOLECULENET`) as a :class:`MoleculeTable`; unparseable rows are never dropped silently
  but listed in ``table.failures`` with their row numbers.
* :func:`load_pretraining_smiles`: QM9 (a fixed seeded 90/5/5 split: it has no official one) and
  MOSES (its own train/test/test_scaffolds files).
* :func:`scaffold_split` (chemprop's balanced Bemis-Murcko split) and :func:`random_split`.
* re-exported from :mod:`priorlab.data.conformers` (the conformer record format is described
  there): :class:`ConformerParams`, :func:`generate_conformers`, :class:`ConformerCache`,
  :func:`cache_lookup`, :func:`records_to_mol`, :func:`conformer_key`, :class:`CorruptCacheError`.

Usage::

    table = load_moleculenet("bace", data_root)          # table.smiles, .labels, .failures
    print(table.summary())
    train, valid, test = scaffold_split(table.smiles, seed=0)
    params = ConformerParams(n_conformers=1, seed=0)
    cache = ConformerCache(resolve_cache_dir(data_root, "conformers"))
    todo = cache.missing(table.smiles, params)
    cache.put([r for s in todo for r in generate_conformers(s, params)])
    records = cache_lookup(cache, table.smiles, params)   # {smiles: [record, ...]}
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem.MolStandardize import rdMolStandardize
from rdkit.Chem.Scaffolds import MurckoScaffold

# Conformers moved to their own module; re-exported so `from priorlab.data.molecules import X`
# keeps working. conformers imports parse_smiles from here only inside functions (no cycle).
from priorlab.data.conformers import (
    ConformerCache,
    ConformerParams,
    CorruptCacheError,
    cache_lookup,
    cached_records,
    complete_record,
    conformer_key,
    generate_conformers,
    records_to_mol,
)
from priorlab.data.root import MissingDataError

__all__ = [
    # SMILES parsing
    "MAX_SMILES_CHARS", "INPUT_KINDS", "SALT_MODES", "MoleculeInputError", "ParsedMolecule",
    "parse_smiles",
    # MoleculeNet and pretraining sets
    "MoleculeNetSpec", "MOLECULENET", "MoleculeTable", "load_moleculenet",
    "PRETRAINING", "QM9_SPLIT_SEED", "qm9_split_rows", "load_pretraining_smiles",
    # splits
    "scaffold_of", "scaffold_split", "random_split",
    # re-exported from priorlab.data.conformers
    "ConformerParams", "conformer_key", "generate_conformers", "records_to_mol",
    "CorruptCacheError", "ConformerCache", "cache_lookup", "cached_records", "complete_record",
]

# ----------------------------------------------------------------------------- parsing

MAX_SMILES_CHARS = 2000
"""Longer strings are refused before RDKit sees them: parsing and embedding time grow with size."""
INPUT_KINDS = ("empty", "unparseable", "too_large", "salt", "element")
SALT_MODES = ("largest", "error")


class MoleculeInputError(ValueError):
    """A SMILES string priorlab will not use; ``kind`` is one of :data:`INPUT_KINDS`."""

    def __init__(self, kind: str, message: str, smiles: Any = None):
        if kind not in INPUT_KINDS:
            raise ValueError(f"kind={kind!r}: choose one of {INPUT_KINDS}")
        super().__init__(message)
        self.kind = kind
        self.smiles = smiles

    def __reduce__(self):  # picklable: raised inside worker processes
        return (type(self), (self.kind, str(self), self.smiles))


@dataclass(frozen=True, eq=False)
class ParsedMolecule:
    input: str
    """The SMILES as given."""
    smiles: str
    """RDKit canonical (isomeric) SMILES of ``mol``."""
    mol: Chem.Mol
    """Sanitised molecule without explicit hydrogens (the kept fragment)."""
    stripped: tuple[str, ...] = ()
    """Canonical SMILES of the fragments that were dropped (salts, counter-ions, solvent)."""


def _rdkit_log(messages: str) -> str:
    lines = [re.sub(r"^\[\d\d:\d\d:\d\d\] ", "", ln).strip() for ln in messages.splitlines()]
    return "; ".join(ln for ln in lines if ln)


def parse_smiles(smiles: str, *, max_heavy_atoms: int = 150, salts: str = "largest",
                 allowed_elements: set[str] | None = None) -> ParsedMolecule:
    """Parse and sanitise ``smiles``; raise :class:`MoleculeInputError` saying what is wrong.

    ``salts="largest"`` keeps the largest organic fragment of a multi-fragment SMILES (RDKit's
    ``LargestFragmentChooser(preferOrganic=True)``; an all-inorganic one keeps its largest
    fragment) and records the rest in ``stripped``; ``salts="error"`` refuses it (kind ``salt``).
    ``max_heavy_atoms`` applies to the kept fragment. ``allowed_elements`` (symbols; hydrogen is
    always allowed) refuses molecules with any other element (kind ``element``).
    """
    if salts not in SALT_MODES:
        raise ValueError(f"salts={salts!r}: choose one of {SALT_MODES}")
    if smiles is None or (isinstance(smiles, float) and math.isnan(smiles)):
        raise MoleculeInputError("empty", "missing SMILES (an empty cell): give the molecule's "
                                 "SMILES or drop the row", smiles)
    if not isinstance(smiles, str):
        raise TypeError(f"SMILES must be a string, got {type(smiles).__name__} {smiles!r}")
    text = smiles.strip()
    if not text:
        raise MoleculeInputError("empty", "empty SMILES: give the molecule's SMILES or drop the row",
                                 smiles)
    if len(text) > MAX_SMILES_CHARS:
        raise MoleculeInputError("too_large", f"SMILES of {len(text)} characters (starts "
                                 f"{text[:40]!r}) is longer than the {MAX_SMILES_CHARS} allowed: "
                                 "not a small molecule; drop it", smiles)
    # RDKit's reason goes into the error, not onto stderr; its warnings are dropped
    with rdBase.BlockLogs(), rdBase.CaptureErrorLog() as log:
        mol = Chem.MolFromSmiles(text)
    if mol is None:
        why = _rdkit_log(log.messages) or "no reason logged"
        raise MoleculeInputError("unparseable", f"RDKit could not parse SMILES {text!r}: {why}. "
                                 "Fix the SMILES or drop the row", smiles)
    if mol.GetNumAtoms() == 0:
        raise MoleculeInputError("empty", f"SMILES {text!r} has no atoms", smiles)

    stripped: tuple[str, ...] = ()
    fragments = Chem.GetMolFrags(mol, asMols=True)
    if len(fragments) > 1:
        names = [Chem.MolToSmiles(f) for f in fragments]
        if salts == "error":
            raise MoleculeInputError("salt", f"SMILES {text!r} has {len(names)} fragments "
                                     f"({', '.join(names)}): pass salts='largest' to keep the "
                                     "largest organic fragment, or give one molecule", smiles)
        mol = rdMolStandardize.LargestFragmentChooser(preferOrganic=True).choose(mol)
        kept = Chem.MolToSmiles(mol)
        rest = list(names)
        if kept in rest:
            rest.remove(kept)
        else:  # the chooser rewrote the fragment: drop the one with the most atoms instead
            rest.pop(int(np.argmax([f.GetNumAtoms() for f in fragments])))
        stripped = tuple(rest)
    canonical = Chem.MolToSmiles(mol)

    heavy = mol.GetNumHeavyAtoms()
    if heavy > max_heavy_atoms:
        raise MoleculeInputError("too_large", f"{canonical[:60]!r} has {heavy} heavy atoms, more "
                                 f"than max_heavy_atoms={max_heavy_atoms}; raise the cap or drop "
                                 "it", smiles)
    if allowed_elements is not None:
        allowed = set(allowed_elements) | {"H"}
        found = sorted({a.GetSymbol() for a in mol.GetAtoms()} - allowed)
        if found:
            raise MoleculeInputError("element", f"{canonical!r} contains element(s) "
                                     f"{', '.join(found)}, not in the allowed set "
                                     f"{{{', '.join(sorted(allowed))}}}", smiles)
    return ParsedMolecule(input=smiles, smiles=canonical, mol=mol, stripped=stripped)


# ----------------------------------------------------------------------------- MoleculeNet

@dataclass(frozen=True)
class MoleculeNetSpec:
    """One MoleculeNet CSV in its canonical layout."""

    file: str
    """Path under ``<data root>/moleculenet/``."""
    smiles_columns: tuple[str, ...]
    """Accepted names of the SMILES column, first found wins (DeepChem's BACE says ``mol``)."""
    label_columns: tuple[str, ...] | None
    """Label columns in order; None: every column after the SMILES column (``n_tasks`` of them)."""
    task_type: str
    """``classification`` or ``regression``."""
    n_tasks: int
    split_column: str | None = None
    """A column holding the file's own split (BACE's ``Model``: Train/Valid/Test)."""


_TOX21 = ("NR-AR", "NR-AR-LBD", "NR-AhR", "NR-Aromatase", "NR-ER", "NR-ER-LBD", "NR-PPAR-gamma",
          "SR-ARE", "SR-ATAD5", "SR-HSE", "SR-MMP", "SR-p53")
_S = ("smiles",)
MOLECULENET: dict[str, MoleculeNetSpec] = {
    # DeepChem's bace.csv, other descriptor columns ignored
    "bace": MoleculeNetSpec("bace.csv", ("mol", "smiles"), ("Class",), "classification", 1, "Model"),
    # chemprop's copies (chemprop/chemprop data/): first column SMILES, the rest labels
    "bbbp": MoleculeNetSpec("bbbp.csv", _S, ("p_np",), "classification", 1),
    "clintox": MoleculeNetSpec("clintox.csv", _S, ("FDA_APPROVED", "CT_TOX"), "classification", 2),
    "tox21": MoleculeNetSpec("tox21.csv", _S, _TOX21, "classification", 12),
    "sider": MoleculeNetSpec("sider.csv", _S, None, "classification", 27),
    "hiv": MoleculeNetSpec("hiv.csv.gz", _S, ("HIV_active",), "classification", 1),
    "delaney": MoleculeNetSpec("delaney.csv", _S, ("logp",), "regression", 1),
    "freesolv": MoleculeNetSpec("freesolv.csv", _S, ("freesolv",), "regression", 1),
    "lipo": MoleculeNetSpec("lipo.csv", _S, ("lipo",), "regression", 1),
}
_MISSING_LABEL = ("", "nan", "na")


@dataclass
class MoleculeTable:
    """A MoleculeNet set after parsing: only rows with a usable molecule, the rest in ``failures``."""

    name: str
    smiles: list[str]
    """Canonical SMILES of the kept rows (after salt stripping)."""
    raw_smiles: list[str]
    """The SMILES of the kept rows as written in the file."""
    rows: np.ndarray
    """int64 (n,): 0-based data-row number in the CSV (header excluded) of each kept row."""
    labels: np.ndarray
    """float64 (n, n_tasks); nan where the file has no label."""
    task_names: list[str]
    task_type: str
    predefined_split: np.ndarray | None
    """The file's own split per kept row (``train``/``valid``/``test``), or None."""
    failures: list[tuple[int, str, str, str]] = field(default_factory=list)
    """(row, raw SMILES, kind, reason) of every row that was not kept."""
    stripped: list[tuple[int, tuple[str, ...]]] = field(default_factory=list)
    """(row, dropped fragments) of every kept row whose salt/counter-ions were stripped."""

    def __len__(self) -> int:
        return len(self.smiles)

    def summary(self, max_failures: int = 5) -> str:
        n_rows = len(self.smiles) + len(self.failures)
        lines = [f"{self.name}: {n_rows} rows, {len(self.smiles)} molecules kept, "
                 f"{len(self.failures)} failed to parse, {len(self.stripped)} with salts stripped; "
                 f"{len(self.task_names)} {self.task_type} task(s), "
                 f"{int(np.isnan(self.labels).sum())} missing labels"]
        for row, raw, kind, reason in self.failures[:max_failures]:
            lines.append(f"  row {row} ({kind}): {reason}")
        if len(self.failures) > max_failures:
            lines.append(f"  ... {len(self.failures) - max_failures} more in table.failures")
        return "\n".join(lines)


def _read_csv(path: Path, dataset: str, data_root, usecols=None):
    import pandas as pd

    if not path.is_file():
        raise MissingDataError(dataset, data_root, [path])
    # Everything as text: empty cells stay "" (a missing label, or an empty SMILES to report).
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, usecols=usecols)


def load_moleculenet(name: str, data_root: str | os.PathLike, *, salts: str = "largest",
                     max_heavy_atoms: int = 150) -> MoleculeTable:
    """Load MoleculeNet set ``name`` (a key of :data:`MOLECULENET`) from ``<data_root>/moleculenet/``.

    Every row whose SMILES :func:`parse_smiles` refuses is listed in ``failures`` with its row
    number and reason; a missing file raises :class:`~priorlab.data.root.MissingDataError`.
    """
    import pandas as pd

    if name not in MOLECULENET:
        raise ValueError(f"unknown MoleculeNet set {name!r}; choose one of {', '.join(MOLECULENET)}")
    spec = MOLECULENET[name]
    path = Path(data_root) / "moleculenet" / spec.file
    frame = _read_csv(path, name, data_root)
    columns = list(frame.columns)
    smiles_col = next((c for c in spec.smiles_columns if c in columns), None)
    if smiles_col is None:
        raise ValueError(f"{path} has no SMILES column (looked for {', '.join(spec.smiles_columns)}; "
                         f"found {', '.join(columns[:8])}...): is it the canonical {spec.file}?")
    label_cols = (list(spec.label_columns) if spec.label_columns is not None
                  else [c for c in columns if c != smiles_col])
    absent = [c for c in label_cols if c not in columns]
    if absent or len(label_cols) != spec.n_tasks:
        found = f"it lacks {', '.join(absent)}" if absent else f"it has {len(label_cols)}"
        raise ValueError(f"{path}: expected {spec.n_tasks} label column(s) but {found}. Is it the "
                         f"canonical {spec.file}? Fetch it again with "
                         f"`priorlab data download {name} --force`")
    if spec.split_column is not None and spec.split_column not in columns:
        raise ValueError(f"{path} has no split column {spec.split_column!r}")

    labels = np.full((len(frame), len(label_cols)), np.nan)
    for j, col in enumerate(label_cols):
        text = frame[col].str.strip()
        given = ~text.str.lower().isin(_MISSING_LABEL).to_numpy()
        values = pd.to_numeric(text.where(given), errors="coerce")
        bad = np.flatnonzero(values.isna().to_numpy() & given)
        if len(bad):
            raise ValueError(f"{path}: row {bad[0]} column {col!r} holds {text.iloc[bad[0]]!r}, "
                             "not a number (an empty cell marks a missing label)")
        labels[:, j] = values.to_numpy(dtype=float)

    kept, failures, stripped = [], [], []
    canonical, raw = [], []
    for row, value in enumerate(frame[smiles_col].tolist()):
        try:
            parsed = parse_smiles(value, max_heavy_atoms=max_heavy_atoms, salts=salts)
        except MoleculeInputError as err:
            failures.append((row, value, err.kind, str(err)))
            continue
        kept.append(row)
        canonical.append(parsed.smiles)
        raw.append(value)
        if parsed.stripped:
            stripped.append((row, parsed.stripped))
    rows = np.asarray(kept, dtype=np.int64)

    split = None
    if spec.split_column is not None:
        values = frame[spec.split_column].str.strip().str.lower().to_numpy()[rows]
        unknown = sorted(set(values) - {"train", "valid", "test"})
        if unknown:
            raise ValueError(f"{path}: column {spec.split_column!r} holds {unknown}; expected "
                             "Train/Valid/Test")
        split = values.astype(object)
    return MoleculeTable(name=name, smiles=canonical, raw_smiles=raw, rows=rows,
                         labels=labels[rows], task_names=label_cols, task_type=spec.task_type,
                         predefined_split=split, failures=failures, stripped=stripped)


# ----------------------------------------------------------------------------- pretraining sets

PRETRAINING = {
    "qm9": {"train": "qm9/qm9.csv", "valid": "qm9/qm9.csv", "test": "qm9/qm9.csv"},
    "moses": {s: f"moses/{s}.csv.gz" for s in ("train", "test", "test_scaffolds")},
}
_PRETRAINING_COLUMN = {"qm9": "smiles", "moses": "SMILES"}
QM9_SPLIT_SEED = 0
"""QM9 has no official split: a fixed permutation (this seed) gives 90/5/5 train/valid/test, the
same whatever ``seed`` a caller passes for subsetting, so test molecules never leak into train."""


def qm9_split_rows(n: int) -> dict[str, np.ndarray]:
    """Row indices (sorted) of QM9's seeded 90/5/5 train/valid/test split of ``n`` rows."""
    perm = np.random.default_rng(QM9_SPLIT_SEED).permutation(n)
    n_valid = n_test = int(round(0.05 * n))
    return {"train": np.sort(perm[n_valid + n_test:]), "valid": np.sort(perm[:n_valid]),
            "test": np.sort(perm[n_valid:n_valid + n_test])}


def load_pretraining_smiles(name: str, data_root: str | os.PathLike, *, split: str = "train",
                            limit: int | None = None, seed: int = 0) -> list[str]:
    """SMILES (as in the file) of split ``split`` of ``qm9`` or ``moses``.

    ``limit`` keeps a random subset of that many (chosen with ``seed``, returned in file order);
    None keeps all. QM9 splits: train/valid/test (see :data:`QM9_SPLIT_SEED`); MOSES:
    train/test/test_scaffolds.
    """
    if name not in PRETRAINING:
        raise ValueError(f"unknown pretraining set {name!r}; choose one of {', '.join(PRETRAINING)}")
    if split not in PRETRAINING[name]:
        raise ValueError(f"{name} has no split {split!r}; choose one of {', '.join(PRETRAINING[name])}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit={limit}: give a positive number of molecules, or None for all")
    path = Path(data_root) / PRETRAINING[name][split]
    column = _PRETRAINING_COLUMN[name]
    try:
        frame = _read_csv(path, name, data_root, usecols=[column])
    except ValueError as err:
        if "usecols" not in str(err).lower():
            raise
        raise ValueError(f"{path} has no column {column!r}: is it the canonical file? Fetch it "
                         f"again with `priorlab data download {name} --force`") from err
    smiles = frame[column].tolist()
    if name == "qm9":
        smiles = [smiles[i] for i in qm9_split_rows(len(smiles))[split]]
    if limit is not None and limit < len(smiles):
        pick = np.sort(np.random.default_rng(seed).choice(len(smiles), limit, replace=False))
        smiles = [smiles[i] for i in pick]
    return smiles


# ----------------------------------------------------------------------------- splits

def _check_sizes(sizes: Sequence[float]) -> tuple[float, float, float]:
    if len(sizes) != 3 or any(s <= 0 for s in sizes) or abs(sum(sizes) - 1.0) > 1e-6:
        raise ValueError(f"sizes={tuple(sizes)}: give three positive fractions (train, valid, "
                         "test) that sum to 1, e.g. (0.8, 0.1, 0.1)")
    return tuple(float(s) for s in sizes)  # type: ignore[return-value]


def _check_parts(parts: tuple[np.ndarray, ...], what: str) -> tuple[np.ndarray, ...]:
    for part_name, part in zip(("train", "valid", "test"), parts):
        if len(part) == 0:
            raise ValueError(f"{what} left the {part_name} part empty: use more molecules or "
                             "larger fractions for it")
    return parts


def scaffold_of(smiles: str | Chem.Mol) -> str:
    """Bemis-Murcko scaffold SMILES (ring systems + linkers, atoms kept); ``""`` if acyclic."""
    mol = smiles if isinstance(smiles, Chem.Mol) else parse_smiles(smiles).mol
    return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False)


def scaffold_split(smiles: Sequence[str], seed: int, sizes: Sequence[float] = (0.8, 0.1, 0.1)
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Balanced scaffold split (chemprop's ``scaffold_balanced``): sorted index arrays per part.

    Molecules are grouped by :func:`scaffold_of`; groups larger than half the valid or test size
    go first (into train while it has room), the rest follow in an order shuffled by ``seed``;
    each group goes whole into train, else valid, else test, whichever it still fits. No scaffold
    is in two parts.
    """
    train_f, valid_f, _ = _check_sizes(sizes)
    n = len(smiles)
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(smiles):
        try:
            groups.setdefault(scaffold_of(s), []).append(i)
        except MoleculeInputError as err:
            raise MoleculeInputError(err.kind, f"molecule {i}: {err}", s) from err
    n_train, n_valid = train_f * n, valid_f * n
    n_test = n - n_train - n_valid
    sets = list(groups.values())
    big = [g for g in sets if len(g) > n_valid / 2 or len(g) > n_test / 2]
    small = [g for g in sets if not (len(g) > n_valid / 2 or len(g) > n_test / 2)]
    rng = np.random.default_rng(seed)
    order = [big[i] for i in rng.permutation(len(big))] + [small[i] for i in rng.permutation(len(small))]
    train: list[int] = []
    valid: list[int] = []
    test: list[int] = []
    for g in order:
        if len(train) + len(g) <= n_train:
            train += g
        elif len(valid) + len(g) <= n_valid:
            valid += g
        else:
            test += g
    parts = tuple(np.array(sorted(p), dtype=np.int64) for p in (train, valid, test))
    return _check_parts(parts, f"the scaffold split of {n} molecules ({len(groups)} scaffolds, "
                               f"largest {max(map(len, sets), default=0)}) with sizes {tuple(sizes)}")


def random_split(n: int, seed: int, sizes: Sequence[float] = (0.8, 0.1, 0.1)
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A seeded random split of ``range(n)`` into sorted train/valid/test index arrays."""
    train_f, valid_f, _ = _check_sizes(sizes)
    perm = np.random.default_rng(seed).permutation(n)
    a, b = int(train_f * n), int((train_f + valid_f) * n)
    parts = tuple(np.sort(p).astype(np.int64) for p in (perm[:a], perm[a:b], perm[b:]))
    return _check_parts(parts, f"the random split of {n} molecules with sizes {tuple(sizes)}")

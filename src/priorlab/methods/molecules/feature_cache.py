"""A Parquet cache of per-molecule feature vectors (thesis Sec. 5.3.3: features are computed once
per molecule and reused by every head that reads them).

One folder per feature recipe (``recipe_key``: the extractor's name and every setting that
changes its output: checkpoint digest, noise level, layer, pooling, conformer parameters...), one
Parquet part file per write: ``smiles`` (canonical), ``feature`` (list<float32>; empty on failure),
``error`` (empty on success). Parts are written to a temporary name and renamed into place, so an
interrupted write never damages what is there, and two writers never clobber each other.

    cache = FeatureCache(resolve_cache_dir(data_root, "molecule_features"), recipe)
    cache.put(["CCO"], np.ones((1, 8)), {})
    feats, errors = cache.get(["CCO", "CCN"])     # CCN missing: in neither
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any, Sequence

import numpy as np


def recipe_key(recipe: dict[str, Any]) -> str:
    """A short stable digest of a JSON-able recipe."""
    text = json.dumps(recipe, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def file_digest(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 (first 16 hex digits) of a file: what ties cached features to the exact weights."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()[:16]


class FeatureCacheError(RuntimeError):
    """A damaged part file of a feature cache."""


class FeatureCache:
    def __init__(self, root: str | os.PathLike, recipe: dict[str, Any]):
        self.recipe = recipe
        self.folder = Path(root) / recipe_key(recipe)

    def _parts(self) -> list[Path]:
        return sorted(self.folder.glob("part-*.parquet")) if self.folder.is_dir() else []

    def put(self, smiles: Sequence[str], features: np.ndarray, errors: dict[int, str]) -> None:
        """Rows ``i`` of ``features`` for ``smiles[i]``; ``errors[i]`` marks a molecule without one."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not len(smiles):
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        recipe_file = self.folder / "recipe.json"
        if not recipe_file.exists():
            tmp = self.folder / f".recipe-{uuid.uuid4().hex}.tmp"
            tmp.write_text(json.dumps(self.recipe, indent=2, sort_keys=True, default=str))
            os.replace(tmp, recipe_file)
        feats = [[] if i in errors else np.asarray(features[i], np.float32).tolist()
                 for i in range(len(smiles))]
        table = pa.table({"smiles": list(smiles),
                          "feature": pa.array(feats, type=pa.list_(pa.float32())),
                          "error": [errors.get(i, "") for i in range(len(smiles))]})
        name = f"part-{uuid.uuid4().hex}.parquet"
        tmp = self.folder / f".{name}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, self.folder / name)

    def get(self, smiles: Sequence[str]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """(features by SMILES, error by SMILES) for the molecules of ``smiles`` in the cache."""
        import pyarrow.parquet as pq

        wanted = set(smiles)
        feats: dict[str, np.ndarray] = {}
        errors: dict[str, str] = {}
        for part in self._parts():
            try:
                table = pq.read_table(part).to_pydict()
            except Exception as err:  # noqa: BLE001 - any unreadable part gets the same advice
                raise FeatureCacheError(
                    f"feature cache part {part} is unreadable ({err}); delete that file (the "
                    "other parts are kept) and rerun to recompute its molecules") from err
            for s, f, e in zip(table["smiles"], table["feature"], table["error"]):
                if s in wanted:
                    if e:
                        errors[s] = e
                    else:
                        feats[s] = np.asarray(f, np.float32)
                        errors.pop(s, None)
        return feats, errors

    def missing(self, smiles: Sequence[str]) -> list[str]:
        feats, errors = self.get(smiles)
        seen = set(feats) | set(errors)
        return list(dict.fromkeys(s for s in smiles if s not in seen))

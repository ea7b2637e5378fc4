"""A feature set as one extractor: SMILES -> one vector per molecule or one error per molecule
(thesis Sec. 5.3.3 and Table 5.1's rows: ``ecfp``, ``midi``, ``chemberta`` and concatenations).

``FeatureSetExtractor.transform(smiles)`` returns ``(X, errors)``: ``X`` is (n, d) float32 with the
parts side by side in the order the feature set names them, ``errors`` maps a row index to why
that molecule has no vector (unparseable, no conformer, an element the diffusion model never
saw, ...). Rows with errors are nan; nothing is dropped here, callers decide (the protocol leaves
such molecules out of every run and counts them; the scorer prints the error on its line).

With a data root, conformers come from the Parquet conformer cache (generated for the missing
molecules, in this process) and diffusion / ChemBERTa vectors from the feature cache; without
one (a scorer on new molecules) everything is computed on the spot, with the same parameters,
so a molecule gets the same vector either way.

    ex = FeatureSetExtractor.from_config(FeaturesConfig(feature_set="ecfp+midi", midi_checkpoint=CKPT))
    X, errors = ex.transform(["CCO", "c1ccccc1O"])
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from priorlab.methods.molecules.config import FeaturesConfig


def checkpoint_digest(checkpoint) -> str:
    """The digest of a molecules-pretrain checkpoint's weights (the feature cache's key), read
    from the file without loading the model."""
    from pathlib import Path

    from priorlab.methods.molecules.feature_cache import file_digest

    return file_digest(Path(checkpoint) / "model.pt")


def midi_recipe(cfg: FeaturesConfig, weights_digest: str) -> dict[str, Any]:
    """Every setting that changes a diffusion feature: the feature cache's key."""
    return {"kind": "midi", "weights": weights_digest, "noise_t": cfg.noise_t,
            "layer": cfg.layer, "pool": cfg.pool, "n_conformers": cfg.n_conformers,
            "conformer_seed": cfg.conformer_seed, "seed": cfg.seed, "version": 1}


@dataclass
class FeatureSetExtractor:
    parts: tuple[str, ...]
    cfg: FeaturesConfig
    diffusion: Any = None
    """A ``MolecularDiffusion`` (with ``midi``)."""
    diffusion_digest: str = ""
    """sha256 prefix of the diffusion weights: part of the feature cache's key."""
    encoder: Any = None
    """A ``fingerprints.SmilesEncoder`` (with ``chemberta``)."""
    dims: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: FeaturesConfig, data_root=None) -> "FeatureSetExtractor":
        from priorlab.methods.molecules.fingerprints import SmilesEncoder, parse_feature_set

        parts = parse_feature_set(cfg.feature_set)
        diffusion, digest, encoder = None, "", None
        if "midi" in parts:
            from priorlab.methods.molecules.pretrain import load_diffusion

            diffusion, _meta = load_diffusion(cfg.midi_checkpoint)
            digest = checkpoint_digest(cfg.midi_checkpoint)
        if "chemberta" in parts:
            encoder = SmilesEncoder(cfg.chemberta_path)
        return cls(parts=parts, cfg=cfg, diffusion=diffusion, diffusion_digest=digest, encoder=encoder)

    def midi_recipe(self) -> dict[str, Any]:
        return midi_recipe(self.cfg, self.diffusion_digest)

    def chemberta_recipe(self) -> dict[str, Any]:
        return {"kind": "chemberta", "model": self.encoder.name, "version": 1}

    def transform(self, smiles: Sequence[str], *, data_root=None, progress: bool = False,
                  max_heavy_atoms: int = 150) -> tuple[np.ndarray, dict[int, str]]:
        from priorlab.methods.molecules.fingerprints import ecfp

        smiles = list(smiles)
        blocks: list[np.ndarray] = []
        errors: dict[int, str] = {}
        for part in self.parts:
            if part == "ecfp":
                X, errs = ecfp(smiles, radius=self.cfg.ecfp_radius, n_bits=self.cfg.ecfp_bits)
            elif part == "chemberta":
                X, errs = self._cached(smiles, self.chemberta_recipe(), self._chemberta, data_root)
            else:
                X, errs = self._cached(smiles, self.midi_recipe(),
                                       lambda s: self._midi(s, data_root, progress, max_heavy_atoms),
                                       data_root)
            self.dims[part] = X.shape[1]
            blocks.append(X)
            for i, why in errs.items():
                errors.setdefault(i, f"{part}: {why}")
        X = np.concatenate(blocks, axis=1).astype(np.float32)
        X[list(errors)] = np.nan
        return X, errors

    def _cached(self, smiles: list[str], recipe: dict[str, Any], compute, data_root):
        """``compute(smiles) -> (X, errors)`` for the molecules not yet in the feature cache."""
        if data_root is None:
            return compute(smiles)
        from priorlab.data.root import resolve_cache_dir
        from priorlab.methods.molecules.feature_cache import FeatureCache

        cache = FeatureCache(resolve_cache_dir(data_root, "molecule_features"), recipe)
        todo = cache.missing(smiles)
        if todo:
            X_new, err_new = compute(todo)
            cache.put(todo, X_new, err_new)
        feats, errs = cache.get(smiles)
        dim = next((len(v) for v in feats.values()), 0)
        X = np.full((len(smiles), dim), np.nan, np.float32)
        errors: dict[int, str] = {}
        for i, s in enumerate(smiles):
            if s in feats:
                X[i] = feats[s]
            else:
                errors[i] = errs.get(s, "not featurised (missing from the feature cache)")
        return X, errors

    def _chemberta(self, smiles: list[str]):
        from priorlab.methods.molecules.fingerprints import parse_smiles

        ok, errors = [], {}
        for i, s in enumerate(smiles):
            try:
                parse_smiles(s)
                ok.append(i)
            except ValueError as err:
                errors[i] = str(err)
        X = np.full((len(smiles), self.encoder.dim), np.nan, np.float32)
        if ok:
            X[ok] = self.encoder.encode([smiles[i] for i in ok])
        return X, errors

    def _midi(self, smiles: list[str], data_root, progress: bool, max_heavy_atoms: int):
        from priorlab.data.molecules import ConformerParams, generate_conformers
        from priorlab.methods.molecules.midi_features import midi_features

        params = ConformerParams(n_conformers=self.cfg.n_conformers, seed=self.cfg.conformer_seed)
        if data_root is not None:
            from priorlab.data.molecules import ConformerCache, cached_records
            from priorlab.data.root import resolve_cache_dir

            def announce(n: int) -> None:
                if progress:
                    print(f"[priorlab] embedding {n} molecules without cached conformers",
                          file=sys.stderr, flush=True)

            records = cached_records(ConformerCache(resolve_cache_dir(data_root, "conformers")),
                                     smiles, params, on_missing=announce)
        else:
            records = [generate_conformers(s, params, max_heavy_atoms=max_heavy_atoms) for s in smiles]
        return midi_features(self.diffusion, records, t=self.cfg.noise_t, layer=self.cfg.layer,
                             pool=self.cfg.pool, seed=self.cfg.seed)

    def scorer(self, head, cfg: FeaturesConfig, task_names=()):
        from priorlab.methods.molecules.scorer import MoleculeScorer

        return MoleculeScorer(extractor=self, head=head, cfg=cfg, task_names=task_names)

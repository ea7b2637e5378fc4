"""Ray Data pipelines of the molecules family (thesis Ch. 5; house style: Ray lives here).

Two batch pipelines over lists of SMILES, both filling a cache that later runs only read:

- conformers (``ensure_conformers``): RDKit ETKDG + MMFF per molecule (``data.molecules.
  generate_conformers``, a pure function of the SMILES and ``ConformerParams``), mapped over
  blocks of SMILES by Ray Data tasks in parallel and written, block by block as they finish, into
  the Parquet ``ConformerCache`` (keyed by canonical SMILES + parameters). An interrupted run
  keeps every block already written; a rerun generates only what is missing. Failures are
  cached too, with their reasons, so they are reported and not retried forever.
- diffusion features (``midi_feature_pipeline``): an actor per CPU loads the pretrained model
  once and turns cached conformers into pooled features (``methods.molecules.featurize``).

    cache = ConformerCache(resolve_cache_dir(data_root, "conformers"))
    summary = ensure_conformers(smiles, ConformerParams(n_conformers=1), cache)
    print(summary.text())
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from priorlab.data.molecules import (ConformerCache, ConformerParams, complete_record,
                                     generate_conformers)

RECORD_COLUMNS = ("key", "smiles", "conf_id", "atomic_numbers", "formal_charges", "positions",
                  "bond_src", "bond_dst", "bond_type", "energy", "forcefield", "status", "reason")


def _generate_block(batch: dict[str, np.ndarray], params: ConformerParams) -> dict[str, list]:
    rows: list[dict[str, Any]] = []
    for smiles in batch["smiles"]:
        rows.extend(complete_record(r) for r in generate_conformers(str(smiles), params))
    return {col: [r[col] for r in rows] for col in RECORD_COLUMNS}


@dataclass
class ConformerSummary:
    requested: int
    generated: int
    """Molecules embedded now (the rest were cached already)."""
    seconds: float
    failures: list[tuple[str, str]] = field(default_factory=list)
    """(SMILES, reason) of molecules without a conformer, cached or new."""

    @property
    def per_second(self) -> float:
        return self.generated / self.seconds if self.seconds > 0 else math.nan

    def text(self) -> str:
        lines = [f"conformers: {self.requested} molecules, {self.generated} embedded now "
                 f"({self.per_second:.1f} molecules/s), {len(self.failures)} without a conformer"]
        lines += [f"  {s}: {why}" for s, why in self.failures[:10]]
        if len(self.failures) > 10:
            lines.append(f"  ... {len(self.failures) - 10} more (ConformerCache.get gives every reason)")
        return "\n".join(lines)


def ensure_conformers(smiles: Sequence[str], params: ConformerParams, cache: ConformerCache, *,
                      parallel: bool = True, block_size: int = 32, num_cpus: float = 0.95,
                      concurrency: int | None = None, progress: bool = True) -> ConformerSummary:
    """Embed every molecule of ``smiles`` not yet in ``cache`` and write them to it.

    ``parallel``: a Ray Data pipeline, ``concurrency`` tasks of ``num_cpus`` each (default: as many
    as the cluster's CPUs allow; 0.95 rather than 1 so that a Tune trial's driver, which holds
    0.01 CPU, does not leave room for one task fewer); False: in this process (what the
    benchmark compares against).
    """
    start = time.perf_counter()
    todo = cache.missing(list(smiles), params)
    done = 0
    if todo and parallel:
        import ray
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        if concurrency is None:
            concurrency = max(1, int(ray.cluster_resources().get("CPU", 1) // num_cpus))
        blocks = max(1, math.ceil(len(todo) / block_size))
        ds = ray.data.from_items([{"smiles": s} for s in todo], override_num_blocks=blocks)
        ds = ds.map_batches(_generate_block, fn_kwargs={"params": params}, batch_size=block_size,
                            num_cpus=num_cpus, compute=ray.data.TaskPoolStrategy(size=concurrency),
                            batch_format="numpy")
        for batch in ds.iter_batches(batch_size=None, batch_format="pandas", prefetch_batches=0):
            records = batch.to_dict("records")
            cache.put([_plain(r) for r in records])
            done += len({r["key"] for r in records})
            _progress(done, len(todo), start, progress)
    elif todo:
        for i in range(0, len(todo), block_size):
            records = [complete_record(r) for s in todo[i:i + block_size]
                       for r in generate_conformers(s, params)]
            cache.put(records)
            done += min(block_size, len(todo) - i)
            _progress(done, len(todo), start, progress)
    seconds = time.perf_counter() - start
    if done:
        cache.compact()  # one part per block adds up: reads stay fast with few parts
    failures = failures_of(cache, smiles, params)
    return ConformerSummary(requested=len(smiles), generated=len(todo), seconds=seconds,
                            failures=failures)


def _plain(record: dict[str, Any]) -> dict[str, Any]:
    """numpy arrays and scalars from a pandas batch back to Python lists and numbers."""
    out = {}
    for k, v in record.items():
        if isinstance(v, np.ndarray):
            out[k] = v.tolist()
        elif isinstance(v, np.generic):
            out[k] = v.item()
        else:
            out[k] = v
    return out


def _progress(done: int, total: int, start: float, show: bool) -> None:
    if show:
        rate = done / max(time.perf_counter() - start, 1e-9)
        print(f"[priorlab] conformers {done}/{total} ({rate:.1f}/s)", file=sys.stderr, flush=True)


def failures_of(cache: ConformerCache, smiles: Sequence[str], params: ConformerParams) -> list[tuple[str, str]]:
    """(SMILES, reason) of every molecule of ``smiles`` whose cached entry is a failure."""
    from priorlab.data.molecules import cache_lookup

    found = cache_lookup(cache, smiles, params)
    return [(s, recs[0]["reason"]) for s, recs in found.items()
            if recs and recs[0].get("status") == "failed"]


def conformer_cache(data_root, n_conformers: int, seed: int) -> tuple[ConformerCache, ConformerParams]:
    """The project's conformer cache under the data root (``data.root.resolve_cache_dir``: a
    read-only data root falls back to ~/.cache/priorlab) and the parameters of a run."""
    from priorlab.data.root import resolve_cache_dir

    return (ConformerCache(resolve_cache_dir(data_root, "conformers")),
            ConformerParams(n_conformers=n_conformers, seed=seed))


class _MidiFeaturizer:
    """A Ray Data actor: loads the diffusion model once, featurises blocks of molecules."""

    def __init__(self, cfg_dict: dict[str, Any], data_root: str):
        import torch

        from priorlab.methods.configuration import config_from_dict
        from priorlab.methods.molecules.config import FeaturesConfig
        from priorlab.methods.molecules.featurize import FeatureSetExtractor

        torch.set_num_threads(1)
        cfg = config_from_dict(FeaturesConfig, {**cfg_dict, "feature_set": "midi",
                                                "chemberta_path": ""})
        self.extractor = FeatureSetExtractor.from_config(cfg)
        self.data_root = data_root

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        smiles = [str(s) for s in batch["smiles"]]
        X, errors = self.extractor._midi(smiles, self.data_root, False, 150)
        return {"smiles": smiles,
                "feature": [[] if i in errors else X[i].tolist() for i in range(len(smiles))],
                "error": [errors.get(i, "") for i in range(len(smiles))]}


def ensure_midi_features(smiles: Sequence[str], cfg, data_root, *, block_size: int = 64,
                         concurrency: int | None = None, progress: bool = True) -> float:
    """Diffusion features of every molecule of ``smiles`` not yet in the feature cache, computed
    by Ray Data actors (batch inference; each loads the model once) and written block by block.
    Returns molecules per second of this call (nan when nothing was missing)."""
    import ray
    import ray.data

    from priorlab.data.root import resolve_cache_dir
    from priorlab.methods.configuration import config_to_dict
    from priorlab.methods.molecules.feature_cache import FeatureCache
    from priorlab.methods.molecules.featurize import checkpoint_digest, midi_recipe

    recipe_cfg = {**config_to_dict(cfg), "feature_set": "midi", "chemberta_path": ""}
    recipe = midi_recipe(cfg, checkpoint_digest(cfg.midi_checkpoint))  # the driver needs no model
    cache = FeatureCache(resolve_cache_dir(data_root, "molecule_features"), recipe)
    todo = cache.missing(list(smiles))
    if not todo:
        return math.nan
    start = time.perf_counter()
    ray.data.DataContext.get_current().enable_progress_bars = False
    if concurrency is None:  # actors hold their CPU: only as many as are free now
        concurrency = max(1, int(ray.available_resources().get("CPU", 1) // 0.95))
    ds = ray.data.from_items([{"smiles": s} for s in todo],
                             override_num_blocks=max(1, math.ceil(len(todo) / block_size)))
    ds = ds.map_batches(_MidiFeaturizer, fn_constructor_kwargs={"cfg_dict": recipe_cfg,
                                                                "data_root": str(data_root)},
                        batch_size=block_size, num_cpus=0.95,
                        compute=ray.data.ActorPoolStrategy(size=concurrency), batch_format="numpy")
    done = 0
    for batch in ds.iter_batches(batch_size=None, batch_format="pandas", prefetch_batches=0):
        feats = [np.asarray(f, np.float32) for f in batch["feature"]]
        errors = {i: e for i, e in enumerate(batch["error"]) if e}
        dim = next((len(f) for f in feats if len(f)), 0)
        X = np.stack([f if len(f) else np.full(dim, np.nan, np.float32) for f in feats]) if dim else \
            np.zeros((len(feats), 0), np.float32)
        cache.put(list(batch["smiles"]), X, errors)
        done += len(batch)
        if progress:
            rate = done / (time.perf_counter() - start)
            print(f"[priorlab] diffusion features {done}/{len(todo)} ({rate:.1f}/s)",
                  file=sys.stderr, flush=True)
    return done / (time.perf_counter() - start)

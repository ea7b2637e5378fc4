"""Molecules benchmark 1: conformers/s through Ray Data vs one process, and diffusion features/s.

Conformers: the same N BACE molecules embedded (RDKit ETKDG + MMFF, ``ConformerParams()``) twice
into fresh caches: once in this process (``ensure_conformers(parallel=False)``), once through the
Ray Data pipeline (one task per CPU). The Ray session is started (and warmed by a tiny pipeline)
before the clock runs, as it is by `priorlab` before any pipeline. Target: ratio >= 1.7 on 2 cores.

Features: the pooled diffusion features of those molecules (a molecules-pretrain checkpoint,
``--checkpoint``; without one a randomly initialised model of the default size), serially and
through the Ray Data actor pipeline (``ensure_midi_features``).

    python benchmarks/molecules_throughput.py [--n 300] [--checkpoint runs/train/.../checkpoint_...]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_json  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--checkpoint", default="")
    ap.add_argument("--name", default="molecules_throughput")
    args = ap.parse_args()

    from priorlab.data.molecules import ConformerCache, ConformerParams, load_moleculenet
    from priorlab.data.root import resolve_data_root
    from priorlab.platform import runtime
    from priorlab.trainables.molecule_data import ensure_conformers

    root = resolve_data_root()
    table_ = load_moleculenet("bace", root)
    smiles = table_.smiles[: args.n]
    params = ConformerParams()
    rt = runtime.start()
    with tempfile.TemporaryDirectory() as tmp:
        ensure_conformers(["CCO", "CCN", "CCC", "CCCl"], params, ConformerCache(Path(tmp) / "warm"),
                          progress=False, block_size=1)
        serial = ensure_conformers(smiles, params, ConformerCache(Path(tmp) / "serial"),
                                   parallel=False, progress=False)
        print(f"one process: {serial.generated} molecules in {serial.seconds:.1f} s", flush=True)
        parallel = ensure_conformers(smiles, params, ConformerCache(Path(tmp) / "ray"),
                                     progress=False, block_size=8)
        print(f"Ray Data:    {parallel.generated} molecules in {parallel.seconds:.1f} s", flush=True)
        ratio = serial.seconds / parallel.seconds

        feats = features(smiles, args.checkpoint, Path(tmp), root)
    rows = [{"what": "conformers, one process", "molecules_per_s": f"{serial.per_second:.2f}",
             "seconds": f"{serial.seconds:.1f}"},
            {"what": f"conformers, Ray Data ({int(rt.cpus)} CPUs)",
             "molecules_per_s": f"{parallel.per_second:.2f}", "seconds": f"{parallel.seconds:.1f}"},
            {"what": "diffusion features, one process", "molecules_per_s": f"{feats['serial']:.2f}",
             "seconds": f"{feats['serial_s']:.1f}"},
            {"what": "diffusion features, Ray Data actors", "molecules_per_s": f"{feats['ray']:.2f}",
             "seconds": f"{feats['ray_s']:.1f}"}]
    print(table(rows, list(rows[0])))
    ok = ratio >= 1.7
    print(f"conformer ratio Ray Data / one process = {ratio:.2f} -> {'PASS' if ok else 'MISS'} (target >= 1.7)")
    print("wrote", write_json(args.name, {
        "n_molecules": len(smiles), "cpus": rt.cpus, "serial_s": serial.seconds,
        "ray_s": parallel.seconds, "ratio": ratio, "pass": ok,
        "failures": len(serial.failures), "features": feats, "checkpoint": args.checkpoint}))


def features(smiles, checkpoint: str, tmp: Path, root) -> dict:
    """Serial vs Ray Data feature extraction of the same molecules (conformers cached first)."""
    from priorlab.methods.molecules.config import FeaturesConfig
    from priorlab.methods.molecules.featurize import FeatureSetExtractor
    from priorlab.trainables.molecule_data import ensure_midi_features

    if not checkpoint:
        checkpoint = str(_random_checkpoint(tmp, root, smiles))
    os.environ["PRIORLAB_CACHE_DIR"] = str(tmp / "cache")
    from priorlab.data.molecules import ConformerCache, ConformerParams
    from priorlab.data.root import resolve_cache_dir
    from priorlab.trainables.molecule_data import ensure_conformers

    ensure_conformers(smiles, ConformerParams(), ConformerCache(resolve_cache_dir(root, "conformers")),
                      progress=False)
    cfg = FeaturesConfig(feature_set="midi", midi_checkpoint=checkpoint)
    ex = FeatureSetExtractor.from_config(cfg)
    start = time.perf_counter()
    X, errors = ex._midi(smiles, root, False, 150)
    serial_s = time.perf_counter() - start
    os.environ["PRIORLAB_CACHE_DIR"] = str(tmp / "cache2")
    ensure_conformers(smiles, ConformerParams(), ConformerCache(resolve_cache_dir(root, "conformers")),
                      progress=False)
    start = time.perf_counter()
    ensure_midi_features(smiles, cfg, root, progress=False)
    ray_s = time.perf_counter() - start
    return {"serial": len(smiles) / serial_s, "serial_s": serial_s, "ray": len(smiles) / ray_s,
            "ray_s": ray_s, "errors": len(errors), "dim": int(X.shape[1])}


def _random_checkpoint(tmp: Path, root, smiles) -> Path:
    import torch

    from priorlab.data.molecules import ConformerParams, generate_conformers
    from priorlab.methods.checkpoint import save_checkpoint
    from priorlab.methods.configuration import config_to_dict
    from priorlab.methods.molecules.config import PretrainConfig
    from priorlab.methods.molecules.diffusion import MolecularDiffusion
    from priorlab.methods.molecules.graphs import DRUGS_VOCAB, encode_record, marginals

    torch.manual_seed(0)
    cfg = PretrainConfig(dataset="moses", with_hydrogens=False)
    graphs = [encode_record(r, DRUGS_VOCAB) for s in smiles[:20] if "I" not in s
              for r in generate_conformers(s, ConformerParams()) if r["status"] == "ok"]
    model = MolecularDiffusion(DRUGS_VOCAB, marginals(graphs, DRUGS_VOCAB),
                               denoiser=dict(n_layers=cfg.n_layers, hidden=cfg.hidden,
                                             edge_hidden=cfg.edge_hidden))
    folder = tmp / "random-midi" / "checkpoint_000000001"
    save_checkpoint(folder, method="molecules-pretrain", step=1, config=config_to_dict(cfg),
                    model=model, spec=model.to_spec())
    return folder


if __name__ == "__main__":
    main()

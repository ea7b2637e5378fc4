"""Molecules benchmark 2: what the pretrained diffusion model generates (validity, uniqueness,
atom and molecule stability, novelty) at the CPU budget it was trained with, beside MiDi's
published QM9 numbers.

    python benchmarks/molecules_generation.py runs/train/midi-qm9 [--n 256] [--name ...]

MiDi's row is printed as quoted, for context: a 12-layer graph transformer trained for days on a
GPU; ours is a small EGNN trained for the minutes recorded in the checkpoint.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_json  # noqa: E402

# MiDi (Vignac et al. 2023), QM9 with explicit hydrogens, as quoted second-hand (a model card
# that copies the paper's row; not checked against the paper's Table 1 here, see RESULTS.md).
MIDI_QM9_H = {"atom_stability": 0.998, "molecule_stability": 0.975, "validity": 0.979,
              "uniqueness": 0.976}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="molecules_generation")
    args = ap.parse_args()

    import torch

    from priorlab.data.molecules import load_pretraining_smiles
    from priorlab.data.root import resolve_data_root
    from priorlab.methods.molecules.pretrain import load_diffusion, sample_and_score
    from priorlab.platform.locate import locate_checkpoint

    torch.set_num_threads(2)
    ckpt = locate_checkpoint(args.checkpoint).checkpoint
    model, meta = load_diffusion(ckpt)
    cfg = meta["config"]
    train = load_pretraining_smiles(cfg["dataset"], resolve_data_root(), limit=cfg["n_molecules"],
                                    seed=cfg["seed"])
    start = time.perf_counter()
    scores, _samples = sample_and_score(model, args.n, seed=args.seed, progress=True,
                                        train_smiles=train)
    seconds = time.perf_counter() - start
    keys = ["validity", "connected", "uniqueness", "novelty", "atom_stability", "molecule_stability"]
    rows = [{"model": f"ours ({cfg['dataset']}, H={'yes' if cfg['with_hydrogens'] else 'no'}, "
                      f"{meta['step']} steps)", **{k: f"{scores.get(k, float('nan')):.3f}" for k in keys}}]
    if cfg["dataset"] == "qm9" and cfg["with_hydrogens"]:
        rows.append({"model": "MiDi, QM9 with H (published, quoted)",
                     **{k: f"{MIDI_QM9_H[k]:.3f}" if k in MIDI_QM9_H else "-" for k in keys}})
    print(table(rows, ["model", *keys]))
    print("wrote", write_json(args.name, {
        "checkpoint": str(ckpt), "step": meta["step"], "config": cfg,
        "train_seconds": meta["metrics"].get("seconds"), "n": args.n, "seed": args.seed,
        "scores": scores, "sampling_seconds": seconds, "midi_published_qm9_h": MIDI_QM9_H}))


if __name__ == "__main__":
    main()

"""The molecules commands of `priorlab` (thesis Ch. 5; docs/molecules.md).

    priorlab score CHECKPOINT --smiles FILE|-       one score (or one error) per input line
    priorlab molecules conformers bace [--limit N] [--n-conformers K] [--serial]
    priorlab molecules sample CHECKPOINT [--n 64] [--out mols.sdf]

``score`` reads a molecules-scorer checkpoint (``priorlab train molecules-features`` writes one)
and needs nothing else: the head, the feature recipe and the diffusion model's weights are in it.
"""

from __future__ import annotations

import sys
from pathlib import Path


class ScoreInputError(ValueError):
    """A --smiles argument that names no file."""


def user_errors() -> tuple[type[Exception], ...]:
    """The molecule errors `priorlab` prints as one line (exit status 2)."""
    from priorlab.data.molecules import CorruptCacheError
    from priorlab.methods.molecules.feature_cache import FeatureCacheError
    from priorlab.methods.molecules.fingerprints import SmilesEncoderError

    return (ScoreInputError, CorruptCacheError, FeatureCacheError, SmilesEncoderError)


def add_parsers(sub, add_data_dir) -> None:
    sc = sub.add_parser("score", help="score SMILES with a molecules-scorer checkpoint: one line each")
    sc.add_argument("checkpoint", help="a molecules-scorer checkpoint (or a run folder holding one)")
    sc.add_argument("--smiles", required=True, metavar="FILE|-",
                    help="a file with one SMILES per line (first whitespace-separated field; "
                         "'#' lines skipped), or - for standard input")
    sc.add_argument("--max-heavy-atoms", type=int, default=150,
                    help="larger molecules get an error line instead of a score")

    mo = sub.add_parser("molecules", help="molecule data and the pretrained diffusion model (docs/molecules.md)")
    msub = mo.add_subparsers(dest="molecules_command", required=True)
    co = msub.add_parser("conformers", help="RDKit ETKDG + MMFF conformers of a data set, in "
                                            "parallel through Ray Data, cached as Parquet")
    co.add_argument("dataset", help="bace, bbbp, clintox, tox21, sider, hiv, delaney, freesolv, "
                                    "lipo (MoleculeNet), qm9 or moses (pretraining sets)")
    co.add_argument("--limit", type=int, default=None, help="a seeded subset of this many molecules")
    co.add_argument("--n-conformers", type=int, default=1)
    co.add_argument("--seed", type=int, default=0, help="conformer seed (and the subset's)")
    co.add_argument("--serial", action="store_true", help="in this process, without Ray")
    co.add_argument("--address", default=None, help="Ray cluster address ('auto' on a head node)")
    add_data_dir(co)
    sa = msub.add_parser("sample", help="generate molecules with a molecules-pretrain checkpoint and "
                                        "score validity, uniqueness and stability")
    sa.add_argument("checkpoint")
    sa.add_argument("--n", type=int, default=64, help="molecules to generate")
    sa.add_argument("--seed", type=int, default=0)
    sa.add_argument("--out", default=None, help="also write the molecules to this SDF file")


def cmd_score(args) -> int:
    from priorlab.methods.molecules.scorer import MoleculeScorer
    from priorlab.platform.locate import locate_checkpoint

    located = locate_checkpoint(args.checkpoint)
    scorer = MoleculeScorer.load(located.checkpoint)
    if args.smiles == "-":
        lines = sys.stdin.read().splitlines()
    else:
        path = Path(args.smiles)
        if not path.is_file():
            raise ScoreInputError(f"--smiles {path}: no such file (give a file with one SMILES "
                                    "per line, or - to read standard input)")
        lines = path.read_text().splitlines()
    inputs = [ln.split()[0] if ln.strip() else "" for ln in lines if not ln.lstrip().startswith("#")]
    results = scorer.score(inputs, max_heavy_atoms=args.max_heavy_atoms)
    errors = 0
    for res in results:
        if res.error:
            errors += 1
            print(f"error\t{res.input}\t{res.error}")
        else:
            print(f"{res.score:.6f}\t{res.input}")
    print(f"[priorlab] {len(results) - errors} scored, {errors} errors "
          f"({scorer.describe()})", file=sys.stderr)
    return 0


def cmd_molecules(args) -> int:
    return {"conformers": _conformers, "sample": _sample}[args.molecules_command](args)


def _dataset_smiles(name: str, data_root, limit, seed) -> list[str]:
    from priorlab.data.molecules import MOLECULENET, load_moleculenet, load_pretraining_smiles

    if name in ("qm9", "moses"):
        return load_pretraining_smiles(name, data_root, limit=limit, seed=seed)
    if name not in MOLECULENET:
        from priorlab.methods.configuration import ConfigError

        raise ConfigError(f"unknown data set {name!r}; use one of {', '.join(sorted(MOLECULENET))}, qm9, moses")
    table = load_moleculenet(name, data_root)
    print(table.summary(), file=sys.stderr)
    smiles = table.smiles
    if limit is not None and limit < len(smiles):
        import numpy as np

        pick = np.random.default_rng(seed).choice(len(smiles), limit, replace=False)
        smiles = [smiles[i] for i in sorted(pick)]
    return smiles


def _conformers(args) -> int:
    from priorlab.data.molecules import ConformerCache, ConformerParams
    from priorlab.data.root import resolve_cache_dir, resolve_data_root
    from priorlab.trainables.molecule_data import ensure_conformers

    data_root = resolve_data_root(args.data_dir)
    smiles = _dataset_smiles(args.dataset, data_root, args.limit, args.seed)
    params = ConformerParams(n_conformers=args.n_conformers, seed=args.seed)
    cache = ConformerCache(resolve_cache_dir(data_root, "conformers"))
    if not args.serial:
        from priorlab.platform import runtime

        runtime.start(args.address)
    summary = ensure_conformers(smiles, params, cache, parallel=not args.serial)
    print(summary.text())
    print(f"cache: {cache.root}")
    return 0


def _sample(args) -> int:
    from priorlab.methods.molecules.pretrain import load_diffusion, sample_and_score
    from priorlab.platform.locate import locate_checkpoint

    located = locate_checkpoint(args.checkpoint)
    model, _meta = load_diffusion(located.checkpoint)
    scores, samples = sample_and_score(model, args.n, seed=args.seed, progress=True)
    for key, value in scores.items():
        print(f"{key:<20} {value:.4f}" if isinstance(value, float) else f"{key:<20} {value}")
    if args.out:
        from priorlab.methods.molecules.quality import write_sdf

        path = write_sdf(samples, args.out)
        print(f"molecules: {path}")
    return 0


HANDLERS = {"score": cmd_score, "molecules": cmd_molecules}

"""A trained molecule scorer: feature extractor + MLP head in one checkpoint (thesis Sec. 5.3.4).

``priorlab train molecules-features`` (and every trial of the sweep) writes one: the head of its
first run (first split, first head seed), the feature recipe (config), and everything the
features need, so the checkpoint alone scores new molecules:

    checkpoint_000000001/
        meta.json      method "molecules-scorer", the FeaturesConfig, metrics, spec (task names,
                       feature dims, the diffusion model's vocabulary and marginals)
        model.pt       {"head": head state, "diffusion": the denoiser's weights or None}
        chemberta/     a copy of the local ChemBERTa folder (only with a chemberta feature set)

    scorer = MoleculeScorer.load(checkpoint)
    for r in scorer.score(["CCO", "not a smiles"]):
        print(r.input, r.score, r.error)

A molecule gets one result: a score (the positive-class probability of the first task, or the
predicted value for regression), or an error saying why not (unparseable, empty, too large, no
conformer, an element the diffusion model never saw). Salts: the largest organic fragment is
scored (``data.molecules.parse_smiles``), as in training.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from priorlab.methods.molecules.config import FeaturesConfig

METHOD = "molecules-scorer"


@dataclass
class ScoreResult:
    input: str
    score: float | None
    error: str | None


class MoleculeScorer:
    def __init__(self, extractor, head, cfg: FeaturesConfig, task_names: Sequence[str] = ()):
        self.extractor, self.head, self.cfg = extractor, head, cfg
        self.task_names = list(task_names)

    def describe(self) -> str:
        return f"{self.cfg.feature_set} features -> MLP head, trained on {self.cfg.dataset}"

    def save(self, folder: str | Path) -> Path:
        from priorlab.methods.checkpoint import save_checkpoint
        from priorlab.methods.configuration import config_to_dict
        from priorlab.methods.molecules.head import head_to_state

        ex = self.extractor
        spec = {"dims": dict(ex.dims), "task_names": self.task_names,
                "diffusion": ex.diffusion.to_spec() if ex.diffusion is not None else None,
                "diffusion_digest": ex.diffusion_digest}
        state = {"head": head_to_state(self.head),
                 "diffusion": ex.diffusion.state_dict() if ex.diffusion is not None else None}
        folder = save_checkpoint(folder, method=METHOD, step=1, config=config_to_dict(self.cfg),
                                 model=state, spec=spec)
        if ex.encoder is not None:
            shutil.copytree(ex.encoder.path, Path(folder) / "chemberta")
        return folder

    @classmethod
    def load(cls, path: str | Path) -> "MoleculeScorer":
        from priorlab.methods.checkpoint import CheckpointError, load_checkpoint
        from priorlab.methods.configuration import config_from_dict
        from priorlab.methods.molecules.diffusion import MolecularDiffusion
        from priorlab.methods.molecules.featurize import FeatureSetExtractor
        from priorlab.methods.molecules.fingerprints import SmilesEncoder, parse_feature_set
        from priorlab.methods.molecules.head import head_from_state

        ckpt = load_checkpoint(path, method=METHOD, with_train_state=False)
        cfg = config_from_dict(FeaturesConfig, {**ckpt.config, "midi_checkpoint": "-",
                                                "chemberta_path": "-"})
        parts = parse_feature_set(cfg.feature_set)
        spec = ckpt.spec or {}
        diffusion = encoder = None
        if "midi" in parts:
            if not spec.get("diffusion") or ckpt.model_state.get("diffusion") is None:
                raise CheckpointError(f"{path} has a midi feature set but no diffusion model in it; "
                                      "it is damaged or was not written by MoleculeScorer.save")
            diffusion = MolecularDiffusion.from_spec(spec["diffusion"])
            diffusion.load_state_dict(ckpt.model_state["diffusion"])
            diffusion.eval()
        if "chemberta" in parts:
            folder = Path(path) / "chemberta"
            if not folder.is_dir():
                raise CheckpointError(f"{path} has a chemberta feature set but no chemberta/ folder")
            encoder = SmilesEncoder(folder)
        ex = FeatureSetExtractor(parts=parts, cfg=cfg, diffusion=diffusion,
                                 diffusion_digest=spec.get("diffusion_digest", ""), encoder=encoder,
                                 dims=dict(spec.get("dims", {})))
        return cls(ex, head_from_state(ckpt.model_state["head"]), cfg, spec.get("task_names", ()))

    def score(self, inputs: Sequence[str], *, max_heavy_atoms: int = 150) -> list[ScoreResult]:
        """One result per input, in order; a bad molecule never stops the others."""
        from priorlab.data.molecules import MoleculeInputError, parse_smiles
        from priorlab.methods.molecules.head import predict

        results: list[ScoreResult | None] = [None] * len(inputs)
        canonical, where = [], []
        for i, raw in enumerate(inputs):
            try:
                parsed = parse_smiles(raw, max_heavy_atoms=max_heavy_atoms)
            except MoleculeInputError as err:
                results[i] = ScoreResult(raw, None, f"{err.kind}: {err}")
                continue
            canonical.append(parsed.smiles)
            where.append(i)
        if canonical:
            X, errors = self.extractor.transform(canonical, max_heavy_atoms=max_heavy_atoms)
            good = [j for j in range(len(canonical)) if j not in errors]
            scores = predict(self.head, X[good])[:, 0] if good else np.zeros(0)
            for j, i in enumerate(where):
                if j in errors:
                    results[i] = ScoreResult(inputs[i], None, errors[j])
            for j, value in zip(good, scores):
                results[where[j]] = ScoreResult(inputs[where[j]], float(value), None)
        return results  # type: ignore[return-value]


def evaluate_checkpoint(checkpoint, data_root, *, episodes: int = 0, split: str = "test") -> dict[str, Any]:
    """`priorlab eval` of a scorer: AUROC on the test (or valid) part of the split its head was
    trained on, with a bootstrap interval over the molecules."""
    from priorlab.data.molecules import load_moleculenet
    from priorlab.methods.checkpoint import read_meta
    from priorlab.methods.molecules.evaluation import bootstrap_auroc
    from priorlab.methods.molecules.head import predict
    from priorlab.methods.molecules.protocol import kept_split

    scorer = MoleculeScorer.load(checkpoint)
    cfg = scorer.cfg
    table = load_moleculenet(cfg.dataset, data_root)
    X, errors = scorer.extractor.transform(table.smiles, data_root=data_root)
    keep = np.array([i not in errors for i in range(len(table.smiles))])
    n_splits = 1 if cfg.split == "predefined" else cfg.n_splits
    _tr, va, te = kept_split(cfg, table, keep, cfg.seed * n_splits)   # as in training
    rows = te if split == "test" else va
    y, p = table.labels[rows], predict(scorer.head, X[rows])
    point, lo, hi = bootstrap_auroc(y, p, n_boot=cfg.n_boot, seed=cfg.seed)
    return {"step": float(read_meta(checkpoint)["step"]), "eval/auroc": point,
            "eval/auroc_ci95": (hi - lo) / 2, "eval/tasks": float(len(rows)),
            "eval/n_excluded": float(len(errors))}

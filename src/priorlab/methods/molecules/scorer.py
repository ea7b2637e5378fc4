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
        head = head_from_state(ckpt.model_state["head"])
        return cls(ex, head, cfg, spec.get("task_names") or _dataset_tasks(cfg.dataset, head.n_tasks))

    def task_index(self, task: str | int | None) -> int:
        """The column of ``task`` (a task name, an index, or None for the first task)."""
        n = int(self.head.n_tasks)
        if task is None:
            return 0
        if isinstance(task, int) and not isinstance(task, bool):
            if 0 <= task < n:
                return task
        elif task in self.task_names:
            return self.task_names.index(task)
        names = self.task_names or [str(i) for i in range(n)]
        raise ValueError(f"task {task!r}: this scorer was trained on {self.cfg.dataset} and predicts "
                         f"{names}; give one of those names (or an index 0..{n - 1})")

    def featurize(self, inputs: Sequence[str], *, max_heavy_atoms: int = 150
                  ) -> tuple[np.ndarray, list[str | None]]:
        """(X (n, d) float32, errors): one feature row per input (nan where it has an error) and
        one error per input (None, or why the molecule cannot be scored)."""
        from priorlab.data.molecules import MoleculeInputError, parse_smiles

        errors: list[str | None] = [None] * len(inputs)
        canonical, where = [], []
        for i, raw in enumerate(inputs):
            try:
                parsed = parse_smiles(raw, max_heavy_atoms=max_heavy_atoms)
            except MoleculeInputError as err:
                errors[i] = f"{err.kind}: {err}"
                continue
            canonical.append(parsed.smiles)
            where.append(i)
        X = np.full((len(inputs), int(self.head.n_features)), np.nan, dtype=np.float32)
        if canonical:
            feats, errs = self.extractor.transform(canonical, max_heavy_atoms=max_heavy_atoms)
            for j, i in enumerate(where):
                if j in errs:
                    errors[i] = errs[j]
                else:
                    X[i] = feats[j]
        return X, errors

    def predict(self, X: np.ndarray, task: str | int | None = None) -> np.ndarray:
        """Scores (n,) of feature rows ``X`` (no nan rows) for ``task``."""
        from priorlab.methods.molecules.head import predict

        column = self.task_index(task)
        if len(X) == 0:
            return np.zeros(0, dtype=np.float32)
        return predict(self.head, X)[:, column]

    def score(self, inputs: Sequence[str], *, task: str | int | None = None,
              max_heavy_atoms: int = 150) -> list[ScoreResult]:
        """One result per input, in order; a bad molecule never stops the others."""
        column = self.task_index(task)
        X, errors = self.featurize(inputs, max_heavy_atoms=max_heavy_atoms)
        good = [i for i, e in enumerate(errors) if e is None]
        scores = self.predict(X[good], column)
        results = [ScoreResult(raw, None, err) for raw, err in zip(inputs, errors)]
        for i, value in zip(good, scores):
            results[i] = ScoreResult(inputs[i], float(value), None)
        return results


def _dataset_tasks(dataset: str, n_tasks: int) -> list[str]:
    """Task names of scorers saved before they were recorded: the data set's label columns, when
    its spec names them and their number matches the head's."""
    from priorlab.data.molecules import MOLECULENET

    spec = MOLECULENET.get(dataset)
    columns = list(spec.label_columns or []) if spec is not None else []
    return columns if len(columns) == n_tasks else []


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

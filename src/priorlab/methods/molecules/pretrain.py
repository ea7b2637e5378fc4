"""MiDi-style pretraining of the joint 3D molecule diffusion (thesis Sec. 5.3.2, Eq. 5.1-5.4).

``PretrainFit`` trains a ``diffusion.MolecularDiffusion`` on RDKit conformers of QM9 or MOSES
molecules (``data.molecules``; generated once, cached as Parquet) one step at a time: a step
draws ``batch_size`` molecules (and one conformer of each) from (seed, step) alone, so a resumed
fit repeats what an uninterrupted one does and every data-parallel rank agrees on the batch; rank
r of w takes molecules r, r+w, ... and gradients are averaged by DDP (the loss module is what
``wrap`` wraps, e.g. ``ray.train.torch.prepare_model``).

``evaluate`` reports the validation loss (fixed molecules, fixed noise) and, with
``eval_samples``, generates molecules and scores them with RDKit (``quality.score_samples``:
validity, uniqueness, atom and molecule stability): evidence that the model learned chemistry,
not only a loss curve.

    train, valid = load_pretraining_records(cfg, data_root)
    fit = PretrainFit(cfg, train, valid)
    while fit.step < cfg.steps:
        fit.train_step()
    fit.evaluate()
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Sequence

import torch
from torch import nn

from priorlab.methods.fields.stepfit import StepFit
from priorlab.methods.molecules.config import PretrainConfig

METHOD = "molecules-pretrain"


def vocab_for(cfg: PretrainConfig):
    from priorlab.methods.molecules.graphs import DRUGS_VOCAB, QM9_VOCAB, AtomVocab

    base = QM9_VOCAB if cfg.dataset == "qm9" else DRUGS_VOCAB
    heavy = tuple(e for e in base.elements if e != "H")
    elements = (("H",) + heavy) if cfg.with_hydrogens else heavy
    return AtomVocab(elements, base.charges, with_hydrogens=cfg.with_hydrogens)


def pretraining_smiles(cfg: PretrainConfig, data_root) -> tuple[list[str], list[str]]:
    """The run's training and validation SMILES (seeded subsets of the dataset's splits)."""
    from priorlab.data.molecules import load_pretraining_smiles

    valid_split = "valid" if cfg.dataset == "qm9" else "test"
    train = load_pretraining_smiles(cfg.dataset, data_root, split="train", limit=cfg.n_molecules,
                                    seed=cfg.seed)
    valid = load_pretraining_smiles(cfg.dataset, data_root, split=valid_split, limit=cfg.n_valid,
                                    seed=cfg.seed)
    return train, valid


def load_pretraining_records(cfg: PretrainConfig, data_root) -> tuple[list[list[dict]], list[list[dict]]]:
    """Cached conformers of the run's molecules, one list of conformers per molecule (molecules
    without a conformer are left out here: their failures were reported when they were cached).
    Missing ones are generated in this process (the driver normally made them with Ray Data)."""
    from priorlab.data.molecules import ConformerCache, ConformerParams, cached_records
    from priorlab.data.root import resolve_cache_dir

    params = ConformerParams(n_conformers=cfg.n_conformers, seed=cfg.conformer_seed)
    cache = ConformerCache(resolve_cache_dir(data_root, "conformers"))
    out = []
    for smiles in pretraining_smiles(cfg, data_root):
        out.append([[r for r in recs if r.get("status") == "ok"]
                    for recs in cached_records(cache, smiles, params)])
    train, valid = ([m for m in part if m] for part in out)
    return train, valid


def encode_molecules(molecules: Sequence[Sequence[dict]], vocab, max_atoms: int):
    """PyG graphs per molecule (its conformers) and the count of molecules left out, by reason."""
    from priorlab.methods.molecules.graphs import UnknownChargeError, UnknownElementError, encode_record

    encoded, skipped = [], {"too_many_atoms": 0, "unknown_element": 0, "unknown_charge": 0}
    for confs in molecules:
        if not confs:
            continue
        try:
            graphs = [encode_record(r, vocab) for r in confs]
        except UnknownElementError:
            skipped["unknown_element"] += 1
            continue
        except UnknownChargeError:
            skipped["unknown_charge"] += 1
            continue
        if graphs[0].num_nodes > max_atoms:
            skipped["too_many_atoms"] += 1
            continue
        encoded.append(graphs)
    return encoded, skipped


class _LossModule(nn.Module):
    """What DDP wraps: a forward pass that is the training loss, so gradients are averaged."""

    def __init__(self, diffusion: nn.Module):
        super().__init__()
        self.diffusion = diffusion

    def forward(self, batch, generator):
        return self.diffusion.loss(batch, generator)


class PretrainFit(StepFit):
    def __init__(self, cfg: PretrainConfig, train: Sequence[Sequence[dict]], valid: Sequence[Sequence[dict]],
                 *, rank: int = 0, world: int = 1, wrap: Callable[[nn.Module], nn.Module] | None = None):
        from priorlab.methods.molecules.diffusion import MolecularDiffusion
        from priorlab.methods.molecules.graphs import marginals

        self.cfg, self.rank, self.world = cfg, rank, world
        self.vocab = vocab_for(cfg)
        self.train_graphs, self.skipped = encode_molecules(train, self.vocab, cfg.max_atoms)
        self.valid_graphs, _ = encode_molecules(valid, self.vocab, cfg.max_atoms)
        if not self.train_graphs:
            raise ValueError(f"no training molecule fits the vocabulary {self.vocab.elements} and "
                             f"max_atoms={cfg.max_atoms} (left out: {self.skipped})")
        torch.manual_seed(cfg.seed)
        marg = marginals([g[0] for g in self.train_graphs], self.vocab)
        self.model = MolecularDiffusion(
            self.vocab, marg, T=cfg.diffusion_steps,
            nu={"pos": cfg.nu_pos, "atom": cfg.nu_atom, "charge": cfg.nu_charge, "bond": cfg.nu_bond},
            denoiser=dict(n_layers=cfg.n_layers, hidden=cfg.hidden, edge_hidden=cfg.edge_hidden),
            lambda_pos=cfg.lambda_pos, lambda_atom=cfg.lambda_atom, lambda_charge=cfg.lambda_charge,
            lambda_bond=cfg.lambda_bond)
        self.loss_module = wrap(_LossModule(self.model)) if wrap else _LossModule(self.model)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr,
                                           weight_decay=cfg.weight_decay, amsgrad=True)
        self.step, self.seconds = 0, 0.0

    def spec(self) -> dict[str, Any]:
        return {**self.model.to_spec(), "skipped": self.skipped}

    def _batch(self, graphs, index: torch.Tensor, generator: torch.Generator):
        from priorlab.methods.molecules.graphs import collate

        chosen = []
        for i in index.tolist():
            confs = graphs[i]
            j = int(torch.randint(len(confs), (1,), generator=generator)) if len(confs) > 1 else 0
            chosen.append(confs[j])
        return collate(chosen)

    def train_step(self) -> float:
        start = time.perf_counter()
        self.model.train()
        g = self._generator()
        index = torch.randint(len(self.train_graphs), (self.cfg.batch_size,), generator=g)
        batch = self._batch(self.train_graphs, index[self.rank::self.world], g)
        loss, _parts = self.loss_module(batch, self._generator(1, self.rank))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.step += 1
        self.seconds += time.perf_counter() - start
        return float(loss.detach())

    @torch.no_grad()
    def validation_loss(self, batch_size: int = 64) -> dict[str, float]:
        self.model.eval()
        if not self.valid_graphs:
            return {}
        from priorlab.methods.molecules.graphs import collate

        g = torch.Generator().manual_seed(self.cfg.seed + 7)
        totals: dict[str, float] = {}
        n = 0
        for lo in range(0, len(self.valid_graphs), batch_size):
            graphs = [c[0] for c in self.valid_graphs[lo:lo + batch_size]]
            loss, parts = self.model.loss(collate(graphs), g)
            w = len(graphs)
            n += w
            totals["valid/loss"] = totals.get("valid/loss", 0.0) + float(loss) * w
            for k, v in parts.items():
                totals[f"valid/{k}"] = totals.get(f"valid/{k}", 0.0) + float(v) * w
        return {k: v / n for k, v in totals.items()}

    def evaluate(self) -> dict[str, float]:
        metrics = self.validation_loss()
        if self.cfg.eval_samples > 0 and self.rank == 0:
            scores, _ = sample_and_score(self.model, self.cfg.eval_samples,
                                         seed=hash((self.cfg.seed, self.step)) % (2 ** 31),
                                         train_smiles=None)
            metrics.update({f"eval/{k}": float(v) for k, v in scores.items()})
        metrics["data/train_molecules"] = float(len(self.train_graphs))
        return metrics


def sample_and_score(model, n: int, *, seed: int = 0, progress: bool = False,
                     train_smiles: Sequence[str] | None = None, batch_size: int = 64):
    """``n`` generated molecules and their RDKit scores (validity, uniqueness, stability)."""
    from priorlab.methods.molecules.quality import score_samples

    model.eval()
    g = torch.Generator().manual_seed(seed)
    samples: list[dict] = []
    start = time.perf_counter()
    while len(samples) < n:
        samples.extend(model.sample(min(batch_size, n - len(samples)), g))
        if progress:
            print(f"[priorlab] generated {len(samples)}/{n} molecules "
                  f"({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    # Without hydrogens the stabilities are undefined (NaN): validity still checks valences,
    # RDKit filling in the implicit hydrogens.
    scores = score_samples(samples, train_smiles=train_smiles,
                           with_hydrogens=model.vocab.with_hydrogens)
    scores = {k: v for k, v in scores.items() if isinstance(v, (int, float))}
    return scores, samples


def load_diffusion(path) -> tuple[Any, dict[str, Any]]:
    """A pretrained ``MolecularDiffusion`` from a molecules-pretrain checkpoint folder, eval mode."""
    from priorlab.methods.checkpoint import CheckpointError, load_checkpoint
    from priorlab.methods.molecules.diffusion import MolecularDiffusion

    ckpt = load_checkpoint(path, method=METHOD, with_train_state=False)
    if not ckpt.spec:
        raise CheckpointError(f"{path}/meta.json has no 'spec' (vocabulary, marginals): it was not "
                              "written by the molecules-pretrain trainable")
    model = MolecularDiffusion.from_spec(ckpt.spec)
    model.load_state_dict(ckpt.model_state)
    model.eval()
    return model, {"config": ckpt.config, "step": ckpt.step, "metrics": ckpt.metrics}


def evaluate_checkpoint(checkpoint, data_root, *, episodes: int = 64, split: str = "test") -> dict[str, Any]:
    """`priorlab eval` of a pretraining checkpoint: ``episodes`` generated molecules, scored."""
    model, meta = load_diffusion(checkpoint)
    scores, _ = sample_and_score(model, episodes, seed=0, progress=True)
    return {"step": float(meta["step"]), "eval/tasks": float(episodes),
            **{f"eval/{k}": float(v) for k, v in scores.items() if k != "n"}}

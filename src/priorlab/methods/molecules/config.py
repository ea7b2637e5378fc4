"""Configs of the molecules family (thesis Ch. 5): MiDi-style pretraining and the feature study.

``PretrainConfig`` is the joint 3D diffusion of Sec. 5.3.2 (Eq. 5.1-5.4) as MiDi trains it
(Vignac et al. 2023; defaults from its public configs where they carry over: 500 steps, the
adaptive cosine exponents 2.5 / 1 / 1 / 1.5 for positions / atom types / charges / bonds, loss
weights 3 / 0.4 / 1 / 2, Adam lr 2e-4), with an EGNN denoiser sized for a CPU (see
docs/molecules.md for why not MiDi's 12-layer graph transformer).

``FeaturesConfig`` is one cell of Table 5.1: a feature set (``ecfp``, ``midi``, ``chemberta`` or a
``+`` concatenation), the diffusion features' noise level and layer (Sec. 5.3.3), the MLP head
(Sec. 5.3.4), evaluated by test AUROC over scaffold splits x head seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from priorlab.methods.configuration import ConfigError, check_bounds


@dataclass
class PretrainConfig:
    """MiDi-style pretraining on conformers of QM9 or MOSES molecules (Sec. 5.3.2)."""

    dataset: Literal["qm9", "moses"] = "qm9"
    """Pretraining molecules: QM9 (H, C, N, O, F; MiDi's QM9) or MOSES (drug-like, ZINC-derived:
    C, N, O, F, S, Cl, Br; the elements of BACE but iodine)."""
    n_molecules: int = 20000
    """Training molecules, a seeded subset of the dataset's train split (QM9 has 134k, MOSES
    1.58M; conformers are generated once and cached)."""
    n_valid: int = 500
    """Held-out molecules (the dataset's validation/test split) for the validation loss."""
    with_hydrogens: bool = True
    """Explicit hydrogens, as MiDi trains. False: heavy atoms only (bonds to H dropped), 3-4x
    fewer atoms and ~10x fewer pairs: what makes MOSES trainable on a CPU."""
    max_atoms: int = 64
    """Molecules with more atoms (after the hydrogen choice) are left out of training, counted."""
    n_conformers: int = 1
    """RDKit ETKDG + MMFF conformers per molecule; every step draws one of them."""
    conformer_seed: int = 0
    n_layers: int = 6
    """EGNN layers of the denoiser (MiDi: 12 graph-transformer layers)."""
    hidden: int = 128
    """Node feature width (MiDi dx 256)."""
    edge_hidden: int = 32
    """Edge (bond) feature width (MiDi de 64)."""
    diffusion_steps: int = 500
    """T of the forward process (MiDi: 500)."""
    nu_pos: float = 2.5
    """Exponent of the adaptive cosine schedule of positions (MiDi 2.5)."""
    nu_atom: float = 1.0
    nu_charge: float = 1.0
    nu_bond: float = 1.5
    lambda_pos: float = 3.0
    """Loss weights of positions, atom types, charges, bonds (MiDi: [3, 0.4, 1, 2])."""
    lambda_atom: float = 0.4
    lambda_charge: float = 1.0
    lambda_bond: float = 2.0
    lr: float = 2e-4
    weight_decay: float = 1e-12
    grad_clip: float = 1.0
    batch_size: int = 32
    """Molecules per step, across all workers (DDP splits it)."""
    steps: int = 20000
    eval_every: int = 1000
    eval_samples: int = 64
    """Molecules generated at each evaluation and scored for validity, uniqueness and stability
    (500 denoising steps each batch; 0: validation loss only)."""
    seed: int = 0
    max_seconds: float = 0.0
    """Stop at the first report after this much training time (0: no limit)."""

    def validate(self) -> None:
        check_bounds(self, at_least_1=("n_molecules", "n_valid", "max_atoms", "n_conformers",
                                       "n_layers", "hidden", "edge_hidden", "diffusion_steps",
                                       "batch_size", "steps", "eval_every"),
                     non_negative=("eval_samples", "max_seconds", "weight_decay", "grad_clip",
                                   "lambda_pos", "lambda_atom", "lambda_charge", "lambda_bond"),
                     positive=("lr", "nu_pos", "nu_atom", "nu_charge", "nu_bond"))
        if self.dataset not in ("qm9", "moses"):
            raise ConfigError(f"dataset={self.dataset!r}: pretraining reads 'qm9' or 'moses'")


@dataclass
class FeaturesConfig:
    """One feature set on one MoleculeNet task: features -> MLP head -> test AUROC (Table 5.1)."""

    dataset: str = "bace"
    """A MoleculeNet set (``data.molecules.MOLECULENET``); BACE's label is ``Class``."""
    feature_set: str = "ecfp"
    """``ecfp``, ``midi``, ``chemberta`` or a ``+`` concatenation (``chemberta+midi``: Table 5.1).
    The default needs no model, so a config runs anywhere; ``midi`` needs ``midi_checkpoint``."""
    midi_checkpoint: str = ""
    """A molecules-pretrain checkpoint folder (or a run/experiment folder holding one); needed
    when the feature set has ``midi``."""
    chemberta_path: str = ""
    """A local Hugging Face ChemBERTa/RoBERTa folder; needed when the feature set has ``chemberta``."""
    noise_t: int = 10
    """The fixed diffusion step the conformer is noised to before the denoiser runs (of T;
    Sec. 5.3.1: 'a low noise level'; 0 = clean)."""
    layer: int = 3
    """Which denoiser layer's atom features are pooled (0: input embedding; n_layers: last)."""
    pool: Literal["mean", "sum", "max", "meanmax"] = "mean"
    """Pooling over atoms (Sec. 5.3.3: mean)."""
    n_conformers: int = 1
    """Conformers per molecule; their pooled features are averaged."""
    conformer_seed: int = 0
    ecfp_radius: int = 2
    ecfp_bits: int = 2048
    split: Literal["scaffold", "random", "predefined"] = "scaffold"
    """``scaffold``: balanced Bemis-Murcko scaffold split from each split seed; ``predefined``:
    the file's own split column where it has one (BACE's ``Model``)."""
    n_splits: int = 3
    """Splits per trial (one for ``predefined``)."""
    n_head_seeds: int = 1
    """Head initialisations per split: runs = n_splits x n_head_seeds."""
    hidden: int = 256
    """Width of the head's two hidden layers (Sec. 5.3.4)."""
    dropout: float = 0.2
    lr: float = 1e-3
    weight_decay: float = 1e-5
    epochs: int = 100
    patience: int = 20
    batch_size: int = 64
    n_boot: int = 1000
    """Bootstrap resamples of each run's test set for its AUROC interval."""
    seed: int = 0
    """Split seeds are seed*n_splits ... (seed+1)*n_splits - 1, head seeds likewise: trials with the
    same seed run on the same splits (paired), `--samples N` adds new splits."""

    def validate(self) -> None:
        check_bounds(self, at_least_1=("n_conformers", "ecfp_radius", "ecfp_bits", "n_splits",
                                       "n_head_seeds", "hidden", "epochs", "patience",
                                       "batch_size", "n_boot"),
                     non_negative=("noise_t", "layer", "dropout", "weight_decay"),
                     positive=("lr",))
        if self.dropout >= 1:
            raise ConfigError(f"dropout={self.dropout} must be < 1")
        if self.split not in ("scaffold", "random", "predefined"):
            raise ConfigError(f"split={self.split!r}: use scaffold, random or predefined")
        from priorlab.methods.molecules.fingerprints import parse_feature_set

        try:
            parts = parse_feature_set(self.feature_set)
        except ValueError as err:
            raise ConfigError(f"feature_set: {err}") from err
        if "midi" in parts and not self.midi_checkpoint:
            raise ConfigError(
                f"feature_set={self.feature_set!r} needs midi_checkpoint=PATH: a molecules-pretrain "
                "checkpoint (`priorlab train molecules-pretrain` writes one)")
        if "chemberta" in parts and not self.chemberta_path:
            raise ConfigError(
                f"feature_set={self.feature_set!r} needs chemberta_path=FOLDER: a local Hugging "
                "Face ChemBERTa/RoBERTa (e.g. seyonec/ChemBERTa-zinc-base-v1 saved with "
                "save_pretrained); no model hub is reached")

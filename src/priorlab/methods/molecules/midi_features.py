"""Diffusion features of a conformer: noise at a fixed t, denoise, pool a layer (thesis Sec. 5.3.1-
5.3.3, Fig. 5.1, Eq. 5.1-5.4).

A conformer is corrupted to the fixed step ``t`` exactly as in training (zero-CoM Gaussian noise
on positions scaled by the adaptive cosine schedule, Eq. 5.1-5.2; marginal categorical transitions
of atom types, charges and bonds, Eq. 5.3-5.4), the denoiser runs once, and the atom features
after layer ``layer`` (0 = input embedding) are pooled over the molecule's atoms (mean, as the
thesis; sum, max or mean‖max optional). Conformers of one molecule are averaged.

The noise of a feature must not depend on how the molecule happens to be written down, or two
copies of the same molecule get different features. So the draws are tied to the molecule, not
to the input's atom order or frame:

- every atom draws from the slot of its canonical rank (RDKit ``CanonicalRankAtoms`` of the
  molecule graph), every bond from the slot of its pair of ranks, from a generator seeded by
  ``seed`` and the canonical SMILES: permuting the atoms permutes the draws with them;
- the position noise is drawn in the conformer's principal-axes frame (eigenvectors of the
  centred coordinates' second moment, each axis' sign fixed by the third moment) and rotated
  back: rotating or translating the conformer rotates the noised conformer with it, and the
  E(3)-equivariant denoiser's atom features are then unchanged.

Exact up to float error for molecules without symmetric atoms or degenerate principal axes
(equivalent atoms swapped by a permutation, or a symmetric top, can change which draw lands
where); at t = 0 (no noise) exact for every molecule.

    X, errors = midi_features(model, [records_of_mol_a, records_of_mol_b], t=10, layer=3)
"""

from __future__ import annotations

import zlib
from typing import Sequence

import numpy as np
import torch

POOLS = ("mean", "sum", "max", "meanmax")


def canonical_ranks(record: dict) -> np.ndarray:
    """Canonical rank of every atom of a conformer record (hydrogens included), graph only."""
    from rdkit import Chem

    from priorlab.data.molecules import records_to_mol

    mol = records_to_mol(record)
    return np.asarray(list(Chem.CanonicalRankAtoms(mol, breakTies=True)), dtype=np.int64)


def principal_frame(pos: torch.Tensor, ranks: torch.Tensor) -> torch.Tensor:
    """(3, 3) orthonormal axes (columns) of a centred conformer (n, 3), signs fixed by the third
    moment of the projections (ties: the lowest-ranked atom off the plane decides)."""
    x = pos.double() - pos.double().mean(0, keepdim=True)
    _, vecs = torch.linalg.eigh(x.T @ x)
    proj = x @ vecs
    order = torch.argsort(ranks)
    signs = []
    for k in range(3):
        skew = (proj[:, k] ** 3).sum()
        if abs(float(skew)) > 1e-6:
            signs.append(1.0 if skew > 0 else -1.0)
            continue
        lead = next((float(proj[i, k]) for i in order.tolist() if abs(float(proj[i, k])) > 1e-4), 1.0)
        signs.append(1.0 if lead > 0 else -1.0)
    return vecs * torch.tensor(signs, dtype=vecs.dtype)


def _pick(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw: probs (..., K), u (...) uniform -> indices (...)."""
    cdf = probs.cumsum(-1)
    return (cdf < u.unsqueeze(-1) * cdf[..., -1:]).sum(-1).clamp_max(probs.shape[-1] - 1)


def _noised(model, data, ranks: torch.Tensor, t: int, generator: torch.Generator):
    """A NoisyMolecules of one conformer at step t with rank-keyed draws."""
    from priorlab.methods.molecules.graphs import collate
    from priorlab.methods.molecules.noise import NoisyMolecules, remove_mean

    x = collate([data])
    x.pos = x.pos.to(next(model.parameters()).dtype)
    n = int(data.num_nodes)
    n_slots = int(ranks.max()) + 1 if n else 1
    slot_eps = torch.randn(n_slots, 3, generator=generator, dtype=torch.float64)
    slot_u = torch.rand(2, n_slots, generator=generator, dtype=torch.float64)
    pair_u = torch.rand(n_slots, n_slots, generator=generator, dtype=torch.float64)
    t_int = torch.tensor([t])
    sched, trans = model.schedule, model.transition
    pos0 = x.pos[0].double()
    if t == 0:
        pos = remove_mean(x.pos, x.mask)
        atom, charge, bond = x.atom, x.charge, x.bond
    else:
        axes = principal_frame(pos0, ranks)
        eps = (slot_eps[ranks] @ axes.T).to(x.pos.dtype).unsqueeze(0)
        alpha, sigma = sched.pos_alpha_sigma(t_int, x.pos.dtype)
        pos = alpha.view(-1, 1, 1) * remove_mean(x.pos, x.mask) + sigma.view(-1, 1, 1) * remove_mean(eps, x.mask)
        atom = _pick(trans.probs("atom", x.atom, sched.alpha_bar("atom", t_int)),
                     slot_u[0][ranks].float().unsqueeze(0))
        charge = _pick(trans.probs("charge", x.charge, sched.alpha_bar("charge", t_int)),
                       slot_u[1][ranks].float().unsqueeze(0))
        lo = torch.minimum(ranks.unsqueeze(0), ranks.unsqueeze(1))
        hi = torch.maximum(ranks.unsqueeze(0), ranks.unsqueeze(1))
        u = pair_u[lo, hi].float().unsqueeze(0)                       # symmetric (1, n, n)
        bond = _pick(trans.probs("bond", x.bond, sched.alpha_bar("bond", t_int)), u)
        bond = bond * (1 - torch.eye(n, dtype=torch.long)).unsqueeze(0)
    return NoisyMolecules(pos=pos, atom=atom, charge=charge, bond=bond, mask=x.mask,
                          t_int=t_int, t=t_int.to(x.pos.dtype) / sched.T)


def pool_atoms(h: torch.Tensor, pool: str) -> torch.Tensor:
    """(n, d) atom features of one molecule -> (d,) or (2d,) for meanmax."""
    if pool == "mean":
        return h.mean(0)
    if pool == "sum":
        return h.sum(0)
    if pool == "max":
        return h.max(0).values
    if pool == "meanmax":
        return torch.cat([h.mean(0), h.max(0).values])
    raise ValueError(f"pool={pool!r}: choose one of {POOLS}")


@torch.no_grad()
def molecule_feature(model, records: Sequence[dict], *, t: int, layer: int, pool: str = "mean",
                     seed: int = 0) -> np.ndarray:
    """The pooled feature of one molecule (mean over its conformers). Raises the encoder's
    UnknownElementError / UnknownChargeError for what the model never saw, ValueError else."""
    from priorlab.methods.molecules.graphs import encode_record

    if not records:
        raise ValueError("no conformer")
    if not 0 <= t <= model.schedule.T:
        raise ValueError(f"noise_t={t} is outside the model's 0..{model.schedule.T} steps")
    n_layers = len(model.denoiser.layers)
    if not 0 <= layer <= n_layers:
        raise ValueError(f"layer={layer}: the denoiser has layers 0 (input embedding) .. {n_layers}")
    model.eval()
    feats = []
    for record in records:
        data = encode_record(record, model.vocab)
        ranks_all = canonical_ranks(record)
        keep = np.asarray(record["atomic_numbers"]) != 1 if not model.vocab.with_hydrogens else \
            np.ones(len(ranks_all), dtype=bool)
        ranks = torch.from_numpy(np.unique(ranks_all[keep], return_inverse=True)[1].reshape(-1))
        g = torch.Generator().manual_seed(
            (zlib.crc32(str(record["smiles"]).encode()) * 1_000_003 + seed) % (2 ** 63))
        noisy = _noised(model, data, ranks, t, g)
        _pred, layers = model.denoiser(noisy, return_features=True)
        feats.append(pool_atoms(layers[layer][0, : data.num_nodes].double(), pool))
    return torch.stack(feats).mean(0).float().numpy()


def midi_features(model, molecules: Sequence[Sequence[dict]], *, t: int, layer: int,
                  pool: str = "mean", seed: int = 0) -> tuple[np.ndarray, dict[int, str]]:
    """(n, d) features of ``molecules`` (each a list of conformer records, failures allowed) and
    ``{row: reason}`` for molecules without one; failed rows are nan. One molecule at a time, so
    a feature never depends on what else is in the batch."""
    dim = None
    rows: list[np.ndarray | None] = []
    errors: dict[int, str] = {}
    for i, records in enumerate(molecules):
        ok = [r for r in records if r.get("status", "ok") == "ok"]
        if not ok:
            reason = next((r.get("reason") for r in records if r.get("reason")), "") or "no conformer"
            errors[i] = f"no conformer: {reason}"
            rows.append(None)
            continue
        try:
            f = molecule_feature(model, ok, t=t, layer=layer, pool=pool, seed=seed)
        except ValueError as err:  # unknown element / charge, a bad record
            errors[i] = str(err)
            rows.append(None)
            continue
        dim = len(f)
        rows.append(f)
    if dim is None:
        dim = model.denoiser.hidden * (2 if pool == "meanmax" else 1)
    X = np.full((len(molecules), dim), np.nan, np.float32)
    for i, f in enumerate(rows):
        if f is not None:
            X[i] = f
    return X, errors

"""MiDi-style joint 3D diffusion of molecules, and its use as a feature extractor (thesis
Sec. 5.3.1-5.3.3, Eq. 5.1-5.4).

:class:`MolecularDiffusion` holds the denoiser (``denoiser.EGNNDenoiser``), the noise schedules and
marginal transitions (``noise``), the vocabulary and the training marginals, and offers:

- ``loss(x)``: t ~ U{1..T}, z_t ~ q(z_t | x), denoise, then
  lambda_pos * MSE(x0_hat, x0) + lambda_atom * CE(atoms) + lambda_charge * CE(charges)
  + lambda_bond * CE(bonds over unordered real pairs); MiDi's weights [3, 0.4, 1, 2].
- ``sample(n)``: ancestral sampling from t = T to 0. Sizes come from the training distribution,
  the prior at T is N_CoM(0, I) for positions and the marginals m' for the discrete parts. A step
  t -> s draws positions from the Gaussian posterior q(x_s | x_t, x0 = x0_hat) with zero-CoM noise
  and each discrete variable from sum_{x0} p_theta(x0 | z_t) q(x_s | x_t, x0). Both posteriors are
  exact for any s < t (``noise``), so ``steps < T`` skips steps without approximation beyond
  the model's own.
- ``features(x, t, layer)``: the thesis' pooled feature (Sec. 5.3.3): noise a conformer to the fixed
  step t (t = 0: clean), run the denoiser, pool the node features of ``layer`` (0: input
  embedding, l: after layer l, -1: the last) over real atoms. Deterministic given the generator.
  At t = 0 it is exactly invariant to rotations, translations, reflections and atom order; at
  t > 0 the noise is drawn per atom in the input's frame, so invariance holds in distribution.
- ``to_spec()`` / ``from_spec(spec)``: a json-able dict that rebuilds the model; a checkpoint is
  the spec plus ``state_dict()``.

    model = MolecularDiffusion(vocab, marginals(graphs, vocab), T=500, denoiser=dict(n_layers=6))
    total, parts = model.loss(collate(batch_graphs), generator)
    molecules = model.sample(64, generator)              # list of record-like dicts
    feats = model.features(collate(graphs), t=10, layer=3, pool="mean")   # (B, 128)
"""

from __future__ import annotations

import numbers
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from priorlab.methods.molecules.denoiser import EGNNDenoiser
from priorlab.methods.molecules.graphs import AtomVocab, DenseMolecules
from priorlab.methods.molecules.noise import (
    MarginalTransition,
    NoiseSchedule,
    NoisyMolecules,
    apply_noise,
    pair_mask,
    pos_posterior,
    remove_mean,
    sample_categorical,
    sample_center_gravity_gaussian,
    sample_symmetric_bonds,
)

SPEC_FORMAT = "priorlab.molecules.diffusion/1"
POOLS = ("mean", "sum", "max", "meanmax")
MARGINAL_KEYS = ("atom", "charge", "bond", "n_atoms")


def pool_nodes(h: torch.Tensor, mask: torch.Tensor, pool: str) -> torch.Tensor:
    """Pool node features (B, N, d) over real atoms -> (B, d) (``meanmax``: (B, 2d))."""
    m = mask.unsqueeze(-1)
    if pool in ("mean", "sum", "meanmax"):
        total = (h * m.to(h.dtype)).sum(dim=1)
        mean = total / m.sum(dim=1).clamp_min(1).to(h.dtype)
    if pool in ("max", "meanmax"):
        mx = h.masked_fill(~m, float("-inf")).max(dim=1).values
    if pool == "mean":
        return mean
    if pool == "sum":
        return total
    if pool == "max":
        return mx
    if pool == "meanmax":
        return torch.cat([mean, mx], dim=-1)
    raise ValueError(f"pool={pool!r} is not one of {POOLS}")


class MolecularDiffusion(nn.Module):
    """Joint diffusion over positions, atom types, charges and bonds (see the module docstring)."""

    def __init__(self, vocab: AtomVocab, marginals: Mapping[str, Any], *, T: int = 500,
                 nu: Mapping[str, float] | None = None, s: float = 0.008,
                 denoiser: Mapping[str, Any] | None = None, lambda_pos: float = 3.0,
                 lambda_atom: float = 0.4, lambda_charge: float = 1.0, lambda_bond: float = 2.0):
        super().__init__()
        missing = [k for k in MARGINAL_KEYS if k not in marginals]
        if missing:
            raise ValueError(f"marginals lack {missing}; build them with "
                             "graphs.marginals(graphs, vocab)")
        self.vocab = vocab
        self.marginals = {k: torch.as_tensor(marginals[k], dtype=torch.float32).flatten().cpu()
                          for k in MARGINAL_KEYS}
        for key, want in (("atom", vocab.n_types), ("charge", vocab.n_charges), ("bond", 5)):
            if self.marginals[key].numel() != want:
                raise ValueError(f"the {key} marginal has {self.marginals[key].numel()} "
                                 f"entries, the vocabulary needs {want}: build marginals with "
                                 "the same vocab")
        size = self.marginals["n_atoms"]
        if float(size.sum()) <= 0 or float(size[1:].sum()) <= 0:
            raise ValueError("the n_atoms marginal puts no mass on molecules with atoms")
        self.schedule = NoiseSchedule(T=T, nu=nu, s=s)
        self.transition = MarginalTransition(self.marginals["atom"], self.marginals["charge"],
                                             self.marginals["bond"])
        args = dict(denoiser or {})
        for fixed in ("n_atom_types", "n_charges"):
            args.pop(fixed, None)
        self.denoiser = EGNNDenoiser(vocab.n_types, vocab.n_charges, **args)
        self.lambdas = {"pos": float(lambda_pos), "atom": float(lambda_atom),
                        "charge": float(lambda_charge), "bond": float(lambda_bond)}

    @property
    def T(self) -> int:
        return self.schedule.T

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # --- training (MiDi's loss) -----------------------------------------------------------------
    def loss(self, x: DenseMolecules, generator: torch.Generator | None = None, *,
             t_int: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(total, parts) at t ~ U{1..T} (or the given ``t_int``); parts are detached:
        ``loss`` and the unweighted ``loss_pos``, ``loss_atom``, ``loss_charge``, ``loss_bond``."""
        b, n = x.mask.shape
        if t_int is None:
            t_int = torch.randint(1, self.T + 1, (b,), generator=generator, device=x.mask.device)
        noisy = apply_noise(x, t_int, self.schedule, self.transition, generator)
        pred = self.denoiser(noisy, noisy.t)
        mask = x.mask
        target = remove_mean(x.pos, mask)
        n_coords = (mask.sum() * 3).clamp_min(1)
        loss_pos = (((pred.pos - target) ** 2) * mask.unsqueeze(-1)).sum() / n_coords
        loss_atom = F.cross_entropy(pred.atom[mask], x.atom[mask])
        loss_charge = F.cross_entropy(pred.charge[mask], x.charge[mask])
        iu, ju = torch.triu_indices(n, n, offset=1, device=mask.device)
        upper = pair_mask(mask)[:, iu, ju]
        if bool(upper.any()):
            loss_bond = F.cross_entropy(pred.bond[:, iu, ju][upper], x.bond[:, iu, ju][upper])
        else:  # only single-atom molecules: no pair to classify
            loss_bond = pred.bond.sum() * 0.0
        lam = self.lambdas
        total = (lam["pos"] * loss_pos + lam["atom"] * loss_atom + lam["charge"] * loss_charge
                 + lam["bond"] * loss_bond)
        parts = {"loss": total, "loss_pos": loss_pos, "loss_atom": loss_atom,
                 "loss_charge": loss_charge, "loss_bond": loss_bond}
        return total, {k: v.detach() for k, v in parts.items()}

    # --- sampling -------------------------------------------------------------------------------
    def _time_grid(self, steps: int | None) -> list[int]:
        steps = self.T if steps is None else int(steps)
        if not 1 <= steps <= self.T:
            raise ValueError(f"steps={steps} must lie in [1, T={self.T}]")
        grid = torch.linspace(self.T, 0, steps + 1, dtype=torch.float64).round().long()
        return sorted(set(grid.tolist()), reverse=True)

    def _sizes(self, n: int, n_atoms: int | Sequence[int] | None,
               generator: torch.Generator | None) -> list[int]:
        if n_atoms is None:
            probs = self.marginals["n_atoms"].clone()
            probs[0] = 0.0  # a molecule needs an atom, whatever a hand-made spec says
            probs = probs.to(self.device).expand(n, -1)
            return sample_categorical(probs, generator).tolist()
        sizes = [int(n_atoms)] * n if isinstance(n_atoms, int) else [int(k) for k in n_atoms]
        if len(sizes) != n or min(sizes) < 1:
            raise ValueError(f"n_atoms must be a positive int or {n} positive ints, got {n_atoms}")
        return sizes

    def _prior(self, mask: torch.Tensor, generator: torch.Generator | None) -> NoisyMolecules:
        b, n = mask.shape
        dev = mask.device
        tr = self.transition
        atom = sample_categorical(tr.marginal("atom", dev).expand(b, n, -1), generator) * mask
        charge = sample_categorical(tr.marginal("charge", dev).expand(b, n, -1), generator) * mask
        bond = sample_symmetric_bonds(tr.marginal("bond", dev).expand(b, n, n, -1), mask, generator)
        dtype = next(self.parameters()).dtype
        pos = sample_center_gravity_gaussian((b, n, 3), mask, generator, dtype)
        t_int = torch.full((b,), self.T, dtype=torch.long, device=dev)
        return NoisyMolecules(pos, atom, charge, bond, mask, t_int, t_int.to(dtype) / self.T)

    def _reverse_step(self, z: NoisyMolecules, s: int, generator: torch.Generator | None
                      ) -> NoisyMolecules:
        mask = z.mask
        b = mask.shape[0]
        pred = self.denoiser(z, z.t)
        s_int = torch.full((b,), s, dtype=torch.long, device=mask.device)
        sch, tr = self.schedule, self.transition
        dtype = z.pos.dtype
        c_t, c_0, std = (v.to(dtype).view(b, 1, 1) for v in pos_posterior(sch, z.t_int, s_int))
        eps = sample_center_gravity_gaussian((b, mask.shape[1], 3), mask, generator, dtype)
        pos = (c_t * z.pos + c_0 * pred.pos + std * eps) * mask.unsqueeze(-1)

        def post(component: str, x_t: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
            return tr.posterior(component, x_t, logits.softmax(dim=-1),
                                sch.alpha_bar(component, z.t_int), sch.alpha_bar(component, s_int))

        atom = sample_categorical(post("atom", z.atom, pred.atom), generator) * mask
        charge = sample_categorical(post("charge", z.charge, pred.charge), generator) * mask
        bond = sample_symmetric_bonds(post("bond", z.bond, pred.bond), mask, generator)
        return NoisyMolecules(pos, atom, charge, bond, mask, s_int, s_int.to(dtype) / self.T)

    def _decode(self, z: NoisyMolecules) -> list[dict[str, Any]]:
        zs = torch.tensor(self.vocab.atomic_numbers)
        qs = torch.tensor(self.vocab.charges)
        out = []
        for i in range(z.mask.shape[0]):
            k = int(z.mask[i].sum())
            bond = z.bond[i, :k, :k].cpu()
            src, dst = torch.triu(bond, diagonal=1).nonzero(as_tuple=True)
            out.append({
                "atomic_numbers": zs[z.atom[i, :k].cpu()].tolist(),
                "formal_charges": qs[z.charge[i, :k].cpu()].tolist(),
                "positions": z.pos[i, :k].cpu().reshape(-1).tolist(),
                "bond_src": src.tolist(), "bond_dst": dst.tolist(),
                "bond_type": bond[src, dst].tolist(),
            })
        return out

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, *,
               n_atoms: int | Sequence[int] | None = None, steps: int | None = None,
               batch_size: int = 64) -> list[dict[str, Any]]:
        """Generate ``n`` molecules as record-like dicts (``atomic_numbers``, ``formal_charges``,
        flattened ``positions``, ``bond_src`` < ``bond_dst``, ``bond_type``); hydrogens appear
        only when the vocabulary has them. ``n_atoms``: one size for all or one per molecule
        (default: drawn from the training sizes). ``steps``: reverse steps (default T; fewer
        are strided, see the module docstring). ``generator`` must live on the model's device."""
        if n < 0 or batch_size < 1:
            raise ValueError(f"sample needs n >= 0 and batch_size >= 1, got n={n}, "
                             f"batch_size={batch_size}")
        sizes = self._sizes(n, n_atoms, generator)
        grid = self._time_grid(steps)
        was_training = self.training
        self.eval()
        out: list[dict[str, Any]] = []
        try:
            for start in range(0, n, batch_size):
                chunk = torch.tensor(sizes[start:start + batch_size], device=self.device)
                mask = torch.arange(int(chunk.max()), device=self.device) < chunk.unsqueeze(1)
                z = self._prior(mask, generator)
                for s in grid[1:]:
                    z = self._reverse_step(z, s, generator)
                out.extend(self._decode(z))
        finally:
            self.train(was_training)
        return out

    # --- features (Sec. 5.3.3) ------------------------------------------------------------------
    @torch.no_grad()
    def features(self, x: DenseMolecules, t: int, layer: int | Sequence[int], pool: str = "mean",
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, d) pooled node features of ``layer`` (a list: concatenated in that order) after
        noising ``x`` to the fixed step ``t`` (0 = clean). d = hidden per layer (2x for meanmax)."""
        if not 0 <= int(t) <= self.T:
            raise ValueError(f"t={t} must lie in [0, T={self.T}] (0 = no noise)")
        if pool not in POOLS:
            raise ValueError(f"pool={pool!r} is not one of {POOLS}")
        layers = [layer] if isinstance(layer, numbers.Integral) else list(layer)
        n_feats = self.denoiser.n_layers + 1
        bad = [l for l in layers if not -n_feats <= int(l) < n_feats]
        if not layers or bad:
            raise ValueError(f"layer {bad or layers} is out of range: 0 is the input embedding, "
                             f"1..{n_feats - 1} the layers' outputs (-1 the last)")
        was_training = self.training
        self.eval()
        try:
            t_int = torch.full((len(x),), int(t), dtype=torch.long, device=x.mask.device)
            noisy = apply_noise(x, t_int, self.schedule, self.transition, generator)
            _, feats = self.denoiser(noisy, noisy.t, return_features=True)
        finally:
            self.train(was_training)
        return torch.cat([pool_nodes(feats[int(l)], x.mask, pool) for l in layers], dim=-1)

    # --- spec -----------------------------------------------------------------------------------
    def to_spec(self) -> dict[str, Any]:
        """Everything but the weights, json-able: ``from_spec(spec)`` + ``load_state_dict``."""
        args = self.denoiser.args()
        args.pop("n_atom_types")
        args.pop("n_charges")
        return {"format": SPEC_FORMAT, "vocab": self.vocab.to_dict(),
                "marginals": {k: v.tolist() for k, v in self.marginals.items()},
                "schedule": self.schedule.to_spec(), "denoiser": args,
                "lambdas": dict(self.lambdas)}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> "MolecularDiffusion":
        """Rebuild a (freshly initialised) model from :meth:`to_spec`'s dict."""
        if spec.get("format") != SPEC_FORMAT:
            raise ValueError(f"spec format {spec.get('format')!r} is not {SPEC_FORMAT!r}: this is "
                             "not a MolecularDiffusion spec (or one from another version)")
        missing = [k for k in ("vocab", "marginals", "schedule", "denoiser", "lambdas")
                   if k not in spec]
        if missing:
            raise ValueError(f"MolecularDiffusion spec lacks {missing}")
        sch, lam = spec["schedule"], spec["lambdas"]
        return cls(AtomVocab.from_dict(spec["vocab"]), spec["marginals"], T=int(sch["T"]),
                   nu=sch["nu"], s=float(sch.get("s", 0.008)), denoiser=spec["denoiser"],
                   lambda_pos=lam["pos"], lambda_atom=lam["atom"],
                   lambda_charge=lam["charge"], lambda_bond=lam["bond"])

"""The E(3)-equivariant denoiser of the joint 3D diffusion (thesis Sec. 5.3.1-5.3.3).

MiDi denoises with a 12-layer graph transformer (dx 256, de 64, 8 heads); this is an EGNN
(Satorras et al. 2021, as EDM uses it) extended with edge features so that it denoises bond
classes too, sized to train on a few CPU cores. Everything is dense, (B, N, ...) with masks, on
the fully connected graph of real atoms. Layer l:

    m_ij = phi_m(h_i, h_j, |x_i - x_j|^2, e_ij)                         (i != j, both real)
    e_ij <- LayerNorm(e_ij + phi_e((m_ij + m_ji) / 2))                  (stays symmetric)
    h_i  <- LayerNorm(h_i + phi_h(h_i, mean_j m_ij))
    x_i  <- x_i + r * mean_j (x_i - x_j) / (|x_i - x_j| + 1) * tanh(phi_x(m_ij)),  CoM removed

Pair channels (m_ij, e_ij) are ``edge_hidden`` wide and node channels ``hidden`` wide, as MiDi
separates de from dx: the N^2 pairs dominate the cost, so this keeps 500 sampling steps
affordable on a CPU. The tanh-bounded coordinate weights (scaled by ``coord_range`` r) are
EDM's stability trick; means over the n-1 partners (not sums) keep the updates' size
independent of the molecule's size and make a molecule's outputs independent of the padding
around it. Inputs are one-hots of atom types, charges and bonds, the time t in [0, 1] and
(``size_feature``) log(n atoms).

Outputs (:class:`Prediction`): the clean positions x0 (zero CoM; MiDi predicts x0, not eps),
logits over atom types, charges and bond classes (symmetric in i, j). With
``return_features=True`` also the node features after every layer, ``features[0]`` the input
embedding and ``features[l]`` the output of layer l: functions of distances and types only,
hence E(3)-invariant; these are what Sec. 5.3.3 pools.

    net = EGNNDenoiser(vocab.n_types, vocab.n_charges, n_layers=6, hidden=128, edge_hidden=32)
    pred, feats = net(noisy, noisy.t, return_features=True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from priorlab.methods.molecules.graphs import N_BOND_CLASSES
from priorlab.methods.molecules.noise import NoisyMolecules, pair_mask, remove_mean


@dataclass
class Prediction:
    """The denoiser's estimate of the clean molecule."""

    pos: torch.Tensor
    """(B, N, 3) predicted clean positions, zero CoM, 0 on padding."""
    atom: torch.Tensor
    """(B, N, n_types) logits of atom types."""
    charge: torch.Tensor
    """(B, N, n_charges) logits of charges."""
    bond: torch.Tensor
    """(B, N, N, 5) logits of bond classes, symmetric in the two atoms (0 on invalid pairs)."""


class EGNNLayer(nn.Module):
    """One equivariant message-passing layer with edge features (see the module docstring)."""

    def __init__(self, hidden: int, edge_hidden: int, coord_range: float):
        super().__init__()
        self.coord_range = coord_range
        # phi_m's first linear map acts on cat(h_i, h_j, d2, e_ij); split so that the node
        # terms are computed per atom, not per pair (the pairs dominate the cost), and the pair
        # channels are edge_hidden wide (MiDi's de), the node channels hidden (MiDi's dx).
        self.msg_i = nn.Linear(hidden, edge_hidden)
        self.msg_j = nn.Linear(hidden, edge_hidden, bias=False)
        self.msg_d = nn.Linear(1, edge_hidden, bias=False)
        self.msg_e = nn.Linear(edge_hidden, edge_hidden, bias=False)
        self.msg_out = nn.Sequential(nn.SiLU(), nn.Linear(edge_hidden, edge_hidden), nn.SiLU())
        self.edge_update = nn.Linear(edge_hidden, edge_hidden)
        self.edge_norm = nn.LayerNorm(edge_hidden)
        self.node_mlp = nn.Sequential(nn.Linear(hidden + edge_hidden, hidden), nn.SiLU(),
                                      nn.Linear(hidden, hidden))
        self.node_norm = nn.LayerNorm(hidden)
        last = nn.Linear(edge_hidden, 1, bias=False)
        # EDM starts the coordinate head near zero so that early training barely moves atoms.
        nn.init.xavier_uniform_(last.weight, gain=0.001)
        self.coord_mlp = nn.Sequential(nn.Linear(edge_hidden, edge_hidden), nn.SiLU(), last)

    def forward(self, h: torch.Tensor, e: torch.Tensor, x: torch.Tensor, mask: torch.Tensor,
                pmask: torch.Tensor, inv_deg: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pm = pmask.unsqueeze(-1).to(h.dtype)                               # (B, N, N, 1)
        diff = x.unsqueeze(2) - x.unsqueeze(1)                             # (B, N, N, 3)
        d2 = (diff ** 2).sum(-1, keepdim=True)                             # (B, N, N, 1)
        m = self.msg_out(self.msg_i(h).unsqueeze(2) + self.msg_j(h).unsqueeze(1)
                         + self.msg_d(d2) + self.msg_e(e)) * pm            # (B, N, N, E)
        e = self.edge_norm(e + self.edge_update(0.5 * (m + m.transpose(1, 2)))) * pm
        agg = m.sum(dim=2) * inv_deg                                       # (B, N, E)
        h = self.node_norm(h + self.node_mlp(torch.cat([h, agg], dim=-1)))
        h = h * mask.unsqueeze(-1).to(h.dtype)
        w = torch.tanh(self.coord_mlp(m)) * pm                             # (B, N, N, 1)
        step = (diff / (torch.sqrt(d2 + 1e-8) + 1) * w).sum(dim=2) * inv_deg
        x = remove_mean(x + self.coord_range * step, mask)
        return h, e, x


class EGNNDenoiser(nn.Module):
    """Noisy molecule z_t and time t -> :class:`Prediction` of the clean molecule."""

    def __init__(self, n_atom_types: int, n_charges: int, *, n_layers: int = 6, hidden: int = 128,
                 edge_hidden: int = 32, coord_range: float = 3.0, size_feature: bool = True):
        super().__init__()
        if min(n_atom_types, n_charges, n_layers, hidden, edge_hidden) < 1:
            raise ValueError("EGNNDenoiser needs at least one atom type, charge, layer and unit; "
                             f"got types={n_atom_types} charges={n_charges} layers={n_layers} "
                             f"hidden={hidden} edge_hidden={edge_hidden}")
        self.n_atom_types, self.n_charges = n_atom_types, n_charges
        self.n_layers, self.hidden, self.edge_hidden = n_layers, hidden, edge_hidden
        self.coord_range, self.size_feature = float(coord_range), bool(size_feature)
        n_in = n_atom_types + n_charges + 1 + int(size_feature)
        self.node_in = nn.Linear(n_in, hidden)
        self.edge_in = nn.Linear(N_BOND_CLASSES, edge_hidden)
        self.layers = nn.ModuleList(EGNNLayer(hidden, edge_hidden, self.coord_range)
                                    for _ in range(n_layers))
        self.atom_out = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(),
                                      nn.Linear(hidden, n_atom_types))
        self.charge_out = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(),
                                        nn.Linear(hidden, n_charges))
        self.bond_node = nn.Linear(hidden, edge_hidden)
        self.bond_out = nn.Sequential(nn.Linear(2 * edge_hidden + 1, edge_hidden), nn.SiLU(),
                                      nn.Linear(edge_hidden, N_BOND_CLASSES))

    def args(self) -> dict[str, Any]:
        """Constructor arguments (json-able): ``EGNNDenoiser(**net.args())`` rebuilds it."""
        return {"n_atom_types": self.n_atom_types, "n_charges": self.n_charges,
                "n_layers": self.n_layers, "hidden": self.hidden, "edge_hidden": self.edge_hidden,
                "coord_range": self.coord_range, "size_feature": self.size_feature}

    def forward(self, noisy: NoisyMolecules, t: torch.Tensor | None = None, *,
                return_features: bool = False
                ) -> Prediction | tuple[Prediction, list[torch.Tensor]]:
        mask = noisy.mask
        dtype = noisy.pos.dtype
        b, n = mask.shape
        t = noisy.t if t is None else torch.as_tensor(t, dtype=dtype, device=mask.device)
        t = t.to(dtype).reshape(-1)
        if t.numel() == 1 and b > 1:
            t = t.expand(b)
        nm = mask.unsqueeze(-1).to(dtype)
        pmask = pair_mask(mask)
        n_real = mask.sum(dim=1).to(dtype)                                  # (B,)
        inv_deg = (1.0 / (n_real - 1).clamp_min(1)).view(b, 1, 1)

        parts = [F.one_hot(noisy.atom, self.n_atom_types).to(dtype),
                 F.one_hot(noisy.charge, self.n_charges).to(dtype),
                 t.view(b, 1, 1).expand(b, n, 1)]
        if self.size_feature:
            parts.append(torch.log(n_real.clamp_min(1)).view(b, 1, 1).expand(b, n, 1))
        h = self.node_in(torch.cat(parts, dim=-1)) * nm
        e = self.edge_in(F.one_hot(noisy.bond, N_BOND_CLASSES).to(dtype)) * pmask.unsqueeze(-1)
        x = remove_mean(noisy.pos, mask)

        features = [h]
        for layer in self.layers:
            h, e, x = layer(h, e, x, mask, pmask, inv_deg)
            features.append(h)

        dist = torch.sqrt(((x.unsqueeze(2) - x.unsqueeze(1)) ** 2).sum(-1, keepdim=True) + 1e-8)
        hb = self.bond_node(h)
        pair_h = hb.unsqueeze(2) + hb.unsqueeze(1)                          # symmetric in i, j
        bond = self.bond_out(torch.cat([e, pair_h, dist], dim=-1)) * pmask.unsqueeze(-1)
        pred = Prediction(pos=x, atom=self.atom_out(h) * nm, charge=self.charge_out(h) * nm,
                          bond=bond)
        return (pred, features) if return_features else pred

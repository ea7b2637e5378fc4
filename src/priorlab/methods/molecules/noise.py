"""The forward (noising) process of the joint 3D diffusion, as MiDi defines it (thesis Sec. 5.3.2,
Eq. 5.1-5.4; Vignac et al. 2023).

Schedules. Every component (positions, atom types, charges, bonds) has its own adaptive cosine
schedule with exponent nu (MiDi's ``cosine_beta_schedule_discrete``; defaults 2.5 / 1 / 1 / 1.5):

    f(t) = cos^2(pi/2 * ((t/T)^nu + s) / (1 + s)),   alpha_bar(t) = f(t) / f(0)

with per-step alphas alpha_bar(t) / alpha_bar(t-1) whose betas are clipped to at most 0.9999 (as
MiDi clamps them) and alpha_bar re-accumulated from the clipped steps. Here t = 0 is the clean
molecule (alpha_bar = 1 exactly) and t = T the last noisy step; MiDi evaluates the same curve on
a grid shifted by one step (k / (T + 1)), so its t = 0 already carries a tiny amount of noise.

Positions (Eq. 5.1-5.2), with MiDi's convention that alpha_bar is the *signal coefficient* and
the process is variance preserving:

    X_t = alpha_bar(t) X_0 + sigma(t) eps,   sigma(t)^2 = 1 - alpha_bar(t)^2,   eps ~ N_CoM(0, I)

(N_CoM: a standard Gaussian projected onto sum_i eps_i = 0 over the real atoms). Note: this is
MiDi's code, not the DDPM form sqrt(alpha_bar) X_0 + sqrt(1 - alpha_bar) eps.

Discrete components (Eq. 5.3-5.4), marginal transitions with the empirical prior m':

    Qbar_t = alpha_bar(t) I + (1 - alpha_bar(t)) 1 m',   C_t ~ Categorical(onehot(C_0) Qbar_t)

Matrices of this form compose in closed form, Qbar_t = Q_{t|s} Qbar_s with
Q_{t|s} = (alpha_bar(t) / alpha_bar(s)) I + (1 - alpha_bar(t) / alpha_bar(s)) 1 m', so the
posteriors here (:func:`pos_posterior`, :meth:`MarginalTransition.posterior`) are exact for any
s < t, which is what lets the sampler take strided steps.

    schedule = NoiseSchedule(T=500)
    transition = MarginalTransition(m["atom"], m["charge"], m["bond"])
    noisy = apply_noise(dense, t_int, schedule, transition, generator)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from priorlab.methods.molecules.graphs import DenseMolecules

COMPONENTS = ("pos", "atom", "charge", "bond")
DEFAULT_NU = {"pos": 2.5, "atom": 1.0, "charge": 1.0, "bond": 1.5}
"""MiDi's adaptive exponents (positions 2.5, atom types 1, charges 1, edges 1.5)."""
MAX_BETA = 0.9999
"""MiDi clamps every per-step beta to this, so alpha_bar(T) stays (just) above zero."""


def cosine_alpha_bar(T: int, nu: float, s: float = 0.008) -> torch.Tensor:
    """(T+1,) float64 alpha_bar of the adaptive cosine schedule; 1 at t=0, strictly decreasing."""
    if T < 1 or nu <= 0:
        raise ValueError(f"cosine_alpha_bar needs T >= 1 and nu > 0, got T={T}, nu={nu}")
    x = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos(0.5 * math.pi * (x ** nu + s) / (1 + s)) ** 2
    ab = f / f[0]
    betas = (1 - ab[1:] / ab[:-1]).clamp(0.0, MAX_BETA)
    return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, dim=0)])


class NoiseSchedule:
    """One alpha_bar table per component; index with integer steps t in [0, T]."""

    def __init__(self, T: int = 500, nu: Mapping[str, float] | None = None, s: float = 0.008):
        nu = dict(DEFAULT_NU if nu is None else nu)
        if set(nu) != set(COMPONENTS):
            raise ValueError(f"nu needs exactly the components {COMPONENTS}, got {sorted(nu)}")
        self.T, self.nu, self.s = int(T), {k: float(v) for k, v in nu.items()}, float(s)
        self.tables = {k: cosine_alpha_bar(self.T, self.nu[k], self.s) for k in COMPONENTS}

    def alpha_bar(self, component: str, t_int: torch.Tensor | int,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """alpha_bar of ``component`` at integer steps ``t_int`` (same shape and device)."""
        if component not in self.tables:
            raise ValueError(f"unknown component {component!r}; one of {COMPONENTS}")
        t = torch.as_tensor(t_int)
        if t.is_floating_point():
            raise TypeError("alpha_bar takes integer steps 0..T; multiply a normalised t by T "
                            "and round it first")
        if bool((t < 0).any()) or bool((t > self.T).any()):
            raise ValueError(f"steps must lie in [0, {self.T}], "
                             f"got {t.min().item()}..{t.max().item()}")
        return self.tables[component].to(t.device)[t.long()].to(dtype)

    def pos_alpha_sigma(self, t_int: torch.Tensor | int, dtype: torch.dtype = torch.float32
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha, sigma) of positions at ``t_int``: X_t = alpha X_0 + sigma eps (MiDi)."""
        a = self.alpha_bar("pos", t_int, torch.float64)
        return a.to(dtype), (1 - a ** 2).clamp_min(0).sqrt().to(dtype)

    def to_spec(self) -> dict[str, Any]:
        return {"T": self.T, "nu": dict(self.nu), "s": self.s}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> "NoiseSchedule":
        return cls(T=int(spec["T"]), nu=dict(spec["nu"]), s=float(spec.get("s", 0.008)))


def remove_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Subtract the mean over real atoms: x (B, N, D), mask (B, N) bool; padding is set to 0."""
    m = mask.unsqueeze(-1).to(x.dtype)
    n = m.sum(dim=1, keepdim=True).clamp_min(1)
    return (x - (x * m).sum(dim=1, keepdim=True) / n) * m


def sample_center_gravity_gaussian(shape: tuple[int, ...], mask: torch.Tensor,
                                   generator: torch.Generator | None = None,
                                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """eps ~ N_CoM(0, I) of ``shape`` (B, N, 3): sum_i eps_i = 0 over real atoms (Eq. 5.2);
    padding stays 0. ``generator`` must live on ``mask``'s device."""
    eps = torch.randn(shape, generator=generator, device=mask.device, dtype=dtype)
    return remove_mean(eps, mask)


def pos_posterior(schedule: NoiseSchedule, t_int: torch.Tensor, s_int: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Coefficients of q(X_s | X_t, X_0) = N(c_t X_t + c_0 X_0, std^2 I), s < t, each (B,):

    alpha_{t|s} = alpha_t / alpha_s, sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2,
    c_t = alpha_{t|s} sigma_s^2 / sigma_t^2, c_0 = alpha_s sigma_{t|s}^2 / sigma_t^2,
    std = sigma_{t|s} sigma_s / sigma_t (computed in float64)."""
    a_t = schedule.alpha_bar("pos", t_int, torch.float64)
    a_s = schedule.alpha_bar("pos", s_int, torch.float64)
    s2_t = 1 - a_t ** 2
    s2_s = 1 - a_s ** 2
    a_ts = a_t / a_s
    s2_ts = (s2_t - a_ts ** 2 * s2_s).clamp_min(0)
    c_t = a_ts * s2_s / s2_t
    c_0 = a_s * s2_ts / s2_t
    std = (s2_ts * s2_s / s2_t).clamp_min(0).sqrt()
    return c_t.float(), c_0.float(), std.float()


class MarginalTransition:
    """Marginal categorical transitions (Eq. 5.4) for atom types, charges and bond classes."""

    def __init__(self, m_atom: torch.Tensor, m_charge: torch.Tensor, m_bond: torch.Tensor):
        self.m = {}
        for name, m in (("atom", m_atom), ("charge", m_charge), ("bond", m_bond)):
            m = torch.as_tensor(m, dtype=torch.float32).flatten()
            if m.numel() == 0 or bool((m < 0).any()) or float(m.sum()) <= 0:
                raise ValueError(f"the {name} marginal must be non-negative with a positive sum, "
                                 f"got {m.tolist()}")
            self.m[name] = m / m.sum()

    def marginal(self, component: str, device: torch.device | str | None = None) -> torch.Tensor:
        """m' of ``component`` (K,): the stationary distribution and the prior at t = T."""
        if component not in self.m:
            raise ValueError(f"unknown discrete component {component!r}; one of {tuple(self.m)}")
        return self.m[component].to(device) if device is not None else self.m[component]

    def _matrix(self, component: str, alpha: torch.Tensor) -> torch.Tensor:
        alpha = torch.as_tensor(alpha, dtype=torch.float32)
        m = self.marginal(component, alpha.device)
        k = m.numel()
        a = alpha.reshape(-1, 1, 1)
        return a * torch.eye(k, device=alpha.device) + (1 - a) * m.expand(k, k)

    def Qt_bar(self, component: str, alpha_bar: torch.Tensor) -> torch.Tensor:
        """(B, K, K) Qbar = alpha_bar I + (1 - alpha_bar) 1 m' for alpha_bar of shape (B,)."""
        return self._matrix(component, alpha_bar)

    def Qt(self, component: str, alpha_t: torch.Tensor) -> torch.Tensor:
        """(B, K, K) one-step Q_t = alpha_t I + (1 - alpha_t) 1 m' with
        alpha_t = alpha_bar(t) / alpha_bar(t - 1) (or alpha_bar(t) / alpha_bar(s) for a stride)."""
        return self._matrix(component, alpha_t)

    def probs(self, component: str, x: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
        """onehot(x) Qbar: (..., K) for indices x of shape (B, ...) and alpha_bar (B,)."""
        m = self.marginal(component, x.device)
        a = alpha_bar.to(x.device, torch.float32).reshape(-1, *([1] * x.dim()))
        return a * torch.nn.functional.one_hot(x, m.numel()).float() + (1 - a) * m

    def posterior(self, component: str, x_t: torch.Tensor, p_x0: torch.Tensor,
                  alpha_bar_t: torch.Tensor, alpha_bar_s: torch.Tensor) -> torch.Tensor:
        """p(x_s | x_t) = sum_{x0} p(x0) q(x_s | x_t, x0), s < t (D3PM/DiGress/MiDi), as (..., K).

        q(x_s | x_t, x0) = [x_t Q_{t|s}^T]_{x_s} [x0 Qbar_s]_{x_s} / [x0 Qbar_t x_t^T]; with the
        marginal form the sum over x0 collapses to left * (w Qbar_s), w = p(x0) / [x0 Qbar_t x_t^T].
        x_t: indices (B, ...); p_x0: predicted probabilities (B, ..., K); alphas: (B,)."""
        m = self.marginal(component, x_t.device)
        shape = (-1, *([1] * x_t.dim()))
        ab_t = alpha_bar_t.to(x_t.device, torch.float32).reshape(shape)
        ab_s = alpha_bar_s.to(x_t.device, torch.float32).reshape(shape)
        a_ts = ab_t / ab_s
        onehot = torch.nn.functional.one_hot(x_t, m.numel()).float()
        m_xt = m[x_t].unsqueeze(-1)                              # (..., 1) m at the noisy class
        left = a_ts * onehot + (1 - a_ts) * m_xt                 # Q_{t|s}[x_s, x_t] over x_s
        denom = ab_t * onehot + (1 - ab_t) * m_xt                # Qbar_t[x0, x_t] over x0
        w = p_x0 / denom.clamp_min(1e-12)
        right = ab_s * w + (1 - ab_s) * w.sum(dim=-1, keepdim=True) * m
        prob = left * right
        total = prob.sum(dim=-1, keepdim=True)
        # A degenerate row (all zero) can only come from a prediction that puts no mass on any
        # x0 compatible with x_t; fall back to the prior rather than produce NaNs.
        return torch.where(total > 0, prob / total.clamp_min(1e-30), m.expand_as(prob))

    def to_spec(self) -> dict[str, list[float]]:
        return {k: v.tolist() for k, v in self.m.items()}


@dataclass
class NoisyMolecules:
    """A noised dense batch z_t: what the denoiser sees."""

    pos: torch.Tensor
    """(B, N, 3) float, zero CoM over real atoms, 0 on padding."""
    atom: torch.Tensor
    """(B, N) long noisy atom-type indices (0 on padding)."""
    charge: torch.Tensor
    """(B, N) long noisy charge indices (0 on padding)."""
    bond: torch.Tensor
    """(B, N, N) long noisy bond classes, symmetric, 0 on the diagonal and padding."""
    mask: torch.Tensor
    """(B, N) bool real atoms."""
    t_int: torch.Tensor
    """(B,) long step in [0, T]."""
    t: torch.Tensor
    """(B,) float t_int / T in [0, 1], the denoiser's time input."""


def pair_mask(mask: torch.Tensor) -> torch.Tensor:
    """(B, N, N) bool: both atoms real and distinct."""
    n = mask.shape[1]
    eye = torch.eye(n, dtype=torch.bool, device=mask.device)
    return mask.unsqueeze(1) & mask.unsqueeze(2) & ~eye


def sample_categorical(probs: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices (...) drawn from probabilities (..., K)."""
    flat = probs.reshape(-1, probs.shape[-1])
    if flat.shape[0] == 0:
        return torch.zeros(probs.shape[:-1], dtype=torch.long, device=probs.device)
    return torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])


def sample_symmetric_bonds(probs: torch.Tensor, mask: torch.Tensor,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """Bond classes (B, N, N) from probabilities (B, N, N, K): each unordered pair drawn once
    from its upper-triangle entry and mirrored; diagonal and padding pairs are 0."""
    b, n = mask.shape
    iu, ju = torch.triu_indices(n, n, offset=1, device=mask.device)
    upper = sample_categorical(probs[:, iu, ju], generator)        # (B, P)
    bond = torch.zeros(b, n, n, dtype=torch.long, device=mask.device)
    bond[:, iu, ju] = upper
    bond = bond + bond.transpose(1, 2)
    return bond * pair_mask(mask)


def apply_noise(x: DenseMolecules, t_int: torch.Tensor, schedule: NoiseSchedule,
                transition: MarginalTransition, generator: torch.Generator | None = None,
                *, pos_noise: torch.Tensor | None = None) -> NoisyMolecules:
    """Draw z_t ~ q(z_t | x) at integer steps ``t_int`` (B,) (Eq. 5.1-5.4).

    Positions are first centred (so a translated input gives the same z_t). ``pos_noise``
    replaces the drawn eps (it is projected to zero CoM), e.g. to rotate it with the input.
    ``generator`` must live on ``x``'s device; t = 0 returns the clean molecule exactly."""
    t_int = torch.as_tensor(t_int, device=x.mask.device).long().reshape(-1)
    if t_int.numel() == 1 and len(x) > 1:
        t_int = t_int.expand(len(x))
    if t_int.shape[0] != len(x):
        raise ValueError(f"t_int has {t_int.shape[0]} steps for a batch of {len(x)} molecules")
    mask = x.mask
    m = mask.unsqueeze(-1).to(x.pos.dtype)
    alpha, sigma = schedule.pos_alpha_sigma(t_int, x.pos.dtype)
    if pos_noise is None:
        eps = sample_center_gravity_gaussian(tuple(x.pos.shape), mask, generator, x.pos.dtype)
    else:
        eps = remove_mean(pos_noise.to(x.pos.dtype), mask)
    pos = alpha.view(-1, 1, 1) * remove_mean(x.pos, mask) + sigma.view(-1, 1, 1) * eps
    pos = pos * m

    atom = sample_categorical(transition.probs("atom", x.atom, schedule.alpha_bar("atom", t_int)),
                              generator) * mask
    charge = sample_categorical(
        transition.probs("charge", x.charge, schedule.alpha_bar("charge", t_int)), generator) * mask
    bond = sample_symmetric_bonds(
        transition.probs("bond", x.bond, schedule.alpha_bar("bond", t_int)), mask, generator)
    return NoisyMolecules(pos=pos, atom=atom, charge=charge, bond=bond, mask=mask,
                          t_int=t_int, t=t_int.to(x.pos.dtype) / schedule.T)

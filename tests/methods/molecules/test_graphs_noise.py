"""Molecule graphs and the forward noise process (thesis Sec. 5.3.2, Eq. 5.1-5.4)."""

import math

import pytest
import torch

from priorlab.methods.molecules.graphs import (
    DRUGS_VOCAB,
    QM9_VOCAB,
    AtomVocab,
    UnknownChargeError,
    UnknownElementError,
    collate,
    encode_record,
    marginals,
    vocab_from_records,
)
from priorlab.methods.molecules.noise import (
    MarginalTransition,
    NoiseSchedule,
    apply_noise,
    cosine_alpha_bar,
    pos_posterior,
    remove_mean,
    sample_center_gravity_gaussian,
)


# Tiny tensors: one thread is fastest and steady on a shared 2-core machine.
pytestmark = pytest.mark.usefixtures("one_thread")

def record(smiles, zs, pos, bonds, charges=None):
    """A conformer record as data/molecules.py writes it (bonds: (src, dst, type), src < dst)."""
    return {"key": smiles, "smiles": smiles, "conf_id": 0, "atomic_numbers": list(zs),
            "formal_charges": list(charges or [0] * len(zs)),
            "positions": [float(c) for p in pos for c in p],
            "bond_src": [b[0] for b in bonds], "bond_dst": [b[1] for b in bonds],
            "bond_type": [b[2] for b in bonds], "energy": 0.0, "status": "ok", "reason": ""}


METHANE = record("C", [6, 1, 1, 1, 1],
                 [(0, 0, 0), (0.63, 0.63, 0.63), (-0.63, -0.63, 0.63), (-0.63, 0.63, -0.63),
                  (0.63, -0.63, -0.63)], [(0, i, 1) for i in range(1, 5)])
WATER = record("O", [8, 1, 1], [(0, 0, 0), (0.96, 0, 0), (-0.24, 0.93, 0)], [(0, 1, 1), (0, 2, 1)])
ETHANOL = record(
    "CCO", [6, 6, 8, 1, 1, 1, 1, 1, 1],
    [(0, 0, 0), (1.52, 0, 0), (2.0, 1.33, 0), (-0.39, 1.02, 0), (-0.39, -0.51, 0.89),
     (-0.39, -0.51, -0.89), (1.9, -0.51, 0.89), (1.9, -0.51, -0.89), (2.96, 1.3, 0)],
    [(0, 1, 1), (1, 2, 1), (0, 3, 1), (0, 4, 1), (0, 5, 1), (1, 6, 1), (1, 7, 1), (2, 8, 1)])
IODOMETHANE = record("CI", [6, 53], [(0, 0, 0), (2.14, 0, 0)], [(0, 1, 1)])
RECORDS = [METHANE, WATER, ETHANOL]


def test_encode_keeps_hydrogens_and_centres():
    vocab = vocab_from_records(RECORDS, with_hydrogens=True)
    assert vocab.elements == ("H", "C", "O") and vocab.charges == (0,)
    g = encode_record(ETHANOL, vocab)
    assert g.num_nodes == 9 and g.atom.tolist() == [1, 1, 2, 0, 0, 0, 0, 0, 0]
    assert torch.allclose(g.pos.mean(0), torch.zeros(3), atol=1e-6)
    assert g.edge_index.shape == (2, 16) and g.edge_attr.tolist() == [1] * 16
    pairs = set(map(tuple, g.edge_index.t().tolist()))
    assert all((j, i) in pairs for i, j in pairs)


def test_encode_drops_hydrogens_and_their_bonds():
    g = encode_record(ETHANOL, DRUGS_VOCAB)
    assert g.num_nodes == 3 and [DRUGS_VOCAB.elements[a] for a in g.atom] == ["C", "C", "O"]
    assert sorted(map(tuple, g.edge_index.t().tolist())) == [(0, 1), (1, 0), (1, 2), (2, 1)]
    heavy = torch.tensor(ETHANOL["positions"]).view(-1, 3)[:3]
    assert torch.allclose(g.pos, heavy - heavy.mean(0), atol=1e-6)


def test_unknown_element_and_charge_are_actionable():
    with pytest.raises(UnknownElementError, match=r"element I \(Z=53\).*never saw"):
        encode_record(IODOMETHANE, QM9_VOCAB)
    hydroxide = record("[OH-]", [8, 1], [(0, 0, 0), (0.97, 0, 0)], [(0, 1, 1)], charges=[-1, 0])
    with pytest.raises(UnknownChargeError, match="charge -1"):
        encode_record(hydroxide, AtomVocab(("H", "O"), (0, 1), True))
    failed = {"key": "x", "smiles": "X", "status": "failed", "reason": "no conformer"}
    with pytest.raises(ValueError, match="failed conformer record"):
        encode_record(failed, QM9_VOCAB)
    with pytest.raises(ValueError, match="'H' is not among"):
        AtomVocab(("C", "O"), with_hydrogens=True)


def test_vocab_from_records_orders_by_atomic_number_and_skips_failures():
    failed = {"key": "x", "smiles": "X", "status": "failed", "reason": "r"}
    vocab = vocab_from_records([IODOMETHANE, failed, ETHANOL], with_hydrogens=False)
    assert vocab == AtomVocab(("C", "O", "I"), (0,), False)


def test_dense_batch_is_padded_symmetric_and_faithful():
    graphs = [encode_record(r, QM9_VOCAB) for r in RECORDS]
    d = collate(graphs)
    assert d.pos.shape == (3, 9, 3) and d.n_atoms.tolist() == [5, 3, 9]
    assert not d.mask[1, 3:].any() and d.pos[1, 3:].abs().sum() == 0
    assert torch.equal(d.bond, d.bond.transpose(1, 2))
    assert d.bond.diagonal(dim1=1, dim2=2).abs().sum() == 0
    assert d.bond[1].tolist()[0][:3] == [0, 1, 1] and d.bond[1, 3:].abs().sum() == 0
    assert int((d.bond[2] > 0).sum()) == 16


def test_marginals_are_distributions():
    graphs = [encode_record(r, QM9_VOCAB) for r in RECORDS]
    m = marginals(graphs, QM9_VOCAB)
    for key in ("atom", "charge", "bond", "n_atoms"):
        assert math.isclose(float(m[key].sum()), 1.0, rel_tol=1e-5)
    # 14 bonds over 20 + 6 + 72 ordered pairs, counted both ways
    assert math.isclose(float(m["bond"][1]), 28 / 98, rel_tol=1e-5)
    assert m["n_atoms"].tolist() == pytest.approx([0, 0, 0, 1 / 3, 0, 1 / 3, 0, 0, 0, 1 / 3])
    assert m["atom"][QM9_VOCAB.elements.index("H")] == pytest.approx(12 / 17)


@pytest.mark.parametrize("nu", [1.0, 1.5, 2.5])
def test_cosine_alpha_bar_is_one_then_decreasing(nu):
    ab = cosine_alpha_bar(500, nu)
    assert ab.shape == (501,) and ab[0] == 1.0
    assert bool((ab[1:] < ab[:-1]).all()) and 0 < float(ab[-1]) < 1e-3


def test_larger_nu_keeps_more_signal_early():
    s = NoiseSchedule(T=500)
    t = torch.tensor([100])
    assert s.alpha_bar("pos", t) > s.alpha_bar("bond", t) > s.alpha_bar("atom", t)
    alpha, sigma = s.pos_alpha_sigma(torch.arange(501))
    assert torch.allclose(alpha ** 2 + sigma ** 2, torch.ones(501), atol=1e-6)
    with pytest.raises(TypeError):
        s.alpha_bar("pos", torch.tensor([0.5]))


def test_zero_com_noise_sums_to_zero_and_leaves_padding():
    mask = torch.tensor([[True] * 5 + [False] * 3, [True] * 8])
    g = torch.Generator().manual_seed(0)
    eps = sample_center_gravity_gaussian((2, 8, 3), mask, g)
    assert torch.allclose(eps.sum(dim=1), torch.zeros(2, 3), atol=1e-5)
    assert eps[0, 5:].abs().sum() == 0 and eps[0, :5].abs().sum() > 0
    x = torch.randn(2, 8, 3) * mask.unsqueeze(-1)
    assert torch.allclose(remove_mean(x, mask).sum(1), torch.zeros(2, 3), atol=1e-5)


def test_transitions_are_stochastic_stationary_and_compose():
    m = torch.tensor([0.6, 0.25, 0.1, 0.05, 0.0])
    tr = MarginalTransition(torch.tensor([0.5, 0.5]), torch.tensor([0.1, 0.9]), m)
    ab = torch.tensor([1.0, 0.7, 0.2, 1e-4])
    for Q in (tr.Qt_bar("bond", ab), tr.Qt("bond", ab)):
        assert torch.allclose(Q.sum(-1), torch.ones(4, 5))
        assert torch.allclose(tr.marginal("bond") @ Q, m.expand(4, 5), atol=1e-6)
    ab_s, ab_t = torch.tensor([0.8]), torch.tensor([0.3])
    composed = tr.Qt_bar("bond", ab_s) @ tr.Qt("bond", ab_t / ab_s)
    assert torch.allclose(composed, tr.Qt_bar("bond", ab_t), atol=1e-6)


def test_discrete_posterior_matches_bayes_rule():
    g = torch.Generator().manual_seed(1)
    tr = MarginalTransition(torch.tensor([0.5, 0.3, 0.2]), torch.tensor([1.0]),
                            torch.tensor([0.7, 0.2, 0.05, 0.04, 0.01]))
    ab_t, ab_s = torch.tensor([0.4]), torch.tensor([0.9])
    x_t = torch.tensor([[0, 2, 1]])
    p_x0 = torch.rand(1, 3, 3, generator=g).softmax(-1)
    got = tr.posterior("atom", x_t, p_x0, ab_t, ab_s)
    Qt = tr.Qt("atom", ab_t / ab_s)[0]
    Qsb, Qtb = tr.Qt_bar("atom", ab_s)[0], tr.Qt_bar("atom", ab_t)[0]
    for i, k in enumerate(x_t[0].tolist()):
        # q(x_s | x_t, x0) = Q_t[x_s, x_t] Qbar_s[x0, x_s] / Qbar_t[x0, x_t], mixed over p(x0)
        want = sum(p_x0[0, i, x0] * Qt[:, k] * Qsb[x0] / Qtb[x0, k] for x0 in range(3))
        assert torch.allclose(got[0, i], want / want.sum(), atol=1e-6)


def test_position_posterior_is_the_gaussian_conditional():
    s = NoiseSchedule(T=100)
    t, r = torch.tensor([60]), torch.tensor([20])
    c_t, c_0, std = pos_posterior(s, t, r)
    a_t, s_t = s.pos_alpha_sigma(t, torch.float64)
    a_s, s_s = s.pos_alpha_sigma(r, torch.float64)
    # (x_s, x_t) | x0 is jointly Gaussian with cov(x_s, x_t) = a_t / a_s * s_s^2
    cov = a_t / a_s * s_s ** 2
    assert torch.allclose(c_t.double(), cov / s_t ** 2, rtol=1e-5)
    assert torch.allclose(c_0.double(), a_s - cov / s_t ** 2 * a_t, rtol=1e-5)
    assert torch.allclose(std.double() ** 2, s_s ** 2 - cov ** 2 / s_t ** 2, rtol=1e-4)


def test_apply_noise_clean_at_zero_and_prior_at_T():
    graphs = [encode_record(r, QM9_VOCAB) for r in RECORDS]
    d = collate(graphs)
    m = marginals(graphs, QM9_VOCAB)
    tr = MarginalTransition(m["atom"], m["charge"], m["bond"])
    sch = NoiseSchedule(T=50)
    g = torch.Generator().manual_seed(0)
    z = apply_noise(d, torch.zeros(3, dtype=torch.long), sch, tr, g)
    assert torch.equal(z.atom, d.atom) and torch.equal(z.bond, d.bond)
    assert torch.allclose(z.pos, d.pos, atol=1e-6) and z.t.tolist() == [0, 0, 0]

    many = collate([graphs[2]] * 400)
    z = apply_noise(many, torch.full((400,), 50), sch, tr, g)
    assert torch.equal(z.bond, z.bond.transpose(1, 2)) and z.t.tolist() == [1.0] * 400
    freq = torch.bincount(z.atom.flatten(), minlength=5).float() / z.atom.numel()
    assert torch.allclose(freq, m["atom"], atol=0.03)
    assert torch.allclose(z.pos.sum(1), torch.zeros(400, 3), atol=1e-4)
    assert 0.9 < float(z.pos.std()) < 1.1

    padded = apply_noise(d, torch.tensor([10, 10, 10]), sch, tr, g)
    assert padded.atom[1, 3:].abs().sum() == 0 and padded.pos[1, 3:].abs().sum() == 0
    assert padded.bond[1, 3:].abs().sum() == 0 and padded.bond[1, :, 3:].abs().sum() == 0

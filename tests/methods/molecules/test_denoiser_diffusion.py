"""The EGNN denoiser and MolecularDiffusion (thesis Sec. 5.3.1-5.3.3): symmetries, the loss,
sampling, pooled features and the spec round trip."""

import json

import pytest
import torch

from priorlab.data.molecules import ConformerParams, generate_conformers
from priorlab.methods.molecules.denoiser import EGNNDenoiser
from priorlab.methods.molecules.diffusion import MolecularDiffusion
from priorlab.methods.molecules.graphs import (
    DRUGS_VOCAB,
    QM9_VOCAB,
    DenseMolecules,
    collate,
    encode_record,
    marginals,
)
from priorlab.methods.molecules.noise import NoisyMolecules
from priorlab.methods.molecules.quality import score_samples

TINY = dict(n_layers=2, hidden=16, edge_hidden=8)


# Tiny tensors: one thread is fastest and steady on a shared 2-core machine.
pytestmark = pytest.mark.usefixtures("one_thread")

# Methane, water and ethanol with hydrogens, embedded by RDKit (seeded: the same every run).
RECORDS = [generate_conformers(s, ConformerParams())[0] for s in ("C", "O", "CCO")]


def graphs(vocab=QM9_VOCAB):
    return [encode_record(r, vocab) for r in RECORDS]


def model(vocab=QM9_VOCAB, T=50, seed=0, **kw):
    torch.manual_seed(seed)
    return MolecularDiffusion(vocab, marginals(graphs(vocab), vocab), T=T, denoiser=TINY, **kw)


def random_orthogonal(seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=dtype))
    return q  # det +-1: rotations and reflections alike


def noisy_batch(dtype=torch.float64, seed=0):
    """Random noisy types and bonds on the three molecules' geometries, in float64."""
    d = collate(graphs())
    g = torch.Generator().manual_seed(seed)
    b, n = d.mask.shape
    atom = torch.randint(0, 5, (b, n), generator=g) * d.mask
    charge = torch.randint(0, 3, (b, n), generator=g) * d.mask
    upper = torch.triu(torch.randint(0, 5, (b, n, n), generator=g), diagonal=1)
    pm = d.mask.unsqueeze(1) & d.mask.unsqueeze(2)
    bond = (upper + upper.transpose(1, 2)) * pm
    pos = (d.pos + 0.3 * torch.randn(b, n, 3, generator=g)).to(dtype) * d.mask.unsqueeze(-1)
    t = torch.tensor([0.1, 0.5, 0.9], dtype=dtype)
    return NoisyMolecules(pos, atom, charge, bond, d.mask, (t * 50).long(), t)


def transformed(z, R=None, shift=None, perm=None):
    pos = z.pos
    if R is not None:
        pos = (pos @ R.T + shift) * z.mask.unsqueeze(-1)
    if perm is None:
        return NoisyMolecules(pos, z.atom, z.charge, z.bond, z.mask, z.t_int, z.t)
    return NoisyMolecules(pos[:, perm], z.atom[:, perm], z.charge[:, perm],
                          z.bond[:, perm][:, :, perm], z.mask[:, perm], z.t_int, z.t)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return EGNNDenoiser(5, 3, **TINY).double()


def test_denoiser_is_e3_equivariant(net):
    z = noisy_batch()
    R, shift = random_orthogonal(0), torch.tensor([1.5, -2.0, 0.7], dtype=torch.float64)
    pred, feats = net(z, z.t, return_features=True)
    pred2, feats2 = net(transformed(z, R, shift), z.t, return_features=True)
    assert torch.allclose(pred2.pos, pred.pos @ R.T, atol=1e-8)
    assert torch.allclose(pred.pos.sum(1), torch.zeros(3, 3, dtype=torch.float64), atol=1e-10)
    for a, b in [(pred.atom, pred2.atom), (pred.charge, pred2.charge), (pred.bond, pred2.bond)]:
        assert torch.allclose(a, b, atol=1e-8)
    assert len(feats) == TINY["n_layers"] + 1
    for f, f2 in zip(feats, feats2):
        assert torch.allclose(f, f2, atol=1e-8)
    assert torch.allclose(pred.bond, pred.bond.transpose(1, 2), atol=1e-10)


def test_denoiser_is_permutation_equivariant(net):
    z = noisy_batch()
    perm = torch.tensor([8, 2, 5, 0, 7, 1, 3, 6, 4])
    pred, feats = net(z, z.t, return_features=True)
    pred2, feats2 = net(transformed(z, perm=perm), z.t, return_features=True)
    assert torch.allclose(pred2.pos, pred.pos[:, perm], atol=1e-8)
    assert torch.allclose(pred2.atom, pred.atom[:, perm], atol=1e-8)
    assert torch.allclose(pred2.bond, pred.bond[:, perm][:, :, perm], atol=1e-8)
    assert torch.allclose(feats2[-1], feats[-1][:, perm], atol=1e-8)


def test_padding_does_not_change_real_atoms(net):
    z = noisy_batch()
    alone = NoisyMolecules(z.pos[1:2, :3], z.atom[1:2, :3], z.charge[1:2, :3],
                           z.bond[1:2, :3, :3], z.mask[1:2, :3], z.t_int[1:2], z.t[1:2])
    pred, feats = net(z, z.t, return_features=True)
    pred1, feats1 = net(alone, alone.t, return_features=True)
    assert torch.allclose(pred1.pos[0], pred.pos[1, :3], atol=1e-8)
    assert torch.allclose(pred1.atom[0], pred.atom[1, :3], atol=1e-8)
    assert torch.allclose(pred1.bond[0], pred.bond[1, :3, :3], atol=1e-8)
    assert torch.allclose(feats1[-1][0], feats[-1][1, :3], atol=1e-8)
    assert feats[-1][1, 3:].abs().sum() == 0


def conformers():
    d = collate(graphs())
    return DenseMolecules(d.pos.double(), d.atom, d.charge, d.bond, d.mask)


def moved(d, R, shift, perm):
    pos = (d.pos @ R.T + shift) * d.mask.unsqueeze(-1)
    return DenseMolecules(pos[:, perm], d.atom[:, perm], d.charge[:, perm],
                          d.bond[:, perm][:, :, perm], d.mask[:, perm])


def test_clean_features_are_invariant_to_rotation_translation_and_order():
    m = model().double()
    d = conformers()
    R, shift = random_orthogonal(3), torch.tensor([4.0, 1.0, -3.0], dtype=torch.float64)
    perm = torch.tensor([3, 1, 8, 0, 2, 7, 6, 5, 4])
    for pool, width in (("mean", 16), ("sum", 16), ("max", 16), ("meanmax", 32)):
        f = m.features(d, t=0, layer=2, pool=pool)
        f2 = m.features(moved(d, R, shift, perm), t=0, layer=2, pool=pool)
        assert f.shape == (3, width) and torch.allclose(f, f2, atol=1e-8)
    assert m.features(d, 0, [0, -1]).shape == (3, 32)
    with pytest.raises(ValueError, match="out of range"):
        m.features(d, 0, 3)


def test_noisy_features_are_deterministic_and_invariant_in_distribution():
    m = model(T=500).double()
    d = conformers()
    f = m.features(d, 25, 2, generator=torch.Generator().manual_seed(5))
    f_again = m.features(d, 25, 2, generator=torch.Generator().manual_seed(5))
    assert torch.equal(f, f_again) and not torch.allclose(f, m.features(d, 0, 2))
    # Many noisy copies of ethanol, as given and moved: the mean features agree.
    many = d.select([2] * 256)
    R, shift = random_orthogonal(4), torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    a = m.features(many, 25, 2, generator=torch.Generator().manual_seed(0)).mean(0)
    b = m.features(moved(many, R, shift, torch.arange(9).flip(0)), 25, 2,
                   generator=torch.Generator().manual_seed(1)).mean(0)
    clean = m.features(d.select([2]), 0, 2)[0]
    assert (a - b).abs().max() < 0.2 * (a - clean).abs().max() + 1e-3


def test_loss_is_finite_and_overfits_a_few_molecules():
    m = model(T=50)
    d = collate(graphs())
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)

    def fixed_loss():
        with torch.no_grad():
            ts = torch.arange(1, 51, 5)
            return sum(m.loss(d, torch.Generator().manual_seed(i), t_int=t.repeat(3))[0]
                       for i, t in enumerate(ts)) / len(ts)

    before = fixed_loss()
    g = torch.Generator().manual_seed(0)
    for _ in range(60):
        total, parts = m.loss(d, g)
        assert torch.isfinite(total) and set(parts) == {"loss", "loss_pos", "loss_atom",
                                                        "loss_charge", "loss_bond"}
        opt.zero_grad()
        total.backward()
        opt.step()
    after = fixed_loss()
    assert after < 0.5 * before


@pytest.mark.parametrize("vocab,steps", [(QM9_VOCAB, None), (DRUGS_VOCAB, 7)])
def test_sample_returns_well_formed_molecules(vocab, steps):
    m = model(vocab, T=20)
    sizes = {int(g.num_nodes) for g in graphs(vocab)}
    out = m.sample(6, torch.Generator().manual_seed(0), steps=steps, batch_size=4)
    assert len(out) == 6
    for mol in out:
        n = len(mol["atomic_numbers"])
        assert n in sizes and len(mol["formal_charges"]) == n and len(mol["positions"]) == 3 * n
        assert set(mol["atomic_numbers"]) <= set(vocab.atomic_numbers)
        assert set(mol["formal_charges"]) <= set(vocab.charges)
        pairs = list(zip(mol["bond_src"], mol["bond_dst"]))
        assert all(0 <= i < j < n for i, j in pairs) and len(set(pairs)) == len(pairs)
        assert set(mol["bond_type"]) <= {1, 2, 3, 4} and len(mol["bond_type"]) == len(pairs)
        com = torch.tensor(mol["positions"]).view(n, 3).mean(0)
        assert com.abs().max() < 1e-4
    if not vocab.with_hydrogens:
        assert all(1 not in mol["atomic_numbers"] for mol in out)
    scores = score_samples(out, with_hydrogens=vocab.with_hydrogens)
    assert scores["n"] == 6 and 0 <= scores["validity"] <= 1
    fixed = m.sample(2, torch.Generator().manual_seed(0), n_atoms=[4, 2], steps=3)
    assert [len(x["atomic_numbers"]) for x in fixed] == [4, 2]


def test_time_grid_strides_down_to_zero():
    m = model(T=20)
    assert m._time_grid(None) == list(range(20, -1, -1))
    grid = m._time_grid(7)
    assert grid[0] == 20 and grid[-1] == 0 and len(grid) == 8
    with pytest.raises(ValueError, match="steps"):
        m._time_grid(21)


def test_spec_round_trip_rebuilds_the_same_model():
    m = model(T=30, lambda_bond=1.5)
    spec = json.loads(json.dumps(m.to_spec()))
    m2 = MolecularDiffusion.from_spec(spec)
    m2.load_state_dict(m.state_dict())
    d = collate(graphs())
    assert torch.allclose(m.features(d, 0, -1), m2.features(d, 0, -1))
    t = torch.tensor([3, 10, 30])
    assert torch.allclose(m.loss(d, torch.Generator().manual_seed(0), t_int=t)[0],
                          m2.loss(d, torch.Generator().manual_seed(0), t_int=t)[0])
    assert m2.vocab == m.vocab and m2.schedule.to_spec() == m.schedule.to_spec()
    with pytest.raises(ValueError, match="format"):
        MolecularDiffusion.from_spec({"vocab": {}})

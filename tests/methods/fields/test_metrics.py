"""Image and retrieval metrics standing in for Table 4.1's CLIP retrieval (thesis Sec. 4.4.1)."""

import math

import pytest
import torch

from priorlab.methods.fields.metrics import image_similarity, psnr_per_image, ranks, retrieval_topk, ssim
from priorlab.methods.fields.teacher import psnr


def images(n=2, h=16, w=16, c=3, seed=0):
    return torch.rand(n, h, w, c, generator=torch.Generator().manual_seed(seed))


# ---- PSNR ----------------------------------------------------------------------------------

def test_psnr_per_image_matches_the_teacher_psnr_image_by_image():
    a, b = images(seed=0), images(seed=1)
    per = psnr_per_image(a, b)
    assert per.shape == (2,)
    for i in range(2):
        assert per[i].item() == pytest.approx(psnr(a[i], b[i]), rel=1e-5)
    assert psnr_per_image(a, a).isinf().all()
    # a constant error of 0.1 is 20 dB
    assert psnr_per_image(a * 0 + 0.5, a * 0 + 0.6).tolist() == pytest.approx([20.0, 20.0], rel=1e-5)


def test_psnr_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        psnr_per_image(images(h=8), images(h=9))


# ---- SSIM ----------------------------------------------------------------------------------

def reference_ssim(x, y, window, sigma, data_range=1.0):
    """Wang et al. 2004 written out: every valid window, every channel, explicit sums."""
    half = (window - 1) / 2
    g = [math.exp(-((i - half) ** 2) / (2 * sigma ** 2)) for i in range(window)]
    total = sum(g)
    g = [v / total for v in g]
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    h, w, c = x.shape
    x, y = x.double().tolist(), y.double().tolist()
    values = []
    for ch in range(c):
        for top in range(h - window + 1):
            for left in range(w - window + 1):
                cells = [(g[i] * g[j], x[top + i][left + j][ch], y[top + i][left + j][ch])
                         for i in range(window) for j in range(window)]
                mx = sum(wt * a for wt, a, _ in cells)
                my = sum(wt * b for wt, _, b in cells)
                vx = sum(wt * (a - mx) ** 2 for wt, a, _ in cells)
                vy = sum(wt * (b - my) ** 2 for wt, _, b in cells)
                cxy = sum(wt * (a - mx) * (b - my) for wt, a, b in cells)
                values.append((2 * mx * my + c1) * (2 * cxy + c2)
                              / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2)))
    return sum(values) / len(values)


@pytest.mark.parametrize("window,sigma,size", [(11, 1.5, (13, 12)), (5, 1.0, (7, 9)), (4, 0.8, (6, 5))])
def test_ssim_matches_a_direct_per_window_computation(window, sigma, size):
    x = images(n=2, h=size[0], w=size[1], seed=2)
    y = (x + 0.2 * images(n=2, h=size[0], w=size[1], seed=3)).clamp(0, 1)
    got = ssim(x, y, window=window, sigma=sigma)
    for i in range(2):
        assert got[i].item() == pytest.approx(reference_ssim(x[i], y[i], window, sigma), abs=1e-5)


def test_ssim_data_range_enters_the_constants():
    x = images(n=1, h=7, w=7, seed=4)
    y = images(n=1, h=7, w=7, seed=5)
    got = ssim(255 * x, 255 * y, window=5, sigma=1.0, data_range=255.0)
    assert got.item() == pytest.approx(ssim(x, y, window=5, sigma=1.0).item(), abs=1e-6)


def test_ssim_is_one_on_identical_images_symmetric_and_falls_with_noise():
    x = images(n=3, h=24, w=20, seed=6)
    assert torch.equal(ssim(x, x), torch.ones(3))
    noise = images(n=3, h=24, w=20, seed=7) - 0.5
    y = (x + 0.2 * noise).clamp(0, 1)
    assert torch.allclose(ssim(x, y), ssim(y, x), atol=1e-7)
    scores = [ssim(x, (x + s * noise).clamp(0, 1)) for s in (0.05, 0.2, 0.6)]
    assert (scores[0] < 1).all() and (scores[1] < scores[0]).all() and (scores[2] < scores[1]).all()


def test_ssim_rejects_images_smaller_than_the_window():
    with pytest.raises(ValueError, match="smaller than the 11 x 11 window"):
        ssim(images(h=10, w=32), images(h=10, w=32, seed=1))


# ---- retrieval -----------------------------------------------------------------------------

def test_identity_similarity_retrieves_everything_at_top_1():
    hits = retrieval_topk(torch.eye(6), torch.arange(6))
    assert set(hits) == {1, 3, 5, 10}
    assert all(h.dtype == torch.bool and h.all() for h in hits.values())


def test_ranks_of_a_known_matrix():
    sim = torch.tensor([[0.9, 0.1, 0.5, 0.3],     # true 2: one greater -> 2
                        [0.2, 0.4, 0.8, 0.6],     # true 0: three greater -> 4
                        [0.1, 0.7, 0.3, 0.2],     # true 1: best -> 1
                        [0.5, 0.6, 0.1, 0.4]])    # true 3: two greater -> 3
    true = torch.tensor([2, 0, 1, 3])
    assert ranks(sim, true).tolist() == [2, 4, 1, 3]
    hits = retrieval_topk(sim, true, ks=(1, 2, 3))
    assert hits[1].tolist() == [False, False, True, False]
    assert hits[2].tolist() == [True, False, True, False]
    assert hits[3].tolist() == [True, False, True, True]


def test_ties_count_against_the_query():
    sim = torch.tensor([[0.5, 0.5, 0.5],          # all tied: last
                        [0.9, 0.5, 0.5],          # one greater, one tied -> 3
                        [0.2, 0.7, 0.7]])         # tied for the top -> 2
    assert ranks(sim, torch.tensor([0, 1, 2])).tolist() == [3, 3, 2]
    assert not retrieval_topk(sim, torch.tensor([0, 1, 2]), ks=(1,))[1].any()


def test_ranks_rejects_bad_inputs():
    with pytest.raises(ValueError, match="true_index"):
        ranks(torch.eye(3), torch.tensor([0, 3, 1]))
    with pytest.raises(ValueError, match="NaN"):
        ranks(torch.tensor([[float("nan"), 0.0]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="k >= 1"):
        retrieval_topk(torch.eye(3), torch.arange(3), ks=(0, 1))


# ---- render similarity ---------------------------------------------------------------------

def test_image_similarity_matches_brute_force_and_retrieves_its_own_renders():
    g = torch.Generator().manual_seed(8)
    refs = torch.rand(5, 3, 6, 7, 3, generator=g)                          # (K, V, H, W, 3)
    gen = (refs[[4, 0, 2]] + 0.05 * torch.randn(3, 3, 6, 7, 3, generator=g)).clamp(0, 1)
    brute = -(gen[:, None].double() - refs[None].double()).square().mean(dim=(2, 3, 4, 5))
    for chunk in (1 << 16, 17):                                           # chunks that split a row
        sim = image_similarity(gen, refs, chunk=chunk)
        assert sim.shape == (3, 5) and sim.dtype == torch.float32
        assert torch.allclose(sim.double(), brute, atol=1e-7, rtol=0)
    assert ranks(image_similarity(gen, refs), torch.tensor([4, 0, 2])).tolist() == [1, 1, 1]
    assert image_similarity(refs, refs).diagonal().abs().max() < 1e-7


def test_image_similarity_needs_the_same_views():
    with pytest.raises(ValueError, match="every dimension but the first"):
        image_similarity(torch.rand(2, 3, 4, 4, 3), torch.rand(2, 2, 4, 4, 3))

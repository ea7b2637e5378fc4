"""Image and retrieval metrics for generated scenes (thesis Sec. 4.4.1, Table 4.1).

Table 4.1 scores zero-shot generations by CLIP retrieval: the support set is all 72 scenes of
the colour x shape grid (45 seen, 27 unseen), and a generated scene is a top-k hit when its
prompt is among the k most similar. Here CLIP is replaced by the ground truth the procedural
family provides (``priorlab.data.scenes``): every scene can be rendered exactly, so a generated
scene's renders are compared with the analytic renders of every support scene from the *same*
cameras (``image_similarity``: negative mean squared error over all views and pixels), and
``retrieval_topk`` / ``ranks`` turn that similarity matrix into Table 4.1's top-1/3/5/10 hits,
reported separately for seen and unseen prompts. ``psnr_per_image`` and ``ssim`` (Wang et al.
2004) score the renders against their own ground truth directly.

    sim = image_similarity(generated, references)         # (Q, V, H, W, 3), (K, V, H, W, 3) -> (Q, K)
    hits = retrieval_topk(sim, torch.arange(Q))           # {1: (Q,) bool, 3: ..., 5: ..., 10: ...}
    top1_unseen = hits[1][unseen_mask].float().mean()

Pure PyTorch; no gradients are needed, and inputs are compared as given (no gamma, no resizing).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["image_similarity", "part_iou", "psnr_per_image", "ranks", "retrieval_topk", "ssim"]

# Wang et al. 2004, Sec. III-C: stabilising constants C1 = (K1 L)^2, C2 = (K2 L)^2
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _check_images(pred: torch.Tensor, target: torch.Tensor, name: str) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"{name}: pred and target must have the same shape, got "
                         f"{tuple(pred.shape)} and {tuple(target.shape)}")
    if pred.dim() != 4:
        raise ValueError(f"{name}: expected images (N, H, W, C), got shape {tuple(pred.shape)}")


def psnr_per_image(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB (N,) of images (N, H, W, C) with values in [0, 1]: ``-10 log10(mse)``.

    The mean squared error is taken over each image's pixels and channels, in float64. An image
    identical to its target gets +inf, as ``teacher.psnr`` does.
    """
    _check_images(pred, target, "psnr_per_image")
    mse = (pred.double() - target.double()).square().flatten(1).mean(1)
    return (-10.0 * torch.log10(mse)).to(torch.promote_types(pred.dtype, torch.float32))


def _gaussian_window(window: int, sigma: float, dtype, device) -> torch.Tensor:
    """The normalised 2-D Gaussian (window, window), centred between its middle pixels if even."""
    x = torch.arange(window, dtype=dtype, device=device) - (window - 1) / 2
    g = torch.exp(-x.square() / (2 * sigma ** 2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(pred: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5,
         data_range: float = 1.0) -> torch.Tensor:
    """Mean structural similarity (N,) of images (N, H, W, C) (Wang et al. 2004).

    Local means, variances and covariance are weighted by a normalised ``window`` x ``window``
    Gaussian of std ``sigma``, applied per channel (depthwise conv2d) with *valid* padding, as
    in the authors' reference implementation (``filter2(..., 'valid')``): only windows wholly
    inside the image count, so an image smaller than the window is an error. The SSIM map
    ``(2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))`` with
    ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2`` (L = ``data_range``) is averaged over valid
    pixels and channels. Computed in float64; ``ssim(x, x)`` is exactly 1.
    """
    _check_images(pred, target, "ssim")
    if window < 1 or sigma <= 0:
        raise ValueError(f"ssim needs window >= 1 and sigma > 0, got window={window}, sigma={sigma}")
    n, h, w, c = pred.shape
    if h < window or w < window:
        raise ValueError(f"ssim: images of {h} x {w} pixels are smaller than the {window} x {window} "
                         f"window (valid padding); pass a smaller window or larger images")
    x = pred.double().permute(0, 3, 1, 2)                                  # (N, C, H, W)
    y = target.double().permute(0, 3, 1, 2)
    kernel = _gaussian_window(window, sigma, x.dtype, x.device).expand(c, 1, window, window)

    def blur(t: torch.Tensor) -> torch.Tensor:                             # (N, C, H', W')
        return F.conv2d(t, kernel, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x * mu_x
    var_y = blur(y * y) - mu_y * mu_y
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(1).to(torch.promote_types(pred.dtype, torch.float32))


def ranks(similarity: torch.Tensor, true_index: torch.Tensor) -> torch.Tensor:
    """Rank (Q,) of each query's true item among the K items of ``similarity`` (Q, K); 1 = best.

    Ties count against the query: rank = 1 + (items strictly more similar) + (other items
    exactly as similar), so a constant similarity ranks every true item last.
    """
    if similarity.dim() != 2:
        raise ValueError(f"similarity must be (Q, K), got shape {tuple(similarity.shape)}")
    true_index = torch.as_tensor(true_index, device=similarity.device).long()
    q, k = similarity.shape
    if true_index.shape != (q,):
        raise ValueError(f"true_index must be ({q},) for a ({q}, {k}) similarity, got "
                         f"{tuple(true_index.shape)}")
    if q and (true_index.min() < 0 or true_index.max() >= k):
        raise ValueError(f"true_index must lie in [0, {k}), got values in "
                         f"[{int(true_index.min())}, {int(true_index.max())}]")
    if torch.isnan(similarity).any():
        raise ValueError("similarity contains NaN; ranks would be meaningless")
    true_sim = similarity.gather(1, true_index[:, None])                   # (Q, 1)
    greater = (similarity > true_sim).sum(1)
    equal_others = (similarity == true_sim).sum(1) - 1                      # minus the true item itself
    return 1 + greater + equal_others


def retrieval_topk(similarity: torch.Tensor, true_index: torch.Tensor,
                   ks=(1, 3, 5, 10)) -> dict[int, torch.Tensor]:
    """Top-k retrieval hits (Table 4.1): ``{k: (Q,) bool}``, True where the query's true item is
    among its k most similar of ``similarity`` (Q, K), ties broken against the query (``ranks``)."""
    for k in ks:
        if int(k) < 1:
            raise ValueError(f"retrieval_topk needs every k >= 1, got ks={tuple(ks)}")
    r = ranks(similarity, true_index)
    return {int(k): r <= int(k) for k in ks}


def image_similarity(generated: torch.Tensor, references: torch.Tensor,
                     chunk: int = 1 << 16) -> torch.Tensor:
    """Similarity (Q, K) of generated scenes (Q, V, H, W, C) to reference scenes (K, V, H, W, C)
    rendered from the same V cameras: minus the mean squared error over views, pixels, channels.

    Higher is more similar (0 = identical). Uses ``|a|^2 - 2 a.b + |b|^2`` in float64, over
    ``chunk`` columns of the flattened renders at a time, so memory stays O((Q + K) * chunk)
    rather than the O(Q K V H W C) of the direct difference.
    """
    if generated.dim() < 2 or generated.shape[1:] != references.shape[1:]:
        raise ValueError(f"generated (Q, V, H, W, C) and references (K, V, H, W, C) must share "
                         f"every dimension but the first, got {tuple(generated.shape)} and "
                         f"{tuple(references.shape)}")
    a = generated.reshape(generated.shape[0], -1)                          # (Q, D)
    b = references.reshape(references.shape[0], -1)                        # (K, D)
    d = a.shape[1]
    if d == 0:
        raise ValueError("image_similarity: renders are empty")
    sq = torch.zeros(a.shape[0], b.shape[0], dtype=torch.float64, device=a.device)
    for s in range(0, d, chunk):
        ac, bc = a[:, s:s + chunk].double(), b[:, s:s + chunk].double()
        sq += ac.square().sum(1)[:, None] - 2 * ac @ bc.T + bc.square().sum(1)[None, :]
    mse = sq.clamp_min(0.0) / d                       # clamp: cancellation can leave -1e-17
    return -mse.to(torch.promote_types(generated.dtype, torch.float32))


def part_iou(pred: torch.Tensor, target: torch.Tensor, classes=None) -> dict[int, float]:
    """Intersection over union per class of integer label maps of the same shape (any shape, e.g.
    (V, H, W) for all views of a scene), for ``classes`` (default: the classes in ``target``
    other than 0, the background). A class absent from both maps scores 1, as in the ShapeNet
    part benchmark's per-shape mIoU (Yi et al. 2016); its mean over the scene's parts is the
    scene's mIoU (HyperSegmentationFields, thesis Sec. 4.4.8)."""
    if pred.shape != target.shape:
        raise ValueError(f"part_iou: pred and target must have the same shape, got "
                         f"{tuple(pred.shape)} and {tuple(target.shape)}")
    if classes is None:
        classes = [int(c) for c in target.unique().tolist() if c != 0]
    out = {}
    for c in classes:
        p, t = pred == c, target == c
        union = int((p | t).sum())
        out[int(c)] = 1.0 if union == 0 else int((p & t).sum()) / union
    return out

"""Online few-shot semantic segmentation episodes (Babu, TTIC 2025, Ch. 2 Sec. 2.4.4).

The task of Sec. 2.4.4 (Table 2.2, Fig. 2.5; App. A.4.1-A.4.2): binary segmentation of a stream
of images, one per time step. An episode of ``T = n_targets + n_distractors`` steps (the
thesis: 18 = 9 + 9) shows images of a *target* class, whose object must be segmented, and of one
other *distractor* class, which must be masked out entirely, in a shuffled order. The ground
truth of a target image is its binary object mask; that of a distractor is all zeros. The
curriculum first trains without distractors (``n_distractors=0``), then with them.

Labels here are aligned with the images: ``label[t]`` is the ground truth of ``x[t]``. The model
sees ``label[t-1]`` at step ``t`` (an all ``-1`` null label at the first step); that shift is
the model's business, not this module's. ``object_mask`` is every image's object mask,
distractors included, for the masking score (the fraction of a distractor's object masked).

Sources (both: ``len(source)`` classes, ``n_samples(c)``, ``n_samples_per_class``,
``class_name(c)``, ``get(c, s, rng) -> (image uint8 (3, H, W), mask uint8 (H, W) in {0, 1})``):

* ``fss1000``: :class:`priorlab.data.fss1000.Fss1000Classes`, the thesis' data set (App. A.4.1)
  at 56x56. The thesis' split is 700 / 60 / 240 classes; the published split files used here
  are 520 / 240 / 240 (see that module). The FSS-1000 images are not on every machine.
* ``omniglot``: :class:`OmniglotSegmentationClasses`, a stand-in built from Omniglot (Vinyals
  character split, so train / val / test classes are disjoint): each drawing is pasted at a
  random position, scale and small rotation onto a procedural RGB texture, in a random colour
  that contrasts with the texture under it; its mask is exactly the painted pixels.

An episode is a pure function of its seed (as in ``priorlab.data.episodes``; use
``episode_seed(base_seed, i)``).

Usage::

    from priorlab.data.episodes import episode_seed
    from priorlab.data.segmentation import (OnlineSegmentationSampler, load_segmentation_source,
                                            save_episode_png)
    source = load_segmentation_source("omniglot", root, "train", image_size=56)
    sampler = OnlineSegmentationSampler(source, n_targets=9, n_distractors=9)
    ep = sampler.sample(episode_seed(0, 7))   # ep.x (18, 3, 56, 56), ep.label (18, 56, 56)
    x, label, object_mask, is_target = sampler.sample_batch([episode_seed(0, i) for i in range(4)])
    save_episode_png(ep, "/tmp/episode.png")
"""

from __future__ import annotations

import operator
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol

import numpy as np
from PIL import Image, ImageDraw

from priorlab.data.fss1000 import Fss1000Classes

__all__ = ["SegmentationSource", "OmniglotSegmentationClasses", "load_segmentation_source",
           "SegmentationEpisode", "OnlineSegmentationSampler", "save_episode_png",
           "TEXTURES", "OMNIGLOT_SOURCE_SIZE"]

OMNIGLOT_SOURCE_SIZE = 56
"""Resolution at which Omniglot is decoded for compositing (the stroke detail of a 56px image)."""
TEXTURES = ("smooth", "fractal", "grating", "checker", "blobs", "constant")
"""Background kinds; ``constant`` (one flat colour) is off by default and exists for tests."""


class SegmentationSource(Protocol):
    """What :class:`OnlineSegmentationSampler` needs from a class split."""

    def __len__(self) -> int: ...

    def n_samples(self, class_idx: int) -> int: ...

    def class_name(self, class_idx: int) -> str: ...

    def get(self, class_idx: int, sample_idx: int, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray]: ...


# --------------------------------------------------------------------------- textures


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, 3)


def _lerp(t: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel mix of two colours by ``t`` in [0, 1]: (S, S) -> (S, S, 3)."""
    return a + (b - a) * t[..., None]


def _upsampled_noise(rng: np.random.Generator, size: int, cells: int, channels: int) -> np.ndarray:
    small = rng.uniform(0, 255, (cells, cells, channels)).astype(np.uint8)
    img = Image.fromarray(small.squeeze(-1) if channels == 1 else small)
    out = np.asarray(img.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float64)
    return out if channels > 1 else out[..., None]


def _texture(kind: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """A float (S, S, 3) background in [0, 255] of one kind."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    if kind == "constant":
        return np.broadcast_to(_colour(rng), (size, size, 3)).copy()
    if kind == "smooth":  # a few colourful smooth blobs
        return _upsampled_noise(rng, size, int(rng.integers(2, 7)), 3)
    if kind == "fractal":  # grey multi-octave noise mapped between two colours
        octaves = [_upsampled_noise(rng, size, c, 1)[..., 0] * w
                   for c, w in ((3, 1.0), (7, 0.5), (15, 0.25), (size // 2, 0.15))]
        t = sum(octaves) / 1.9 / 255
        t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
        return _lerp(t, _colour(rng), _colour(rng))
    if kind == "grating":  # sine or square stripes at a random angle and frequency
        theta, freq, phase = rng.uniform(0, np.pi), rng.uniform(2, 9), rng.uniform(0, 2 * np.pi)
        wave = np.sin(2 * np.pi * freq * (xx * np.cos(theta) + yy * np.sin(theta)) + phase)
        t = (wave > 0).astype(np.float64) if rng.random() < 0.5 else (wave + 1) / 2
        return _lerp(t, _colour(rng), _colour(rng))
    if kind == "checker":  # a rotated checkerboard
        theta, cell = rng.uniform(0, np.pi / 2), rng.uniform(3, 12) / size
        u = xx * np.cos(theta) + yy * np.sin(theta)
        v = -xx * np.sin(theta) + yy * np.cos(theta)
        t = ((np.floor(u / cell) + np.floor(v / cell)) % 2).astype(np.float64)
        return _lerp(t, _colour(rng), _colour(rng))
    if kind == "blobs":  # ellipses of random colours on a flat colour
        img = Image.new("RGB", (size, size), tuple(int(c) for c in _colour(rng)))
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(4, 14))):
            cx, cy = rng.uniform(0, size, 2)
            rx, ry = rng.uniform(2, size / 3, 2)
            draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=tuple(int(c) for c in _colour(rng)))
        return np.asarray(img, dtype=np.float64)
    raise ValueError(f"unknown texture {kind!r}; valid: {', '.join(TEXTURES)}")


def _clutter(bg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Stroke-like line segments, so that 'thin lines' alone does not give the object away."""
    img = Image.fromarray(bg.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    size = bg.shape[0]
    for _ in range(int(rng.integers(1, 5))):
        fill, width = tuple(int(c) for c in _colour(rng)), int(rng.integers(1, 4))
        if rng.random() < 0.5:
            pts = rng.uniform(0, size, (int(rng.integers(2, 4)), 2))
            draw.line([tuple(p) for p in pts], fill=fill, width=width)
        else:
            cx, cy, r = *rng.uniform(0, size, 2), rng.uniform(4, size / 3)
            start = rng.uniform(0, 360)
            draw.arc([cx - r, cy - r, cx + r, cy + r], start, start + rng.uniform(60, 270),
                     fill=fill, width=width)
    return np.asarray(img, dtype=np.float64)


# --------------------------------------------------------------------------- Omniglot source


def _cross_dilate(mask: np.ndarray) -> np.ndarray:
    """Binary dilation by one pixel with the 4-neighbour cross."""
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def _cross_erode(mask: np.ndarray) -> np.ndarray:
    return ~_cross_dilate(~np.pad(mask, 1))[1:-1, 1:-1]


class OmniglotSegmentationClasses:
    """Omniglot characters composited onto textures: a segmentation source of the same shape as FSS.

    Each class is one class of ``omniglot_classes`` (an ``OmniglotClasses``: a character at one of
    four quarter-turn rotations; ink = 255). ``get(c, s, rng)`` renders drawing ``s``:

    1. crop the drawing to its ink, rotate it by a further angle in ``+-max_rotation`` degrees
       (small, so the quarter-turn rotation classes stay distinct), scale it so that its longer
       side is a fraction in ``scale_range`` of ``image_size`` (bilinear) and cut at half ink;
    2. if the strokes came out at most ~2 px wide (the cross-eroded mask keeps under a quarter of
       the pixels: about half the drawings at 56x56), dilate them by one pixel (4-neighbour cross), so the
       object is a visible, connected shape and not a dotted trace;
    3. put it at a uniformly random position where it fits, on a ``background`` texture (one of
       ``textures`` chosen per image, plus stroke-like line clutter with probability
       ``clutter_prob`` and pixel noise);
    4. paint the mask pixels in one colour (with slight per-pixel jitter) drawn so that the
       stroke differs from 90% of the background pixels under it by at least ``min_contrast``
       (RGB distance), else the best of 32 tries or the colour opposite the background mean.

    The returned mask is exactly the painted pixels. All randomness comes from ``rng``.
    """

    def __init__(self, omniglot_classes, image_size: int = 56, *, scale_range=(0.5, 0.9),
                 max_rotation: float = 15.0, textures: Iterable[str] = TEXTURES[:-1],
                 clutter_prob: float = 0.5, min_contrast: float = 70.0, noise_std: float = 6.0):
        self.omniglot = omniglot_classes
        self.image_size = operator.index(image_size)
        lo, hi = (float(v) for v in scale_range)
        if self.image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {self.image_size}")
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"scale_range must satisfy 0 < low <= high <= 1, got {scale_range}")
        self.textures = tuple(textures)
        unknown = [t for t in self.textures if t not in TEXTURES]
        if unknown or not self.textures:
            raise ValueError(f"textures must be a non-empty subset of {TEXTURES}, got {self.textures}")
        self.scale_range = (lo, hi)
        self.max_rotation = float(max_rotation)
        self.clutter_prob = float(clutter_prob)
        self.min_contrast = float(min_contrast)
        self.noise_std = float(noise_std)
        self.n_samples_per_class = int(omniglot_classes.n_samples_per_class)

    def __len__(self) -> int:
        return len(self.omniglot)

    def n_samples(self, class_idx: int) -> int:
        return self.n_samples_per_class

    def class_name(self, class_idx: int) -> str:
        c = operator.index(class_idx)
        if not 0 <= c < len(self):
            raise IndexError(f"class index {c} out of range for {len(self)} classes")
        return self.omniglot.class_names[c]

    def _sprite(self, ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The transformed drawing as a bool mask that fits in the canvas."""
        rows, cols = np.nonzero(ink >= 64)
        if rows.size == 0:
            raise ValueError("an Omniglot drawing without ink cannot be composited")
        crop = np.pad(ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1], 2)
        img = Image.fromarray(crop).rotate(float(rng.uniform(-1, 1) * self.max_rotation),
                                           resample=Image.Resampling.BILINEAR, expand=True)
        side = rng.uniform(*self.scale_range) * self.image_size
        w, h = img.size
        f = side / max(w, h)
        new = (max(1, min(self.image_size, round(w * f))), max(1, min(self.image_size, round(h * f))))
        sprite = np.asarray(img.resize(new, Image.Resampling.BILINEAR)) >= 128
        if not sprite.any():  # a tiny dot at a tiny scale: keep its brightest pixel
            small = np.asarray(img.resize(new, Image.Resampling.BILINEAR))
            sprite = small == small.max()
        if _cross_erode(sprite).sum() < 0.25 * sprite.sum():
            sprite = _cross_dilate(np.pad(sprite, 1))
            sprite = sprite[:self.image_size, :self.image_size]
        return sprite

    def _stroke_colour(self, under: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        best, best_d = None, -1.0
        for _ in range(32):
            c = _colour(rng)
            d = float(np.quantile(np.linalg.norm(under - c, axis=-1), 0.1))
            if d >= self.min_contrast:
                return c
            if d > best_d:
                best, best_d = c, d
        opposite = np.where(under.mean(axis=0) < 128, 255.0, 0.0)
        d_opp = float(np.quantile(np.linalg.norm(under - opposite, axis=-1), 0.1))
        return opposite if d_opp > best_d else best

    def get(self, class_idx: int, sample_idx: int, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray]:
        """Render drawing ``sample_idx`` of class ``class_idx``: image uint8 (3, S, S), mask (S, S)."""
        s = operator.index(sample_idx)
        if not 0 <= s < self.n_samples_per_class:
            raise IndexError(f"sample index {s} out of range for {self.n_samples_per_class} drawings")
        ink = np.asarray(self.omniglot.get(class_idx, s))
        size = self.image_size
        sprite = self._sprite(ink, rng)
        mask = np.zeros((size, size), dtype=bool)
        top = int(rng.integers(0, size - sprite.shape[0] + 1))
        left = int(rng.integers(0, size - sprite.shape[1] + 1))
        mask[top:top + sprite.shape[0], left:left + sprite.shape[1]] = sprite

        kind = self.textures[int(rng.integers(len(self.textures)))]
        bg = _texture(kind, rng, size)
        if kind != "constant":
            if rng.random() < self.clutter_prob:
                bg = _clutter(bg, rng)
            bg = bg + rng.normal(0, self.noise_std, bg.shape)
        bg = bg.clip(0, 255)
        colour = self._stroke_colour(bg[mask], rng)
        stroke = colour + rng.normal(0, self.noise_std, (int(mask.sum()), 3))
        image = bg.copy()
        image[mask] = stroke.clip(0, 255)
        image = np.rint(image).astype(np.uint8)
        return image.transpose(2, 0, 1).copy(), mask.astype(np.uint8)


def load_segmentation_source(name: str, data_root: str | os.PathLike, split: str,
                             image_size: int = 56, **kwargs):
    """A segmentation source by name: ``omniglot`` (composited) or ``fss1000``.

    ``split``: train / val / test (``trainval`` too for Omniglot; ``trn`` for FSS-1000).
    ``kwargs`` go to :class:`OmniglotSegmentationClasses` or :class:`Fss1000Classes`.
    """
    if name == "omniglot":
        from priorlab.data.omniglot import load_omniglot_split

        # drawings at 28 (the decoded cache every Omniglot study shares) are enough below 28 px
        source_size = 28 if image_size <= 28 else OMNIGLOT_SOURCE_SIZE
        classes = load_omniglot_split(data_root, split, source_size, progress=False)
        return OmniglotSegmentationClasses(classes, image_size, **kwargs)
    if name == "fss1000":
        return Fss1000Classes(data_root, split, image_size, **kwargs)
    raise ValueError(f"unknown segmentation source {name!r}; valid: omniglot, fss1000")


# --------------------------------------------------------------------------- episodes


@dataclass
class SegmentationEpisode:
    """One online segmentation task; every array is aligned with ``x`` (step t = index t)."""

    x: np.ndarray
    """uint8 (T, 3, H, W): the images in presentation order."""
    label: np.ndarray
    """uint8 (T, H, W) in {0, 1}: the object mask for targets, all zeros for distractors."""
    object_mask: np.ndarray
    """uint8 (T, H, W) in {0, 1}: the object mask of every image, distractors included."""
    is_target: np.ndarray
    """bool (T,): True where the image is of the target class."""
    class_idx: np.ndarray
    """int64 (T,): the source class of each image."""
    sample_idx: np.ndarray
    """int64 (T,): the drawing / image index within its class."""
    target_class: int
    distractor_class: int
    """-1 when the episode has no distractors."""
    seed: int


class OnlineSegmentationSampler:
    """Episodes of ``n_targets`` target images and ``n_distractors`` distractors (Sec. 2.4.4)."""

    def __init__(self, source: SegmentationSource, n_targets: int = 9, n_distractors: int = 9):
        self.n_targets, self.n_distractors = operator.index(n_targets), operator.index(n_distractors)
        if self.n_targets < 1 or self.n_distractors < 0:
            raise ValueError(f"need n_targets >= 1 and n_distractors >= 0, "
                             f"got {n_targets}, {n_distractors}")
        counts = np.array([source.n_samples(c) for c in range(len(source))], dtype=np.int64)
        most = int(counts.max(initial=0))
        if not (counts >= self.n_targets).any():
            raise ValueError(f"no class has n_targets={self.n_targets} distinct images (the "
                             f"{len(source)} classes have at most {most}); lower n_targets")
        self.distractor_classes = np.flatnonzero(counts >= max(self.n_distractors, 1))
        # a target class needs a distractor partner other than itself
        self.target_classes = np.array([
            c for c in np.flatnonzero(counts >= self.n_targets)
            if not self.n_distractors or (self.distractor_classes != c).any()], dtype=np.int64)
        if self.target_classes.size == 0:
            raise ValueError(f"n_distractors={self.n_distractors} needs a second class with that "
                             f"many images besides a target class with n_targets={self.n_targets}; "
                             f"the source has {len(source)} class(es) with at most {most} images")
        self.source = source

    @property
    def length(self) -> int:
        """Episode length T = n_targets + n_distractors."""
        return self.n_targets + self.n_distractors

    def sample(self, seed: int) -> SegmentationEpisode:
        seed = operator.index(seed)
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        rng = np.random.default_rng(seed)
        target = int(rng.choice(self.target_classes))
        classes = [target] * self.n_targets
        samples = list(rng.choice(self.source.n_samples(target), self.n_targets, replace=False))
        distractor = -1
        if self.n_distractors:
            distractor = int(rng.choice(self.distractor_classes[self.distractor_classes != target]))
            classes += [distractor] * self.n_distractors
            samples += list(rng.choice(self.source.n_samples(distractor), self.n_distractors,
                                       replace=False))
        order = rng.permutation(self.length)
        class_idx = np.asarray(classes, dtype=np.int64)[order]
        sample_idx = np.asarray(samples, dtype=np.int64)[order]
        # one independent stream per step: what step t shows does not depend on the other steps
        step_rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(self.length)]
        xs, masks = [], []
        for c, s, r in zip(class_idx, sample_idx, step_rngs):
            image, mask = self.source.get(int(c), int(s), r)
            xs.append(image)
            masks.append(mask)
        object_mask = np.stack(masks).astype(np.uint8)
        is_target = class_idx == target
        label = object_mask * is_target[:, None, None].astype(np.uint8)
        return SegmentationEpisode(x=np.stack(xs).astype(np.uint8), label=label,
                                   object_mask=object_mask, is_target=is_target,
                                   class_idx=class_idx, sample_idx=sample_idx, target_class=target,
                                   distractor_class=distractor, seed=seed)

    def sample_batch(self, seeds: Iterable[int]
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Stacked episodes: x (B, T, 3, H, W), label (B, T, H, W), object_mask (B, T, H, W),
        is_target (B, T)."""
        eps = [self.sample(s) for s in seeds]
        if not eps:
            raise ValueError("sample_batch needs at least one seed")
        return (np.stack([e.x for e in eps]), np.stack([e.label for e in eps]),
                np.stack([e.object_mask for e in eps]), np.stack([e.is_target for e in eps]))


# --------------------------------------------------------------------------- preview


def save_episode_png(episode: SegmentationEpisode, path: str | os.PathLike, *, scale: int = 3,
                     columns: int = 9) -> Path:
    """Write a grid of the episode's images for a person to look at; returns the path.

    Each step is a pair of tiles: the image (framed green for a target, red for a distractor)
    and below it the image with its object mask overlaid, green where it is to be segmented
    (``label``) and red where it is to be masked out (a distractor's object).
    """
    T, _, H, W = episode.x.shape
    tile_w, tile_h, pad = W * scale, H * scale, 4
    rows = -(-T // columns)
    canvas = Image.new("RGB", (columns * (tile_w + pad) + pad, rows * (2 * tile_h + 3 * pad) + pad),
                       (40, 40, 40))
    draw = ImageDraw.Draw(canvas)
    for t in range(T):
        img = episode.x[t].transpose(1, 2, 0).astype(np.float64)
        over = img.copy()
        m = episode.object_mask[t].astype(bool)
        tint = np.array([0, 255, 0] if episode.is_target[t] else [255, 0, 0], dtype=np.float64)
        over[m] = 0.4 * over[m] + 0.6 * tint
        x0 = pad + (t % columns) * (tile_w + pad)
        y0 = pad + (t // columns) * (2 * tile_h + 3 * pad)
        for k, arr in enumerate((img, over)):
            tile = Image.fromarray(arr.clip(0, 255).astype(np.uint8)).resize(
                (tile_w, tile_h), Image.Resampling.NEAREST)
            canvas.paste(tile, (x0, y0 + k * (tile_h + pad)))
        draw.rectangle([x0 - 2, y0 - 2, x0 + tile_w + 1, y0 + tile_h + 1],
                       outline=tuple(int(v) for v in tint), width=2)
        draw.text((x0 + 2, y0 + 1), str(t + 1), fill=(255, 255, 255))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path

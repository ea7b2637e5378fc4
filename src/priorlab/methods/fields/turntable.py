"""Turntable renders of a teacher NeRF, beside the exact ground truth (thesis Ch. 4, Fig. 4.2).

The thesis judges its teachers and students by looking at them (Figs. 4.4-4.6: rows of views
around each object). ``render_teacher`` writes that picture for one field: ``n_views`` cameras
evenly spaced in azimuth at one elevation, radius 3, the field of view that frames the unit
bounding sphere with 10% margin (the cameras of ``data.scenes.render_views(orbit=True)``).
Given the field's ``Scene``, the ground truth of the very same cameras fills a second row and
each view's PSNR is reported.

    from priorlab.methods.fields.store import TeacherStore
    field, meta = TeacherStore("runs/teachers").load("red-torus")
    out = render_teacher(field, field.cfg, "runs/turntables/red-torus",
                         scene=parse_scene("red-torus"))
    out["contact_sheet"], out["psnr_mean"]

Files: ``view_00.png`` ... (the teacher's views) and ``contact_sheet.png`` (teacher row on
top, ground-truth row below when a scene is given), all ``size`` x ``size`` per view.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from priorlab.data.scenes import VIEW_FOV_DEG, Scene, render_scene, view_cameras
from priorlab.methods.fields.config import FieldConfig
from priorlab.methods.fields.renderer import Field, render_image
from priorlab.methods.fields.teacher import psnr


def to_uint8(rgb: torch.Tensor) -> np.ndarray:
    """An (H, W, 3) image in [0, 1] as uint8 (values outside [0, 1] are clipped)."""
    rgb = torch.as_tensor(rgb).detach().to("cpu", torch.float32)
    if rgb.dim() != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {tuple(rgb.shape)}; "
                         "pass one view, e.g. render_image(...)['rgb'][0]")
    return (rgb.clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8).numpy()


def save_png(rgb: torch.Tensor, path: str | os.PathLike) -> Path:
    """Write an (H, W, 3) image in [0, 1] to ``path`` as an 8-bit PNG (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(rgb)).save(path)
    return path


@torch.no_grad()
def render_teacher(field: Field, field_cfg: FieldConfig, out_dir: str | os.PathLike, *,
                   n_views: int = 8, size: int = 64, scene: Scene | None = None,
                   elevation: float = 20.0) -> dict[str, Any]:
    """Render a turntable of ``field`` into ``out_dir``; returns what was written.

    Keys: ``view_00`` ... and ``contact_sheet`` (paths); with ``scene`` also ``psnr`` (one
    value per view, dB) and ``psnr_mean`` (the mean of those values).
    """
    if n_views < 1 or size < 1:
        raise ValueError(f"render_teacher needs n_views >= 1 and size >= 1, got {n_views}, {size}")
    out_dir = Path(out_dir)
    c2w, _, _ = view_cameras(n_views, orbit=True, elevation=(elevation, elevation))
    was_training = getattr(field, "training", None)
    if was_training:
        field.eval()
    try:
        views = render_image(field, c2w, size, size, VIEW_FOV_DEG, field_cfg)["rgb"].float()  # (N, H, W, 3)
    finally:
        if was_training:
            field.train()
    written: dict[str, Any] = {}
    for i in range(n_views):
        written[f"view_{i:02d}"] = save_png(views[i], out_dir / f"view_{i:02d}.png")
    rows = [views]
    if scene is not None:
        truth = render_scene(scene, c2w, size, size, VIEW_FOV_DEG,
                             background=tuple(field_cfg.background))["rgb"]            # (N, H, W, 3)
        rows.append(truth)
        scores = [psnr(views[i], truth[i]) for i in range(n_views)]
        written["psnr"] = scores
        written["psnr_mean"] = float(sum(scores) / n_views)
    # (rows, N, H, W, 3) -> one (rows * H, N * W, 3) image
    sheet = torch.stack(rows).permute(0, 2, 1, 3, 4).reshape(len(rows) * size, n_views * size, 3)
    written["contact_sheet"] = save_png(sheet, out_dir / "contact_sheet.png")
    return written


@torch.no_grad()
def orbit_pngs(field: Field, field_cfg: FieldConfig, n_views: int, size: int,
               elevation: float = 20.0) -> list[bytes]:
    """``n_views`` turntable views of ``field`` at ``size`` x ``size`` (the cameras of
    ``render_teacher`` and ``priorlab generate``), each as PNG file bytes. A field with an
    occupancy grid is rendered skipping its empty cells (the same image, fewer field calls)."""
    import io

    if n_views < 1 or size < 1:
        raise ValueError(f"orbit_pngs needs n_views >= 1 and size >= 1, got {n_views}, {size}")
    c2w, _, _ = view_cameras(n_views, orbit=True, elevation=(elevation, elevation))
    device = next(field.parameters()).device if isinstance(field, torch.nn.Module) else "cpu"
    views = render_image(field, c2w.to(device), size, size, VIEW_FOV_DEG, field_cfg,
                         occupancy=getattr(field, "occupancy", None))["rgb"]      # (N, H, W, 3)
    out = []
    for i in range(n_views):
        buf = io.BytesIO()
        Image.fromarray(to_uint8(views[i])).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out

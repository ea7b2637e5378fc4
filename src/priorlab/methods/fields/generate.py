"""Zero-shot generation: a prompt -> one NeRF, in one forward pass of HyperFields (thesis Sec.
4.4.1, Fig. 4.4; Sec. 4.4.7, amortisation), exported as a plain NeRFField.

The dynamic hypernetwork's weights depend on the batch of points it sees (Eq. 4.4-4.5: the
means of the previous layer's activations). A generated scene therefore needs a batch to fix
its weights: ``reference_points`` takes the stratified sample points (stratum midpoints) of the
rays of the views to be rendered, a seeded random subset of at most ``max_points`` of them
(``MAX_REFERENCE_POINTS`` = 4096: the means of 4096 points are as good as those of 65,536 -- the
27 unseen scenes score the same PSNR to 0.01 dB -- at a ninth of the time,
``benchmarks/fields_amortisation.json``);
the hypernetwork generates W_i for that batch, and ``export_nerf`` puts them, with the shared
hash grid, into an ordinary ``NeRFField``. Everything rendered from then on (the turntable,
the evaluation views, ``priorlab render``) is that one NeRF, and on the reference points it
gives exactly what the hypernetwork's forward pass gives (tested). The static hypernetwork
(``dynamic=False``) generates the same weights for any batch.

    model, cfg, encoder = load_hyperfields("runs/train/hf/checkpoints/checkpoint_000002000")
    field = generate_nerf(model, encoder, "a red torus", c2w, 64, VIEW_FOV_DEG)
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from priorlab.methods.configuration import config_from_dict
from priorlab.methods.fields.cameras import get_rays
from priorlab.methods.fields.config import FieldConfig
from priorlab.methods.fields.field import NeRFField
from priorlab.methods.fields.hyper import HyperFields
from priorlab.methods.fields.occupancy import update_occupancy
from priorlab.methods.fields.renderer import sample_points
from priorlab.methods.fields.text import TextEncoder

MAX_REFERENCE_POINTS = 4096
METHOD = "fields-hyper"


class GenerateError(ValueError):
    """A prompt or checkpoint that cannot be generated from (empty, too long, another method)."""


def reference_points(c2w: torch.Tensor, size: int, fov_deg: float | torch.Tensor, fcfg: FieldConfig,
                     max_points: int = MAX_REFERENCE_POINTS, seed: int = 0) -> torch.Tensor:
    """The batch (N, 3) that fixes a dynamic scene's weights: the sample points (stratum
    midpoints) of every pixel ray of cameras ``c2w`` (V, 4, 4) at ``size``, at most
    ``max_points`` of them (a seeded random subset)."""
    origins, dirs = get_rays(c2w, size, size, fov_deg)
    points = sample_points(origins.reshape(-1, 3), dirs.reshape(-1, 3), fcfg)[0].reshape(-1, 3)
    if points.shape[0] > max_points:
        pick = torch.randperm(points.shape[0], generator=torch.Generator().manual_seed(seed))
        points = points[pick[:max_points]]
    return points


@torch.no_grad()
def export_nerf(model: HyperFields, ct: torch.Tensor, points: torch.Tensor,
                occupancy_resolution: int = 0, occupancy_alpha: float = 0.01) -> NeRFField:
    """The NeRF HyperFields generates for CT (model_dim,) on the batch ``points`` (N, 3), as a
    stand-alone ``NeRFField`` (the shared hash grid + the generated MLP weights).

    ``occupancy_resolution`` R > 0 also measures an occupancy grid of R^3 cells for it (one
    fresh update, the teachers' threshold at opacity ``occupancy_alpha`` per sample, dilated by
    a cell; ``occupancy.py``): the field then has σ = 0 in empty cells, and renderers given
    ``field.occupancy`` skip those samples (what makes serving a generated NeRF fast on a CPU)."""
    cfg = model.field_cfg
    if occupancy_resolution:
        cfg = replace(cfg, occupancy_resolution=int(occupancy_resolution))
    weights = model.generated_weights(ct.reshape(1, -1), points[None])
    field = NeRFField(cfg).to(points.device)
    field.grid.load_state_dict(model.field.grid.state_dict())
    field.frequencies.load_state_dict(model.field.frequencies.state_dict())
    for i, layer in enumerate(field.mlp.layers):
        layer.weight.copy_(weights[f"layers.{i}.weight"][0])
    if occupancy_resolution:
        update_occupancy(field, decay=0.0, alpha=occupancy_alpha, n_samples=cfg.n_samples,
                         generator=torch.Generator().manual_seed(0))
    return field.eval()


@torch.no_grad()
def scene_nerf(model: HyperFields, ct: torch.Tensor, c2w: torch.Tensor, size: int,
               fov_deg: float | torch.Tensor, max_points: int = MAX_REFERENCE_POINTS,
               occupancy_resolution: int = 0) -> NeRFField:
    """The NeRF of CT (model_dim,) fixed on the sample points of cameras ``c2w`` at ``size``,
    the views it will be rendered from (``reference_points`` + ``export_nerf``)."""
    return export_nerf(model, ct, reference_points(c2w, size, fov_deg, model.field_cfg, max_points),
                       occupancy_resolution)


def check_prompt(prompt: str, encoder: TextEncoder) -> str:
    """The prompt, stripped; a GenerateError if it is empty or longer than the encoder takes."""
    text = (prompt or "").strip()
    if not text:
        raise GenerateError("the prompt is empty: give a description such as \"a red torus\"")
    n_tokens = len(encoder.tokenizer(text)["input_ids"])
    if n_tokens > encoder.max_length:
        raise GenerateError(f"the prompt has {n_tokens} tokens; the text encoder takes at most "
                            f"{encoder.max_length}: shorten it")
    return text


@torch.no_grad()
def generate_nerf(model: HyperFields, encoder: TextEncoder, prompt: str, c2w: torch.Tensor,
                  size: int, fov_deg: float | torch.Tensor,
                  max_points: int = MAX_REFERENCE_POINTS) -> NeRFField:
    """One forward pass: ``prompt`` -> the NeRF whose weights are fixed on the sample points
    of cameras ``c2w`` at ``size`` (the views it will be rendered from)."""
    was = model.training
    model.eval()
    ct = model.condition(*encoder.encode([check_prompt(prompt, encoder)]))[0]
    field = scene_nerf(model, ct, c2w, size, fov_deg, max_points)
    model.train(was)
    return field


def load_hyperfields(checkpoint: str | Path, encoder: TextEncoder | None = None):
    """(model, DistillConfig, encoder) from a `fields-hyper` checkpoint folder (weights_only
    loading; the text encoder from the checkpoint's config unless one is given)."""
    from priorlab.methods.checkpoint import CheckpointError, load_checkpoint
    from priorlab.methods.fields.distill import DistillConfig

    try:
        ckpt = load_checkpoint(checkpoint, method=METHOD)
    except CheckpointError as err:
        raise GenerateError(f"{err}; pass a checkpoint folder of `priorlab train fields-distillation` "
                            "(runs/train/<name>/checkpoints/checkpoint_...)") from None
    cfg = config_from_dict(DistillConfig, ckpt.config)
    encoder = encoder or TextEncoder(cfg.text_encoder or None)
    model = HyperFields(cfg.hyper_config(encoder.dim), cfg.field_config())
    model.load_state_dict(ckpt.model_state)
    return model.eval(), cfg, encoder

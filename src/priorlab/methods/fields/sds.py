"""Score distillation sampling (SDS) with a frozen Stable Diffusion: the ``sds`` teacher objective.

Thesis Ch. 4: Stage 1 of Fig. 4.2 trains one text-conditioned teacher NeRF per prompt with SDS
(Sec. 4.3.2), using the DreamFusion gradient of Eq. 4.1 (Sec. 4.2.2),

    ∇_θ L = E_{t,c} [ w(t) (ε̂_φ(z_t; y, t) - ε) ∂z/∂θ ],

where z are the latents of a render x = g(θ, c) from camera c, z_t = √ᾱ_t z + √(1-ᾱ_t) ε, and
ε̂ is the classifier-free-guided noise prediction of the frozen UNet. Settings follow
stable-dreamfusion (``/work/shared/reference/ANCHORS.md``, "Score distillation"):

- t is drawn uniformly from the integers int(0.02 T) .. int(0.98 T) (``t_range``), one per image;
- ε̂ = ε_uncond + s (ε_cond - ε_uncond) with s = 100 (``guidance_scale``); the unconditional
  prompt is ``negative_prompt`` ("" by default), the conditional one carries the view suffix of
  ``views.view_prompt`` ("a plaid chair, side view");
- w(t) = 1 - ᾱ_t (``weighting="sds"``); g = w(t) (ε̂ - ε) with NaNs (and infs) set to 0;
- ``latent_mode="vae"``: the render (B, 3, H, W) in [0, 1] is upsampled bilinearly to
  ``render_size`` (512), mapped to [-1, 1] and encoded by the VAE; z is a sample of its posterior
  times the VAE's ``scaling_factor`` (0.18215 for SD 1.x/2.x);
- ``latent_mode="rgb_as_latents"``: no VAE. The 4-channel image [rgb, opacity] (B, 4, H, W) is
  resized bilinearly to the latent size and mapped to [-1, 1], and used as z directly.
  stable-dreamfusion's latent warm-up feeds [shaded normals, opacity] the same way; this field is
  albedo-only (no normals), so colour takes their place.

The latent size is ``render_size // f`` in both modes, f the VAE's downsampling factor (8 for
SD 1.x/2.x: 512 -> 64 x 64 latents).

The surrogate loss ``½ Σ_b ‖z_b - sg(z_b - g_b)‖² / B`` (sg = stop-gradient) has gradient
g_b / B with respect to z_b: the batch mean of the per-image SDS gradients, the scale
stable-dreamfusion uses. Its value (½ Σ‖g‖² / B) is for logging only; it is not a quantity that
decreases as the scene improves.

Weights are never downloaded by priorlab: ``model_path`` is a local folder in the diffusers
layout (``tokenizer/``, ``text_encoder/``, ``vae/``, ``unet/``, ``scheduler/``) of a Stable
Diffusion 1.x or 2.x ε- or v-prediction model, for instance the ``snapshots/<hash>`` folder in a
Hugging Face cache. Needs ``diffusers`` and ``transformers`` (imported only when a guidance is
built).

    guidance = StableDiffusionGuidance(SDSConfig(model_path="/data/sd-2-1-base"))
    field = NeRFField(fcfg)
    opt = torch.optim.Adam(field.parameters(), lr=1e-2)
    cams = sample_cameras(1, generator=g)
    loss = sds_step(field, fcfg, guidance, cams, "a plaid chair", opt, image_size=64, generator=g)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import torch
import torch.nn.functional as F

from priorlab.methods.configuration import ConfigError, check_bounds
from priorlab.methods.fields.config import FieldConfig
from priorlab.methods.fields.renderer import Field, render_image
from priorlab.methods.fields.views import CameraSamplerConfig, Cameras, view_prompt

WEIGHTINGS = ("sds", "uniform")
LATENT_MODES = ("vae", "rgb_as_latents")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
COMPONENTS = ("tokenizer", "text_encoder", "vae", "unet", "scheduler")


@dataclass
class SDSConfig:
    model_path: str = ""
    """Local folder of a Stable Diffusion 1.x/2.x pipeline in the diffusers layout (subfolders
    tokenizer, text_encoder, vae, unet, scheduler). Nothing is downloaded: fetch the weights
    yourself (e.g. ``huggingface-cli download stabilityai/stable-diffusion-2-1-base --local-dir
    DIR``) or point at the ``snapshots/<hash>`` folder of a Hugging Face cache."""
    guidance_scale: float = 100.0
    """s of classifier-free guidance, ε̂ = ε_u + s (ε_c - ε_u). DreamFusion's 100; far above the
    7.5 used for sampling images, because SDS otherwise gives blurry, oversaturated scenes."""
    t_range: list[float] = field(default_factory=lambda: [0.02, 0.98])
    """Timesteps are drawn uniformly from int(lo T) .. int(hi T), T = the scheduler's training
    steps (1000): 20..980 by default (stable-dreamfusion)."""
    weighting: Literal["sds", "uniform"] = "sds"
    """w(t): `sds` = 1 - ᾱ_t (stable-dreamfusion, DreamFusion); `uniform` = 1."""
    latent_mode: Literal["vae", "rgb_as_latents"] = "vae"
    """`vae`: encode the render upsampled to ``render_size``. `rgb_as_latents`: use [rgb,
    opacity] resized to the latent size as the latents themselves (no VAE pass; cheap, for a
    coarse warm-up). See the module docstring."""
    render_size: int = 512
    """Side of the image the VAE sees; the latents are render_size / 8 for SD (512 -> 64, SD's
    training resolution). Must be a multiple of the VAE's downsampling factor."""
    negative_prompt: str = ""
    """The unconditional prompt of classifier-free guidance (stable-dreamfusion: empty)."""
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    """Weights and activations of the frozen models. float16 halves memory on a GPU (what
    stable-dreamfusion uses there); it is refused on a CPU, where float32 or bfloat16 work."""
    device: str = "auto"
    """Where the frozen models live: `auto` = cuda when available, else cpu; or a torch device
    string. Renders are moved there; the loss comes back there."""

    def validate(self) -> None:
        check_bounds(self, at_least_1=("render_size",), non_negative=("guidance_scale",))
        lo_hi = [float(v) for v in self.t_range]
        if len(lo_hi) != 2 or not 0.0 <= lo_hi[0] <= lo_hi[1] <= 1.0:
            raise ConfigError(f"t_range={list(self.t_range)} must be [lo, hi] with "
                              "0 <= lo <= hi <= 1 (fractions of the diffusion steps; default [0.02, 0.98])")
        for name, allowed in (("weighting", WEIGHTINGS), ("latent_mode", LATENT_MODES),
                              ("dtype", tuple(DTYPES))):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}={getattr(self, name)!r}: choose one of {list(allowed)}")

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


def check_model_path(model_path: str) -> Path:
    """The pipeline folder, or a ConfigError that says how to provide one."""
    how = ("priorlab does not download Stable Diffusion weights. Download a diffusers-format "
           "Stable Diffusion 1.x/2.x model yourself (e.g. `huggingface-cli download "
           "stabilityai/stable-diffusion-2-1-base --local-dir /data/sd-2-1-base`, after accepting "
           "its licence) or find one already in a Hugging Face cache "
           "(~/.cache/huggingface/hub/models--<org>--<name>/snapshots/<hash>), then pass that folder "
           "as model_path=/that/folder.")
    if not model_path:
        raise ConfigError(f"SDSConfig.model_path is empty. {how}")
    path = Path(model_path).expanduser()
    if not path.is_dir():
        raise ConfigError(f"model_path={model_path!r} is not a folder on this machine. {how}")
    missing = [c for c in COMPONENTS if not (path / c).is_dir()]
    if missing:
        hint = (" (this looks like the root of a Hugging Face cache entry: use its "
                "snapshots/<hash> subfolder)" if (path / "snapshots").is_dir() else "")
        raise ConfigError(f"model_path={model_path!r} lacks the subfolder(s) {missing} of a "
                          f"diffusers Stable Diffusion pipeline{hint}. {how}")
    return path


def _import_diffusers():
    try:
        import diffusers
        import transformers
    except ImportError as err:
        raise ImportError("The sds objective needs diffusers and transformers: "
                          "`pip install diffusers transformers` in this environment "
                          "(see pyproject.toml for the tested versions).") from err
    return diffusers, transformers


class StableDiffusionGuidance:
    """A frozen Stable Diffusion (text encoder, VAE, UNet, noise schedule) giving SDS gradients.

    ``sds_loss(rgb, prompts, generator)`` -> a scalar whose gradient w.r.t. the render is the SDS
    gradient of Eq. 4.1 (see the module docstring for the scale).
    """

    def __init__(self, cfg: SDSConfig):
        cfg.validate()
        path = check_model_path(cfg.model_path)
        diffusers, transformers = _import_diffusers()
        self.cfg = cfg
        self.device = cfg.torch_device()
        self.dtype = DTYPES[cfg.dtype]
        if self.device.type == "cpu" and self.dtype == torch.float16:
            raise ConfigError("dtype='float16' needs a GPU; on a CPU use dtype=float32 or bfloat16")
        load = dict(local_files_only=True)
        self.tokenizer = transformers.CLIPTokenizer.from_pretrained(path, subfolder="tokenizer", **load)
        self.text_encoder = transformers.CLIPTextModel.from_pretrained(
            path, subfolder="text_encoder", torch_dtype=self.dtype, **load)
        self.unet = diffusers.UNet2DConditionModel.from_pretrained(
            path, subfolder="unet", torch_dtype=self.dtype, **load)
        self.vae = None
        if cfg.latent_mode == "vae":
            self.vae = diffusers.AutoencoderKL.from_pretrained(
                path, subfolder="vae", torch_dtype=self.dtype, **load)
        # only the schedule (betas -> ᾱ_t) and the prediction type are used
        scheduler = diffusers.DDPMScheduler.from_pretrained(path, subfolder="scheduler", **load)
        for module in (self.text_encoder, self.unet, self.vae):
            if module is not None:
                module.to(self.device).eval().requires_grad_(False)

        self.prediction_type = scheduler.config.prediction_type
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise ConfigError(f"the scheduler in {path} predicts {self.prediction_type!r}; SDS here "
                              "supports 'epsilon' and 'v_prediction' Stable Diffusion models")
        self.alphas_cumprod = scheduler.alphas_cumprod.to(self.device, torch.float32)   # (T,)
        self.num_train_timesteps = int(scheduler.config.num_train_timesteps)
        self.min_step = int(self.num_train_timesteps * float(cfg.t_range[0]))
        self.max_step = min(int(self.num_train_timesteps * float(cfg.t_range[1])),
                            self.num_train_timesteps - 1)

        vae_config = diffusers.AutoencoderKL.load_config(path, subfolder="vae", **load)
        self.vae_scale_factor = 2 ** (len(vae_config["block_out_channels"]) - 1)
        self.scaling_factor = float(vae_config.get("scaling_factor", 0.18215))
        if cfg.render_size % self.vae_scale_factor:
            raise ConfigError(f"render_size={cfg.render_size} must be a multiple of the VAE's "
                              f"downsampling factor {self.vae_scale_factor} (512 for SD)")
        self.latent_size = cfg.render_size // self.vae_scale_factor
        unet_factor = 2 ** (len(self.unet.config.block_out_channels) - 1)
        if self.latent_size % unet_factor:
            raise ConfigError(f"render_size={cfg.render_size} gives {self.latent_size}^2 latents; "
                              f"the UNet needs a multiple of {unet_factor}: choose render_size as a "
                              f"multiple of {unet_factor * self.vae_scale_factor}")
        self._embeddings: dict[str, torch.Tensor] = {}

    # --- text ---
    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """CLIP token embeddings (N, L, D) of ``texts``, padded to the tokenizer's length (cached)."""
        new = [t for t in dict.fromkeys(texts) if t not in self._embeddings]
        if new:
            ids = self.tokenizer(new, padding="max_length", max_length=self.tokenizer.model_max_length,
                                 truncation=True, return_tensors="pt").input_ids.to(self.device)
            hidden = self.text_encoder(ids)[0]                                  # (n, L, D)
            self._embeddings.update(zip(new, hidden))
        return torch.stack([self._embeddings[t] for t in texts])

    def _prompts(self, prompts: str | Sequence[str], batch: int) -> list[str]:
        texts = [prompts] * batch if isinstance(prompts, str) else list(prompts)
        if len(texts) != batch:
            raise ValueError(f"got {len(texts)} prompts for {batch} images: pass one prompt, or "
                             "one per image (e.g. views.view_prompt(prompt, elevation, azimuth))")
        return texts

    # --- images -> latents ---
    def to_latents(self, rgb: torch.Tensor, opacity: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
        """Latents z (B, 4, h, w) of renders ``rgb`` (B, 3, H, W) in [0, 1], differentiable."""
        if rgb.dim() != 4 or rgb.shape[1] != 3:
            raise ValueError(f"rgb has shape {tuple(rgb.shape)}; expected (B, 3, H, W) "
                             "(permute a (B, H, W, 3) render with .permute(0, 3, 1, 2))")
        rgb = rgb.to(self.device)
        if self.cfg.latent_mode == "rgb_as_latents":
            if opacity is None:
                raise ValueError("latent_mode='rgb_as_latents' uses the opacity as the 4th latent "
                                 "channel: pass opacity (B, 1, H, W) (render_image's 'opacity')")
            image = torch.cat([rgb, opacity.to(rgb).reshape(rgb.shape[0], 1, *rgb.shape[2:])], 1)
            size = (self.latent_size, self.latent_size)
            return F.interpolate(image, size, mode="bilinear", align_corners=False) * 2 - 1
        size = (self.cfg.render_size, self.cfg.render_size)
        image = F.interpolate(rgb, size, mode="bilinear", align_corners=False) * 2 - 1
        posterior = self.vae.encode(image.to(self.dtype)).latent_dist
        return posterior.sample(generator=generator) * self.scaling_factor       # (B, 4, h, w)

    # --- the SDS gradient ---
    def sample_timesteps(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """t (B,) uniform over min_step .. max_step, one per image."""
        gen_device = generator.device if generator is not None else "cpu"
        t = torch.randint(self.min_step, self.max_step + 1, (batch,), generator=generator,
                          device=gen_device)
        return t.to(self.device)

    def weight(self, t: torch.Tensor) -> torch.Tensor:
        """w(t) (B,)."""
        if self.cfg.weighting == "sds":
            return 1.0 - self.alphas_cumprod[t]
        return torch.ones(t.shape, device=self.device)

    @torch.no_grad()
    def sds_grad(self, latents: torch.Tensor, prompts: str | Sequence[str], t: torch.Tensor,
                 noise: torch.Tensor) -> torch.Tensor:
        """g = w(t) (ε̂(z_t; y, t) - ε) (B, 4, h, w), float32, non-finite entries zeroed."""
        b = latents.shape[0]
        texts = self._prompts(prompts, b)
        hidden = self.encode_text([self.cfg.negative_prompt] * b + texts)    # (2B, L, D)
        z = latents.detach().float()
        abar = self.alphas_cumprod[t].reshape(b, 1, 1, 1)
        noisy = abar.sqrt() * z + (1 - abar).sqrt() * noise.float()        # z_t (B, 4, h, w)
        out = self.unet(torch.cat([noisy, noisy]).to(self.dtype), torch.cat([t, t]),
                        encoder_hidden_states=hidden.to(self.dtype)).sample.float()
        if self.prediction_type == "v_prediction":
            # v = √ᾱ ε - √(1-ᾱ) z  =>  ε = √ᾱ v + √(1-ᾱ) z_t
            abar2 = torch.cat([abar, abar])
            out = abar2.sqrt() * out + (1 - abar2).sqrt() * torch.cat([noisy, noisy])
        eps_uncond, eps_cond = out.chunk(2)
        eps_hat = eps_uncond + self.cfg.guidance_scale * (eps_cond - eps_uncond)
        grad = self.weight(t).reshape(b, 1, 1, 1) * (eps_hat - noise.float())
        return torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)

    def latent_loss(self, latents: torch.Tensor, prompts: str | Sequence[str], *,
                    generator: torch.Generator | None = None, t: torch.Tensor | None = None,
                    noise: torch.Tensor | None = None) -> torch.Tensor:
        """½ Σ‖z - sg(z - g)‖² / B: its gradient w.r.t. latents z (B, 4, h, w) is g / B.

        ``t`` (B,) and ``noise`` (like z) are drawn from ``generator`` unless given.
        """
        b = latents.shape[0]
        if t is None:
            t = self.sample_timesteps(b, generator)
        t = torch.as_tensor(t, device=self.device).long().reshape(b)
        if noise is None:
            gen_device = generator.device if generator is not None else "cpu"
            noise = torch.randn(latents.shape, generator=generator, device=gen_device)
        noise = noise.to(self.device, torch.float32)
        grad = self.sds_grad(latents, prompts, t, noise)
        target = (latents.float() - grad).detach()
        return 0.5 * F.mse_loss(latents.float(), target, reduction="sum") / b

    def sds_loss(self, rgb: torch.Tensor, prompts: str | Sequence[str],
                 generator: torch.Generator | None = None, *, opacity: torch.Tensor | None = None,
                 t: torch.Tensor | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """SDS surrogate loss of renders ``rgb`` (B, 3, H, W) in [0, 1] for ``prompts`` (one
        string, or one per image with its view suffix). ``opacity`` (B, 1, H, W) is needed by
        ``latent_mode='rgb_as_latents'`` only."""
        latents = self.to_latents(rgb, opacity, generator)
        return self.latent_loss(latents, prompts, generator=generator, t=t, noise=noise)


def sds_step(field: Field, field_cfg: FieldConfig, guidance: StableDiffusionGuidance,
             cameras: Cameras, prompt: str, optimizer: torch.optim.Optimizer, *,
             image_size: int = 64, generator: torch.Generator | None = None,
             camera_cfg: CameraSamplerConfig | None = None) -> float:
    """One SDS step: render ``cameras`` at ``image_size``^2 (stable-dreamfusion trains at 64x64),
    give each view its view-dependent prompt, back-propagate the SDS loss, step ``optimizer``.

    ``camera_cfg`` sets the front/overhead regions of the view suffixes (``views.view_name``).
    Returns the (logging-only) loss value.
    """
    c2w = cameras.c2w.to(_field_device(field))
    out = render_image(field, c2w, image_size, image_size, cameras.fov, field_cfg, training=True,
                       generator=generator)
    rgb = out["rgb"].permute(0, 3, 1, 2)                                         # (B, 3, H, W)
    opacity = out["opacity"][:, None]                                            # (B, 1, H, W)
    texts = view_prompt(prompt, cameras.elevation, cameras.azimuth, camera_cfg)
    loss = guidance.sds_loss(rgb, texts, generator, opacity=opacity)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def _field_device(field: Field) -> torch.device:
    """The device of a field's parameters (cpu for parameter-free callables)."""
    params = getattr(field, "parameters", None)
    if params is not None:
        for p in params():
            return p.device
    return torch.device("cpu")

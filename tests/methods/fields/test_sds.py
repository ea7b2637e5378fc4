"""The sds objective on a tiny, randomly initialised Stable Diffusion built offline in tmp_path.

No real weights here: the pipeline has Stable Diffusion's layout and interfaces (CLIP tokenizer
and text encoder, KL-VAE, conditional UNet, DDPM schedule), so loading, prompts and the SDS
gradient are exercised exactly; image quality is not.
"""

import json
import shutil
import string

import pytest
import torch

from priorlab.methods.configuration import ConfigError
from priorlab.methods.fields.config import FieldConfig
from priorlab.methods.fields.field import NeRFField
from priorlab.methods.fields.sds import SDSConfig, StableDiffusionGuidance, sds_step
from priorlab.methods.fields.views import sample_cameras, view_prompt

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

MAX_LEN = 16


def _write_tiny_pipeline(root):
    """tokenizer/ text_encoder/ vae/ unet/ scheduler/ of a tiny SD, from configs, no download."""
    tok_dir = root / "tokenizer"
    tok_dir.mkdir(parents=True)
    # character-level CLIP BPE: every letter, with and without the end-of-word mark, no merges
    chars = list(string.ascii_lowercase) + [","]
    vocab = ["<|startoftext|>", "<|endoftext|>"] + chars + [c + "</w>" for c in chars]
    (tok_dir / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = transformers.CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"),
                                           model_max_length=MAX_LEN)
    tokenizer.save_pretrained(tok_dir)
    torch.manual_seed(0)
    transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=MAX_LEN, bos_token_id=0, eos_token_id=1,
        pad_token_id=1)).save_pretrained(root / "text_encoder")
    diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16,
        attention_head_dim=2, norm_num_groups=4).save_pretrained(root / "unet")
    diffusers.AutoencoderKL(
        block_out_channels=(8,), down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",), latent_channels=4, norm_num_groups=4,
        sample_size=16).save_pretrained(root / "vae")
    diffusers.DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                            num_train_timesteps=1000).save_pretrained(root / "scheduler")


@pytest.fixture(scope="module")
def sd_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-sd")
    _write_tiny_pipeline(root)
    return root


def _guidance(path, **kw):
    kw.setdefault("render_size", 16)
    return StableDiffusionGuidance(SDSConfig(model_path=str(path), device="cpu", **kw))


def _expected_grad(path, latents, texts, t, noise, scale, negative=""):
    """w(t) (ε̂ - ε) computed from the raw diffusers / transformers parts, not the guidance."""
    tok = transformers.CLIPTokenizer.from_pretrained(path, subfolder="tokenizer")
    enc = transformers.CLIPTextModel.from_pretrained(path, subfolder="text_encoder")
    unet = diffusers.UNet2DConditionModel.from_pretrained(path, subfolder="unet")
    sched = diffusers.DDPMScheduler.from_pretrained(path, subfolder="scheduler")
    with torch.no_grad():
        def embed(strings):
            ids = tok(strings, padding="max_length", max_length=MAX_LEN, truncation=True,
                      return_tensors="pt").input_ids
            return enc(ids).last_hidden_state
        z_t = sched.add_noise(latents.detach(), noise, t)
        e_u = unet(z_t, t, encoder_hidden_states=embed([negative] * len(texts))).sample
        e_c = unet(z_t, t, encoder_hidden_states=embed(texts)).sample
        abar = sched.alphas_cumprod[t].reshape(-1, 1, 1, 1)
        if sched.config.prediction_type == "v_prediction":
            # ε̂ - ε = √ᾱ (v̂ - v), v the true velocity of (z, ε)
            v = sched.get_velocity(latents.detach(), noise, t)
            diff = abar.sqrt() * (e_u + scale * (e_c - e_u) - v)
        else:
            diff = e_u + scale * (e_c - e_u) - noise
        return (1 - abar) * diff


@pytest.mark.parametrize("latent_mode", ["vae", "rgb_as_latents"])
def test_sds_step_trains_a_tiny_nerf(sd_path, latent_mode):
    fcfg = FieldConfig(n_levels=2, log2_hashmap_size=8, finest_resolution=16, n_samples=8,
                       backend="torch")
    torch.manual_seed(0)
    field = NeRFField(fcfg)
    before = {n: p.detach().clone() for n, p in field.named_parameters()}
    guidance = _guidance(sd_path, latent_mode=latent_mode)
    g = torch.Generator().manual_seed(0)
    cams = sample_cameras(2, generator=g)
    opt = torch.optim.Adam(field.parameters(), lr=1e-3)
    loss = sds_step(field, fcfg, guidance, cams, "a plaid chair", opt, image_size=16, generator=g)
    assert torch.isfinite(torch.tensor(loss)) and loss > 0
    for name, p in field.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
        assert not torch.equal(p.detach(), before[name]), name
    # both view-dependent prompts were encoded, plus the unconditional one
    texts = view_prompt("a plaid chair", cams.elevation, cams.azimuth)
    assert set(guidance._embeddings) == {""} | set(texts)


def test_latent_gradient_is_weighted_noise_residual(sd_path):
    guidance = _guidance(sd_path)
    texts = ["a chair, front view", "a pot, side view"]
    latents = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(1), requires_grad=True)
    t = torch.tensor([30, 700])
    noise = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(2))
    guidance.latent_loss(latents, texts, t=t, noise=noise).backward()
    expected = _expected_grad(sd_path, latents, texts, t, noise, scale=100.0)
    assert expected.abs().max() > 1e-3
    # the loss is the batch mean: each image's latents get g_b / B. Guidance 100 amplifies the
    # float32 rounding of batched vs separate UNet calls, hence a tolerance relative to |g|.
    atol = 1e-4 * float(expected.abs().max())
    torch.testing.assert_close(latents.grad, expected / 2, rtol=1e-4, atol=atol)


def test_render_gradient_is_the_vae_pullback_of_the_latent_gradient(sd_path):
    guidance = _guidance(sd_path)
    rgb = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(3), requires_grad=True)
    t = torch.tensor([500])
    noise = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(4))
    guidance.sds_loss(rgb, "a chair", torch.Generator().manual_seed(5), t=t, noise=noise).backward()
    latents = guidance.to_latents(rgb, generator=torch.Generator().manual_seed(5))   # same posterior draw
    expected = _expected_grad(sd_path, latents, ["a chair"], t, noise, scale=100.0)
    (pulled,) = torch.autograd.grad(latents, rgb, expected)
    torch.testing.assert_close(rgb.grad, pulled, rtol=1e-4, atol=1e-4 * float(pulled.abs().max()))


def test_v_prediction_models_give_the_epsilon_residual(sd_path, tmp_path):
    v_path = tmp_path / "tiny-sd-v"
    shutil.copytree(sd_path, v_path)
    cfg_file = v_path / "scheduler" / "scheduler_config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg_file.write_text(json.dumps({**cfg, "prediction_type": "v_prediction"}))
    guidance = _guidance(v_path, guidance_scale=7.5)
    latents = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(6), requires_grad=True)
    t, noise = torch.tensor([400]), torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(7))
    guidance.latent_loss(latents, "a pot", t=t, noise=noise).backward()
    expected = _expected_grad(v_path, latents, ["a pot"], t, noise, scale=7.5)
    torch.testing.assert_close(latents.grad, expected, rtol=1e-4,
                               atol=1e-4 * float(expected.abs().max()))


def test_timesteps_cover_the_configured_range(sd_path):
    guidance = _guidance(sd_path)
    t = guidance.sample_timesteps(20000, torch.Generator().manual_seed(0))
    assert (guidance.min_step, guidance.max_step) == (20, 980)
    assert int(t.min()) == 20 and int(t.max()) == 980


def test_nan_residuals_are_zeroed(sd_path):
    guidance = _guidance(sd_path)
    latents = torch.zeros(1, 4, 16, 16)
    noise = torch.randn(1, 4, 16, 16)
    noise[0, 0, 0, 0] = float("nan")
    grad = guidance.sds_grad(latents, "a pot", torch.tensor([100]), noise)
    assert torch.isfinite(grad).all() and grad[0, 0, 0, 0] == 0


def test_missing_weights_say_how_to_provide_them(tmp_path, sd_path):
    with pytest.raises(ConfigError, match="does not download.*model_path="):
        StableDiffusionGuidance(SDSConfig())
    with pytest.raises(ConfigError, match="is not a folder.*huggingface-cli download"):
        StableDiffusionGuidance(SDSConfig(model_path=str(tmp_path / "nowhere")))
    partial = tmp_path / "partial"
    shutil.copytree(sd_path, partial)
    shutil.rmtree(partial / "unet")
    with pytest.raises(ConfigError, match=r"lacks the subfolder\(s\) \['unet'\]"):
        StableDiffusionGuidance(SDSConfig(model_path=str(partial)))


def test_bad_settings_are_named(sd_path):
    with pytest.raises(ConfigError, match="t_range"):
        SDSConfig(model_path=str(sd_path), t_range=[0.9, 0.1]).validate()
    with pytest.raises(ConfigError, match="latent_mode"):
        SDSConfig(latent_mode="pixels").validate()
    with pytest.raises(ConfigError, match="multiple of 2"):
        _guidance(sd_path, render_size=15)
    with pytest.raises(ConfigError, match="float16.*needs a GPU"):
        _guidance(sd_path, dtype="float16")


def test_sds_teacher_fit_and_farm_task_with_a_local_model(sd_path, tmp_path):
    """The farm's task body with --objective sds: a few SDS steps from the local (tiny) model,
    held-out PSNR against the prompt's procedural scene, the teacher in the store."""
    import math

    from priorlab.methods.fields.store import TeacherStore
    from priorlab.platform.farm import fit_teacher

    recipe = dict(image_size=16, n_levels=2, log2_hashmap_size=8, finest_resolution=16,
                  n_samples=8, n_test_views=1, steps=2, eval_every=2)
    info = fit_teacher("red-sphere", 0, "sds", recipe, str(tmp_path / "store"), 1,
                       sd_model=str(sd_path), sds_options={"render_size": 16, "device": "cpu"})
    assert info["slug"] == "red-sphere" and math.isfinite(info["psnr"])
    field, meta = TeacherStore(str(tmp_path / "store")).load("red-sphere")
    assert meta["objective"] == "sds" and meta["steps"] == 2


def test_hyperfields_finetune_with_sds_on_a_prompt_outside_the_family(sd_path, tmp_path, capsys):
    """`priorlab finetune "a plaid teapot" --sd-model PATH`: SDS steps on the whole HyperFields
    model (hypernetwork and shared grid), then the generated NeRF's files."""
    from priorlab.methods.checkpoint import save_checkpoint
    from priorlab.methods.configuration import config_to_dict
    from priorlab.methods.fields.distill import DistillConfig, DistillFit
    from priorlab.methods.fields.finetune import FinetuneConfig, finetune_hyperfields_sds
    from priorlab.platform.cli import main

    cfg = DistillConfig(model_dim=16, transformer_layers=1, n_heads=2, head_dim=4, hyper_hidden=8,
                        n_levels=2, log2_hashmap_size=8, finest_resolution=16, n_samples=8,
                        rays_per_prompt=16, image_size=8, eval_size=11, eval_views=1, n_prompts=1,
                        scenes="a red sphere", objective="direct")
    fit = DistillFit(cfg)
    tuned, losses = finetune_hyperfields_sds(fit.model, fit.encoder, "a plaid teapot",
                                             _guidance(sd_path), FinetuneConfig(), steps=2, image_size=8)
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    moved = {n for n, p in tuned.named_parameters()
             if not torch.equal(p, dict(fit.model.named_parameters())[n])}
    assert any(n.startswith("field.grid.") for n in moved) and any(n.startswith("hyper.") for n in moved)
    ckpt = tmp_path / "ckpt"
    save_checkpoint(ckpt, method="fields-hyper", step=0, config=config_to_dict(cfg), model=fit.model)
    out = tmp_path / "teapot"
    assert main(["finetune", "a plaid teapot", "--checkpoint", str(ckpt), "--sd-model", str(sd_path),
                 "--sds-steps", "1", "--sd-render-size", "16", "--views", "1", "--size", "8",
                 "--out", str(out)]) == 0
    assert (out / "model.safetensors").exists() and "1 SDS steps" in capsys.readouterr().out
    assert main(["finetune", "a plaid teapot", "--checkpoint", str(ckpt), "--sd-model",
                 str(tmp_path / "nowhere")]) == 2
    assert "does not download" in capsys.readouterr().err

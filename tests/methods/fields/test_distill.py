"""HyperFields training: NeRF distillation (Algorithm 3, Eq. 4.6), the direct baseline, splits,
exact resume, zero-shot evaluation. Tiny models throughout; teachers are fitted in the test."""

import pytest
import torch

from priorlab.data.scenes import parse_scene, zero_shot_split
from priorlab.methods.configuration import ConfigError
from priorlab.methods.fields.distill import (DistillConfig, DistillError, DistillFit,
                                             distillation_loss, evaluate_zero_shot, packed_scenes)
from priorlab.methods.fields.field import NeRFField
from priorlab.methods.fields.renderer import render_image
from priorlab.methods.fields.store import TeacherStore
from priorlab.methods.fields.teacher import TeacherConfig, fit_reconstruction
from priorlab.methods.fields.text import TextEncoder
from priorlab.methods.configuration import config_to_dict

TINY = dict(model_dim=32, transformer_layers=1, n_heads=2, head_dim=8, hyper_hidden=16,
            n_levels=4, log2_hashmap_size=12, finest_resolution=64, n_samples=24,
            rays_per_prompt=256, image_size=16, eval_size=12, eval_views=2, eval_scenes=0,
            n_prompts=2, lr=1e-3, eval_every=1000)
PACK = "a red sphere;a blue cube"


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two small reconstruction teachers (sphere, cube) in a store."""
    torch.set_num_threads(2)
    store = TeacherStore(tmp_path_factory.mktemp("teachers"))
    tcfg = TeacherConfig(image_size=16, steps=80, eval_every=80, n_levels=4, log2_hashmap_size=12,
                         finest_resolution=64, n_samples=24, rays_per_step=256, n_train_views=12,
                         n_test_views=2, occupancy_resolution=16)
    for prompt in PACK.split(";"):
        scene = parse_scene(prompt)
        result = fit_reconstruction(scene, tcfg)
        store.save(scene.slug, result.field, {
            "prompt": scene.prompt, "objective": "reconstruction", "teacher_config": config_to_dict(tcfg),
            "steps": tcfg.steps, "seconds": result.metrics["seconds"],
            "psnr": result.metrics["eval/psnr"]})
    return store


def test_the_loss_is_zero_when_the_student_is_the_teacher_and_sums_over_prompts():
    x = torch.rand(3, 10, 3)
    assert float(distillation_loss(x, x)) == 0.0
    y = x.clone()
    y[1] += 0.1                                                   # one prompt off by 0.1
    assert float(distillation_loss(y, x)) == pytest.approx(0.01)  # Σ over prompts of its MSE


def test_a_hypernetwork_distilled_from_its_own_export_has_zero_loss(encoder, tmp_path):
    """Export a static hypernetwork's NeRF as a teacher: rendering both from the same rays
    gives the same image, so Eq. 4.6 is zero."""
    fit = DistillFit(DistillConfig(**TINY, scenes="a red sphere", objective="direct", dynamic=False),
                     encoder=encoder)
    ct = fit.conditioning(fit.train_scenes)
    pts = torch.rand(1, 64, 3) * 2 - 1
    teacher = NeRFField(fit.fcfg)
    teacher.grid.load_state_dict(fit.model.field.grid.state_dict())
    weights = {k: v[0] for k, v in fit.model.generated_weights(ct, pts).items()}
    c2w = torch.eye(4)[None]
    c2w[0, 2, 3] = 3.0
    with torch.no_grad():
        student = render_image(fit.model.scene_field(ct[0]), c2w, 12, 12, 40.0, fit.fcfg, chunk=144)
        exported = render_image(lambda p: teacher(p, mlp_params=weights), c2w, 12, 12, 40.0, fit.fcfg)
    assert float(distillation_loss(student["rgb"], exported["rgb"])) < 1e-10


def test_packed_scenes_and_the_zero_shot_split_never_leak(encoder):
    cfg = DistillConfig(**{**TINY, "image_size": 8}, objective="direct")
    seen, unseen = packed_scenes(cfg)
    assert (len(seen), len(unseen)) == (45, 27)
    assert not {s.slug for s in seen} & {s.slug for s in unseen}
    fit = DistillFit(cfg, encoder=encoder)
    assert fit.tokens.shape[0] == 45                       # only seen prompts are ever trained on
    assert [s.slug for s in fit.held_out] == [s.slug for s in zero_shot_split(0)[1]]
    assert packed_scenes(DistillConfig(scenes=PACK))[0][1].slug == "blue-cube"
    assert len(packed_scenes(DistillConfig(split="pack", pack_size=100))[0]) == 100
    with pytest.raises(ConfigError, match="pack_size"):
        packed_scenes(DistillConfig(split="pack", pack_size=1000))
    with pytest.raises(ConfigError, match="eval_size"):
        DistillConfig(eval_size=8).validate()


def test_missing_teachers_are_named_with_the_command_that_makes_them(encoder, tmp_path):
    with pytest.raises(DistillError, match=r"2 of 2 scenes have no teacher.*priorlab farm teachers"):
        DistillFit(DistillConfig(**TINY, scenes=PACK, teachers=str(tmp_path / "empty")), encoder=encoder)


def test_a_tiny_packed_model_reproduces_its_teachers(encoder, store):
    torch.set_num_threads(2)
    fit = DistillFit(DistillConfig(**TINY, scenes=PACK, teachers=store.uri), encoder=encoder)
    before = fit.evaluate()
    losses = [fit.train_step() for _ in range(150)]
    after = fit.evaluate()
    assert sum(losses[-10:]) < 0.3 * sum(losses[:10])
    assert after["seen/psnr_vs_teacher"] >= 20.0, (before, after)
    assert after["seen/psnr_vs_teacher"] > before["seen/psnr_vs_teacher"] + 5.0


def test_resume_repeats_the_uninterrupted_fit_exactly(encoder, store, one_thread):
    """Bit for bit on one thread (multi-threaded scatter-adds of the hash grid's gradient sum in
    varying order)."""
    cfg = DistillConfig(**TINY, scenes=PACK, teachers=store.uri)
    whole = DistillFit(cfg, encoder=encoder)
    for _ in range(4):
        whole.train_step()
    first = DistillFit(cfg, encoder=encoder)
    for _ in range(2):
        first.train_step()
    saved = ({k: v.clone() for k, v in first.model.state_dict().items()},
             first.optimizer.state_dict(), first.train_state())
    resumed = DistillFit(cfg, encoder=encoder)
    resumed.load_train_state(saved[0], saved[1], saved[2])
    for _ in range(2):
        resumed.train_step()
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_the_direct_baseline_trains_on_the_exact_views(encoder):
    fit = DistillFit(DistillConfig(**TINY, scenes=PACK, objective="direct"), encoder=encoder)
    assert not fit.teachers and len(fit.train_rays) == 2
    losses = [fit.train_step() for _ in range(40)]
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5])


def test_zero_shot_evaluation_scores_and_retrieves_every_scene(encoder):
    cfg = DistillConfig(**{**TINY, "image_size": 8, "eval_views": 1}, objective="direct")
    fit = DistillFit(cfg, encoder=encoder)
    rows, summary = evaluate_zero_shot(fit)
    assert len(rows) == 72 and sum(r["split"] == "unseen" for r in rows) == 27
    for key in ("seen/psnr", "unseen/ssim", "seen/top1", "unseen/top10"):
        assert key in summary
    assert 0.0 <= summary["unseen/top10"] <= 1.0 and summary["chance/top1"] == pytest.approx(1 / 72)
    assert all(r["top1"] <= r["top3"] <= r["top5"] <= r["top10"] for r in rows)

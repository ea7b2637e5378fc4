import pytest
import torch

from priorlab.methods.configuration import ConfigError, config_from_dict
from priorlab.methods.fields.views import CameraSamplerConfig, sample_cameras, view_name, view_prompt


@pytest.mark.parametrize("elevation, azimuth, view", [
    (0, 0, "front"), (0, 29.9, "front"), (0, -29.9, "front"), (0, 30, "side"), (0, -30, "side"),
    (0, 90, "side"), (0, 150, "side"), (0, 150.1, "back"), (0, 180, "back"), (0, -180, "back"),
    (0, -150.1, "back"), (0, 190, "back"), (0, 330, "side"), (0, 345, "front"), (0, -360, "front"),
    (59.9, 0, "front"), (60, 0, "overhead"), (89, 180, "overhead"), (-59.9, 180, "back"),
    (-60, 0, "bottom"),
])
def test_view_thresholds(elevation, azimuth, view):
    assert view_name(elevation, azimuth) == view
    assert view_prompt("a plaid chair", elevation, azimuth) == f"a plaid chair, {view} view"


def test_view_prompt_of_tensors_and_custom_regions():
    texts = view_prompt("a pot", torch.tensor([0.0, 70.0, 0.0]), torch.tensor([10.0, 10.0, 170.0]))
    assert texts == ["a pot, front view", "a pot, overhead view", "a pot, back view"]
    wide = CameraSamplerConfig(front_angle=90, overhead_angle=45)
    assert view_name(0, 40, wide) == "front" and view_name(50, 0, wide) == "overhead"
    assert view_name(0, 140, wide) == "back"


def test_sampled_cameras_stay_in_their_ranges_and_look_at_the_origin():
    cfg = CameraSamplerConfig(elevation_range=[-10, 45], azimuth_range=[-90, 90],
                              radius_range=[2.5, 3.5], fov_range=[35, 45])
    cams = sample_cameras(500, cfg, generator=torch.Generator().manual_seed(0))
    for values, (lo, hi) in ((cams.elevation, cfg.elevation_range), (cams.azimuth, cfg.azimuth_range),
                             (cams.radius, cfg.radius_range), (cams.fov, cfg.fov_range)):
        assert values.shape == (500,) and values.min() >= lo and values.max() <= hi
        assert values.max() - values.min() > 0.9 * (hi - lo)            # the whole range is used
    eye = cams.c2w[:, :3, 3]
    assert torch.allclose(eye.norm(dim=-1), cams.radius, atol=1e-4)
    elevation = torch.rad2deg(torch.asin(eye[:, 1] / cams.radius))
    assert torch.allclose(elevation, cams.elevation, atol=1e-2)
    azimuth = torch.rad2deg(torch.atan2(eye[:, 0], eye[:, 2]))
    assert torch.allclose(azimuth, cams.azimuth, atol=1e-2)
    assert torch.allclose(-cams.c2w[:, :3, 2], -eye / cams.radius[:, None], atol=1e-5)
    again = sample_cameras(500, cfg, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.c2w, cams.c2w)


def test_sampler_config_is_validated():
    with pytest.raises(ConfigError, match="radius_range"):
        config_from_dict(CameraSamplerConfig, {"radius_range": [3, 2]})
    with pytest.raises(ConfigError, match="elevation_range"):
        config_from_dict(CameraSamplerConfig, {"elevation_range": [0, 120]})
    with pytest.raises(ConfigError, match="valid keys"):
        config_from_dict(CameraSamplerConfig, {"fov": 40})

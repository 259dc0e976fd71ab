"""Distances: the feature decomposition equals the distance's own computation; LPIPS backbone
weights are never fetched and never silently replaced."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from services.geometry import (
    Distance,
    InvalidOptionError,
    MissingWeightsError,
    UnknownDistanceError,
    load_distance,
)
from services.geometry.distances import BACKBONE_FILES, LPIPSDistance, backbone_checkpoint


def _images(seed: int, n: int = 3, size: int = 64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((n, 3, size, size), generator=generator) * 2 - 1


def _weighted_feature_distance(
    distance: Distance, x0: torch.Tensor, x: torch.Tensor
) -> torch.Tensor:
    weights = distance.feature_weights(tuple(x.shape))
    return ((distance.features(x) - distance.features(x0)) ** 2 * weights).sum(1)


@pytest.mark.parametrize("resize", [None, 32])
def test_mse_is_the_mean_over_pixels(resize: int | None) -> None:
    distance = load_distance("mse", resize=resize)
    x0, x = _images(0), _images(1)
    if resize is None:
        expected = ((x - x0) ** 2).mean(dim=(1, 2, 3))
    else:
        down = torch.nn.functional.interpolate
        expected = (
            (down(x, size=32, mode="bilinear") - down(x0, size=32, mode="bilinear")) ** 2
        ).mean(dim=(1, 2, 3))
    assert torch.allclose(distance(x0, x), expected, rtol=1e-6)
    assert torch.allclose(_weighted_feature_distance(distance, x0, x), expected, rtol=1e-5)
    assert distance.facts["resize"] == resize


@pytest.mark.parametrize(
    ("name", "resize"),
    [("lpips-alex", None), ("lpips-alex", 32), ("lpips-squeeze", None), ("lpips-vgg", 32)],
)
def test_lpips_feature_decomposition_equals_the_package_forward(
    name: str, resize: int | None
) -> None:
    distance = load_distance(name, random_backbone=True, resize=resize)
    x0, x = _images(2), _images(3)
    reference = distance(x0, x)
    assert reference.shape == (3,) and (reference > 0).all()
    assert torch.allclose(_weighted_feature_distance(distance, x0, x), reference, rtol=1e-4)
    assert "RANDOM" in distance.facts["backbone"]


def test_random_backbone_is_seeded_and_leaves_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    first = load_distance("lpips-alex", random_backbone=True)
    second = load_distance("lpips-alex", random_backbone=True)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert isinstance(first, LPIPSDistance) and isinstance(second, LPIPSDistance)
    for a, b in zip(first.model.parameters(), second.model.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("net", ["alex", "vgg", "squeeze"])
def test_missing_backbone_names_the_exact_file(
    net: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / BACKBONE_FILES[net][0]
    assert backbone_checkpoint(net) == expected
    with pytest.raises(MissingWeightsError) as error:
        load_distance(f"lpips-{net}")
    message = str(error.value)
    assert str(expected) in message and BACKBONE_FILES[net][1] in message
    assert not expected.exists()  # nothing was downloaded or created


def test_present_backbone_file_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.compat import import_torchvision

    torchvision = import_torchvision()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    checkpoint = backbone_checkpoint("alex")
    checkpoint.parent.mkdir(parents=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(9)
        weights = torchvision.models.alexnet().state_dict()
    torch.save(weights, checkpoint)
    distance = load_distance("lpips-alex")
    assert distance.facts["backbone"].startswith("torchvision ImageNet")
    assert isinstance(distance, LPIPSDistance)
    first_conv = distance.model.net.slice1[0].weight
    assert torch.equal(first_conv, weights["features.0.weight"])


def test_bad_distance_requests() -> None:
    with pytest.raises(UnknownDistanceError, match="lpips-alex"):
        load_distance("l2")
    with pytest.raises(InvalidOptionError, match="resize"):
        load_distance("mse", resize=3)
    with pytest.raises(InvalidOptionError, match="random_backbone"):
        load_distance("mse", random_backbone=True)

"""Controls: shuffled weights and random-initialised twins, seeded and recorded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from services.geometry import (
    Distance,
    InvalidOptionError,
    UnknownModelError,
    compute_spectrum,
    image_variation,
    load_generator,
)
from services.geometry.models.controls import MAX_SEED, parse_control, shuffle_state
from services.geometry.models.dcgan import DCGAN, dcgan_faces_weights_path, dcgan_is_learned
from services.geometry.models.generator import Generator
from tests.support.checkpoints import write_random_checkpoint

from .conftest import FACTORIES


@pytest.fixture(scope="module")
def faces_state() -> dict[str, torch.Tensor]:
    checkpoint = torch.load(dcgan_faces_weights_path(), map_location="cpu", weights_only=True)
    state: dict[str, torch.Tensor] = checkpoint["netG_state_dict"]
    return state


def test_shuffled_dcgan_permutes_each_learned_tensor_and_keeps_statistics(
    faces_state: dict[str, torch.Tensor],
) -> None:
    shuffled = shuffle_state(faces_state, 0, dcgan_is_learned)
    for key, tensor in faces_state.items():
        if dcgan_is_learned(key):
            assert not torch.equal(shuffled[key], tensor), key
            assert torch.equal(
                shuffled[key].flatten().sort().values, tensor.flatten().sort().values
            )
        else:
            assert torch.equal(shuffled[key], tensor), key
    control = load_generator("shuffled:0:dcgan-faces")
    codes = control.sample(2, seed=3)
    expected = DCGAN(shuffled).eval()(torch.as_tensor(codes, dtype=torch.float32))
    assert torch.allclose(control.images(codes), expected, atol=1e-5)
    assert control.facts["control"] == {**control.facts["control"], "kind": "shuffled", "seed": 0}


def test_controls_are_seeded_and_recorded(dcgan: Generator) -> None:
    trained = dcgan
    again, other = (
        load_generator("shuffled:0:dcgan-faces"),
        load_generator("shuffled:1:dcgan-faces"),
    )
    first = load_generator("shuffled:0:dcgan-faces")
    assert first.facts["weights_sha256"] == again.facts["weights_sha256"]
    assert first.facts["weights_sha256"] != other.facts["weights_sha256"]
    assert first.facts["base_weights_sha256"] == trained.facts["weights_sha256"]
    assert first.name == "shuffled:0:dcgan-faces" and first.family == "dcgan"


def test_random_init_dcgan_uses_the_tutorial_init() -> None:
    control = load_generator("random-init:4:dcgan-faces")
    assert isinstance(control.module, DCGAN)
    first = control.module.first_layer_weight
    assert abs(float(first.std()) - 0.02) < 0.002
    assert control.facts["control"]["kind"] == "random-init"


def test_trained_dcgan_is_far_more_anisotropic_than_its_controls(
    dcgan: Generator, mse: Distance
) -> None:
    # The published contrast: learned structure concentrates the metric in few directions.
    ratios = {}
    for name in ("dcgan-faces", "shuffled:0:dcgan-faces", "random-init:0:dcgan-faces"):
        generator = dcgan if name == "dcgan-faces" else load_generator(name)
        result = compute_spectrum(generator, mse, generator.sample(1, seed=0)[0])
        ratios[name] = result.summary["participation_ratio"]
    assert ratios["dcgan-faces"] * 5 < ratios["shuffled:0:dcgan-faces"]
    assert ratios["dcgan-faces"] * 5 < ratios["random-init:0:dcgan-faces"]


def test_stylegan2_controls_keep_noise_and_change_weights(tmp_path: Path) -> None:
    path = write_random_checkpoint(tmp_path / "g.pt", size=8, style_dim=4, channels={4: 4, 8: 3})
    trained = load_generator(f"stylegan2:{path}", space="w")
    for kind in ("shuffled", "random-init"):
        control = load_generator(f"{kind}:2:stylegan2:{path}", space="w")
        assert control.latent_dim == 4 and control.space == "w"
        noises = [g.module.get_buffer("synthesis.conv1.noise") for g in (control, trained)]
        assert torch.equal(*noises)
        w = control.sample(2, seed=0)
        assert not torch.allclose(control.images(w), trained.images(w))


def test_generic_modules_get_generic_controls() -> None:
    base = load_generator(f"python:{FACTORIES}:linear")
    shuffled = load_generator(f"shuffled:0:python:{FACTORIES}:linear")
    weight = next(base.module.parameters()).detach()
    moved = next(shuffled.module.parameters()).detach()
    assert torch.equal(weight.flatten().sort().values, moved.flatten().sort().values)
    assert not torch.equal(weight, moved)
    reset = load_generator(f"random-init:0:python:{FACTORIES}:linear")
    assert "reset_parameters" in reset.facts["control"]["what"]


@pytest.mark.parametrize(
    "name", ["shuffled:x:dcgan-faces", "shuffled:0:", "random-init:0:shuffled:0:dcgan-faces"]
)
def test_malformed_control_names_are_refused(name: str) -> None:
    with pytest.raises(UnknownModelError, match="control"):
        load_generator(name)


def test_unknown_base_is_refused() -> None:
    with pytest.raises(UnknownModelError, match="unknown model 'nope'"):
        load_generator("shuffled:0:nope")


def test_published_shuffle_permutes_batchnorm_statistics_too(
    faces_state: dict[str, torch.Tensor],
) -> None:
    control = load_generator("shuffled-published:0:dcgan-faces")
    assert control.facts["control"]["kind"] == "shuffled-published"
    assert "BatchNorm statistics" in control.facts["control"]["what"]
    shuffled = {}
    generator = torch.Generator().manual_seed(0)
    for key in sorted(faces_state):  # the published recipe written out: a randperm per tensor
        tensor = faces_state[key]
        if tensor.is_floating_point() and tensor.numel() > 1:
            order = torch.randperm(tensor.numel(), generator=generator)
            shuffled[key] = tensor.reshape(-1)[order].reshape(tensor.shape)
        else:
            shuffled[key] = tensor
    assert not torch.equal(shuffled["main.1.running_var"], faces_state["main.1.running_var"])
    codes = control.sample(2, seed=3)
    reference = DCGAN(shuffled).eval()(torch.as_tensor(codes, dtype=torch.float32))
    assert torch.allclose(control.images(codes), reference, atol=1e-5)
    kept = load_generator("shuffled:0:dcgan-faces")
    assert not torch.allclose(kept.images(codes), control.images(codes), atol=1e-3)


def test_random_init_redraws_convolutions_and_keeps_batchnorm_as_trained(
    faces_state: dict[str, torch.Tensor],
) -> None:
    control = load_generator("random-init:4:dcgan-faces")
    assert isinstance(control.module, DCGAN)
    rebuilt = control.module._checkpoint
    for key, tensor in faces_state.items():
        if tensor.ndim == 4:
            assert not torch.equal(rebuilt[key], tensor), key
            assert abs(float(rebuilt[key].std()) - 0.02) < 0.002, key
        else:  # BatchNorm scale, shift, running statistics: as trained
            assert torch.equal(rebuilt[key], tensor), key
    assert "as trained" in control.facts["control"]["what"]


def test_control_seeds_beyond_64_bits_are_refused_clearly() -> None:
    largest = parse_control(f"shuffled:{MAX_SEED}:dcgan-faces")
    assert largest is not None and largest.seed == 2**63 - 1
    for seed in (2**63, 2**64, 10**30):
        with pytest.raises(InvalidOptionError, match=r"too large.*2\*\*63 - 1"):
            load_generator(f"random-init:{seed}:dcgan-faces")
    with pytest.raises(UnknownModelError, match="integer seed"):
        load_generator("shuffled:\u00b2:dcgan-faces")  # a digit to str.isdigit, not to int()


def test_image_variation_flags_a_flat_grey_control_and_not_the_trained_model(
    dcgan: Generator, faces_state: dict[str, torch.Tensor]
) -> None:
    codes = dcgan.sample(16, seed=0)
    trained = image_variation(dcgan, codes)
    assert trained["degenerate"] is False and trained["pixel_std"] > 0.2
    assert trained["threshold"] == 0.02 and trained["codes"] == 8  # at most VARIATION_CODES
    # random-init:0:dcgan-faces as it was built before: N(0, 0.02) weights, N(1, 0.02)
    # BatchNorm scales, zero shifts, fresh statistics (0, 1) -> near-constant grey images.
    generator = torch.Generator().manual_seed(0)
    flat = {}
    for key in sorted(faces_state):
        tensor = faces_state[key]
        if key.endswith(("running_mean", "bias", "num_batches_tracked")):
            flat[key] = torch.zeros_like(tensor)
        elif key.endswith("running_var"):
            flat[key] = torch.ones_like(tensor)
        elif tensor.ndim == 4:
            flat[key] = torch.randn(tensor.shape, generator=generator) * 0.02
        else:
            flat[key] = 1 + torch.randn(tensor.shape, generator=generator) * 0.02
    old = Generator(name="old", family="dcgan", latent_dim=100, module=DCGAN(flat), facts={})
    images = old.images(codes)
    assert float(images.abs().max()) < 0.05  # the flat grey the issue describes
    assert image_variation(old, codes)["degenerate"] is True
    assert image_variation(load_generator("random-init:0:dcgan-faces"), codes)["degenerate"]
    assert not image_variation(load_generator("shuffled:0:dcgan-faces"), codes)["degenerate"]


def test_image_variation_is_the_mean_per_pixel_std_across_the_set(dcgan: Generator) -> None:
    codes = dcgan.sample(5, seed=1)
    images = dcgan.images(codes).double().numpy()
    expected = images.std(axis=0).mean()  # numpy's population std, the slow way
    assert abs(image_variation(dcgan, codes)["pixel_std"] - expected) < 1e-12
    with pytest.raises(Exception, match="at least two codes"):
        image_variation(dcgan, codes[:1])


def test_published_shuffle_of_a_stylegan2_permutes_its_noise_maps_too(tmp_path: Path) -> None:
    path = write_random_checkpoint(tmp_path / "g.pt", size=8, style_dim=4, channels={4: 4, 8: 3})
    trained, kept, published = (
        load_generator(name, space="w")
        for name in (
            f"stylegan2:{path}",
            f"shuffled:2:stylegan2:{path}",
            f"shuffled-published:2:stylegan2:{path}",
        )
    )
    noise = [g.module.get_buffer("synthesis.conv1.noise") for g in (trained, kept, published)]
    assert torch.equal(noise[0], noise[1]) and not torch.equal(noise[0], noise[2])
    assert torch.equal(noise[0].flatten().sort().values, noise[2].flatten().sort().values)

"""Controls: shuffled weights and random-initialised twins, seeded and recorded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from services.geometry import UnknownModelError, compute_spectrum, load_generator
from services.geometry.models.controls import shuffle_state
from services.geometry.models.dcgan import DCGAN, dcgan_faces_weights_path, dcgan_is_learned
from tests.support.checkpoints import write_random_checkpoint

from .conftest import FACTORIES


@pytest.fixture(scope="module")
def faces_state() -> dict[str, torch.Tensor]:
    return torch.load(dcgan_faces_weights_path(), map_location="cpu")["netG_state_dict"]


def test_shuffled_dcgan_permutes_each_learned_tensor_and_keeps_statistics(faces_state) -> None:
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


def test_controls_are_seeded_and_recorded(dcgan) -> None:
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
    first = control.module.first_layer_weight
    assert abs(float(first.std()) - 0.02) < 0.002
    assert control.facts["control"]["kind"] == "random-init"


def test_trained_dcgan_is_far_more_anisotropic_than_its_controls(dcgan, mse) -> None:
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
        assert torch.equal(
            control.module.synthesis.conv1.noise, trained.module.synthesis.conv1.noise
        )
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

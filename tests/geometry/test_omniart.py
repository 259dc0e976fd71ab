"""omniart-eye: the second trained model (a conditional DCGAN from the omniart-eye-generator
package), read without importing the package, checked against the package's own architecture
written out here (BatchNorm as BatchNorm, Dropout in eval mode), in each of its spaces."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch import nn

from services.geometry import (
    Generator,
    InvalidOptionError,
    compute_metric,
    load_distance,
    load_generator,
    sefa,
)
from services.geometry.models import FoldableFirstLayer, SefaWeights
from services.geometry.models.omniart import OmniartEye, omniart_weights_path


def package_network() -> nn.Sequential:
    """The package's Generator.main, layer by layer as its generator.py defines it."""
    return nn.Sequential(
        nn.ConvTranspose2d(108, 1024, 4, 1, 0, bias=False),
        nn.BatchNorm2d(1024),
        nn.ReLU(True),
        nn.Dropout(0.2),
        nn.ConvTranspose2d(1024, 512, 4, 2, 1, bias=False),
        nn.BatchNorm2d(512),
        nn.ReLU(True),
        nn.ConvTranspose2d(512, 256, 4, 2, 1, bias=False),
        nn.BatchNorm2d(256),
        nn.ReLU(True),
        nn.ConvTranspose2d(256, 128, 4, 2, 1, bias=False),
        nn.BatchNorm2d(128),
        nn.ReLU(True),
        nn.ConvTranspose2d(128, 64, 4, 2, 1, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(True),
        nn.ConvTranspose2d(64, 3, 4, 2, 1, bias=False),
        nn.Tanh(),
    )


class PackageForward(nn.Module):
    """The package's forward: cat(noise, labels) viewed as (B, 108, 1, 1), then main."""

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.main = package_network()
        state = torch.load(omniart_weights_path(), map_location="cpu", weights_only=True)
        self.main.load_state_dict({k.removeprefix("main."): v for k, v in state.items()})
        self.to(dtype).eval()
        for parameter in self.parameters():
            parameter.requires_grad_(False)

    def forward(self, both: torch.Tensor) -> torch.Tensor:
        images: torch.Tensor = self.main(both.reshape(both.shape[0], -1, 1, 1))
        return images


@pytest.fixture(scope="module")
def eyes() -> Generator:
    return load_generator("omniart-eye")


@pytest.fixture(scope="module")
def reference64() -> PackageForward:
    return PackageForward(torch.float64)


def test_loads_without_importing_the_package_and_renders_eyes(eyes: Generator) -> None:
    assert "omniart_eye_generator" not in sys.modules  # its import torch.loads onto CUDA
    assert eyes.family == "cdcgan" and eyes.space == "both" and eyes.latent_dim == 108
    assert eyes.spaces == ("both", "noise", "class")
    assert eyes.facts["weights_file"] == "omniart_eye_generator/generator_model_state.pth"
    assert len(eyes.facts["weights_sha256"]) == 64 and eyes.facts["classes"][1] == "blue"
    images = eyes.images(eyes.sample(3, seed=0))
    assert images.shape == (3, 3, 128, 128)
    assert float(images.abs().max()) <= 1.0 and float(images.std()) > 0.2


def test_equals_the_package_network_in_float32_and_float64(
    eyes: Generator, reference64: PackageForward
) -> None:
    codes = eyes.sample(3, seed=4)
    expected = reference64(torch.as_tensor(codes))
    assert (eyes.images(codes).double() - expected).abs().max() < 1e-5
    double = eyes.to("cpu", torch.float64)
    assert double.facts["batchnorm_folded_in"] == "float64"
    assert (double.images(codes) - expected).abs().max() < 1e-12


def test_float64_metric_agrees_with_autograd_through_the_unfolded_network(
    reference64: PackageForward,
) -> None:
    generator = load_generator("omniart-eye", space="class").to("cpu", torch.float64)
    fixed_noise = torch.as_tensor(generator.facts["fixed_noise"])

    class ClassCodes(nn.Module):
        def forward(self, labels: torch.Tensor) -> torch.Tensor:
            noise = fixed_noise.to(labels).expand(labels.shape[0], -1)
            images: torch.Tensor = reference64(torch.cat([noise, labels], 1))
            return images

    unfolded = Generator(
        name="package", family="cdcgan", latent_dim=8, module=ClassCodes(), facts={}
    )
    mse = load_distance("mse")
    code = generator.sample(1, seed=2)[0]
    fast = compute_metric(generator, mse, code, dtype="float64")
    slow = compute_metric(unfolded, mse, code, method="hvp", dtype="float64")
    assert np.linalg.norm(fast - slow) / np.linalg.norm(slow) < 1e-12


def test_noise_and_class_spaces_join_the_fixed_half_of_the_seed_0_code(eyes: Generator) -> None:
    noise = load_generator("omniart-eye", space="noise")
    klass = load_generator("omniart-eye", space="class")
    legacy = load_generator("omniart-eye", space="z")  # z names the whole input, as for BigGAN
    assert (noise.latent_dim, klass.latent_dim, legacy.space) == (100, 8, "both")
    base = eyes.sample(1, seed=0)[0]
    assert noise.facts["fixed_class"] == int(np.argmax(base[100:]))
    assert noise.facts["fixed_class_name"] == eyes.facts["classes"][noise.facts["fixed_class"]]
    assert np.array_equal(klass.facts["fixed_noise"], base[:100])
    noise_codes, label_codes = noise.sample(2, seed=5), klass.sample(2, seed=5)
    assert np.array_equal(noise_codes, eyes.sample(2, seed=5)[:, :100])
    assert set(np.unique(label_codes)) == {0.0, 1.0} and np.all(label_codes.sum(1) == 1)
    joined_noise = np.concatenate([noise_codes, np.tile(base[100:], (2, 1))], 1)
    joined_class = np.concatenate([np.tile(base[:100], (2, 1)), label_codes], 1)
    assert torch.equal(noise.images(noise_codes), eyes.images(joined_noise))
    assert torch.equal(klass.images(label_codes), eyes.images(joined_class))
    with pytest.raises(InvalidOptionError, match="no space 'w'"):
        load_generator("omniart-eye", space="w")
    with pytest.raises(InvalidOptionError, match="psi"):
        load_generator("omniart-eye", psi=0.5)


def test_sefa_weights_per_space_folded_or_not(eyes: Generator) -> None:
    module = eyes.module
    assert isinstance(module, OmniartEye)
    assert isinstance(module, SefaWeights) and isinstance(module, FoldableFirstLayer)
    raw = module.first_layer_matrix(batchnorm_folded=False).double()
    folded = module.first_layer_matrix(batchnorm_folded=True).double()
    state = torch.load(omniart_weights_path(), map_location="cpu", weights_only=True)
    scale = state["main.1.weight"] / torch.sqrt(state["main.1.running_var"] + 1e-5)
    expected = raw * scale.double().repeat_interleave(16)[:, None]  # rows: channel-major
    assert torch.allclose(folded, expected, rtol=1e-5, atol=1e-7)
    assert torch.equal(raw, state["main.0.weight"].reshape(108, -1).T.double())
    (both,) = module.sefa_weights()
    assert torch.all(both[:, 100:] == 0) and torch.equal(both[:, :100].double(), raw[:, :100])
    result = sefa(eyes)
    a = raw[:, :100].numpy()
    assert np.allclose(result.eigenvalues[:100], np.linalg.eigvalsh(a.T @ a)[::-1], rtol=1e-8)
    labels_module = load_generator("omniart-eye", space="class").module
    assert isinstance(labels_module, OmniartEye)
    (labels,) = labels_module.sefa_weights()
    assert labels.shape == (1024 * 16, 8)


@pytest.mark.parametrize("kind", ["shuffled", "shuffled-published", "random-init"])
def test_controls_of_omniart_eye(kind: str, eyes: Generator) -> None:
    control = load_generator(f"{kind}:1:omniart-eye", space="noise")
    assert control.family == "cdcgan" and control.latent_dim == 100
    assert control.facts["control"]["kind"] == kind
    assert control.facts["base_weights_sha256"] == eyes.facts["weights_sha256"]
    assert control.facts["weights_sha256"] != control.facts["base_weights_sha256"]
    codes = control.sample(2, seed=0)
    assert not torch.allclose(
        control.images(codes), load_generator("omniart-eye", space="noise").images(codes)
    )

"""``omniart-eye``: the trained conditional DCGAN of the PyPI package ``omniart-eye-generator``
(MIT): 128 x 128 RGB eyes from paintings, from a 100-d noise and an 8-class one-hot colour label.

The weights are the package's ``generator_model_state.pth``, found with
``importlib.util.find_spec`` and read with ``torch.load(map_location="cpu", weights_only=True)``;
the package's module is never imported (it loads the weights without a map_location at import
time, which fails on a CPU machine, and picks a device globally). The architecture is written
here from the checkpoint's layout: the input (noise ⊕ label, 108 values) as a 1x1 image, then
ConvTranspose2d + BatchNorm + ReLU blocks of 1024, 512, 256, 128, 64 channels (a Dropout(0.2)
after the first, the identity in eval mode and left out here), a last ConvTranspose2d to 3
channels and Tanh: images in [-1, 1]. As for dcgan-faces, each BatchNorm is folded into the
convolution before it, in the dtype the generator runs in.

Spaces, as for BigGAN (the conditioning split into its two halves):
``both`` (d = 108; ``z`` is accepted as its name) is the whole input, noise ⊕ one-hot label;
``noise`` (d = 100) holds the label fixed, ``class`` (d = 8) the noise. The fixed half is that
of the ``both`` code sampled with seed 0 (a uniformly random class, or that seed's noise),
recorded in the facts (``fixed_class`` and its name, or ``fixed_noise``). Sampling: noise
~ N(0, I) (as the package draws it), the label one-hot of a uniformly random class.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from services.model_catalogue import (
    CONDITIONAL_LEGACY_SPACE,
    CONDITIONAL_SPACES,
    OMNIART_EYE,
    OMNIART_FAMILY,
)

from ..errors import InvalidOptionError, MissingWeightsError
from .controls import Control
from .dcgan import dcgan_control_transform, fold_checkpoint, folded_first_matrix
from .generator import Generator, file_sha256, freeze, state_dict_sha256

PACKAGE = "omniart_eye_generator"
WEIGHTS_FILE = "generator_model_state.pth"
INSTALL = "pip install --no-deps omniart-eye-generator==0.1"
NOISE_DIM = 100
CLASSES = ("amber", "blue", "brown", "gray", "grayscale", "green", "hazel", "red")
FEATURE_MAPS = 64
FIXED_HALF_SEED = 0  # noise / class spaces: the other half is that of this seed's `both` code
StateDict = dict[str, torch.Tensor]
StateTransform = Callable[[StateDict], StateDict]


def omniart_layout() -> nn.Sequential:
    """The package's generator as a Sequential with its checkpoint's indices (`main.N`)."""
    width = FEATURE_MAPS
    layers: list[nn.Module] = [
        nn.ConvTranspose2d(NOISE_DIM + len(CLASSES), width * 16, 4, 1, 0, bias=False),
        nn.BatchNorm2d(width * 16),
        nn.ReLU(True),
        nn.Dropout(0.2),
    ]
    for c_in, c_out in ((16, 8), (8, 4), (4, 2), (2, 1)):
        layers += [
            nn.ConvTranspose2d(width * c_in, width * c_out, 4, 2, 1, bias=False),
            nn.BatchNorm2d(width * c_out),
            nn.ReLU(True),
        ]
    layers += [nn.ConvTranspose2d(width, 3, 4, 2, 1, bias=False), nn.Tanh()]
    return nn.Sequential(*layers)


class OmniartEye(nn.Module):
    """Codes of one space -> images (B, 3, 128, 128): `both` codes are the input (noise ⊕
    one-hot label); `noise` / `class` codes are joined with the fixed other half."""

    fixed_half: torch.Tensor
    first_layer_weight: torch.Tensor
    sefa_normalize_rows = False

    def __init__(
        self,
        state: StateDict,
        space: str = "both",
        fixed: torch.Tensor | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if (space == "both") != (fixed is None):
            raise InvalidOptionError(
                f"omniart-eye space {space!r}: a fixed half only for noise/class"
            )
        self.space = space
        self._checkpoint = state  # unfolded, as loaded: folded_in() starts from it again
        self.net, first = fold_checkpoint(omniart_layout, state, dtype, "omniart-eye's layout")
        self.register_buffer("first_layer_weight", first, persistent=False)
        # A buffer, so that Generator.to casts it with the weights (float64 end to end).
        half = torch.zeros(0) if fixed is None else fixed.clone()
        self.register_buffer("fixed_half", half.to(dtype), persistent=False)
        freeze(self)

    def conditioning(self, codes: torch.Tensor) -> torch.Tensor:
        """The `both` code (B, 108) of codes in this space."""
        if self.space == "both":
            return codes
        fixed = self.fixed_half.to(codes).expand(codes.shape[0], -1)
        halves = (codes, fixed) if self.space == "noise" else (fixed, codes)
        return torch.cat(halves, dim=1)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        images: torch.Tensor = self.net(self.conditioning(codes))
        return images

    def folded_in(self, dtype: torch.dtype) -> OmniartEye:
        """The same generator with BatchNorm folded in `dtype` (on the CPU)."""
        fixed = None if self.space == "both" else self.fixed_half.detach().cpu().double()
        return OmniartEye(self._checkpoint, self.space, fixed, dtype)

    def sefa_layer_names(self) -> list[str]:
        return ["main.0"]

    def first_layer_matrix(self, *, batchnorm_folded: bool) -> torch.Tensor:
        """The (1024*4*4, 108) matrix mapping the whole input to the first layer's output, the
        checkpoint's or (`batchnorm_folded`) with the first BatchNorm's scale folded in."""
        if batchnorm_folded:
            return folded_first_matrix(self.net)
        weight = self.first_layer_weight
        return weight.reshape(weight.shape[0], -1).T

    def sefa_weights(
        self, layers: list[int] | None = None, *, fold_batchnorm: bool = False
    ) -> list[torch.Tensor]:
        """SeFa's A: the first layer's columns that read this space's code (noise: the 100
        noise columns; class: the 8 label columns; both: all 108 with the label columns zeroed,
        so the directions live in the noise subspace, as for BigGAN)."""
        if layers not in (None, [0]):
            raise InvalidOptionError(
                "omniart-eye has one latent-consuming layer: layers=None or [0]"
            )
        matrix = self.first_layer_matrix(batchnorm_folded=fold_batchnorm)
        if self.space == "noise":
            return [matrix[:, :NOISE_DIM]]
        if self.space == "class":
            return [matrix[:, NOISE_DIM:]]
        matrix = matrix.clone()
        matrix[:, NOISE_DIM:] = 0
        return [matrix]


def omniart_weights_path() -> Path:
    """The package's weights file, located without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingWeightsError(
            f"{OMNIART_EYE} needs the package omniart-eye-generator (its weights file): "
            f"install it with `{INSTALL}`"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / WEIGHTS_FILE
    if not path.is_file():
        raise MissingWeightsError(
            f"{OMNIART_EYE} weights not found at {path}; reinstall: `{INSTALL}`"
        )
    return path


def omniart_space(space: str) -> str:
    space = "both" if space == CONDITIONAL_LEGACY_SPACE else space
    if space not in CONDITIONAL_SPACES:
        raise InvalidOptionError(
            f"{OMNIART_EYE} has no space {space!r}; use one of {', '.join(CONDITIONAL_SPACES)} "
            "(both = noise ⊕ one-hot label)"
        )
    return space


def load_omniart_eye(
    space: str = "both", transform: StateTransform | None = None, name: str = OMNIART_EYE
) -> Generator:
    """omniart-eye in `space`; `transform` (a control) rewrites the checkpoint's state dict
    before the BatchNorm is folded."""
    space = omniart_space(space)
    path = omniart_weights_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    if transform is not None:
        state = transform(state)
    noise, label = _draw(1, np.random.default_rng(FIXED_HALF_SEED))
    facts: dict[str, Any] = {
        "model": name,
        "weights_file": f"{PACKAGE}/{WEIGHTS_FILE}",
        "weights_sha256": file_sha256(path),
        "architecture": "conditional DCGAN (omniart-eye-generator 0.1): noise 100 ⊕ one-hot 8, "
        "ConvTranspose2d 1024-512-256-128-64-3, 128x128",
        "batchnorm_folded": True,
        "batchnorm_folded_in": "float32",
        "dropout": "Dropout(0.2) after the first block: the identity in eval mode, left out",
        "classes": list(CLASSES),
        "space": space,
        "latent_layout": f"noise[0:{NOISE_DIM}] + one_hot_label[{NOISE_DIM}:{NOISE_DIM + 8}]",
        "latent_distribution": "N(0, I) noise ⊕ one-hot label of a uniformly random class",
    }
    fixed: np.ndarray | None = None
    if space == "noise":
        fixed = label[0]
        index = int(np.argmax(fixed))
        facts.update(
            fixed_class=index,
            fixed_class_name=CLASSES[index],
            latent_layout=f"noise[0:{NOISE_DIM}]; label fixed (fixed_class)",
            latent_distribution="N(0, I)",
        )
    elif space == "class":
        fixed = noise[0]
        facts.update(
            fixed_noise=fixed.tolist(),
            latent_layout="one_hot_label[0:8]; noise fixed (fixed_noise)",
            latent_distribution="one-hot label of a uniformly random class",
        )
    if fixed is not None:
        facts["fixed_half_seed"] = FIXED_HALF_SEED
    module = OmniartEye(state, space, None if fixed is None else torch.as_tensor(fixed))

    def sample(n: int, rng: np.random.Generator) -> np.ndarray:
        noise, label = _draw(n, rng)
        return {"both": np.concatenate((noise, label), axis=1), "noise": noise, "class": label}[
            space
        ]

    latent_dim = {"both": NOISE_DIM + len(CLASSES), "noise": NOISE_DIM, "class": len(CLASSES)}
    return Generator(
        name=name,
        family=OMNIART_FAMILY,
        latent_dim=latent_dim[space],
        module=module,
        facts=facts,
        sampler=sample,
        space=space,
        spaces=CONDITIONAL_SPACES,
    )


def load_omniart_eye_control(name: str, control: Control, space: str) -> Generator:
    """A control of omniart-eye: the checkpoint rewritten before folding, as for dcgan-faces
    (the same layout conventions: 4-D convolution weights, BatchNorm statistics by name)."""
    transform, kept = dcgan_control_transform(control)
    generator = load_omniart_eye(space, transform, name=name)
    generator.facts = {
        **generator.facts,
        "base_weights_sha256": generator.facts["weights_sha256"],
        "weights_sha256": state_dict_sha256(generator.module),
        **control.facts(kept),
    }
    return generator


def _draw(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Noise (n, 100) ~ N(0, I) and one-hot labels (n, 8) of uniformly random classes."""
    noise = rng.standard_normal((n, NOISE_DIM))
    label = np.eye(len(CLASSES))[rng.integers(len(CLASSES), size=n)]
    return noise, label

"""`load_generator`: a model name to a loaded `Generator`, by the family its name selects.

Names: the built-in ``dcgan-faces``; the schemes ``torchscript:PATH``,
``python:FILE_OR_MODULE:FACTORY``, ``biggan-deep:DIR``, ``stylegan2:PATH`` (rosinality) and
``stylegan2-ada:PKL`` (NVIDIA pickles); and the controls ``shuffled:SEED:BASE`` /
``random-init:SEED:BASE`` of any of them. Each family's module documents its contract; the
catalogue (catalogue.py) lists them without torch.

Every loader returns a frozen, eval-mode module mapping latent codes (B, d) to images
(B, C, H, W) in [-1, 1], with its latent dimension, how to sample codes from a seed, and the
facts to record with every result (weights sha256, options). Here the result is checked once
(contract.py: shapes on the meta device, values on two codes where that is cheap) where the
message can still name the file.

Latent spaces: every generator has ``z``; StyleGAN2 families also ``w`` and ``w+``, with a
truncation ``psi``; BigGAN has ``both`` (= its ``z``), ``noise`` and ``class``. The space is a
property of the loaded Generator (`space`, `latent_dim`, `sample`, the module's input), so the
methods never need to know it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from services.model_catalogue import (
    ALL_SPACES,
    BIGGAN_SCHEME,
    BIGGAN_SPACES,
    DCGAN_FACES,
    MODEL_SCHEMES,
    NVIDIA_SCHEME,
    OMNIART_EYE,
    PYTHON_SCHEME,
    STYLEGAN2_SCHEME,
    TORCHSCRIPT_SCHEME,
    built_in_names,
)

from ..errors import (
    InvalidOptionError,
    UnknownModelError,
)
from .contract import check_contract
from .controls import (
    SHUFFLED_PUBLISHED,
    Control,
    parse_control,
    reinit_module,
    shuffle_module,
)
from .generator import Generator, state_dict_sha256


def load_generator(
    name: str,
    *,
    device: str = "cpu",
    truncation: float | None = None,
    space: str = "z",
    psi: float | None = None,
    nvidia_code_dir: str | None = None,
) -> Generator:
    """Load a generator by name (see the module docstring for the accepted names), its codes
    in `space` (z for every family; w and w+ for StyleGAN2) with truncation `psi` (StyleGAN2).
    `nvidia_code_dir` (the setting SPECTRA_NVIDIA_CODE_DIR, passed in by the caller): where
    NVIDIA's torch_utils / dnnlib live, for `stylegan2-ada:PKL`."""
    if not isinstance(name, str) or not name:
        raise UnknownModelError(f"model name must be a non-empty string, got {name!r}")
    if truncation is not None and not name.startswith(BIGGAN_SCHEME):
        raise InvalidOptionError("truncation applies only to biggan-deep:DIR models")
    torch_device = _checked_device(device)
    generator = _load_by_name(name, _Options(torch_device, truncation, space, psi, nvidia_code_dir))
    generator = generator.to(torch_device, generator.dtype)
    check_contract(generator)
    return generator


@dataclass(frozen=True)
class _Options:
    device: torch.device
    truncation: float | None
    space: str
    psi: float | None
    nvidia_code_dir: str | None


def _load_by_name(name: str, options: _Options) -> Generator:
    device, truncation, space, psi = options.device, options.truncation, options.space, options.psi
    control = parse_control(name)
    if control is not None:
        return _load_control(name, control, options)
    if name.startswith(STYLEGAN2_SCHEME):
        from .stylegan2 import load_stylegan2

        return load_stylegan2(name, name.partition(":")[2], space=space, psi=psi)
    if name.startswith(NVIDIA_SCHEME):
        from .nvidia import load_nvidia

        location = name.removeprefix(NVIDIA_SCHEME)
        code_dir = options.nvidia_code_dir or None
        return load_nvidia(name, location, space=space, psi=psi, code_dir=code_dir)
    if name.startswith(BIGGAN_SCHEME):
        from .biggan import DEFAULT_BIGGAN_TRUNCATION, load_biggan

        if psi is not None:
            _refuse_space(name, "z", psi)  # BigGAN's truncation is `truncation`, not psi
        return load_biggan(
            name,
            name.removeprefix(BIGGAN_SCHEME),
            DEFAULT_BIGGAN_TRUNCATION if truncation is None else truncation,
            space,
        )
    if name == OMNIART_EYE:
        from .omniart import load_omniart_eye

        if psi is not None:
            _refuse_space(name, "z", psi)
        return load_omniart_eye(space)
    if space != "z" or psi is not None:
        _refuse_space(name, space, psi)
    if name == DCGAN_FACES:
        from .dcgan import load_dcgan_faces

        return load_dcgan_faces()
    if name.startswith(TORCHSCRIPT_SCHEME):
        from .torchscript import load_torchscript

        return load_torchscript(name, name.removeprefix(TORCHSCRIPT_SCHEME), device)
    if name.startswith(PYTHON_SCHEME):
        from .python_factory import load_python

        return load_python(name, name.removeprefix(PYTHON_SCHEME))
    known = ", ".join(built_in_names() + list(MODEL_SCHEMES))
    raise UnknownModelError(f"unknown model {name!r}; use one of: {known}")


def _load_control(name: str, control: Control, options: _Options) -> Generator:
    """A shuffled or random-initialised twin of the base model (see controls.py): the family's
    own recipe where it has one, else the generic one on the loaded module."""
    space, psi = options.space, options.psi
    if control.base == DCGAN_FACES:
        from .dcgan import load_dcgan_faces_control

        if space != "z" or psi is not None:
            _refuse_space(name, space, psi)
        return load_dcgan_faces_control(name, control)
    if control.base == OMNIART_EYE:
        from .omniart import load_omniart_eye_control

        if psi is not None:
            _refuse_space(name, "z", psi)
        return load_omniart_eye_control(name, control, space)
    if control.base.startswith(STYLEGAN2_SCHEME):
        from .stylegan2.controls import load_stylegan2_control

        return load_stylegan2_control(name, control, space=space, psi=psi)
    generator = _load_by_name(control.base, options)
    if control.shuffles:
        published = control.kind == SHUFFLED_PUBLISHED
        shuffle_module(generator.module, control.seed, buffers=published)
        kept = "integer buffers" if published else "buffers"
    else:
        count = reinit_module(generator.module, control.seed, name)
        kept = f"buffers and normalisation layers; {count} submodules reset_parameters()"
    generator.name = name
    generator.facts = {
        **generator.facts,
        "model": name,
        "base_weights_sha256": generator.facts.get("weights_sha256"),
        "weights_sha256": state_dict_sha256(generator.module),
        **control.facts(kept),
    }
    return generator


def _refuse_space(name: str, space: str, psi: float | None) -> None:
    if space not in ALL_SPACES:
        raise InvalidOptionError(f"unknown space {space!r}; use one of {', '.join(ALL_SPACES)}")
    if space != "z":
        owner = (
            "BigGAN (biggan-deep:DIR) and omniart-eye"
            if space in BIGGAN_SPACES
            else "StyleGAN2 (stylegan2:PATH, stylegan2-ada:PKL)"
        )
        raise InvalidOptionError(
            f"{name} has one latent space, z; space {space!r} exists only for {owner}"
        )
    raise InvalidOptionError(
        f"psi (truncation toward w_avg) applies only to StyleGAN2 models, not {name}"
    )


def _checked_device(device: str | torch.device) -> torch.device:
    try:
        torch_device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise InvalidOptionError(f"unknown device {device!r}: {error}") from None
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidOptionError(
            f"device {device!r} requested but CUDA is not available here; use 'cpu'"
        )
    return torch_device

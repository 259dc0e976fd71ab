"""Generators: a small registry of built-in models plus three loader schemes.

Every loader returns a `Generator`: a frozen, eval-mode `torch.nn.Module` mapping latent codes
(B, d) to images (B, C, H, W) in [-1, 1], with its latent dimension, how to sample codes from a
seed, and the facts to record with every result (weights sha256, options).

Names `load_generator` accepts:

``dcgan-faces``
    The pretrained DCGAN (d = 100, 64x64 RGB faces) whose weights ship in the PyPI package
    ``gan-face-generate`` (``gan_face_generate/weights.tar``, key ``netG_state_dict``). The
    architecture is defined here (the package's own module is never imported). Each
    ConvTranspose2d + eval-mode BatchNorm pair is folded into one ConvTranspose2d at load time,
    in the dtype the generator runs in (``to(..., float64)`` refolds from the checkpoint, so
    float64 is float64 end to end; recorded as ``batchnorm_folded_in``): the same function to
    that dtype's rounding, one op fewer per layer, and no BatchNorm that could ever run in
    train mode. The first layer (a transposed
    convolution of the code as a 1x1 image) runs as the linear map it is. Codes ~ N(0, I).

``torchscript:PATH``
    Contract: ``torch.jit.load(PATH)`` gives a module whose ``forward`` maps a float tensor of
    codes (B, d) to images (B, C, H, W) in [-1, 1], deterministically, differentiably (every
    method differentiates through it). d is read from an integer attribute ``latent_dim`` of
    the scripted module, or else from an extra file ``latent_dim`` saved with
    ``torch.jit.save(m, PATH, _extra_files={"latent_dim": "100"})``. Codes ~ N(0, I).
    The module is loaded with ``map_location`` onto the chosen device and put in eval mode.

``python:FILE_OR_MODULE:FACTORY``
    Contract: ``FACTORY`` is a callable in a Python file (path ending in ``.py``) or an
    importable module; called with no arguments it returns ``(module, latent_dim)`` or
    ``(module, latent_dim, extras)``. ``module`` is a ``torch.nn.Module`` mapping (B, d) codes
    to (B, C, H, W) images in [-1, 1]. ``extras`` is an optional dict with keys
    ``"sample"`` (a callable ``(n, rng: numpy.random.Generator) -> array (n, d)``; without it
    codes ~ N(0, I)), ``"facts"`` (a JSON-able dict recorded with every result) and
    ``"family"`` (a short string). The loader puts the module in eval mode, freezes its
    parameters and records the sha256 of its state dict. See docs/custom-generators.md.

``biggan-deep:DIR``
    BigGAN-deep through ``pytorch-pretrained-biggan``; DIR holds ``config.json`` and
    ``pytorch_model.bin`` (the layout ``BigGAN.from_pretrained(DIR)`` reads). Three spaces
    (the paper analyses noise and class separately):
    ``both`` (the default; ``z`` is its older name) is the generator's conditioning vector,
    d = 2 * z_dim (256 for the released models): ``code = noise (z_dim, truncated normal *
    truncation) ⊕ class embedding (z_dim)`` — directions may mix noise and class.
    ``noise`` (d = z_dim) holds the class embedding fixed, ``class`` (d = z_dim) the noise:
    the fixed half is that of the ``both`` code sampled with seed 0 (a uniformly random class
    and its embedding; or that seed's noise), recorded in the facts (``fixed_class``,
    ``fixed_class_embedding`` / ``fixed_noise``), so ``fixed ⊕ code`` (in layout order) is the
    ``both`` code that renders the same image.
    Sampling draws the noise from the truncated normal on [-2, 2] scaled by the truncation,
    and a uniformly random class whose embedding column is appended. The truncation (default
    0.7, keyword ``truncation``) selects the generator's stored batch-norm statistics and is
    recorded. Spectral normalisation is baked into plain weights at load time (eval mode
    never updates it), so the module is a fixed function.

``stylegan2:PATH``
    A rosinality/stylegan2-pytorch checkpoint, in plain torch; the architecture is read from
    the state dict. See stylegan2.py.

``stylegan2-ada:PKL``
    An NVIDIA network pickle (stylegan2-ada-pytorch, stylegan3), adapted by its documented
    attributes; needs SPECTRA_NVIDIA_CODE_DIR. See nvidia.py.

``shuffled:SEED:BASE`` / ``random-init:SEED:BASE``
    Controls of any of the above: its weights shuffled, or a random-initialised twin. See
    controls.py.

Latent spaces: every generator has ``z``; StyleGAN2 families also ``w`` and ``w+``, with a
truncation ``psi``; BigGAN has ``both`` (= its ``z``), ``noise`` and ``class``. The space is a property of the loaded Generator (`space`, `latent_dim`,
`sample`, the module's input), so the methods never need to know it. `layer_names()` lists the
layers `layer:NAME` distances and GANSpace read.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.resources
import importlib.util
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import (
    InvalidGeneratorError,
    InvalidOptionError,
    MissingWeightsError,
    NonFiniteOutputError,
    UnknownModelError,
)
from .loaded_generator import (
    Generator,
    _module_device,
    _tensors,
    _to_channels_last,
    file_sha256,
)

DCGAN_FACES = "dcgan-faces"
DEFAULT_BIGGAN_TRUNCATION = 0.7


@dataclass(frozen=True)
class ModelInfo:
    """A built-in model, or a loader scheme (`scheme=True`: the name is a pattern, its latent
    dimension depends on the file). `layers` are the names `layer:NAME` distances and
    GANSpace accept; in a scheme's list `{i}` stands for an index."""

    name: str
    family: str
    latent_dim: int | None
    description: str
    spaces: tuple[str, ...] = ("z",)
    layers: tuple[str, ...] = ()
    scheme: bool = False


# The folded DCGAN's Sequential: code-to-feature map, then (ReLU, transposed conv) x 4, Tanh.
DCGAN_LAYERS = tuple(f"net.{i}" for i in range(10))
STYLEGAN2_LAYERS = (
    "w", "synthesis.conv1", "synthesis.to_rgb1", "synthesis.convs.{i}", "synthesis.to_rgbs.{i}",
)  # fmt: skip

_BUILT_IN = (
    ModelInfo(
        name=DCGAN_FACES,
        family="dcgan",
        latent_dim=100,
        description="Pretrained DCGAN, 64x64 RGB faces (weights from the gan-face-generate package).",
        layers=DCGAN_LAYERS,
    ),
)

# Loader schemes: not registry entries (they need a path), listed for help texts and errors.
MODEL_SCHEMES = {
    "torchscript:PATH": "a TorchScript module mapping codes (B, d) to images (B, 3, H, W) in [-1, 1]",
    "python:FILE_OR_MODULE:FACTORY": "a factory returning (module, latent_dim[, extras])",
    "biggan-deep:DIR": "BigGAN-deep from a directory with config.json and pytorch_model.bin; "
    "spaces both (noise ⊕ class embedding), noise, class",
    "stylegan2:PATH": "a rosinality/stylegan2-pytorch checkpoint (g_ema state dict); spaces z, w, w+",
    "stylegan2-ada:PKL": "an NVIDIA stylegan2-ada-pytorch / stylegan3 network pickle (runs its "
    "code: needs SPECTRA_NVIDIA_CODE_DIR); spaces z, w, w+",
}
STYLEGAN2_SCHEMES = ("stylegan2:",)
NVIDIA_SCHEME = "stylegan2-ada:"
LATENT_SPACES = ("z", "w", "w+")
BIGGAN_SPACES = ("both", "noise", "class")  # "z" is accepted as the older name of "both"
BIGGAN_LEGACY_SPACE = "z"
BIGGAN_FIXED_HALF_SEED = 0  # noise / class spaces: the other half is that of this seed's code
# Every space some family offers: what a job's `space` may name at all.
ALL_SPACES = (*LATENT_SPACES, *BIGGAN_SPACES)


def canonical_space(family: str | None, space: str) -> str:
    """A space by its current name: what BigGAN jobs recorded as `z` before BigGAN had spaces
    is `both`. Lets a stored job's space be compared with a new job's."""
    return "both" if family == "biggan-deep" and space == BIGGAN_LEGACY_SPACE else space


def list_models() -> list[ModelInfo]:
    """The built-in registry entries."""
    return list(_BUILT_IN)


def list_schemes() -> list[ModelInfo]:
    """The loader schemes and control prefixes, with their spaces and layer names."""
    every_submodule = ("every named submodule of the module (named_modules order)",)
    return [
        ModelInfo("stylegan2:PATH", "stylegan2", None, MODEL_SCHEMES["stylegan2:PATH"],
                  spaces=LATENT_SPACES, layers=STYLEGAN2_LAYERS, scheme=True),
        ModelInfo("stylegan2-ada:PKL", "stylegan2-ada", None, MODEL_SCHEMES["stylegan2-ada:PKL"],
                  spaces=LATENT_SPACES, layers=("w", "synthesis.<every named submodule>"),
                  scheme=True),
        ModelInfo("torchscript:PATH", "torchscript", None, MODEL_SCHEMES["torchscript:PATH"],
                  scheme=True),
        ModelInfo("python:FILE_OR_MODULE:FACTORY", "python", None,
                  MODEL_SCHEMES["python:FILE_OR_MODULE:FACTORY"], layers=every_submodule,
                  scheme=True),
        ModelInfo("biggan-deep:DIR", "biggan-deep", None, MODEL_SCHEMES["biggan-deep:DIR"],
                  spaces=BIGGAN_SPACES, layers=every_submodule, scheme=True),
        ModelInfo("shuffled:SEED:BASE", "as BASE", None,
                  "BASE with every learned tensor's entries permuted (the paper's control)",
                  spaces=("as BASE",), layers=("as BASE",), scheme=True),
        ModelInfo("random-init:SEED:BASE", "as BASE", None,
                  "BASE's architecture, freshly initialised (its family's own init)",
                  spaces=("as BASE",), layers=("as BASE",), scheme=True),
    ]  # fmt: skip


def load_generator(
    name: str,
    *,
    device: str = "cpu",
    truncation: float | None = None,
    space: str = "z",
    psi: float | None = None,
) -> Generator:
    """Load a generator by name (see the module docstring for the accepted names), its codes
    in `space` (z for every family; w and w+ for StyleGAN2) with truncation `psi` (StyleGAN2)."""
    if not isinstance(name, str) or not name:
        raise UnknownModelError(f"model name must be a non-empty string, got {name!r}")
    if truncation is not None and not name.startswith("biggan-deep:"):
        raise InvalidOptionError("truncation applies only to biggan-deep:DIR models")
    torch_device = _checked_device(device)
    generator = _load_by_name(name, torch_device, truncation, space, psi)
    generator = generator.to(torch_device, generator.dtype)
    _probe(generator)  # the contract, in the module's own layout
    _adopt_channels_last(generator)
    return generator


def _load_by_name(
    name: str, device: torch.device, truncation: float | None, space: str, psi: float | None
) -> Generator:
    from .controls import parse_control

    control = parse_control(name)
    if control is not None:
        return _load_control(name, control, device, truncation, space, psi)
    if name.startswith(STYLEGAN2_SCHEMES):
        from .stylegan2 import load_stylegan2

        return load_stylegan2(name, name.partition(":")[2], space=space, psi=psi)
    if name.startswith(NVIDIA_SCHEME):
        from services.config import get_settings

        from .nvidia import load_nvidia

        code_dir = get_settings().nvidia_code_dir or None
        return load_nvidia(
            name, name.removeprefix(NVIDIA_SCHEME), space=space, psi=psi, code_dir=code_dir
        )
    if name.startswith("biggan-deep:"):
        if psi is not None:
            _refuse_space(name, "z", psi)  # BigGAN's truncation is `truncation`, not psi
        return _load_biggan(
            name,
            name.removeprefix("biggan-deep:"),
            DEFAULT_BIGGAN_TRUNCATION if truncation is None else truncation,
            space,
        )
    if space != "z" or psi is not None:
        _refuse_space(name, space, psi)
    if name == DCGAN_FACES:
        return _load_dcgan_faces()
    if name.startswith("torchscript:"):
        return _load_torchscript(name, name.removeprefix("torchscript:"), device)
    if name.startswith("python:"):
        return _load_python(name, name.removeprefix("python:"))
    known = ", ".join([m.name for m in _BUILT_IN] + list(MODEL_SCHEMES))
    raise UnknownModelError(f"unknown model {name!r}; use one of: {known}")


def _load_control(
    name: str,
    control: Any,
    device: torch.device,
    truncation: float | None,
    space: str,
    psi: float | None,
) -> Generator:
    """A shuffled or random-initialised twin of the base model (see controls.py)."""
    from . import controls

    shuffled = control.kind == "shuffled"
    if control.base == DCGAN_FACES:
        if space != "z" or psi is not None:
            _refuse_space(name, space, psi)
        if shuffled:
            transform = lambda state: controls.shuffle_state(  # noqa: E731
                state, control.seed, controls.dcgan_is_learned
            )
        else:
            transform = lambda state: controls.dcgan_random_init(state, control.seed)  # noqa: E731
        kept = (
            "BatchNorm running statistics" if shuffled else "nothing (fresh BatchNorm statistics)"
        )
        generator = _load_dcgan_faces(transform)
        generator.name = name
        generator.facts = {
            **generator.facts, "model": name, "base_weights_sha256": generator.facts["weights_sha256"],
            "weights_sha256": state_dict_sha256(generator.module), **control.facts(kept),
        }  # fmt: skip
        return generator
    if control.base.startswith(STYLEGAN2_SCHEMES):
        from .stylegan2 import load_stylegan2, stylegan2_control

        transform, kept = stylegan2_control(control.kind, control.seed)
        generator = load_stylegan2(
            name, control.base.partition(":")[2], space=space, psi=psi, transform=transform,
            transform_facts=control.facts(kept),
        )  # fmt: skip
        generator.facts["base_weights_sha256"] = generator.facts["weights_sha256"]
        generator.facts["weights_sha256"] = state_dict_sha256(generator.module)
        return generator
    generator = _load_by_name(control.base, device, truncation, space, psi)
    if shuffled:
        controls.shuffle_module(generator.module, control.seed)
        kept = "buffers"
    else:
        count = controls.reinit_module(generator.module, control.seed, name)
        kept = f"buffers; {count} submodules reset with reset_parameters()"
    generator.name = name
    generator.facts = {
        **generator.facts, "model": name, "base_weights_sha256": generator.facts.get("weights_sha256"),
        "weights_sha256": state_dict_sha256(generator.module), **control.facts(kept),
    }  # fmt: skip
    return generator


def _refuse_space(name: str, space: str, psi: float | None) -> None:
    if space not in ALL_SPACES:
        raise InvalidOptionError(f"unknown space {space!r}; use one of {', '.join(ALL_SPACES)}")
    if space != "z":
        raise InvalidOptionError(
            f"{name} has one latent space, z; space {space!r} exists only for "
            + ("BigGAN (biggan-deep:DIR)" if space in BIGGAN_SPACES
               else "StyleGAN2 (stylegan2:PATH, stylegan2-ada:PKL)")
        )  # fmt: skip
    raise InvalidOptionError(
        f"psi (truncation toward w_avg) applies only to StyleGAN2 models, not {name}"
    )


# --------------------------------------------------------------------------- helpers


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


def _adopt_channels_last(generator: Generator) -> None:
    """On the CPU, 4-D weights (2-D convolutions) channels_last, in place: oneDNN's
    convolutions then keep activations channels_last instead of converting every output back
    to NCHW (dcgan-faces, 100 codes: forward 0.21 -> 0.16 s, and `jacobian` alike; float64
    no slower). Kept only if the module still runs that way (one that reshapes activations
    with `.view` cannot); else its own layout stays. Elsewhere the layout is left as it is
    (not measured there)."""
    module = generator.module
    if _module_device(module).type != "cpu" or not any(t.dim() == 4 for t in _tensors(module)):
        return
    _to_channels_last(module)
    codes = torch.as_tensor(generator.sample(2, seed=0), dtype=generator.dtype)
    try:
        with torch.no_grad():
            module(codes)
    except Exception:  # the user's module may raise anything; it ran in its own layout
        module.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
        return
    generator.channels_last = True


def _freeze(module: nn.Module) -> nn.Module:
    module.eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module


def state_dict_sha256(module: nn.Module) -> str:
    """sha256 over the state dict (names, dtypes, shapes and bytes, in name order)."""
    digest = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{key}|{data.dtype}|{tuple(data.shape)}|".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


@torch.no_grad()
def _probe(generator: Generator) -> None:
    """Run two sampled codes through the module: catch contract violations at load time,
    where the message can still say which file is wrong, and record the output shape."""
    codes = torch.as_tensor(
        generator.sample(2, seed=0), dtype=generator.dtype, device=generator.device
    )
    try:
        out = generator.module(codes)
    except Exception as error:  # the user's module may raise anything
        raise InvalidGeneratorError(
            f"{generator.name} failed on a batch of codes of shape (2, {generator.latent_dim}): "
            f"{type(error).__name__}: {error}. The module must map (B, d) codes to (B, C, H, W) images."
        ) from error
    if not isinstance(out, torch.Tensor) or out.ndim != 4 or out.shape[0] != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise InvalidGeneratorError(
            f"{generator.name} returned {shape} for 2 codes; it must return images of shape (2, C, H, W)"
        )
    if not torch.isfinite(out).all():
        raise NonFiniteOutputError(f"{generator.name} produced NaN/inf images for sampled codes")
    generator.facts.setdefault("output_shape", list(out.shape[1:]))


# --------------------------------------------------------------------------- DCGAN


class DCGAN(nn.Module):
    """PyTorch-tutorial DCGAN generator (64x64), taking codes (B, nz) instead of (B, nz, 1, 1).

    Built from a checkpoint of the tutorial layout (`main.0.weight`, ... ), with each
    ConvTranspose2d + BatchNorm2d pair folded into one ConvTranspose2d, the first of them as a
    linear map. The first layer's original weight is kept as `first_layer_weight` for SeFa
    (folding rescales it per channel).
    """

    def __init__(
        self,
        state_dict: dict[str, torch.Tensor],
        *,
        nz: int = 100,
        ngf: int = 64,
        nc: int = 3,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.nz = nz
        self._shape = (nz, ngf, nc)
        self._checkpoint = state_dict  # unfolded, as loaded: folded_in() starts from it again
        # The layers' random initial weights are overwritten by the checkpoint: draw them from a
        # forked RNG, so building one (also a float64 copy at compute time) leaves the caller's
        # global torch RNG as it was.
        with torch.random.fork_rng(devices=[]):
            reference = _tutorial_dcgan(nz, ngf, nc)
        try:
            reference.load_state_dict({k.removeprefix("main."): v for k, v in state_dict.items()})
        except RuntimeError as error:
            raise InvalidGeneratorError(
                f"DCGAN checkpoint does not match nz={nz}, ngf={ngf}, nc={nc}: {error}"
            ) from None
        reference.to(dtype)
        _freeze(reference)
        first: Any = reference[0]
        self.register_buffer("first_layer_weight", first.weight.detach().clone(), persistent=False)
        first_folded, *rest = _fold_batchnorm(reference)
        assert isinstance(first_folded, nn.ConvTranspose2d)
        self.net = nn.Sequential(_CodeToFeatureMap(first_folded), *rest)
        _freeze(self)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.net(codes)

    def folded_in(self, dtype: torch.dtype) -> DCGAN:
        """The same generator with BatchNorm folded in `dtype` (on the CPU)."""
        nz, ngf, nc = self._shape
        return DCGAN(self._checkpoint, nz=nz, ngf=ngf, nc=nc, dtype=dtype)

    def sefa_weights(
        self, layers: list[int] | None = None, *, fold_batchnorm: bool = False
    ) -> list[torch.Tensor]:
        """SeFa's A for a DCGAN: the first transposed convolution's weight (nz, C, 4, 4) as the
        (C*4*4, nz) matrix that maps the code to that layer's output; `fold_batchnorm`: with
        the first BatchNorm's per-channel scale γ/√(σ² + ε) folded in (the map as it runs)."""
        if layers not in (None, [0]):
            raise InvalidOptionError(
                "a DCGAN has one latent-consuming layer: use layers=None or [0]"
            )
        if fold_batchnorm:
            first: Any = self.net[0]
            return [first.weight.detach()]
        weight: torch.Tensor = self.first_layer_weight  # type: ignore[assignment]
        return [weight.reshape(self.nz, -1).T]


class _CodeToFeatureMap(nn.Module):
    """The DCGAN's first layer, a ConvTranspose2d(nz, C, k, stride 1, padding 0) applied to the
    code as a 1x1 image, written as what it is: one linear map (B, nz) -> (B, C, k, k). oneDNN's
    transposed convolution took 9-37 ms for this shape at 100 codes here, the matmul 1.3 ms."""

    def __init__(self, conv: nn.ConvTranspose2d) -> None:
        super().__init__()
        if conv.stride != (1, 1) or conv.padding != (0, 0) or conv.groups != 1:
            raise InvalidGeneratorError(f"not a DCGAN first layer: {conv}")
        nz, channels, height, width = conv.weight.shape
        self.shape = (channels, height, width)
        weight = conv.weight.detach().reshape(nz, channels * height * width).T.contiguous()
        bias = torch.zeros(channels) if conv.bias is None else conv.bias.detach()
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias.repeat_interleave(height * width))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return F.linear(codes, self.weight, self.bias).reshape(-1, *self.shape)


def _tutorial_dcgan(nz: int, ngf: int, nc: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),
        nn.BatchNorm2d(ngf * 8),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ngf * 4),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ngf * 2),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ngf),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
        nn.Tanh(),
    )


def _fold_batchnorm(net: nn.Sequential) -> nn.Sequential:
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    layers = list(net)
    folded: list[nn.Module] = []
    i = 0
    while i < len(layers):
        layer = layers[i]
        following = layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(layer, nn.ConvTranspose2d) and isinstance(following, nn.BatchNorm2d):
            folded.append(fuse_conv_bn_eval(layer, following, transpose=True))
            i += 2
        else:
            folded.append(layer)
            i += 1
    return nn.Sequential(*folded)


def dcgan_faces_weights_path() -> Path:
    try:
        package = importlib.resources.files("gan_face_generate")
    except ModuleNotFoundError:
        raise MissingWeightsError(
            "dcgan-faces needs the package gan-face-generate (its weights.tar): install it with "
            "`pip install --no-deps gan-face-generate==1.1.1`"
        ) from None
    return Path(str(package / "weights.tar"))


def _load_dcgan_faces(
    transform: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
) -> Generator:
    """dcgan-faces; `transform` (a control) rewrites the checkpoint's state dict first."""
    path = dcgan_faces_weights_path()
    if not path.is_file():
        raise MissingWeightsError(
            f"dcgan-faces weights not found at {path}; reinstall with "
            "`pip install --no-deps --force-reinstall gan-face-generate==1.1.1`"
        )
    checkpoint = torch.load(path, map_location="cpu")
    state = checkpoint["netG_state_dict"]
    module = DCGAN(state if transform is None else transform(state), nz=100, ngf=64, nc=3)
    facts = {
        "model": DCGAN_FACES,
        "weights_file": "gan_face_generate/weights.tar",
        "weights_sha256": file_sha256(path),
        "architecture": "pytorch-tutorial DCGAN nz=100 ngf=64 nc=3, 64x64",
        "batchnorm_folded": True,
        "batchnorm_folded_in": "float32",
        "latent_distribution": "N(0, I)",
    }
    return Generator(name=DCGAN_FACES, family="dcgan", latent_dim=100, module=module, facts=facts)


# --------------------------------------------------------------------------- TorchScript


def _load_torchscript(name: str, location: str, device: torch.device) -> Generator:
    path = Path(location).expanduser()
    if not location or not path.is_file():
        raise UnknownModelError(
            f"{name}: no TorchScript file at {str(path)!r}; give the path of a saved module"
        )
    extra = {"latent_dim": ""}
    try:
        module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except Exception as error:  # a corrupt or non-TorchScript file
        raise InvalidGeneratorError(
            f"{name}: {path} is not a loadable TorchScript module: {error}"
        ) from None
    latent_dim = getattr(module, "latent_dim", None)
    if latent_dim is None and extra["latent_dim"]:
        latent_dim = _int_or_none(extra["latent_dim"])
    if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
        raise InvalidGeneratorError(
            f"{name}: the module does not say its latent dimension; give the scripted module an int "
            "attribute `latent_dim`, or save it with "
            "torch.jit.save(m, path, _extra_files={'latent_dim': '100'})"
        )
    facts = {
        "model": name,
        "weights_file": str(path.resolve()),
        "weights_sha256": file_sha256(path),
        "latent_distribution": "N(0, I)",
    }
    return Generator(
        name=name, family="torchscript", latent_dim=latent_dim, module=_freeze(module), facts=facts
    )


def _int_or_none(text: str | bytes) -> int | None:
    try:
        return int(text.decode() if isinstance(text, bytes) else text)
    except ValueError:
        return None


# --------------------------------------------------------------------------- Python factory


def _load_python(name: str, spec: str) -> Generator:
    source, _, factory_name = spec.rpartition(":")
    if not source or not factory_name:
        raise UnknownModelError(
            f"{name}: use python:FILE_OR_MODULE:FACTORY, e.g. python:my_gan.py:build"
        )
    namespace = _import_source(name, source)
    factory = getattr(namespace, factory_name, None)
    if not callable(factory):
        raise UnknownModelError(f"{name}: {source} has no callable named {factory_name!r}")
    made = factory()
    if not isinstance(made, tuple) or len(made) not in (2, 3):
        raise InvalidGeneratorError(
            f"{name}: the factory must return (module, latent_dim) or (module, latent_dim, extras), "
            f"got {type(made).__name__}"
        )
    module, latent_dim = made[0], made[1]
    extras = made[2] if len(made) == 3 else {}
    if not isinstance(module, nn.Module):
        raise InvalidGeneratorError(
            f"{name}: the factory's module must be a torch.nn.Module, got {type(module).__name__}"
        )
    if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
        raise InvalidGeneratorError(
            f"{name}: latent_dim must be a positive int, got {latent_dim!r}"
        )
    if not isinstance(extras, dict) or set(extras) - {"sample", "facts", "family"}:
        raise InvalidGeneratorError(
            f"{name}: extras must be a dict with keys among sample, facts, family"
        )
    sampler = extras.get("sample")
    if sampler is not None and not callable(sampler):
        raise InvalidGeneratorError(
            f"{name}: extras['sample'] must be callable (n, rng) -> (n, d) array"
        )
    user_facts = extras.get("facts", {})
    try:
        json.dumps(user_facts)
    except (TypeError, ValueError):
        raise InvalidGeneratorError(f"{name}: extras['facts'] must be JSON-serialisable") from None
    _freeze(module)
    facts = {
        "model": name,
        "weights_sha256": state_dict_sha256(module),
        "latent_distribution": "custom sampler" if sampler else "N(0, I)",
        **user_facts,
    }
    family = str(extras.get("family", "python"))
    return Generator(
        name=name, family=family, latent_dim=latent_dim, module=module, facts=facts, sampler=sampler
    )


def _import_source(name: str, source: str) -> Any:
    if source.endswith(".py"):
        path = Path(source).expanduser().resolve()
        if not path.is_file():
            raise UnknownModelError(f"{name}: no Python file at {str(path)!r}")
        # One stable module name per file, so loading the same file twice replaces, not piles up.
        module_name = "_spectra_user_" + hashlib.sha256(str(path).encode()).hexdigest()[:16]
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise UnknownModelError(f"{name}: cannot import {path}")
        namespace = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = namespace
        spec.loader.exec_module(namespace)
        return namespace
    try:
        return importlib.import_module(source)
    except ImportError as error:
        raise UnknownModelError(f"{name}: cannot import module {source!r}: {error}") from None


# --------------------------------------------------------------------------- BigGAN-deep


class BigGANLatent(nn.Module):
    """BigGAN-deep's generator as a map from codes of one space to images, at a fixed
    truncation: `both` codes are the conditioning vector (noise ⊕ class embedding,
    (B, 2*z_dim)); `noise` / `class` codes (B, z_dim) are joined with the fixed other half."""

    def __init__(
        self, biggan: Any, truncation: float, space: str = "both", fixed: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        self.generator: Any = biggan.generator
        self.truncation = float(truncation)
        self.z_dim = int(biggan.config.z_dim)
        self.space = space
        if (space == "both") != (fixed is None):
            raise InvalidGeneratorError(
                f"BigGAN space {space!r}: a fixed half only for noise/class"
            )
        # A buffer, so that Generator.to casts it with the weights (float64 end to end).
        self.register_buffer(
            "fixed_half", torch.zeros(0) if fixed is None else fixed.clone(), persistent=False
        )

    def conditioning(self, codes: torch.Tensor) -> torch.Tensor:
        """The `both` code (B, 2*z_dim) of codes in this space."""
        if self.space == "both":
            return codes
        stored: torch.Tensor = self.fixed_half  # type: ignore[assignment]
        fixed = stored.to(codes).expand(codes.shape[0], -1)
        halves = (codes, fixed) if self.space == "noise" else (fixed, codes)
        return torch.cat(halves, dim=1)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.generator(self.conditioning(codes), self.truncation)

    def sefa_weights(self, layers: list[int] | None = None) -> list[torch.Tensor]:
        """SeFa's A for BigGAN: the noise columns of the first linear layer (`gen_z`). In
        `both` the class-embedding columns are zeroed, so SeFa's directions live in the noise
        subspace; `class` codes have no weight of their own to factorise."""
        if layers not in (None, [0]):
            raise InvalidOptionError(
                "BigGAN SeFa uses the first linear layer only: layers=None or [0]"
            )
        if self.space == "class":
            raise InvalidOptionError(
                "SeFa factorises BigGAN's noise weights (gen_z's noise columns); space 'class' "
                "has none to factorise: use space 'noise' or 'both', or a Hessian method"
            )
        weight = self.generator.gen_z.weight.detach().clone()
        if self.space == "noise":
            return [weight[:, : self.z_dim]]
        weight[:, self.z_dim :] = 0
        return [weight]


def _load_biggan(name: str, location: str, truncation: float, space: str = "both") -> Generator:
    if (
        isinstance(truncation, bool)
        or not isinstance(truncation, int | float)
        or not 0 < truncation <= 1
    ):
        raise InvalidOptionError(f"BigGAN truncation must be in (0, 1], got {truncation!r}")
    space = "both" if space == BIGGAN_LEGACY_SPACE else space
    if space not in BIGGAN_SPACES:
        raise InvalidOptionError(
            f"{name}: BigGAN has no space {space!r}; use one of {', '.join(BIGGAN_SPACES)} "
            "(both = noise ⊕ class embedding)"
        )
    try:
        from pytorch_pretrained_biggan import BigGAN, BigGANConfig
    except ImportError:
        raise MissingWeightsError(
            "biggan-deep models need the package pytorch-pretrained-biggan: "
            "`pip install 'latent-spectra[biggan]'`"
        ) from None
    directory = Path(location).expanduser()
    config_path, weights_path = directory / "config.json", directory / "pytorch_model.bin"
    missing = [str(p) for p in (config_path, weights_path) if not p.is_file()]
    if not location or missing:
        raise MissingWeightsError(
            f"{name}: missing {', '.join(missing) or 'a directory'}; put BigGAN-deep's config.json and "
            f"pytorch_model.bin (e.g. biggan-deep-256) in {str(directory)!r}"
        )
    config = BigGANConfig.from_json_file(str(config_path))
    model = BigGAN(config)
    state_dict = torch.load(weights_path, map_location="cpu")
    # Not the package's from_pretrained: that loads with strict=False and would silently keep
    # random weights for any key the file lacks.
    result = model.load_state_dict(state_dict, strict=False)
    if result.missing_keys:
        raise InvalidGeneratorError(
            f"{name}: {weights_path} lacks {len(result.missing_keys)} weights the config needs "
            f"(first: {result.missing_keys[:3]}); is config.json the one that belongs to it?"
        )
    _remove_spectral_norm(model)
    _freeze(model)
    embeddings = model.embeddings.weight.detach().double().cpu().numpy()  # (z_dim, classes)
    z_dim, num_classes = int(config.z_dim), int(config.num_classes)

    def draw(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Truncated-normal noise (n, z_dim) and uniformly random class indices (n,)."""
        from scipy.stats import truncnorm

        noise = truncation * truncnorm.rvs(-2, 2, size=(n, z_dim), random_state=rng)
        return noise, rng.integers(num_classes, size=n)

    def sample(n: int, rng: np.random.Generator) -> np.ndarray:
        noise, classes = draw(n, rng)
        halves = {"both": (noise, embeddings[:, classes].T), "noise": (noise,),
                  "class": (embeddings[:, classes].T,)}[space]  # fmt: skip
        return np.concatenate(halves, axis=1)

    facts: dict[str, Any] = {
        "model": name,
        "weights_file": str(weights_path.resolve()),
        "weights_sha256": file_sha256(weights_path),
        "truncation": float(truncation),
        "latent_layout": f"noise[0:{z_dim}] + class_embedding[{z_dim}:{2 * z_dim}]",
        "latent_distribution": "truncnorm(-2, 2) * truncation ⊕ embedding of a uniform random class",
        "output_dim": int(config.output_dim),
        "ignored_checkpoint_keys": len(result.unexpected_keys),
    }
    fixed = None
    if space != "both":
        # The fixed half: that of the `both` code sampled with seed 0 (the base code).
        base_noise, base_class = draw(1, np.random.default_rng(BIGGAN_FIXED_HALF_SEED))
        if space == "noise":
            fixed = embeddings[:, base_class[0]]
            facts.update(fixed_class=int(base_class[0]), fixed_class_embedding=fixed.tolist(),
                         latent_layout=f"noise[0:{z_dim}]; class embedding fixed (fixed_class)",
                         latent_distribution="truncnorm(-2, 2) * truncation")  # fmt: skip
        else:
            fixed = base_noise[0]
            facts.update(fixed_noise=fixed.tolist(),
                         latent_layout=f"class_embedding[0:{z_dim}]; noise fixed (fixed_noise)",
                         latent_distribution="embedding of a uniform random class")  # fmt: skip
        facts.update(space=space, fixed_half_seed=BIGGAN_FIXED_HALF_SEED)
    # float64, cast to the codes' dtype when used: the recorded half is exactly the one used.
    module = BigGANLatent(
        model, truncation, space, None if fixed is None else torch.as_tensor(fixed)
    )
    return Generator(
        name=name,
        family="biggan-deep",
        latent_dim=2 * z_dim if space == "both" else z_dim,
        module=module,
        facts=facts,
        sampler=sample,
        space=space,
        spaces=BIGGAN_SPACES,
    )


def _remove_spectral_norm(model: nn.Module) -> None:
    from torch.nn.utils import remove_spectral_norm
    from torch.nn.utils.spectral_norm import SpectralNorm

    for submodule in model.modules():
        for hook in list(submodule._forward_pre_hooks.values()):
            if isinstance(hook, SpectralNorm):
                remove_spectral_norm(submodule, hook.name)

"""``dcgan-faces``: the pretrained DCGAN (d = 100, 64x64 RGB faces) whose weights ship in the
PyPI package ``gan-face-generate`` (``gan_face_generate/weights.tar``, key ``netG_state_dict``).

The architecture is defined here (the package's own module is never imported). Each
ConvTranspose2d + eval-mode BatchNorm pair is folded into one ConvTranspose2d at load time, in
the dtype the generator runs in (``to(..., float64)`` refolds from the checkpoint, so float64 is
float64 end to end; recorded as ``batchnorm_folded_in``): the same function to that dtype's
rounding, one op fewer per layer, and no BatchNorm that could ever run in train mode. The
first layer (a transposed convolution of the code as a 1x1 image) runs as the linear map it
is. Codes ~ N(0, I). Its controls' recipes (`dcgan_is_learned`, `dcgan_random_init`) are here
too, with the family's other constants.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from services.model_catalogue import DCGAN_FACES

from ..errors import InvalidGeneratorError, InvalidOptionError, MissingWeightsError
from .controls import SHUFFLED, SHUFFLED_PUBLISHED, Control, every_tensor, shuffle_state
from .generator import Generator, file_sha256, freeze, state_dict_sha256

StateDict = dict[str, torch.Tensor]
DCGAN_INIT_STD = 0.02  # the PyTorch DCGAN tutorial's weights_init for convolutions


class DCGAN(nn.Module):
    """PyTorch-tutorial DCGAN generator (64x64), taking codes (B, nz) instead of (B, nz, 1, 1).

    Built from a checkpoint of the tutorial layout (`main.0.weight`, ... ), with each
    ConvTranspose2d + BatchNorm2d pair folded into one ConvTranspose2d, the first of them as a
    linear map. The first layer's original weight is kept as `first_layer_weight` for SeFa
    (folding rescales it per channel).
    """

    first_layer_weight: torch.Tensor

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
        self.net, first = fold_checkpoint(
            lambda: tutorial_dcgan(nz, ngf, nc), state_dict, dtype, f"nz={nz}, ngf={ngf}, nc={nc}"
        )
        self.register_buffer("first_layer_weight", first, persistent=False)
        freeze(self)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        images: torch.Tensor = self.net(codes)
        return images

    def folded_in(self, dtype: torch.dtype) -> DCGAN:
        """The same generator with BatchNorm folded in `dtype` (on the CPU)."""
        nz, ngf, nc = self._shape
        return DCGAN(self._checkpoint, nz=nz, ngf=ngf, nc=nc, dtype=dtype)

    sefa_normalize_rows = False  # SeFa on the raw first-layer weight, as published for DCGAN

    def sefa_layer_names(self) -> list[str]:
        return ["main.0"]

    def first_layer_matrix(self, *, batchnorm_folded: bool) -> torch.Tensor:
        """The (C*4*4, nz) matrix mapping the code to the first layer's output: the checkpoint's
        weight, or (`batchnorm_folded`) with the following BatchNorm's scale γ/√(var + eps)
        folded into each output channel's rows, as the network runs it."""
        if batchnorm_folded:
            return folded_first_matrix(self.net)
        weight = self.first_layer_weight
        return weight.reshape(self.nz, -1).T

    def sefa_weights(
        self, layers: list[int] | None = None, *, fold_batchnorm: bool = False
    ) -> list[torch.Tensor]:
        """SeFa's A for a DCGAN: the first transposed convolution's weight (nz, C, 4, 4) as the
        (C*4*4, nz) matrix that maps the code to that layer's output; unfolded by default."""
        if layers not in (None, [0]):
            raise InvalidOptionError(
                "a DCGAN has one latent-consuming layer: use layers=None or [0]"
            )
        return [self.first_layer_matrix(batchnorm_folded=fold_batchnorm)]


def folded_first_matrix(net: nn.Sequential) -> torch.Tensor:
    """The (outputs, d) weight of a folded net's first layer (its code-to-feature map)."""
    first = net[0]
    assert isinstance(first, _CodeToFeatureMap)
    return first.weight.detach()


def fold_checkpoint(
    build: Callable[[], nn.Sequential], state: StateDict, dtype: torch.dtype, shape: str
) -> tuple[nn.Sequential, torch.Tensor]:
    """A DCGAN-layout checkpoint (`main.*` keys of `build()`'s Sequential) as the network that
    runs: every ConvTranspose2d + BatchNorm2d pair folded into one ConvTranspose2d in `dtype`,
    the first as a linear map of the code, Dropout (the identity in eval mode) left out. Also
    returns the first layer's unfolded weight (SeFa reads it)."""
    # The layers' random initial weights are overwritten by the checkpoint: draw them from a
    # forked RNG, so building one (also a float64 copy at compute time) leaves the caller's
    # global torch RNG as it was.
    with torch.random.fork_rng(devices=[]):
        reference = build()
    try:
        reference.load_state_dict({k.removeprefix("main."): v for k, v in state.items()})
    except RuntimeError as error:
        raise InvalidGeneratorError(f"DCGAN checkpoint does not match {shape}: {error}") from None
    reference.to(dtype)
    freeze(reference)
    first: Any = reference[0]
    kept = nn.Sequential(*(layer for layer in reference if not isinstance(layer, nn.Dropout)))
    first_folded, *rest = _fold_batchnorm(kept)
    assert isinstance(first_folded, nn.ConvTranspose2d)
    net = nn.Sequential(_CodeToFeatureMap(first_folded), *rest)
    return net, first.weight.detach().clone()


class _CodeToFeatureMap(nn.Module):
    """The DCGAN's first layer, a ConvTranspose2d(nz, C, k, stride 1, padding 0) applied to the
    code as a 1x1 image, written as what it is: one linear map (B, nz) -> (B, C, k, k). oneDNN's
    transposed convolution is much slower for this shape than the one matmul."""

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


def tutorial_dcgan(nz: int, ngf: int, nc: int) -> nn.Sequential:
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


def load_dcgan_faces(
    transform: Callable[[StateDict], StateDict] | None = None,
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


# --------------------------------------------------------------------------- controls


def dcgan_is_learned(key: str) -> bool:
    return not key.endswith(("running_mean", "running_var", "num_batches_tracked"))


def dcgan_random_init(state: StateDict, seed: int) -> StateDict:
    """The published random-init on a DCGAN: the architecture's own initialisation (the
    PyTorch tutorial's `weights_init`: transposed convolutions N(0, 0.02)) re-draws the
    convolution weights; the BatchNorm scales, shifts and running statistics stay as trained,
    as the architecture's init routine in GAN-Geometry's control left them."""
    generator = torch.Generator().manual_seed(seed)
    out = dict(state)
    for key in sorted(state):
        if state[key].ndim == 4:  # a (transposed) convolution's weight
            out[key] = torch.randn(state[key].shape, generator=generator) * DCGAN_INIT_STD
    return out


def dcgan_control_transform(control: Control) -> tuple[Callable[[StateDict], StateDict], str]:
    """The state-dict rewrite of a control of a DCGAN-layout checkpoint, and what it keeps."""
    if control.kind == SHUFFLED:
        return (
            lambda state: shuffle_state(state, control.seed, dcgan_is_learned),
            "BatchNorm running statistics",
        )
    if control.kind == SHUFFLED_PUBLISHED:
        return lambda state: shuffle_state(state, control.seed, every_tensor), "nothing"
    return (
        lambda state: dcgan_random_init(state, control.seed),
        "BatchNorm scales, shifts and running statistics (as trained)",
    )


def load_dcgan_faces_control(name: str, control: Control) -> Generator:
    """`shuffled:SEED:dcgan-faces` / `random-init:SEED:dcgan-faces`: the checkpoint's state dict
    rewritten before the BatchNorm is folded (so a shuffle permutes the unfolded weights)."""
    transform, kept = dcgan_control_transform(control)
    generator = load_dcgan_faces(transform)
    generator.name = name
    generator.facts = {
        **generator.facts,
        "model": name,
        "base_weights_sha256": generator.facts["weights_sha256"],
        "weights_sha256": state_dict_sha256(generator.module),
        **control.facts(kept),
    }
    return generator

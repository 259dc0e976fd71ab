"""StyleGAN2 in plain torch, from a rosinality/stylegan2-pytorch checkpoint, in Z, W or W+.

The checkpoint is the `g_ema` state dict of rosinality's `Generator(size, style_dim, n_mlp,
channel_multiplier)` (a torch file holding ``{"g_ema": ..., "latent_avg": ...}`` or the bare
state dict). Nothing about the architecture is passed in: it is read from the keys and
shapes (`StyleGAN2Architecture.from_state_dict`): the constant input's width and size, the
number of upsampling stages (the `to_rgbs.*`), each stage's width, the style dimension and
the number of mapping layers. A "narrow" net (smaller widths than rosinality's table) or one
with a 16 x 16 constant loads the same way.

The maths, as rosinality's model.py computes it (written here from its definitions):
- mapping: PixelNorm, then `n_mlp` equalised linear layers (lr_mul 0.01) with leaky ReLU
  (slope 0.2) scaled by √2; w = mapping(z).
- synthesis from the constant input; per resolution two modulated 3x3 convolutions (the first
  upsamples: a transposed convolution of stride 2, then a [1,3,3,1] FIR blur), each followed by
  noise injection (a learned strength times a FIXED noise map) and a biased leaky ReLU; a
  modulated 1x1 ToRGB without demodulation per resolution, whose outputs are summed with the
  FIR-upsampled skip. Modulation scales the input channels by the style affine of w, and
  demodulation scales output channels by 1/√(Σ (weight·style)² + 1e-8): the same function as
  rosinality's fused grouped convolution, computed with one shared weight per layer, so the
  batch (and torch.func's vmap) never needs per-sample weights.
- The FIR filters are depthwise convolutions (no compiled CUDA ops). Images are returned as
  the synthesis produces them, never clamped.

Spaces (the module maps codes of the chosen space to images; `latent_dim` is that space's d):
- ``z`` (d = style_dim): G(z) = synthesis(w_avg + ψ (mapping(z) − w_avg)).
- ``w`` (d = style_dim): G(w) = synthesis(w) with w broadcast to every layer. Sampled base
  codes are w = w_avg + ψ (mapping(z) − w_avg), z ~ N(0, I) from the seed.
- ``w+`` (d = num_ws·style_dim, slot-major: code[s·D:(s+1)·D] is layer slot s): each layer
  slot has its own w. Sampled base codes are the sampled w in every slot, so a W+ code whose
  rows are all equal renders the W image.

Noise maps are the checkpoint's `noises.noise_i` buffers (rosinality's `randomize_noise=False`);
a checkpoint without them gets maps drawn from a recorded seed. Never re-drawn per call.
w_avg is the checkpoint's `latent_avg` when present, else the mean of mapping(z) over 4096
codes drawn from seed 0 (recorded).

`write_random_checkpoint` writes a random-initialised checkpoint with rosinality's exact key
names and shapes, for tests, benchmarks and demos (there are no pretrained weights here).
"""

from __future__ import annotations

import argparse
import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import InvalidGeneratorError, InvalidOptionError, MissingWeightsError
from .generators import Generator, file_sha256

SPACES = ("z", "w", "w+")
MAPPING_LR_MUL = 0.01  # rosinality's lr_mlp default; the state dict does not record it
LEAKY_SLOPE = 0.2
ACTIVATION_GAIN = math.sqrt(2.0)
DEMODULATION_EPS = 1e-8
W_AVG_SAMPLES = 4096
NOISE_SEED = 0
BLUR_TAPS = (1.0, 3.0, 3.0, 1.0)
StateDict = dict[str, torch.Tensor]
StateTransform = Callable[[StateDict], StateDict]


# --------------------------------------------------------------------------- architecture


@dataclass(frozen=True)
class StyleGAN2Architecture:
    """Everything the state dict says about the network."""

    style_dim: int
    n_mlp: int
    const_size: int
    widths: tuple[int, ...]  # the constant's width, then each upsampling stage's width

    @property
    def stages(self) -> int:
        return len(self.widths) - 1

    @property
    def size(self) -> int:
        return self.const_size * 2**self.stages

    @property
    def num_ws(self) -> int:
        """rosinality's n_latent: conv1, to_rgb1, then two slots per stage."""
        return 2 * self.stages + 2

    @property
    def num_convs(self) -> int:
        return 2 * self.stages + 1

    def noise_size(self, index: int) -> int:
        return self.const_size * 2 ** ((index + 1) // 2)

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every key of rosinality's g_ema state dict with its shape, in its state-dict order."""
        d = self.style_dim
        shapes: dict[str, tuple[int, ...]] = {}
        for i in range(1, self.n_mlp + 1):
            shapes[f"style.{i}.weight"] = (d, d)
            shapes[f"style.{i}.bias"] = (d,)
        c0 = self.widths[0]
        shapes["input.input"] = (1, c0, self.const_size, self.const_size)
        _styled_conv_shapes(shapes, "conv1", c0, c0, d, upsample=False)
        _to_rgb_shapes(shapes, "to_rgb1", c0, d, upsample=False)
        for stage in range(self.stages):
            c_in, c_out = self.widths[stage], self.widths[stage + 1]
            _styled_conv_shapes(shapes, f"convs.{2 * stage}", c_in, c_out, d, upsample=True)
            _styled_conv_shapes(shapes, f"convs.{2 * stage + 1}", c_out, c_out, d, upsample=False)
        for stage in range(self.stages):
            _to_rgb_shapes(shapes, f"to_rgbs.{stage}", self.widths[stage + 1], d, upsample=True)
        for i in range(self.num_convs):
            size = self.noise_size(i)
            shapes[f"noises.noise_{i}"] = (1, 1, size, size)
        return shapes

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor]) -> StyleGAN2Architecture:
        def shape(key: str) -> tuple[int, ...]:
            if key not in state:
                raise InvalidGeneratorError(
                    f"not a rosinality StyleGAN2 g_ema state dict: the key {key!r} is missing"
                )
            return tuple(state[key].shape)

        const = shape("input.input")
        if len(const) != 4 or const[2] != const[3]:
            raise InvalidGeneratorError(f"input.input has shape {const}; expected (1, C, S, S)")
        modulation = shape("conv1.conv.modulation.weight")
        n_mlp = 0
        while f"style.{n_mlp + 1}.weight" in state:
            n_mlp += 1
        stages = 0
        while f"to_rgbs.{stages}.conv.weight" in state:
            stages += 1
        widths = [const[1]]
        for stage in range(stages):
            widths.append(shape(f"convs.{2 * stage}.conv.weight")[1])
        return cls(
            style_dim=int(modulation[1]), n_mlp=n_mlp, const_size=int(const[2]),
            widths=tuple(int(w) for w in widths),
        )  # fmt: skip


def _styled_conv_shapes(
    shapes: dict[str, tuple[int, ...]],
    prefix: str,
    c_in: int,
    c_out: int,
    d: int,
    *,
    upsample: bool,
) -> None:
    shapes[f"{prefix}.conv.weight"] = (1, c_out, c_in, 3, 3)
    if upsample:
        shapes[f"{prefix}.conv.blur.kernel"] = (len(BLUR_TAPS), len(BLUR_TAPS))
    shapes[f"{prefix}.conv.modulation.weight"] = (c_in, d)
    shapes[f"{prefix}.conv.modulation.bias"] = (c_in,)
    shapes[f"{prefix}.noise.weight"] = (1,)
    shapes[f"{prefix}.activate.bias"] = (c_out,)


def _to_rgb_shapes(
    shapes: dict[str, tuple[int, ...]], prefix: str, c_in: int, d: int, *, upsample: bool
) -> None:
    shapes[f"{prefix}.bias"] = (1, 3, 1, 1)
    if upsample:
        shapes[f"{prefix}.upsample.kernel"] = (len(BLUR_TAPS), len(BLUR_TAPS))
    shapes[f"{prefix}.conv.weight"] = (1, 3, c_in, 1, 1)
    shapes[f"{prefix}.conv.modulation.weight"] = (c_in, d)
    shapes[f"{prefix}.conv.modulation.bias"] = (c_in,)


def check_state_dict(state: Mapping[str, torch.Tensor], arch: StyleGAN2Architecture) -> bool:
    """Raise InvalidGeneratorError naming the first missing, unexpected or misshapen key.
    Returns whether the noise buffers are present (all of them; a checkpoint may have none)."""
    expected = arch.expected_shapes()
    noise_keys = [k for k in expected if k.startswith("noises.")]
    has_noise = any(k in state for k in noise_keys)
    for key in expected:
        if key not in state and (has_noise or key not in noise_keys):
            raise InvalidGeneratorError(
                f"StyleGAN2 checkpoint does not match rosinality's layout for {_describe(arch)}: "
                f"missing key {key!r} (the first of the {_count_missing(state, expected, has_noise)} missing)"
            )
    for key, tensor in state.items():
        if key not in expected:
            raise InvalidGeneratorError(
                f"StyleGAN2 checkpoint does not match rosinality's layout for {_describe(arch)}: "
                f"unexpected key {key!r}; is this a rosinality/stylegan2-pytorch g_ema state dict?"
            )
        if tuple(tensor.shape) != expected[key]:
            raise InvalidGeneratorError(
                f"StyleGAN2 checkpoint key {key!r} has shape {tuple(tensor.shape)}, expected "
                f"{expected[key]} for {_describe(arch)}"
            )
        if not tensor.is_floating_point():
            raise InvalidGeneratorError(f"StyleGAN2 checkpoint key {key!r} is not floating point")
    return has_noise


def _count_missing(
    state: Mapping[str, torch.Tensor], expected: Mapping[str, Any], has_noise: bool
) -> int:
    return sum(1 for k in expected if k not in state and (has_noise or not k.startswith("noises.")))


def _describe(arch: StyleGAN2Architecture) -> str:
    return (
        f"size {arch.size}, style_dim {arch.style_dim}, n_mlp {arch.n_mlp}, "
        f"widths {list(arch.widths)}"
    )


# --------------------------------------------------------------------------- building blocks


def _fir(x: torch.Tensor, kernel: torch.Tensor, pad0: int, pad1: int) -> torch.Tensor:
    """upfirdn2d with up = down = 1: pad (negative crops), then the depthwise convolution
    with the kernel (flipped, so it is a true convolution as upfirdn2d computes it)."""
    channels = x.shape[1]
    x = F.pad(x, [pad0, pad1, pad0, pad1])
    weight = torch.flip(kernel, [0, 1]).reshape(1, 1, *kernel.shape)
    return F.conv2d(x, weight.expand(channels, 1, *kernel.shape), groups=channels)


def _zero_upsample(x: torch.Tensor) -> torch.Tensor:
    """Insert a zero after every pixel in both directions: (.., H, W) -> (.., 2H, 2W)."""
    *lead, height, width = x.shape
    x = x.reshape(*lead, height, 1, width, 1)
    x = F.pad(x, [0, 1, 0, 0, 0, 1])
    return x.reshape(*lead, 2 * height, 2 * width)


def _leaky(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, LEAKY_SLOPE) * ACTIVATION_GAIN


class _Mapping(nn.Module):
    def __init__(self, state: StateDict, arch: StyleGAN2Architecture) -> None:
        super().__init__()
        self.weights = nn.ParameterList(
            [nn.Parameter(state[f"style.{i}.weight"]) for i in range(1, arch.n_mlp + 1)]
        )
        self.biases = nn.ParameterList(
            [nn.Parameter(state[f"style.{i}.bias"]) for i in range(1, arch.n_mlp + 1)]
        )
        self.scale = MAPPING_LR_MUL / math.sqrt(arch.style_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z * torch.rsqrt(torch.mean(z**2, dim=1, keepdim=True) + 1e-8)
        for weight, bias in zip(self.weights, self.biases, strict=True):
            x = _leaky(F.linear(x, weight * self.scale) + bias * MAPPING_LR_MUL)
        return x


class _ModulatedConv(nn.Module):
    """rosinality's ModulatedConv2d (with its `modulation` style affine), unfused."""

    blur_kernel: torch.Tensor

    def __init__(self, state: StateDict, prefix: str, *, demodulate: bool, upsample: bool) -> None:
        super().__init__()
        weight = state[f"{prefix}.weight"][0]  # (out, in, k, k)
        self.weight = nn.Parameter(weight)
        self.modulation_weight = nn.Parameter(state[f"{prefix}.modulation.weight"])
        self.modulation_bias = nn.Parameter(state[f"{prefix}.modulation.bias"])
        self.scale = 1 / math.sqrt(weight.shape[1] * weight.shape[2] * weight.shape[3])
        self.modulation_scale = 1 / math.sqrt(self.modulation_weight.shape[1])
        self.demodulate = demodulate
        self.upsample = upsample
        self.padding = weight.shape[-1] // 2
        if upsample:
            self.register_buffer("blur_kernel", state[f"{prefix}.blur.kernel"])

    def style(self, w: torch.Tensor) -> torch.Tensor:
        """The style affine: (B, style_dim) -> (B, in) channel scales (bias initialised to 1)."""
        return F.linear(w, self.modulation_weight * self.modulation_scale, self.modulation_bias)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        style = self.style(w)
        weight = self.weight * self.scale
        x = x * style[:, :, None, None]
        if self.upsample:
            out = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
            # rosinality: p = (taps - 2) - (k - 1); pads ((p + 1)//2 + 1, p//2 + 1)
            p = self.blur_kernel.shape[0] - 2 - (weight.shape[-1] - 1)
            out = _fir(out, self.blur_kernel, (p + 1) // 2 + 1, p // 2 + 1)
        else:
            out = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            energy = (style**2) @ (weight**2).sum((2, 3)).T  # (B, out)
            out = out * torch.rsqrt(energy + DEMODULATION_EPS)[:, :, None, None]
        return out


class _StyledConv(nn.Module):
    """Modulated 3x3 convolution, fixed noise times its learned strength, biased leaky ReLU."""

    noise: torch.Tensor

    def __init__(
        self, state: StateDict, prefix: str, noise: torch.Tensor, *, upsample: bool
    ) -> None:
        super().__init__()
        self.conv = _ModulatedConv(state, f"{prefix}.conv", demodulate=True, upsample=upsample)
        self.noise_strength = nn.Parameter(state[f"{prefix}.noise.weight"])
        self.bias = nn.Parameter(state[f"{prefix}.activate.bias"])
        self.register_buffer("noise", noise)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        out = self.conv(x, w) + self.noise_strength * self.noise
        return _leaky(out + self.bias[None, :, None, None])


class _ToRGB(nn.Module):
    upsample_kernel: torch.Tensor

    def __init__(self, state: StateDict, prefix: str, *, upsample: bool) -> None:
        super().__init__()
        self.conv = _ModulatedConv(state, f"{prefix}.conv", demodulate=False, upsample=False)
        self.bias = nn.Parameter(state[f"{prefix}.bias"])
        self.upsample = upsample
        if upsample:
            self.register_buffer("upsample_kernel", state[f"{prefix}.upsample.kernel"])

    def forward(self, x: torch.Tensor, w: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        out = self.conv(x, w) + self.bias
        if skip is not None:
            # rosinality's Upsample: zero insertion, pads ((p + 1)//2 + 1, p//2), p = taps - 2
            p = self.upsample_kernel.shape[0] - 2
            out = out + _fir(_zero_upsample(skip), self.upsample_kernel, (p + 1) // 2 + 1, p // 2)
        return out


class _Synthesis(nn.Module):
    """ws (B, num_ws, style_dim) -> images (B, 3, size, size)."""

    def __init__(
        self, state: StateDict, arch: StyleGAN2Architecture, noises: list[torch.Tensor]
    ) -> None:
        super().__init__()
        self.const = nn.Parameter(state["input.input"])
        self.conv1 = _StyledConv(state, "conv1", noises[0], upsample=False)
        self.to_rgb1 = _ToRGB(state, "to_rgb1", upsample=False)
        self.convs = nn.ModuleList(
            _StyledConv(state, f"convs.{i}", noises[i + 1], upsample=i % 2 == 0)
            for i in range(2 * arch.stages)
        )
        self.to_rgbs = nn.ModuleList(
            _ToRGB(state, f"to_rgbs.{stage}", upsample=True) for stage in range(arch.stages)
        )

    def forward(self, ws: torch.Tensor) -> torch.Tensor:
        x = self.const.expand(ws.shape[0], -1, -1, -1)
        x = self.conv1(x, ws[:, 0])
        skip = self.to_rgb1(x, ws[:, 1], None)
        for stage, to_rgb in enumerate(self.to_rgbs):
            slot = 1 + 2 * stage
            x = self.convs[2 * stage](x, ws[:, slot])
            x = self.convs[2 * stage + 1](x, ws[:, slot + 1])
            skip = to_rgb(x, ws[:, slot + 2], skip)
        return skip

    def modulated_layers(self) -> list[tuple[str, _ModulatedConv, int]]:
        """(name, modulated convolution, the W+ slot it reads) in forward order."""
        conv1: Any = self.conv1
        to_rgb1: Any = self.to_rgb1
        layers: list[tuple[str, _ModulatedConv, int]] = [
            ("conv1", conv1.conv, 0), ("to_rgb1", to_rgb1.conv, 1),
        ]  # fmt: skip
        for stage, to_rgb in enumerate(self.to_rgbs):
            first: Any = self.convs[2 * stage]
            second: Any = self.convs[2 * stage + 1]
            rgb: Any = to_rgb
            layers.append((f"convs.{2 * stage}", first.conv, 1 + 2 * stage))
            layers.append((f"convs.{2 * stage + 1}", second.conv, 2 + 2 * stage))
            layers.append((f"to_rgbs.{stage}", rgb.conv, 3 + 2 * stage))
        return layers


class StyleGAN2(nn.Module):
    """Codes of one space (z, w or w+) -> images. The layer `w` (an identity) carries the
    styles entering synthesis: (B, style_dim) in z and w, (B, num_ws, style_dim) in w+."""

    w_avg: torch.Tensor

    def __init__(
        self,
        state: StateDict,
        arch: StyleGAN2Architecture,
        noises: list[torch.Tensor],
        w_avg: torch.Tensor,
        *,
        space: str,
        psi: float,
    ) -> None:
        super().__init__()
        self.arch = arch
        self.space = space
        self.psi = float(psi)
        self.mapping = _Mapping(state, arch)
        self.w = nn.Identity()
        self.synthesis = _Synthesis(state, arch, noises)
        self.register_buffer("w_avg", w_avg.reshape(arch.style_dim))
        # Rows of SeFa's A are unit-normalised by default, as genforce/sefa does.
        self.sefa_normalize_rows = True
        self.ganspace_layer = "w"  # the paper's StyleGAN recipe: PCA of w

    def truncate(self, w: torch.Tensor) -> torch.Tensor:
        if self.psi == 1.0:
            return w
        return self.w_avg + self.psi * (w - self.w_avg)

    def styles(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, num_ws, style_dim): the w of every layer slot for codes of this space."""
        num_ws, d = self.arch.num_ws, self.arch.style_dim
        if self.space == "w+":
            return self.w(codes.reshape(codes.shape[0], num_ws, d))
        w = self.truncate(self.mapping(codes)) if self.space == "z" else codes
        return self.w(w)[:, None, :].expand(-1, num_ws, -1)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.synthesis(self.styles(codes))

    def layer_names(self) -> list[str]:
        names = ["w", "synthesis.conv1", "synthesis.to_rgb1"]
        for stage in range(self.arch.stages):
            names += [f"synthesis.convs.{2 * stage}", f"synthesis.convs.{2 * stage + 1}"]
            names.append(f"synthesis.to_rgbs.{stage}")
        return names

    def sefa_layer_names(self) -> list[str]:
        synthesis: Any = self.synthesis
        return [name for name, _, _ in synthesis.modulated_layers()]

    def sefa_weights(self, layers: list[int] | None = None) -> list[torch.Tensor]:
        """SeFa's A: the style affine weights (in_channels, style_dim) of the chosen modulated
        layers (indices into `sefa_layer_names()`; all by default). In w+ each matrix sits in
        the columns of the slot its layer reads; in z there is no linear first layer."""
        if self.space == "z":
            raise InvalidOptionError(
                "SeFa factorises the style affines, which read w: use space 'w' (or 'w+') for "
                "sefa on a StyleGAN2"
            )
        synthesis: Any = self.synthesis
        modulated = synthesis.modulated_layers()
        chosen = range(len(modulated)) if layers is None else layers
        matrices = []
        for index in chosen:
            if not 0 <= index < len(modulated):
                raise InvalidOptionError(
                    f"SeFa layer {index} does not exist: this StyleGAN2 has {len(modulated)} "
                    f"modulated layers, 0..{len(modulated) - 1} ({', '.join(n for n, _, _ in modulated)})"
                )
            _, conv, slot = modulated[index]
            weight = conv.modulation_weight.detach() * conv.modulation_scale
            if self.space == "w+":
                placed = weight.new_zeros(weight.shape[0], self.arch.num_ws * self.arch.style_dim)
                d = self.arch.style_dim
                placed[:, slot * d : (slot + 1) * d] = weight
                weight = placed
            matrices.append(weight)
        return matrices


# --------------------------------------------------------------------------- loading


def read_checkpoint(path: Path) -> tuple[StateDict, torch.Tensor | None]:
    """The g_ema state dict and the latent_avg (or None) of a rosinality checkpoint file."""
    try:
        # weights_only: tensors and plain containers, plus the argparse Namespace train.py saves.
        with torch.serialization.safe_globals([argparse.Namespace]):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise InvalidGeneratorError(
            f"{path} is not a torch checkpoint of tensors that can be loaded safely: {error}"
        ) from None
    if not isinstance(checkpoint, dict):
        raise InvalidGeneratorError(f"{path} holds a {type(checkpoint).__name__}, not a dict")
    if "g_ema" in checkpoint:
        state, latent_avg = checkpoint["g_ema"], checkpoint.get("latent_avg")
    elif "input.input" in checkpoint:
        state, latent_avg = checkpoint, None
    else:
        keys = ", ".join(sorted(map(str, checkpoint))[:6])
        raise InvalidGeneratorError(
            f"{path} has no 'g_ema' entry (keys: {keys}); give a rosinality/stylegan2-pytorch "
            "checkpoint ({'g_ema': state_dict, ...}) or a g_ema state dict"
        )
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InvalidGeneratorError(f"{path}: g_ema is not a state dict of tensors")
    if latent_avg is not None and not isinstance(latent_avg, torch.Tensor):
        raise InvalidGeneratorError(f"{path}: latent_avg is not a tensor")
    return dict(state), latent_avg


def load_stylegan2(
    name: str,
    location: str,
    *,
    space: str = "z",
    psi: float | None = None,
    transform: StateTransform | None = None,
    transform_facts: dict[str, Any] | None = None,
) -> Generator:
    """A `Generator` for `stylegan2:PATH` in the given space. `transform` (controls) rewrites
    the checkpoint's state dict before the network is built."""
    space, psi = check_space(space, psi)
    path = Path(location).expanduser()
    if not location or not path.is_file():
        raise MissingWeightsError(
            f"{name}: no StyleGAN2 checkpoint at {str(path)!r}; give the path of a "
            "rosinality/stylegan2-pytorch .pt file"
        )
    state, latent_avg = read_checkpoint(path)
    arch = StyleGAN2Architecture.from_state_dict(state)
    has_noise = check_state_dict(state, arch)
    if transform is not None:
        state = transform(state)
    state = {k: v.detach().to(torch.float32).clone() for k, v in state.items()}
    noises = _noise_maps(state, arch, has_noise)
    w_avg_source = "checkpoint latent_avg"
    if latent_avg is None or transform is not None:
        # A control's mapping differs from the checkpoint's, so its latent_avg is not its mean.
        mapping = _Mapping(state, arch).double()
        latent_avg = _mean_mapped(mapping, arch.style_dim)
        w_avg_source = f"mean of mapping(z) over {W_AVG_SAMPLES} z ~ N(0, I), numpy seed 0"
    elif latent_avg.numel() != arch.style_dim:
        raise InvalidGeneratorError(
            f"{name}: latent_avg has {latent_avg.numel()} values, expected style_dim {arch.style_dim}"
        )
    module = StyleGAN2(state, arch, noises, latent_avg.detach().float(), space=space, psi=psi)
    module.eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    facts = {
        "model": name,
        "weights_file": str(path.resolve()),
        "weights_sha256": file_sha256(path),
        "format": "rosinality/stylegan2-pytorch g_ema",
        "architecture": {**asdict(arch), "widths": list(arch.widths), "size": arch.size,
                         "num_ws": arch.num_ws, "mapping_lr_mul": MAPPING_LR_MUL},
        "space": space,
        "psi": psi,
        "w_avg": w_avg_source,
        "noise": "checkpoint buffers noises.*" if has_noise
        else f"drawn once from torch seed {NOISE_SEED} (the checkpoint has none)",
        "latent_distribution": _distribution(space, psi),
        **(transform_facts or {}),
    }  # fmt: skip
    return make_generator(name, "stylegan2", module, facts)


def check_space(space: str, psi: float | None) -> tuple[str, float]:
    if space not in SPACES:
        raise InvalidOptionError(f"unknown space {space!r}; a StyleGAN2 has {', '.join(SPACES)}")
    if psi is None:
        return space, 1.0
    if isinstance(psi, bool) or not isinstance(psi, int | float) or not 0 < psi <= 1:
        raise InvalidOptionError(
            f"truncation psi must be in (0, 1] (1 = no truncation), got {psi!r}"
        )
    return space, float(psi)


def _distribution(space: str, psi: float) -> str:
    truncated = "w_avg + psi (mapping(z) - w_avg)" if psi != 1.0 else "mapping(z)"
    if space == "z":
        return f"z ~ N(0, I); G(z) = synthesis({truncated})"
    if space == "w":
        return f"w = {truncated}, z ~ N(0, I) from the seed"
    return f"w+ = ({truncated}) in every layer slot, z ~ N(0, I) from the seed"


def make_generator(name: str, family: str, module: StyleGAN2, facts: dict[str, Any]) -> Generator:
    """Wrap a StyleGAN2 module (or a duck-typed twin: arch, space, mapping, truncate) as a
    Generator of its space, sampling codes of that space from seeded z."""
    arch, space = module.arch, module.space
    d = arch.style_dim
    mapping64 = copy.deepcopy(module.mapping).to(device="cpu", dtype=torch.float64)
    w_avg64 = module.w_avg.detach().to(device="cpu", dtype=torch.float64)
    psi = module.psi

    def sample(n: int, rng: np.random.Generator) -> np.ndarray:
        z = rng.standard_normal((n, d))
        if space == "z":
            return z
        with torch.no_grad():
            w = mapping64(torch.from_numpy(z))
            if psi != 1.0:
                w = w_avg64 + psi * (w - w_avg64)
        codes = w.numpy()
        return codes if space == "w" else np.tile(codes, (1, arch.num_ws))

    latent_dim = d * (arch.num_ws if space == "w+" else 1)
    return Generator(
        name=name, family=family, latent_dim=latent_dim, module=module, facts=facts,
        sampler=sample, space=space, spaces=SPACES,
    )  # fmt: skip


def _noise_maps(
    state: StateDict, arch: StyleGAN2Architecture, has_noise: bool
) -> list[torch.Tensor]:
    if has_noise:
        return [state[f"noises.noise_{i}"] for i in range(arch.num_convs)]
    generator = torch.Generator().manual_seed(NOISE_SEED)
    return [
        torch.randn((1, 1, arch.noise_size(i), arch.noise_size(i)), generator=generator)
        for i in range(arch.num_convs)
    ]


@torch.no_grad()
def _mean_mapped(mapping: nn.Module, style_dim: int) -> torch.Tensor:
    z = np.random.default_rng(0).standard_normal((W_AVG_SAMPLES, style_dim))
    return mapping(torch.from_numpy(z)).mean(0).float()


def stylegan2_control(kind: str, seed: int) -> tuple[StateTransform, str]:
    """The state-dict rewrite of a control (see controls.py) and what it keeps."""
    from .controls import shuffle_state

    def fixed(key: str) -> bool:  # inputs and filters, not learned weights
        return key.startswith("noises.") or key.endswith("kernel")

    if kind == "shuffled":
        return (
            lambda state: shuffle_state(state, seed, lambda key: not fixed(key)),
            "noise maps and FIR kernels",
        )

    def reinitialise(state: StateDict) -> StateDict:
        fresh = init_state_dict(StyleGAN2Architecture.from_state_dict(state), seed=seed)
        return {key: state[key] if fixed(key) else fresh[key] for key in state}

    return reinitialise, "noise maps and FIR kernels (rosinality's initialisation otherwise)"


# --------------------------------------------------------------------------- random checkpoints


def rosinality_widths(
    size: int, channel_multiplier: int = 2, const_size: int = 4
) -> dict[int, int]:
    """rosinality's width table: 512 up to 32 px, then 256·m, 128·m, 64·m, 32·m, 16·m."""
    table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
    widths = {}
    resolution = const_size
    while resolution <= size:
        base = table.get(resolution, 16)
        widths[resolution] = base * (channel_multiplier if resolution >= 64 else 1)
        resolution *= 2
    return widths


def random_state_dict(
    *,
    size: int = 16,
    style_dim: int = 8,
    n_mlp: int = 2,
    channels: Mapping[int, int] | None = None,
    channel_multiplier: int = 2,
    const_size: int = 4,
    seed: int = 0,
    exercise_zeros: bool = True,
) -> StateDict:
    """A g_ema state dict with rosinality's key names and shapes, initialised as rosinality
    does (weights ~ N(0, 1) before equalised-lr scaling, modulation biases 1, blur kernels).
    `channels` maps each resolution to its width (a narrow net); by default rosinality's table.
    `exercise_zeros` draws the biases and noise strengths (zeros in rosinality's init) from
    N(0, 0.2²), so tests see every term of the forward pass."""
    stages = int(round(math.log2(size / const_size)))
    if stages < 0 or const_size * 2**stages != size:
        raise InvalidOptionError(f"size {size} is not const_size {const_size} times a power of 2")
    widths_by_res = (
        dict(channels)
        if channels is not None
        else rosinality_widths(size, channel_multiplier, const_size)
    )
    try:
        widths = tuple(widths_by_res[const_size * 2**s] for s in range(stages + 1))
    except KeyError as missing:
        raise InvalidOptionError(f"channels gives no width for resolution {missing}") from None
    arch = StyleGAN2Architecture(
        style_dim=style_dim, n_mlp=n_mlp, const_size=const_size, widths=widths
    )
    return init_state_dict(arch, seed=seed, exercise_zeros=exercise_zeros)


def init_state_dict(
    arch: StyleGAN2Architecture, *, seed: int, exercise_zeros: bool = False
) -> StateDict:
    """rosinality's initialisation of every key of `arch` (the random-init control uses this)."""
    generator = torch.Generator().manual_seed(seed)
    kernel = torch.tensor(BLUR_TAPS)
    kernel = kernel[None, :] * kernel[:, None]
    kernel = kernel / kernel.sum() * 4  # the upsampling FIR keeps the mean: gain factor²

    def normal(shape: tuple[int, ...], scale: float = 1.0) -> torch.Tensor:
        return torch.randn(shape, generator=generator) * scale

    state: StateDict = {}
    for key, shape in arch.expected_shapes().items():
        if key.endswith(("blur.kernel", "upsample.kernel")):
            state[key] = kernel.clone()
        elif key.startswith("style.") and key.endswith("weight"):
            state[key] = normal(shape, 1 / MAPPING_LR_MUL)
        elif key.endswith("modulation.bias"):
            state[key] = torch.ones(shape) + (normal(shape, 0.2) if exercise_zeros else 0)
        elif key.endswith(("bias", "noise.weight")):
            state[key] = normal(shape, 0.2) if exercise_zeros else torch.zeros(shape)
        else:  # conv and modulation weights, the constant input, the noise maps
            state[key] = normal(shape)
    return state


def write_random_checkpoint(
    path: str | Path,
    *,
    size: int = 16,
    style_dim: int = 8,
    n_mlp: int = 2,
    channels: Mapping[int, int] | None = None,
    channel_multiplier: int = 2,
    const_size: int = 4,
    seed: int = 0,
    latent_avg: bool = True,
    noise_buffers: bool = True,
    exercise_zeros: bool = True,
) -> Path:
    """Write a random-initialised rosinality checkpoint ({"g_ema": ..., "latent_avg": ...}) and
    return its path. E.g. a narrow 128-px net with W+ d = 12 x 512 = 6144:
    ``write_random_checkpoint(p, size=128, style_dim=512, channels={4: 64, 8: 64, 16: 32,
    32: 32, 64: 16, 128: 16})``."""
    state = random_state_dict(
        size=size, style_dim=style_dim, n_mlp=n_mlp, channels=channels,
        channel_multiplier=channel_multiplier, const_size=const_size, seed=seed,
        exercise_zeros=exercise_zeros,
    )  # fmt: skip
    if not noise_buffers:
        state = {k: v for k, v in state.items() if not k.startswith("noises.")}
    checkpoint: dict[str, Any] = {"g_ema": state}
    if latent_avg:
        arch = StyleGAN2Architecture.from_state_dict(state)
        checkpoint["latent_avg"] = _mean_mapped(_Mapping(state, arch).double(), style_dim)
    path = Path(path)
    torch.save(checkpoint, path)
    return path

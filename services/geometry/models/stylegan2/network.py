"""StyleGAN2's network in plain torch, as rosinality's model.py computes it (written here from
its definitions; no compiled CUDA ops).

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
- The FIR filters are depthwise convolutions. Images are returned as the synthesis produces
  them, never clamped.

`StyleGAN2` maps codes of one space (z, w or w+; see loading.py) to images.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import InvalidOptionError
from .architecture import MAPPING_LR_MUL, StateDict, StyleGAN2Architecture

LEAKY_SLOPE = 0.2
ACTIVATION_GAIN = math.sqrt(2.0)
DEMODULATION_EPS = 1e-8


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


class Mapping(nn.Module):
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
        out: torch.Tensor = self.conv(x, w) + self.bias
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
        skip: torch.Tensor = self.to_rgb1(x, ws[:, 1], None)
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
            ("conv1", conv1.conv, 0),
            ("to_rgb1", to_rgb1.conv, 1),
        ]
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
        self.mapping = Mapping(state, arch)
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
            slots: torch.Tensor = self.w(codes.reshape(codes.shape[0], num_ws, d))
            return slots
        w = self.truncate(self.mapping(codes)) if self.space == "z" else codes
        styles: torch.Tensor = self.w(w)
        return styles[:, None, :].expand(-1, num_ws, -1)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        images: torch.Tensor = self.synthesis(self.styles(codes))
        return images

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

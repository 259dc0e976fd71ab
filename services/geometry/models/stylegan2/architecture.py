"""StyleGAN2's architecture as a rosinality/stylegan2-pytorch g_ema state dict states it.

Nothing about the architecture is passed in: it is read from the keys and shapes
(`StyleGAN2Architecture.from_state_dict`): the constant input's width and size, the number of
upsampling stages (the `to_rgbs.*`), each stage's width, the style dimension and the number of
mapping layers. A "narrow" net (smaller widths than rosinality's table) or one with a 16 x 16
constant loads the same way. `check_state_dict` holds a checkpoint against that layout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ...errors import InvalidGeneratorError

MAPPING_LR_MUL = 0.01  # rosinality's lr_mlp default; the state dict does not record it
BLUR_TAPS = (1.0, 3.0, 3.0, 1.0)
StateDict = dict[str, torch.Tensor]


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
        return int(self.const_size * 2**self.stages)

    @property
    def num_ws(self) -> int:
        """rosinality's n_latent: conv1, to_rgb1, then two slots per stage."""
        return 2 * self.stages + 2

    @property
    def num_convs(self) -> int:
        return 2 * self.stages + 1

    def noise_size(self, index: int) -> int:
        return int(self.const_size * 2 ** ((index + 1) // 2))

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
            style_dim=int(modulation[1]),
            n_mlp=n_mlp,
            const_size=int(const[2]),
            widths=tuple(int(w) for w in widths),
        )


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

"""Random-initialised rosinality StyleGAN2 checkpoints for tests, benchmarks and demos (there
are no pretrained StyleGAN2 weights in the project): the exact key names and shapes of
rosinality/stylegan2-pytorch's g_ema, initialised as rosinality does."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from services.geometry.errors import InvalidOptionError
from services.geometry.models.stylegan2.architecture import StyleGAN2Architecture
from services.geometry.models.stylegan2.controls import init_state_dict
from services.geometry.models.stylegan2.loading import mean_mapped
from services.geometry.models.stylegan2.network import Mapping as MappingNetwork

StateDict = dict[str, torch.Tensor]


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
        size=size,
        style_dim=style_dim,
        n_mlp=n_mlp,
        channels=channels,
        channel_multiplier=channel_multiplier,
        const_size=const_size,
        seed=seed,
        exercise_zeros=exercise_zeros,
    )
    if not noise_buffers:
        state = {k: v for k, v in state.items() if not k.startswith("noises.")}
    checkpoint: dict[str, Any] = {"g_ema": state}
    if latent_avg:
        arch = StyleGAN2Architecture.from_state_dict(state)
        checkpoint["latent_avg"] = mean_mapped(MappingNetwork(state, arch).double(), style_dim)
    path = Path(path)
    torch.save(checkpoint, path)
    return path

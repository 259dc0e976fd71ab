"""StyleGAN2's controls: the state-dict rewrite of `shuffled` and `random-init` (rosinality's
initialisation of every key), keeping the inputs and fixed filters (noise maps, FIR kernels)."""

from __future__ import annotations

import torch

from ..controls import SHUFFLED, SHUFFLED_PUBLISHED, Control, every_tensor, shuffle_state
from ..generator import Generator, state_dict_sha256
from .architecture import BLUR_TAPS, MAPPING_LR_MUL, StateDict, StyleGAN2Architecture
from .loading import StateTransform, load_stylegan2


def stylegan2_control(kind: str, seed: int) -> tuple[StateTransform, str]:
    """The state-dict rewrite of a control (see ..controls) and what it keeps."""

    def fixed(key: str) -> bool:  # inputs and filters, not learned weights
        return key.startswith("noises.") or key.endswith("kernel")

    if kind == SHUFFLED:
        return (
            lambda state: shuffle_state(state, seed, lambda key: not fixed(key)),
            "noise maps and FIR kernels",
        )
    if kind == SHUFFLED_PUBLISHED:
        return lambda state: shuffle_state(state, seed, every_tensor), "nothing"

    def reinitialise(state: StateDict) -> StateDict:
        fresh = init_state_dict(StyleGAN2Architecture.from_state_dict(state), seed=seed)
        return {key: state[key] if fixed(key) else fresh[key] for key in state}

    return reinitialise, "noise maps and FIR kernels (rosinality's initialisation otherwise)"


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


def load_stylegan2_control(
    name: str, control: Control, *, space: str, psi: float | None
) -> Generator:
    """A control of `stylegan2:PATH`: the checkpoint's state dict rewritten before the network
    is built (w_avg recomputed from the control's own mapping)."""
    transform, kept = stylegan2_control(control.kind, control.seed)
    generator = load_stylegan2(
        name,
        control.base.partition(":")[2],
        space=space,
        psi=psi,
        transform=transform,
        transform_facts=control.facts(kept),
    )
    generator.facts["base_weights_sha256"] = generator.facts["weights_sha256"]
    generator.facts["weights_sha256"] = state_dict_sha256(generator.module)
    return generator

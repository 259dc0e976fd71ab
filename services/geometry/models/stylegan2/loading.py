"""``stylegan2:PATH``: a rosinality/stylegan2-pytorch checkpoint loaded in Z, W or W+.

The checkpoint is the `g_ema` state dict of rosinality's `Generator(size, style_dim, n_mlp,
channel_multiplier)` (a torch file holding ``{"g_ema": ..., "latent_avg": ...}`` or the bare
state dict); its architecture is read from it (architecture.py), the network built in plain
torch (network.py).

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
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from services.model_catalogue import LATENT_SPACES

from ...errors import InvalidGeneratorError, InvalidOptionError, MissingWeightsError
from ..generator import Generator, file_sha256
from .architecture import MAPPING_LR_MUL, StateDict, StyleGAN2Architecture, check_state_dict
from .network import Mapping, StyleGAN2

SPACES = LATENT_SPACES
W_AVG_SAMPLES = 4096
NOISE_SEED = 0
StateTransform = Callable[[StateDict], StateDict]


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
    # The checkpoint's tensors are this load's own (read just now): no copy where already float32.
    state = {k: v.detach().to(torch.float32) for k, v in state.items()}
    noises = _noise_maps(state, arch, has_noise)
    w_avg_source = "checkpoint latent_avg"
    if latent_avg is None or transform is not None:
        # A control's mapping differs from the checkpoint's, so its latent_avg is not its mean.
        mapping = Mapping(state, arch).double()
        latent_avg = mean_mapped(mapping, arch.style_dim)
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
        "architecture": {
            **asdict(arch),
            "widths": list(arch.widths),
            "size": arch.size,
            "num_ws": arch.num_ws,
            "mapping_lr_mul": MAPPING_LR_MUL,
        },
        "space": space,
        "psi": psi,
        "w_avg": w_avg_source,
        "noise": "checkpoint buffers noises.*"
        if has_noise
        else f"drawn once from torch seed {NOISE_SEED} (the checkpoint has none)",
        "latent_distribution": _distribution(space, psi),
        **(transform_facts or {}),
    }
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
        name=name,
        family=family,
        latent_dim=latent_dim,
        module=module,
        facts=facts,
        sampler=sample,
        space=space,
        spaces=SPACES,
    )


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
def mean_mapped(mapping: nn.Module, style_dim: int) -> torch.Tensor:
    z = np.random.default_rng(0).standard_normal((W_AVG_SAMPLES, style_dim))
    mapped: torch.Tensor = mapping(torch.from_numpy(z))
    return mapped.mean(0).float()

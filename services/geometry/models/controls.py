"""Control variants of any generator: the trained weights shuffled, or a random-initialised twin.

The published analysis (Wang & Ponce 2021) contrasts a trained generator's spectrum with the
same network whose weights carry no learned structure. A control is named by a prefix on any
model name, with the seed that makes it reproducible (an integer in [0, 2⁶³)); the recipes,
with where each differs from the published code, are in docs/controls.md:

``shuffled:SEED:BASE``
    Every learned tensor of BASE (weights, biases, affine scales) has its entries permuted by a
    permutation drawn from SEED, one per tensor, in key order. Buffers that are inputs or
    fixed statistics rather than learned weights are kept: BatchNorm running statistics, the
    FIR kernels and the noise maps of a StyleGAN2.
``shuffled-published:SEED:BASE``
    The published shuffle (GAN-Geometry's control scripts): EVERY entry of the state dict
    permuted within itself, BatchNorm running statistics (and a StyleGAN2's noise maps and
    kernels) included.
``random-init:SEED:BASE``
    The published random-init: the network's own initialisation routine re-draws the weights
    of its convolutions and linear layers (GAN-Geometry called BigGAN's ``init_weights()`` on
    the loaded model), and what that routine does not touch — BatchNorm scales, shifts and
    running statistics — stays as trained. DCGAN: the tutorial's N(0, 0.02) convolutions;
    StyleGAN2: rosinality's initialisation (it has no BatchNorm; noise maps and kernels kept);
    other modules: each non-normalisation submodule's torch `reset_parameters()` under SEED.

A family's own recipe lives with the family (``dcgan.py``, ``stylegan2/controls.py``); the
generic ones are here. Every control is recorded in the generator's facts (kind, seed, base,
recipe) and its weights hash is that of the transformed weights, so "trained vs control" is
one comparison of two model names.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from ..errors import InvalidOptionError, UnknownModelError

SHUFFLED = "shuffled"
SHUFFLED_PUBLISHED = "shuffled-published"
RANDOM_INIT = "random-init"
CONTROL_KINDS = (SHUFFLED, SHUFFLED_PUBLISHED, RANDOM_INIT)
MAX_SEED = 2**63 - 1  # torch seeds and the store's BIGINT both hold a signed 64-bit integer
StateDict = dict[str, torch.Tensor]
_SEED = re.compile(r"[0-9]+")
_RECIPES = {
    SHUFFLED: "entries of every learned tensor permuted, one permutation per tensor",
    SHUFFLED_PUBLISHED: "entries of every state-dict tensor permuted, one permutation per "
    "tensor, buffers (BatchNorm statistics) included, as GAN-Geometry's control scripts do",
    RANDOM_INIT: "weights re-drawn by the architecture's own initialisation",
}


@dataclass(frozen=True)
class Control:
    kind: str
    seed: int
    base: str

    @property
    def shuffles(self) -> bool:
        return self.kind in (SHUFFLED, SHUFFLED_PUBLISHED)

    def facts(self, kept: str) -> dict[str, Any]:
        what = f"{_RECIPES[self.kind]} (torch seed {self.seed}); kept: {kept}"
        return {"control": {"kind": self.kind, "seed": self.seed, "base": self.base, "what": what}}


def parse_control(name: str) -> Control | None:
    """`KIND:SEED:BASE` (KIND one of CONTROL_KINDS) -> Control; any other name -> None."""
    for kind in CONTROL_KINDS:
        if name.startswith(kind + ":"):
            seed_text, _, base = name.removeprefix(kind + ":").partition(":")
            if not _SEED.fullmatch(seed_text) or not base:
                raise UnknownModelError(
                    f"{name!r}: a control is named {kind}:SEED:BASE with an integer seed "
                    f"0 <= SEED < 2**63 and a model name, e.g. {kind}:0:dcgan-faces"
                )
            seed = int(seed_text)
            if seed > MAX_SEED:
                raise InvalidOptionError(
                    f"{name!r}: the control seed {seed} is too large; use a seed from 0 to "
                    f"{MAX_SEED} (2**63 - 1)"
                )
            if parse_control(base) is not None:
                raise UnknownModelError(f"{name!r}: a control of a control is not offered")
            return Control(kind=kind, seed=seed, base=base)
    return None


def base_model_name(name: str) -> str:
    """The model a name refers to once any control prefix is removed."""
    control = parse_control(name) if isinstance(name, str) else None
    return control.base if control else name


@runtime_checkable
class Resettable(Protocol):
    """A torch layer that can draw its parameters afresh (its own initialisation)."""

    def reset_parameters(self) -> None: ...


_NORMALISATION = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def shuffle_state(state: StateDict, seed: int, learned: Callable[[str], bool]) -> StateDict:
    """Permute the entries of each learned tensor (keys in sorted order, one permutation each)."""
    generator = _seeded(seed)
    out = dict(state)
    for key in sorted(state):
        tensor = state[key]
        if learned(key) and tensor.is_floating_point() and tensor.numel() > 1:
            order = torch.randperm(tensor.numel(), generator=generator)
            out[key] = tensor.reshape(-1)[order].reshape(tensor.shape).clone()
    return out


def every_tensor(_key: str) -> bool:
    """The published shuffle's choice: every entry of the state dict."""
    return True


def shuffle_module(module: nn.Module, seed: int, *, buffers: bool = False) -> None:
    """`shuffle_state` on a loaded module's parameters (and floating buffers, for the published
    shuffle), in place, in name order."""
    generator = _seeded(seed)
    tensors: dict[str, torch.Tensor] = dict(module.named_parameters())
    if buffers:
        tensors.update(
            (name, buffer) for name, buffer in module.named_buffers() if buffer.is_floating_point()
        )
    with torch.no_grad():
        for _, tensor in sorted(tensors.items()):
            if tensor.numel() > 1:
                order = torch.randperm(tensor.numel(), generator=generator)
                flat = tensor.detach().reshape(-1)[order.to(tensor.device)]
                tensor.copy_(flat.reshape(tensor.shape))


def reinit_module(module: nn.Module, seed: int, name: str) -> int:
    """Every submodule's `reset_parameters()` under the seed, normalisation layers excepted
    (their scales, shifts and running statistics stay as trained, as the published random-init
    leaves them); returns how many were reset."""
    resettable = [
        m
        for m in module.modules()
        if isinstance(m, Resettable) and not isinstance(m, _NORMALISATION)
    ]
    if not resettable:
        raise InvalidOptionError(
            f"{name}: random-init needs submodules with reset_parameters() (torch.nn layers); "
            "this module has none, so use the shuffled control"
        )
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for submodule in resettable:
            submodule.reset_parameters()
    return len(resettable)

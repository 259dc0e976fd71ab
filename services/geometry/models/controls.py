"""Control variants of any generator: the trained weights shuffled, or a random-initialised twin.

The published analysis (Wang & Ponce 2021) contrasts a trained generator's spectrum with the
same network whose weights were shuffled: same architecture, same distribution of values in
every layer, no learned structure. A control is named by a prefix on any model name, with the
seed that makes it reproducible:

``shuffled:SEED:BASE``
    Every learned tensor of BASE (weights, biases, affine scales) has its entries permuted by a
    permutation drawn from SEED, one per tensor, in key order. Buffers that are inputs or
    fixed filters rather than learned weights are kept: BatchNorm running statistics, the FIR
    kernels and the noise maps of a StyleGAN2.
``random-init:SEED:BASE``
    The same architecture with freshly initialised weights, drawn from SEED: the family's own
    published initialisation where the service knows it (DCGAN: the PyTorch tutorial's
    N(0, 0.02) convolutions and N(1, 0.02) BatchNorm scales with fresh statistics; StyleGAN2:
    rosinality's init, keeping the checkpoint's noise maps), else each submodule's torch
    `reset_parameters()` under the seed.

A family's own recipe lives with the family (``dcgan.py``, ``stylegan2/controls.py``); the
generic ones are here. Both are recorded in the generator's facts (kind, seed, base) and its weights hash is that of
the transformed weights, so "trained vs control" is one comparison of two model names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import InvalidOptionError, UnknownModelError

CONTROL_KINDS = ("shuffled", "random-init")
StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Control:
    kind: str
    seed: int
    base: str

    def facts(self, kept: str) -> dict[str, Any]:
        what = (
            f"entries of every learned tensor permuted (torch seed {self.seed}); kept: {kept}"
            if self.kind == "shuffled"
            else f"freshly initialised weights (torch seed {self.seed}); kept: {kept}"
        )
        return {"control": {"kind": self.kind, "seed": self.seed, "base": self.base, "what": what}}


def parse_control(name: str) -> Control | None:
    """`shuffled:SEED:BASE` / `random-init:SEED:BASE` -> Control; any other name -> None."""
    for kind in CONTROL_KINDS:
        if name.startswith(kind + ":"):
            seed_text, _, base = name.removeprefix(kind + ":").partition(":")
            # torch seeds its generators with a signed 64-bit integer: larger seeds are refused
            # here, by name, instead of failing inside the loader.
            if not seed_text.isdigit() or not base or int(seed_text) >= 2**63:
                raise UnknownModelError(
                    f"{name!r}: a control is named {kind}:SEED:BASE with an integer seed "
                    f"0 <= SEED < 2**63 and a model name, e.g. {kind}:0:dcgan-faces"
                )
            if parse_control(base) is not None:
                raise UnknownModelError(f"{name!r}: a control of a control is not offered")
            return Control(kind=kind, seed=int(seed_text), base=base)
    return None


def base_model_name(name: str) -> str:
    """The model a name refers to once any control prefix is removed."""
    control = parse_control(name) if isinstance(name, str) else None
    return control.base if control else name


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


def shuffle_module(module: nn.Module, seed: int) -> None:
    """`shuffle_state` on a loaded module's parameters (buffers kept), in place."""
    generator = _seeded(seed)
    with torch.no_grad():
        for _, parameter in sorted(module.named_parameters(), key=lambda item: item[0]):
            if parameter.numel() > 1:
                order = torch.randperm(parameter.numel(), generator=generator)
                flat = parameter.detach().reshape(-1)[order.to(parameter.device)]
                parameter.copy_(flat.reshape(parameter.shape))


def reinit_module(module: nn.Module, seed: int, name: str) -> int:
    """Every submodule's `reset_parameters()` under the seed; returns how many were reset."""
    resettable = [m for m in module.modules() if callable(getattr(m, "reset_parameters", None))]
    if not resettable:
        raise InvalidOptionError(
            f"{name}: random-init needs submodules with reset_parameters() (torch.nn layers); "
            "this module has none, so use the shuffled control"
        )
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for submodule in resettable:
            submodule.reset_parameters()  # type: ignore[operator]
    return len(resettable)

"""The Generator: a loaded, frozen, eval-mode model and what every family shares (sampling,
code checks, device and dtype copies, layer cuts, weight hashes). Each family's module builds
one; ``registry.py`` picks the family. Kept apart from the loaders so that they can import it
without importing each other."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import (
    InvalidGeneratorError,
    InvalidLatentError,
    InvalidOptionError,
    NonFiniteOutputError,
)
from .capabilities import Refoldable

Sampler = Callable[[int, np.random.Generator], np.ndarray]


def _standard_normal(n: int, rng: np.random.Generator, d: int) -> np.ndarray:
    return rng.standard_normal((n, d))


class Generator:
    """A loaded, frozen, eval-mode generator. `module` maps (B, d) -> (B, C, H, W) in [-1, 1]."""

    def __init__(
        self,
        *,
        name: str,
        family: str,
        latent_dim: int,
        module: nn.Module,
        facts: dict[str, Any],
        sampler: Sampler | None = None,
        channels_last: bool = False,
        space: str = "z",
        spaces: tuple[str, ...] = ("z",),
    ) -> None:
        self.name = name
        self.family = family
        self.latent_dim = int(latent_dim)
        self.module = module
        self.facts = facts
        self._sampler = sampler
        # Whether CPU copies keep 4-D weights channels_last (decided once, at load time).
        self.channels_last = channels_last
        # The latent space the module's codes live in, and the spaces this family offers.
        self.space = space
        self.spaces = spaces

    def __repr__(self) -> str:
        return f"Generator({self.name!r}, family={self.family!r}, latent_dim={self.latent_dim})"

    @property
    def device(self) -> torch.device:
        return module_device(self.module)

    @property
    def dtype(self) -> torch.dtype:
        return _module_dtype(self.module)

    def sample(self, n: int, seed: int) -> np.ndarray:
        """(n, d) float64 codes from the latent distribution; the same (n, seed) gives the same
        codes in every process (numpy's PCG64 seeded with `seed`)."""
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise InvalidOptionError(
                f"number of codes to sample must be an integer >= 0, got {n!r}"
            )
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise InvalidOptionError(f"seed must be an integer >= 0, got {seed!r}")
        rng = np.random.default_rng(int(seed))
        if self._sampler is None:
            codes = _standard_normal(int(n), rng, self.latent_dim)
        else:
            codes = np.asarray(self._sampler(int(n), rng), dtype=np.float64)
        if codes.shape != (n, self.latent_dim):
            raise InvalidGeneratorError(
                f"the sampler of {self.name} returned shape {codes.shape}, expected ({n}, {self.latent_dim})"
            )
        return codes

    def validate_codes(self, codes: Any) -> np.ndarray:
        """Check a batch of codes (n, d) or one code (d,) against this generator; returns a
        float64 array of the same shape. Raises InvalidLatentError naming the problem."""
        return validate_codes(codes, self.latent_dim, self.name)

    def to(self, device: str | torch.device, dtype: torch.dtype) -> Generator:
        """This generator on `device` in `dtype`: itself when already there, else a converted
        copy (the original is left untouched, so callers never see each other's dtype)."""
        device = torch.device(device)
        if _same_device(self.device, device) and self.dtype == dtype:
            return self
        facts = self.facts
        if isinstance(self.module, Refoldable) and self.dtype != dtype:
            # Casting folded float32 weights would keep their float32 rounding: fold again
            # from the checkpoint, in the new dtype.
            module: nn.Module = self.module.folded_in(dtype).to(device=device)
            facts = {**self.facts, "batchnorm_folded_in": str(dtype).removeprefix("torch.")}
        else:
            module = _converted_copy(self.module, device, dtype)
        if self.channels_last and device.type == "cpu":
            to_channels_last(module)
        return Generator(
            name=self.name,
            family=self.family,
            latent_dim=self.latent_dim,
            module=module,
            facts=facts,
            sampler=self._sampler,
            channels_last=self.channels_last,
            space=self.space,
            spaces=self.spaces,
        )

    def layer_names(self) -> list[str]:
        """The layers whose activations `layer:NAME` distances and GANSpace can read."""
        from .layers import layer_names

        return layer_names(self.module)

    def at_layer(self, layer: str) -> Generator:
        """This generator with its module cut at `layer`: codes -> that layer's activations."""
        from .layers import LayerTap

        return Generator(
            name=f"{self.name}@{layer}",
            family=self.family,
            latent_dim=self.latent_dim,
            module=LayerTap(self.module, layer),
            facts=self.facts,
            sampler=self._sampler,
            channels_last=self.channels_last,
            space=self.space,
            spaces=self.spaces,
        )

    @torch.no_grad()
    def images(self, codes: np.ndarray) -> torch.Tensor:
        """Render validated codes (n, d) as images; raises NonFiniteOutputError on NaN/inf."""
        codes = self.validate_codes(codes)
        batch = torch.as_tensor(np.atleast_2d(codes), dtype=self.dtype, device=self.device)
        out: torch.Tensor = self.module(batch)
        if not torch.isfinite(out).all():
            raise NonFiniteOutputError(f"{self.name} produced NaN/inf images for these codes")
        return out


def _converted_copy(module: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """A deep copy of `module` whose floating-point tensors are on `device` in `dtype` (what
    `deepcopy(module).to(device, dtype)` gives), converting each tensor once instead of
    copying it first: deepcopy takes the converted tensors from its memo."""
    memo: dict[int, Any] = {}
    for tensor in module_tensors(module):
        if id(tensor) in memo:
            continue
        if tensor.is_floating_point():
            converted = tensor.detach().to(device=device, dtype=dtype, copy=True)
        else:
            converted = tensor.detach().to(device=device, copy=True)
        if isinstance(tensor, nn.Parameter):
            converted = nn.Parameter(converted, requires_grad=tensor.requires_grad)
        memo[id(tensor)] = converted
    # A TorchScript module copies its tensors without the memo: `.to` converts those (and is
    # a no-op on tensors converted already).
    copied: nn.Module = copy.deepcopy(module, memo).to(device=device, dtype=dtype)
    return copied


def validate_codes(codes: Any, latent_dim: int, model: str) -> np.ndarray:
    try:
        array = np.asarray(codes, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InvalidLatentError(
            f"latent codes must be numbers, got {type(codes).__name__}: {error}"
        ) from None
    if array.ndim not in (1, 2) or array.shape[-1] != latent_dim or array.size == 0:
        got = array.shape[-1] if array.ndim in (1, 2) else None
        what = f"dimension {got}" if got is not None else f"shape {array.shape}"
        raise InvalidLatentError(
            f"latent code has {what} but {model} expects {latent_dim} (array shape "
            f"{array.shape}): pass one code of shape ({latent_dim},) or a batch (n, {latent_dim})"
        )
    bad = ~np.isfinite(array)
    if bad.any():
        where = np.argwhere(bad)[0].tolist()
        raise InvalidLatentError(
            f"latent code holds NaN or inf (first at index {where}); every entry must be finite"
        )
    return array


def module_device(module: nn.Module) -> torch.device:
    for tensor in module_tensors(module):
        return tensor.device
    return torch.device("cpu")


def _module_dtype(module: nn.Module) -> torch.dtype:
    for tensor in module_tensors(module):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def module_tensors(module: nn.Module) -> Iterator[torch.Tensor]:
    yield from module.parameters()
    yield from module.buffers()


def _same_device(a: torch.device, b: torch.device) -> bool:
    if a.type != b.type:
        return False
    index_a = (
        a.index if a.index is not None else (torch.cuda.current_device() if a.type == "cuda" else 0)
    )
    index_b = (
        b.index if b.index is not None else (torch.cuda.current_device() if b.type == "cuda" else 0)
    )
    return bool(index_a == index_b)


def to_channels_last(module: nn.Module) -> None:
    # Module.to takes memory_format (4-D tensors only); torch's type stubs leave it out.
    module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode, no gradients for the weights (methods differentiate with respect to codes)."""
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
        # Flattened first: a 0-d tensor (BatchNorm's num_batches_tracked) has no byte view.
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

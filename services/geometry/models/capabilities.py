"""What a generator's module can do beyond mapping codes to images: one `typing.Protocol` per
capability, checked with `isinstance` instead of probing an `nn.Module` with getattr.

Every family's module implements the ones that apply to it (DCGAN, BigGAN, StyleGAN2, NVIDIA,
omniart-eye); a `python:` user module may implement any of them (docs/custom-generators.md).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class NamedLayers(Protocol):
    """Curates the layers `layer:NAME` distances and GANSpace may read (else: every submodule
    that is not a container)."""

    def layer_names(self) -> list[str]: ...


@runtime_checkable
class SefaWeights(Protocol):
    """SeFa's A: the (outputs, d) weight matrices that read the code, one per chosen layer
    (indices into `sefa_layer_names()`; all of them by default), and whether SeFa normalises
    their rows by default (genforce/sefa does for StyleGAN)."""

    sefa_normalize_rows: bool

    def sefa_weights(self, layers: list[int] | None = None) -> list[torch.Tensor]: ...

    def sefa_layer_names(self) -> list[str]: ...


@runtime_checkable
class UserSefaWeights(Protocol):
    """The part of `SefaWeights` a `python:` module must give for SeFa to use its weights."""

    def sefa_weights(self, layers: list[int] | None = None) -> list[torch.Tensor]: ...


@runtime_checkable
class GanspaceLayer(Protocol):
    """Names the layer whose activations GANSpace takes by default (StyleGAN: `w`)."""

    ganspace_layer: str


@runtime_checkable
class Refoldable(Protocol):
    """A module with constants folded at load time (DCGAN: BatchNorm into the convolutions),
    rebuilt in another dtype from its checkpoint rather than cast (casting would keep the
    first dtype's rounding)."""

    def folded_in(self, dtype: torch.dtype) -> nn.Module: ...


@runtime_checkable
class FoldableFirstLayer(Protocol):
    """A first latent layer followed by a BatchNorm (DCGAN, omniart-eye): its weight matrix
    (outputs, d) with the BatchNorm's scale folded in or not. Such a module's `sefa_weights`
    also takes `fold_batchnorm=` (default False: the checkpoint's weight, as published SeFa
    reads it)."""

    def first_layer_matrix(self, *, batchnorm_folded: bool) -> torch.Tensor: ...

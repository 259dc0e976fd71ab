"""Closed-form factorisation (SeFa, Shen & Zhou 2021): directions from weights alone.

The directions are the eigenvectors of AᵀA, A the weight of the layer(s) that consume the
latent code, as a matrix (outputs, d). Where A comes from:

- a module with a ``sefa_weights(layers)`` method (the built-ins, and any custom generator
  that wants to say): a list of (outputs_l, d) matrices, stacked. The built-in DCGAN gives
  its first transposed convolution's weight (``fold_batchnorm=True``: with the following
  BatchNorm's scale folded in, as the network runs it); BigGAN gives the noise columns of its
  first linear layer (class-embedding columns zeroed).
- style-based generators (``sefa_layer_names()``: conv1, convs.*, to_rgb1, to_rgbs.*, or
  NVIDIA's b*.conv*/b*.torgb affines) return the style affine weights of the chosen layers,
  chosen by NAME or by a published preset (`SEFA_PRESETS`):
  ``genforce-all`` (the default) — genforce/sefa ``factorize_weight(G, 'all')``: every
  modulated convolution plus only the LAST ToRGB, each row scaled to unit length;
  ``rosinality-cff`` — rosinality's ``closed_form_factorization.py``: conv1, every convs.* and
  to_rgb1 (every modulation except to_rgbs.*), raw.
  The service's A is the weight as the network runs it: the stored style weight times the
  equal-learning-rate scale 1/√in_dim. Row normalisation cancels that scale; raw, every
  eigenvalue is 1/in_dim of the published one (rosinality factorises the stored weight):
  the result records the factor and the eigenvalues at the published scale beside its own.
- otherwise, the first ``nn.Linear`` with ``in_features == d`` or ``nn.ConvTranspose2d`` with
  ``in_channels == d`` in module order (the layer a plain MLP/DCGAN applies to the code).

Latent coordinates that no chosen layer reads (all-zero columns, e.g. BigGAN's class part)
are left out of the eigenproblem; the returned directions are zero there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from .errors import InvalidOptionError
from .linalg import SpectrumResult, check_top_k, fixed_signs, summary_of
from .models.capabilities import FoldableFirstLayer, SefaWeights, UserSefaWeights
from .models.generator import Generator


@runtime_checkable
class RowNormalising(Protocol):
    """A module that says whether SeFa normalises its weight rows by default (a `python:`
    module may say it without naming its layers)."""

    sefa_normalize_rows: bool


@dataclass(frozen=True)
class SefaPreset:
    """A published choice of style layers and row normalisation."""

    description: str
    normalize_rows: bool
    select: Callable[[list[str]], list[str]]


def _is_to_rgb(name: str) -> bool:
    return "to_rgb" in name or "torgb" in name


def _convs_and_last_to_rgb(names: list[str]) -> list[str]:
    to_rgbs = [n for n in names if _is_to_rgb(n)]
    return [n for n in names if not _is_to_rgb(n) or n in to_rgbs[-1:]]


def _convs_and_first_to_rgb(names: list[str]) -> list[str]:
    to_rgbs = [n for n in names if _is_to_rgb(n)]
    return [n for n in names if not _is_to_rgb(n) or n in to_rgbs[:1]]


SEFA_PRESETS: dict[str, SefaPreset] = {
    "genforce-all": SefaPreset(
        "genforce/sefa factorize_weight(G, 'all'): every modulated convolution's style weight "
        "and only the last ToRGB's, each row unit-normalised",
        True,
        _convs_and_last_to_rgb,
    ),
    "rosinality-cff": SefaPreset(
        "rosinality closed_form_factorization.py: conv1, every convs.* and to_rgb1 (every "
        "modulation but to_rgbs.*), raw rows",
        False,
        _convs_and_first_to_rgb,
    ),
}
DEFAULT_SEFA_PRESET = "genforce-all"


def sefa(
    generator: Generator,
    *,
    top_k: int | None = None,
    preset: str | None = None,
    layers: list[int] | list[str] | None = None,
    normalize_rows: bool | None = None,
    fold_batchnorm: bool | None = None,
) -> SpectrumResult:
    """SeFa eigenpairs of AᵀA in float64: eigenvalues descending, eigenvectors (d, k).
    Style-based generators: `preset` (default ``genforce-all``) or `layers` by name (indices
    into ``sefa_layer_names()`` still accepted). `normalize_rows`: scale each row of A to unit
    length or not; None = the preset's (else the module's own default). `fold_batchnorm`
    (DCGAN): fold the first BatchNorm's scale into the first layer's weight."""
    started = time.perf_counter()
    d = generator.latent_dim
    top_k = check_top_k(top_k, d)
    if normalize_rows is not None and not isinstance(normalize_rows, bool):
        raise InvalidOptionError(f"normalize_rows must be true or false, got {normalize_rows!r}")
    if fold_batchnorm is not None and not isinstance(fold_batchnorm, bool):
        raise InvalidOptionError(f"fold_batchnorm must be true or false, got {fold_batchnorm!r}")
    choice = _layer_choice(generator, preset, layers)
    matrices, default_normalize, source = _latent_weights(generator, choice.indices, fold_batchnorm)
    if normalize_rows is None:
        normalize_rows = default_normalize if choice.preset is None else choice.normalize_rows
    stacked = []
    for matrix in matrices:
        a = matrix.detach().double().cpu().numpy()
        if a.ndim != 2 or a.shape[1] != d:
            raise InvalidOptionError(f"SeFa weights must be (outputs, {d}) matrices, got {a.shape}")
        if normalize_rows:
            a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), np.finfo(np.float64).tiny)
        stacked.append(a)
    a = np.concatenate(stacked, axis=0)
    used = np.flatnonzero(np.abs(a).sum(axis=0) > 0)
    gram = a[:, used].T @ a[:, used]
    values, vectors = np.linalg.eigh((gram + gram.T) / 2)
    values, vectors = values[::-1], vectors[:, ::-1]
    summary = summary_of(values)
    if top_k is not None:
        if top_k > len(used):
            raise InvalidOptionError(
                f"top_k={top_k} but SeFa's layers read only {len(used)} latent coordinates"
            )
        values, vectors = values[:top_k], vectors[:, :top_k]
    full = np.zeros((d, vectors.shape[1]))
    full[used] = vectors
    full = fixed_signs(full)
    diagnostics: dict[str, Any] = {
        "method": "sefa",
        "source": source,
        "preset": choice.preset,
        "preset_description": None
        if choice.preset is None
        else SEFA_PRESETS[choice.preset].description,
        "layers": choice.indices,
        "layer_names": choice.names,
        "normalize_rows": normalize_rows,
        "fold_batchnorm": fold_batchnorm,
        "space": generator.space,
        "latent_coordinates_used": int(len(used)),
        "dtype": "float64",
        "products": 0,
        "wall_time_s": time.perf_counter() - started,
    }
    if choice.names is not None:
        diagnostics.update(_equal_lr_note(values, normalize_rows, _in_dim(matrices)))
    return SpectrumResult(
        eigenvalues=np.ascontiguousarray(values),
        eigenvectors=np.ascontiguousarray(full),
        diagnostics=diagnostics,
        summary=summary,
    )


def sefa_options(generator: Generator, options: dict[str, Any]) -> dict[str, Any]:
    """A SeFa job's options as they run: on a style-based generator given neither a preset nor
    layers, the default preset named, so the job's record (and what makes its directions
    comparable) says which procedure made them."""
    if options.get("preset") is not None or options.get("layers") is not None:
        return dict(options)
    choice = _layer_choice(generator, None, None)
    return dict(options) if choice.preset is None else {**options, "preset": choice.preset}


@dataclass(frozen=True)
class _LayerChoice:
    preset: str | None
    indices: list[int] | None
    names: list[str] | None
    normalize_rows: bool = False


def _layer_choice(
    generator: Generator, preset: str | None, layers: list[int] | list[str] | None
) -> _LayerChoice:
    """Which layers: a preset's (style-based generators; `genforce-all` by default) or the
    ones named (or indexed); other generators' own choice where neither is given."""
    if preset is not None and preset not in SEFA_PRESETS:
        raise InvalidOptionError(
            f"unknown SeFa preset {preset!r}; choose one of {', '.join(SEFA_PRESETS)}"
        )
    if layers is not None and (
        not isinstance(layers, list)
        or not layers
        or not all(
            (isinstance(x, int) and not isinstance(x, bool) and x >= 0) or isinstance(x, str)
            for x in layers
        )
    ):
        raise InvalidOptionError(
            f"layers must be a list of layer names (or indices >= 0), got {layers!r}"
        )
    if preset is not None and layers is not None:
        raise InvalidOptionError("give a SeFa preset or layers, not both")
    module = generator.module
    names = list(module.sefa_layer_names()) if isinstance(module, SefaWeights) else None
    style_based = names is not None and any(_is_to_rgb(n) for n in names)
    if layers is None:
        if not style_based:
            if preset is not None:
                raise InvalidOptionError(
                    f"SeFa presets choose StyleGAN style layers; {generator.name} has none: "
                    "leave preset out"
                )
            return _LayerChoice(None, None, None)
        assert names is not None
        chosen = preset or DEFAULT_SEFA_PRESET
        picked = SEFA_PRESETS[chosen].select(names)
        indices = [names.index(n) for n in picked]
        return _LayerChoice(chosen, indices, picked, SEFA_PRESETS[chosen].normalize_rows)
    if names is None:
        if any(isinstance(x, str) for x in layers):
            raise InvalidOptionError(f"{generator.name} has no named SeFa layers: give indices")
        return _LayerChoice(None, [int(x) for x in layers], None)
    return _LayerChoice(None, *_named(layers, names))


def _named(layers: list[int] | list[str], names: list[str]) -> tuple[list[int], list[str]]:
    indices = []
    for layer in layers:
        if isinstance(layer, str):
            if layer not in names:
                raise InvalidOptionError(
                    f"SeFa layer {layer!r} does not exist; this model's SeFa layers are "
                    f"{', '.join(names)}"
                )
            indices.append(names.index(layer))
        elif layer >= len(names):
            raise InvalidOptionError(
                f"SeFa layer {layer} does not exist: {len(names)} layers ({', '.join(names)})"
            )
        else:
            indices.append(layer)
    return indices, [names[i] for i in indices]


def _in_dim(matrices: list[torch.Tensor]) -> int:
    """The latent coordinates one style affine reads (its columns that are not zero)."""
    return int((matrices[0].detach().abs().sum(dim=0) > 0).sum())


def _equal_lr_note(values: np.ndarray, normalize_rows: bool, in_dim: int) -> dict[str, Any]:
    """The equal-lr scale the service keeps in A, and the eigenvalues without it."""
    factor = 1.0 if normalize_rows else float(in_dim)
    return {
        "equal_lr_scale": f"1/sqrt({in_dim})",
        "equal_lr_note": (
            "A holds the style weights as the network runs them (stored weight x 1/sqrt(in_dim)); "
            + (
                "unit-normalised rows cancel that scale: the eigenvalues equal the published ones"
                if normalize_rows
                else f"raw, each eigenvalue is 1/{in_dim} of the published one (rosinality "
                "factorises the stored weight): multiply by the factor for the published scale"
            )
        ),
        "published_scale_factor": factor,
        "eigenvalues_published_scale": (values * factor).tolist(),
    }


def _latent_weights(
    generator: Generator, layers: list[int] | None, fold_batchnorm: bool | None
) -> tuple[list[torch.Tensor], bool, str]:
    module = generator.module
    if fold_batchnorm is not None:
        if not isinstance(module, FoldableFirstLayer):
            raise InvalidOptionError(
                f"{generator.name} has no BatchNorm after its latent layer to fold: leave "
                "fold_batchnorm out"
            )
        if layers not in (None, [0]):
            raise InvalidOptionError("fold_batchnorm reads the first layer only: leave layers out")
        matrix = module.first_layer_matrix(batchnorm_folded=fold_batchnorm)
        source = "first layer, BatchNorm " + ("folded in" if fold_batchnorm else "not folded")
        return [matrix], False, source
    if isinstance(module, UserSefaWeights):
        normalize = (
            bool(module.sefa_normalize_rows) if isinstance(module, RowNormalising) else False
        )
        return list(module.sefa_weights(layers)), normalize, "sefa_weights()"
    if layers not in (None, [0]):
        raise InvalidOptionError(
            f"{generator.name} does not define sefa_weights(layers); only its first latent layer "
            "(layers=None) is available"
        )
    d = generator.latent_dim
    for name, layer in module.named_modules():
        if isinstance(layer, nn.Linear) and layer.in_features == d:
            return [layer.weight], False, f"first linear layer {name!r}"
        if isinstance(layer, nn.ConvTranspose2d) and layer.in_channels == d:
            return [layer.weight.reshape(d, -1).T], False, f"first transposed convolution {name!r}"
    raise InvalidOptionError(
        f"{generator.name}: no layer consuming the {d}-d code was found (an nn.Linear with "
        f"in_features={d} or nn.ConvTranspose2d with in_channels={d}); give the module a "
        "sefa_weights(layers) method returning (outputs, d) weight matrices"
    )

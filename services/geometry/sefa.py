"""Closed-form factorisation (SeFa, Shen & Zhou 2021): directions from weights alone.

The directions are the eigenvectors of AᵀA, A the weight of the layer(s) that consume the
latent code, as a matrix (outputs, d). Where A comes from:

- a module with a ``sefa_weights(layers)`` method (the built-ins, and any custom generator
  that wants to say): a list of (outputs_l, d) matrices, stacked. The built-in DCGAN gives
  its first transposed convolution's weight; BigGAN gives the noise columns of its first
  linear layer (class-embedding columns zeroed). StyleGAN-like generators return the style
  affine weights of the chosen layers and set ``sefa_normalize_rows = True``, so each output
  row is scaled to unit length, as in the published method.
- otherwise, the first ``nn.Linear`` with ``in_features == d`` or ``nn.ConvTranspose2d`` with
  ``in_channels == d`` in module order (the layer a plain MLP/DCGAN applies to the code).

Latent coordinates that no chosen layer reads (all-zero columns, e.g. BigGAN's class part)
are left out of the eigenproblem; the returned directions are zero there.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import InvalidOptionError
from .linalg import SpectrumResult, check_top_k, fixed_signs, summary_of
from .models.generator import Generator


def sefa(
    generator: Generator,
    *,
    top_k: int | None = None,
    layers: list[int] | None = None,
    normalize_rows: bool | None = None,
) -> SpectrumResult:
    """SeFa eigenpairs of AᵀA in float64: eigenvalues descending, eigenvectors (d, k).
    `normalize_rows`: scale each row of A to unit length (genforce/sefa) or not (rosinality's
    closed_form_factorization.py); None = the module's own default (`sefa_normalize_rows`)."""
    started = time.perf_counter()
    d = generator.latent_dim
    top_k = check_top_k(top_k, d)
    if layers is not None and (
        not isinstance(layers, list)
        or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in layers)
    ):
        raise InvalidOptionError(f"layers must be a list of layer indices >= 0, got {layers!r}")
    if normalize_rows is not None and not isinstance(normalize_rows, bool):
        raise InvalidOptionError(f"normalize_rows must be true or false, got {normalize_rows!r}")
    matrices, default_normalize, source = _latent_weights(generator, layers)
    if normalize_rows is None:
        normalize_rows = default_normalize
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
    return SpectrumResult(
        eigenvalues=np.ascontiguousarray(values),
        eigenvectors=np.ascontiguousarray(full),
        diagnostics={
            "method": "sefa",
            "source": source,
            "layers": layers,
            "layer_names": _layer_names(generator, layers),
            "normalize_rows": normalize_rows,
            "space": generator.space,
            "latent_coordinates_used": int(len(used)),
            "dtype": "float64",
            "products": 0,
            "wall_time_s": time.perf_counter() - started,
        },
        summary=summary,
    )


def _layer_names(generator: Generator, layers: list[int] | None) -> list[str] | None:
    names: Any = getattr(generator.module, "sefa_layer_names", None)
    if not callable(names):
        return None
    listed = list(names())
    return listed if layers is None else [listed[i] for i in layers if 0 <= i < len(listed)]


def _latent_weights(
    generator: Generator, layers: list[int] | None
) -> tuple[list[torch.Tensor], bool, str]:
    module = generator.module
    provider: Any = getattr(module, "sefa_weights", None)
    if callable(provider):
        matrices = list(provider(layers))
        return matrices, bool(getattr(module, "sefa_normalize_rows", False)), "sefa_weights()"
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

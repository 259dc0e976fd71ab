"""Exact moves of metrics and directions between the latent spaces of one style-based generator.

Spectra are only comparable in the coordinates they were computed in. The moves below are the
ones that are exact, so a comparison may use them instead of refusing:

- ``w->w+``: W+ with every layer slot equal to w is w. The embedding E: w ↦ (w, …, w) is linear,
  so a w direction v becomes (v, …, v) (unit length: divided by √L), and a w+ metric folded onto
  w is EᵀH E = Σ_ij H_ij, the sum of its L × L blocks (``w+->w``).
- ``z->w`` / ``w->z`` at one code: w = f(z) (the mapping network, truncation ψ included), J = ∂f/∂z
  at z0. The distance's gradient is zero at the reference image, so the chain rule gives the z
  metric exactly as the w metric pulled back, H_z = Jᵀ H_w J; a z direction v is pushed forward
  to J v (its image under the linearised mapping).

No I/O: the Jacobian reads the generator's own mapping network.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from .errors import InvalidOptionError

TRANSPORTS: dict[str, str] = {
    "w->w+": "a w direction repeated in every layer slot (unit length)",
    "w+->w": "a w+ metric folded onto w: the sum of its L x L blocks",
    "w->z": "a w metric pulled back to z at the same code: H_z = J^T H_w J, J = dw/dz",
    "z->w": "a z direction pushed forward to w at the same code: J v",
}


@runtime_checkable
class MappedStyleModule(Protocol):
    """What the z <-> w moves read from a style-based generator's module: its mapping network
    and its truncation (w_avg + ψ (w − w_avg), the identity at ψ = 1)."""

    mapping: nn.Module

    def truncate(self, w: torch.Tensor) -> torch.Tensor: ...


def style_module(module: nn.Module, name: str = "this model") -> MappedStyleModule:
    """The module as a style-based generator with a mapping network, or a clear refusal."""
    if not isinstance(module, MappedStyleModule):
        raise InvalidOptionError(
            f"{name} has no mapping network (z -> w): the z <-> w transports need a StyleGAN"
        )
    return module


def check_transport(name: str) -> str:
    if name not in TRANSPORTS:
        raise InvalidOptionError(
            f"unknown transport {name!r}; the exact ones are {', '.join(TRANSPORTS)}"
        )
    return name


def repeat_directions(directions: np.ndarray, num_ws: int) -> np.ndarray:
    """w → w+: (s, k) directions → (L·s, k), each column (v, …, v) / √L (unit where v is)."""
    vectors = _matrix(directions, "directions")
    layers = _layers(num_ws)
    return np.asarray(np.tile(vectors, (layers, 1)) / np.sqrt(layers), dtype=np.float64)


def fold_metric(metric: np.ndarray, num_ws: int) -> np.ndarray:
    """w+ → w: the (L·s, L·s) metric folded onto w, Σ_ij H_ij over its L × L blocks of (s, s)."""
    matrix = _matrix(metric, "metric")
    layers = _layers(num_ws)
    size = matrix.shape[0]
    if matrix.shape[1] != size or size % layers:
        raise InvalidOptionError(
            f"a w+ metric must be square with a side divisible by the {layers} layer slots, got "
            f"shape {matrix.shape}"
        )
    s = size // layers
    return np.asarray(matrix.reshape(layers, s, layers, s).sum(axis=(0, 2)), dtype=np.float64)


def fold_spectrum_metric(
    eigenvalues: np.ndarray, eigenvectors: np.ndarray, num_ws: int
) -> np.ndarray:
    """w+ → w from stored eigenpairs: U Λ Uᵀ folded, computed as (EᵀU) Λ (EᵀU)ᵀ without the
    (L·s)² matrix (EᵀU sums the L slot blocks of each eigenvector)."""
    values = np.asarray(eigenvalues, dtype=np.float64)
    vectors = _matrix(eigenvectors, "eigenvectors")
    layers = _layers(num_ws)
    if vectors.shape[0] % layers or values.shape != (vectors.shape[1],):
        raise InvalidOptionError(
            f"eigenpairs ({values.shape}, {vectors.shape}) do not fit {layers} layer slots"
        )
    summed = vectors.reshape(layers, -1, vectors.shape[1]).sum(axis=0)
    return np.asarray((summed * values) @ summed.T, dtype=np.float64)


def mapping_jacobian(module: MappedStyleModule, code: np.ndarray) -> np.ndarray:
    """J = ∂w/∂z at z0 (s, s) in float64, w = truncate(mapping(z)); a float64 copy of the
    mapping lives only for the call."""
    z0 = np.asarray(code, dtype=np.float64)
    if z0.ndim != 1 or not np.isfinite(z0).all():
        raise InvalidOptionError(f"the z code must be a finite (d,) vector, got shape {z0.shape}")
    mapping = _float64_copy(module.mapping)

    def mapped(z: torch.Tensor) -> torch.Tensor:
        # truncate's w_avg is a constant: only ψ enters the Jacobian.
        return module.truncate(mapping(z[None]))[0]

    jacobian_of: Any = torch.autograd.functional.jacobian  # untyped in torch
    jacobian = jacobian_of(mapped, torch.from_numpy(z0.copy()))
    return np.asarray(jacobian.detach().numpy(), dtype=np.float64)


def pull_back_metric(metric_w: np.ndarray, jacobian: np.ndarray) -> np.ndarray:
    """w → z: H_z = Jᵀ H_w J."""
    h = _matrix(metric_w, "metric")
    j = _matrix(jacobian, "jacobian")
    if h.shape != (j.shape[0], j.shape[0]):
        raise InvalidOptionError(f"metric {h.shape} does not fit a Jacobian {j.shape}")
    pulled = j.T @ h @ j
    return np.asarray((pulled + pulled.T) / 2, dtype=np.float64)


def push_forward_directions(directions_z: np.ndarray, jacobian: np.ndarray) -> np.ndarray:
    """z → w: each z direction v becomes J v, normalised to unit length."""
    v = _matrix(directions_z, "directions")
    j = _matrix(jacobian, "jacobian")
    if v.shape[0] != j.shape[1]:
        raise InvalidOptionError(f"directions {v.shape} do not fit a Jacobian {j.shape}")
    pushed = j @ v
    norms = np.linalg.norm(pushed, axis=0)
    if (norms == 0).any():
        raise InvalidOptionError("the mapping's Jacobian sends a direction to zero")
    return np.asarray(pushed / norms, dtype=np.float64)


def mapped_codes(module: MappedStyleModule, z_codes: np.ndarray) -> np.ndarray:
    """w = truncate(mapping(z)) of (n, s) codes, in float64 (a float64 copy of the mapping,
    as the service's own w sampling computes them)."""
    z = np.asarray(z_codes, dtype=np.float64)
    if z.ndim != 2 or not np.isfinite(z).all():
        raise InvalidOptionError(f"z codes must be a finite (n, d) array, got shape {z.shape}")
    mapping = _float64_copy(module.mapping)
    with torch.no_grad():
        w = module.truncate(mapping(torch.from_numpy(z.copy())))
    return np.asarray(w.double().numpy(), dtype=np.float64)


def match_mapped_codes(
    module: MappedStyleModule, z_codes: np.ndarray, w_codes: np.ndarray, *, rtol: float = 1e-9
) -> tuple[np.ndarray, np.ndarray]:
    """Positions (into z, into w) where a w code is the mapped z code: the same draws seen in
    the two spaces. A z code whose image has no w code within `rtol` (relative) is unmatched."""
    images = mapped_codes(module, z_codes)
    targets = np.asarray(w_codes, dtype=np.float64)
    if targets.ndim != 2 or targets.shape[1] != images.shape[1]:
        raise InvalidOptionError(
            f"w codes must be (m, {images.shape[1]}), got shape {targets.shape}"
        )
    index_z, index_w = [], []
    for row, image in enumerate(images):
        gaps = np.linalg.norm(targets - image, axis=1)
        nearest = int(np.argmin(gaps)) if gaps.size else -1
        if nearest >= 0 and gaps[nearest] <= rtol * max(1.0, float(np.linalg.norm(image))):
            index_z.append(row)
            index_w.append(nearest)
    return np.asarray(index_z, dtype=np.int64), np.asarray(index_w, dtype=np.int64)


def pulled_back_average(
    module: MappedStyleModule,
    z_codes: np.ndarray,
    w_eigenvalues: np.ndarray,
    w_eigenvectors: np.ndarray,
) -> np.ndarray:
    """mean_i J_iᵀ H_w,i J_i over positions: each w metric (from its eigenpairs, (n, k) and
    (n, s, k)) pulled back to z through the Jacobian at its own z code."""
    z = np.asarray(z_codes, dtype=np.float64)
    values = np.asarray(w_eigenvalues, dtype=np.float64)
    vectors = np.asarray(w_eigenvectors, dtype=np.float64)
    if values.shape[0] != z.shape[0] or vectors.shape[0] != z.shape[0]:
        raise InvalidOptionError("give one z code per pair of w eigenpairs")
    total = np.zeros((z.shape[1], z.shape[1]))
    for code, lam, u in zip(z, values, vectors, strict=True):
        projected = mapping_jacobian(module, code).T @ u  # Jᵀ U: (s, k)
        total += (projected * lam) @ projected.T
    return np.asarray(total / max(1, z.shape[0]), dtype=np.float64)


def _float64_copy(module: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(module).to(device="cpu", dtype=torch.float64)


def _matrix(array: Any, label: str) -> np.ndarray:
    matrix = np.asarray(array, dtype=np.float64)
    if matrix.ndim != 2 or not np.isfinite(matrix).all():
        raise InvalidOptionError(f"{label} must be a finite 2-d array, got shape {matrix.shape}")
    return matrix


def _layers(num_ws: int) -> int:
    if isinstance(num_ws, bool) or not isinstance(num_ws, int) or num_ws < 1:
        raise InvalidOptionError(
            f"the number of layer slots must be an integer >= 1, got {num_ws!r}"
        )
    return num_ws

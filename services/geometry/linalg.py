"""The linear algebra every spectrum shares: symmetrise a metric, `eigh` in float64 with the
eigenvalues descending, fix each eigenvector's sign (largest-magnitude component positive),
the spectrum of a metric with its residuals, and a spectrum's summary figures.

The methods (methods.py, sefa.py) and the analyses (analysis.py) build on this module; it
imports neither.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .errors import InvalidOptionError, NonFiniteOutputError


@dataclass
class SpectrumResult:
    eigenvalues: np.ndarray  # (k,) float64, descending
    eigenvectors: np.ndarray  # (d, k) columns, deterministic sign, dtype of the computation
    diagnostics: dict[str, Any] = field(default_factory=dict)
    # The filterable figures (analysis.summary_of keys) of the WHOLE spectrum, even when only
    # top_k pairs are kept: a trace of the top 20 is not the trace. None where a figure is
    # unknown (Lanczos sees only the top k, so the trace-based figures are None).
    summary: dict[str, Any] = field(default_factory=dict)


def spectrum_from_metric(metric: np.ndarray, *, top_k: int | None = None) -> SpectrumResult:
    """eigh in float64 of the symmetrised metric: eigenvalues descending, deterministic signs,
    residuals ‖Hv − λv‖ of the reported pairs. The last step of every full method and of a
    Hessian assembled from column blocks."""
    matrix = np.asarray(metric, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise InvalidOptionError(
            f"a metric must be a square (d, d) matrix, got shape {matrix.shape}"
        )
    if not np.isfinite(matrix).all():
        raise NonFiniteOutputError(
            "the metric holds NaN/inf; the generator or distance is not finite here"
        )

    d = matrix.shape[0]
    top_k = check_top_k(top_k, d)
    norm = float(np.linalg.norm(matrix))
    asymmetry = float(np.linalg.norm(matrix - matrix.T) / norm) if norm > 0 else 0.0
    symmetric = symmetrised(matrix)
    started = time.perf_counter()
    values, vectors = eigh_descending(symmetric)
    summary = summary_of(values)
    smallest = float(values[-1])
    every_value = values
    if top_k is not None:
        values, vectors = values[:top_k], vectors[:, :top_k]
    vectors = fixed_signs(vectors)
    residuals = residual_norms(symmetric, values, vectors)
    scale = max(abs(float(values[0])), np.finfo(np.float64).tiny)
    return SpectrumResult(
        eigenvalues=np.ascontiguousarray(values),
        eigenvectors=np.ascontiguousarray(vectors),
        diagnostics={
            "eigh_time_s": time.perf_counter() - started,
            "asymmetry": asymmetry,
            "residual_max": float(residuals.max()),
            "residual_max_relative": float(residuals.max() / scale),
            "min_eigenvalue_relative": smallest / scale,
            "converged": True,
            "dtype": "float64",
            # Kept with a top-k spectrum so that anisotropy figures stay exact.
            **({"eigenvalues_all": every_value.tolist()} if top_k is not None else {}),
        },
        summary=summary,
    )


# The small float64 linear algebra after a metric (eigh, residuals) goes through torch, not
# numpy: numpy's OpenBLAS runs a second thread pool, and on a small machine, right after
# torch's parallel work, its threads and torch's still-spinning OpenMP workers fight (an eigh
# then takes several times as long; the README has the figures).


def eigh_descending(symmetric: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values, vectors = torch.linalg.eigh(torch.from_numpy(symmetric))
    return values.flip(0).numpy(), vectors.flip(1).numpy()


def residual_norms(symmetric: np.ndarray, values: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """‖H v − λ v‖ per column."""
    matrix, columns = torch.from_numpy(symmetric), torch.from_numpy(np.ascontiguousarray(vectors))
    residuals = matrix @ columns - columns * torch.from_numpy(np.ascontiguousarray(values))
    norms: np.ndarray = torch.linalg.vector_norm(residuals, dim=0).numpy()
    return norms


def check_top_k(top_k: int | None, d: int) -> int | None:
    if top_k is None:
        return None
    if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or not 1 <= top_k < d:
        raise InvalidOptionError(
            f"top_k must be an integer with 1 <= top_k < d = {d}, got {top_k!r}; use top_k=None for all {d}"
        )
    return int(top_k)


def symmetrised(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float64)
    mean: np.ndarray = (matrix + matrix.T) / 2
    return mean


def fixed_signs(vectors: np.ndarray) -> np.ndarray:
    """Flip each column so that its largest-magnitude component is positive."""
    if vectors.shape[1] == 0:
        return vectors
    rows = np.argmax(np.abs(vectors), axis=0)
    signs = np.sign(vectors[rows, np.arange(vectors.shape[1])])
    signs[signs == 0] = 1
    flipped: np.ndarray = vectors * signs
    return flipped


def spectra(eigenvalues: Any) -> np.ndarray:
    values = np.asarray(eigenvalues, dtype=np.float64)
    if values.ndim == 1:
        values = values[None, :]
    if values.ndim != 2 or values.shape[1] == 0 or values.shape[0] == 0:
        raise InvalidOptionError(
            f"eigenvalues must be (k,) or (N, k) with k >= 1, got shape {values.shape}"
        )
    if not np.isfinite(values).all():
        raise InvalidOptionError("eigenvalues hold NaN/inf")
    return values


def dims_to_reach(values: np.ndarray, level: float) -> np.ndarray:
    """Per row: the first rank (1-based) at which the cumulative share of the trace reaches
    `level`; 0 for a spectrum with no positive trace."""
    totals = values.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = np.cumsum(values, axis=1) / totals
    reached = shares >= level
    dims = np.where(reached.any(axis=1), reached.argmax(axis=1) + 1, values.shape[1])
    return np.where(totals[:, 0] > 0, dims, 0).astype(np.int64)


def participation_ratio(values: np.ndarray) -> np.ndarray:
    squares = (values**2).sum(axis=1)
    return np.where(squares > 0, values.sum(axis=1) ** 2 / np.where(squares > 0, squares, 1), 0.0)


def summary_of(eigenvalues: np.ndarray) -> dict[str, Any]:
    """One spectrum's filterable columns, as plain Python numbers."""
    values = np.asarray(eigenvalues, dtype=np.float64)
    if values.ndim != 1:
        raise InvalidOptionError(f"summary_of takes one spectrum (k,), got shape {values.shape}")
    values = spectra(values)
    return {
        "top_eigenvalue": float(values[0, 0]),
        "trace": float(values.sum()),
        "dims_99": int(dims_to_reach(values, 0.99)[0]),
        "dims_999": int(dims_to_reach(values, 0.999)[0]),
        "participation_ratio": float(participation_ratio(values)[0]),
    }

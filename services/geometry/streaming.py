"""Analyses fed in chunks of positions, so that a set of any size runs in bounded memory:
the caller reads a chunk (from a store, a file), feeds it, and lets it go.

`AverageMetric` accumulates H̄ = mean_i U_i Λ_i U_iᵀ (the same quantity as
analysis.average_metric, which needs every position's eigenvectors in one array): its state
is one (d, d) float64 sum on the device, whatever the number of positions. `analysis_device`
resolves the device analyses run on ("auto": the GPU where there is one).
"""

from __future__ import annotations

import numpy as np
import torch

from .errors import InvalidOptionError
from .linalg import eigh_descending, fixed_signs, spectra


def analysis_device(name: str) -> str:
    """The device for analyses: "auto" -> "cuda" when torch sees a GPU, else "cpu"; any other
    name is checked: an unknown device or CUDA where there is none is an InvalidOptionError."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as error:
        raise InvalidOptionError(f"unknown device {name!r}: {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidOptionError(f"device {name!r} asked for, but CUDA is not available here")
    if device.type not in ("cpu", "cuda"):
        raise InvalidOptionError(f"analyses run on 'cpu' or 'cuda[:N]', not {name!r}")
    return str(device)


class AverageMetric:
    """H̄ over positions fed in chunks: ``add(eigenvalues (b, k), eigenvectors (b, d, k))``
    any number of times, then ``result()`` -> (H̄ (d, d), its eigenvalues descending, its
    eigenvectors (d, d) with deterministic signs), float64 on the host."""

    def __init__(self, latent_dim: int, *, device: str = "cpu") -> None:
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
            raise InvalidOptionError(f"latent_dim must be a positive integer, got {latent_dim!r}")
        self._device = torch.device(analysis_device(device))
        self._sum = torch.zeros((latent_dim, latent_dim), dtype=torch.float64, device=self._device)
        self._count = 0
        self._rank: int | None = None

    @property
    def n_positions(self) -> int:
        return self._count

    def add(self, eigenvalues: np.ndarray, eigenvectors: np.ndarray) -> None:
        values = spectra(eigenvalues)
        vectors = np.asarray(eigenvectors)
        b, k = values.shape
        d = self._sum.shape[0]
        if vectors.ndim != 3 or vectors.shape != (b, d, k):
            raise InvalidOptionError(
                f"eigenvectors must be (b, d, k) = ({b}, {d}, {k}), got shape {vectors.shape}"
            )
        if self._rank is not None and k != self._rank:
            raise InvalidOptionError(f"every chunk must keep {self._rank} eigenpairs, got {k}")
        if not np.isfinite(vectors).all():
            raise InvalidOptionError("eigenvectors hold NaN/inf")
        self._rank = k
        u = torch.as_tensor(np.ascontiguousarray(vectors), device=self._device).to(torch.float64)
        lam = torch.as_tensor(
            np.ascontiguousarray(values), dtype=torch.float64, device=self._device
        )
        # Σ_b U_b Λ_b U_bᵀ as one (d, b·k) @ (b·k, d) product.
        columns = u.permute(1, 0, 2).reshape(d, b * k)
        scaled = (u * lam[:, None, :]).permute(1, 0, 2).reshape(d, b * k)
        self._sum.addmm_(scaled, columns.T)
        self._count += b

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._count == 0:
            raise InvalidOptionError("no positions were added to the average metric")
        mean = (self._sum / self._count).cpu().numpy()
        mean = (mean + mean.T) / 2
        values, vectors = eigh_descending(np.ascontiguousarray(mean))
        return mean, np.ascontiguousarray(values), np.ascontiguousarray(fixed_signs(vectors))

"""Statistics a comparison needs to be publishable: random-subspace baselines, bootstrap
intervals over positions, medians, top-n shares of the trace.

Every baseline says how it was obtained: ``"exact"`` (a closed form, named) or ``"sampled"``
(seeded, with the number of samples), so a reader can tell a formula from a simulation.

Facts used:
- For independent uniform unit vectors u, v in R^d, |u·v| has mean Γ(d/2) / (√π Γ((d+1)/2))
  exactly (≈ √(2 / (π d)) for large d); u·v squared is Beta(1/2, (d-1)/2), mean 1/d.
- For uniformly random subspaces A (dim ka) and B (dim kb) of R^d, the sum of squared cosines
  of the principal angles, ‖P_A P_B‖_F², has mean ka·kb / d exactly. The individual angles
  follow a Jacobi ensemble with no simple closed form for their means: they are sampled.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import InvalidOptionError

DEFAULT_BOOTSTRAP_RESAMPLES = 2000
DEFAULT_BASELINE_SAMPLES = 500
# Bounds the (draws, n) multiplicity arrays of the homogeneity bootstrap (float64 entries).
_BOOTSTRAP_BLOCK_ELEMENTS = 16 * 1024 * 1024
_BASELINE_BLOCK_ELEMENTS = 4 * 1024 * 1024


def _dimension(d: Any) -> int:
    if isinstance(d, bool) or not isinstance(d, int | np.integer) or d < 1:
        raise InvalidOptionError(f"the dimension must be an integer >= 1, got {d!r}")
    return int(d)


def expected_abs_cosine(d: int) -> float:
    """E|u·v| for independent uniform unit vectors of R^d (exact, through log-gamma)."""
    d = _dimension(d)
    if d == 1:
        return 1.0
    return math.exp(math.lgamma(d / 2) - math.lgamma((d + 1) / 2)) / math.sqrt(math.pi)


def random_abs_cosine_baseline(d: int) -> dict[str, Any]:
    """The |cosine| of two unrelated directions: exact mean, its large-d approximation, and
    how it was obtained."""
    d = _dimension(d)
    return {
        "mean": expected_abs_cosine(d),
        "large_d_approximation": math.sqrt(2 / (math.pi * d)),
        "mean_squared": 1.0 / d,
        "method": "exact",
        "formula": "E|u·v| = Γ(d/2) / (√π Γ((d+1)/2)) for uniform unit vectors u, v in R^d",
        "d": d,
    }


def random_orthonormal(rng: np.random.Generator, samples: int, d: int, k: int) -> np.ndarray:
    """(samples, d, k) Haar-random orthonormal frames: Gaussian matrices G orthonormalised as
    G R⁻¹ with R the Cholesky factor of GᵀG (the QR factorisation with a positive diagonal,
    which is what makes Q Haar-distributed), applied twice for orthogonality to round-off
    ("CholeskyQR2"). Stacked LAPACK QR took over a minute for 16 frames of 4096 x 128 here;
    this is a few matrix products."""
    frames = rng.standard_normal((samples, d, k))
    for _ in range(2):
        gram = np.swapaxes(frames, 1, 2) @ frames
        upper = np.swapaxes(np.linalg.cholesky(gram), 1, 2)  # R, with GᵀG = RᵀR
        frames = np.swapaxes(np.linalg.solve(np.swapaxes(upper, 1, 2), np.swapaxes(frames, 1, 2)), 1, 2)
    return np.asarray(frames)


def principal_angles_deg(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Principal angles (degrees, ascending) between the spans of orthonormal frames, stacked:
    (..., d, ka) and (..., d, kb) give (..., min(ka, kb))."""
    cosines = np.linalg.svd(np.swapaxes(first, -1, -2) @ second, compute_uv=False)
    return np.degrees(np.arccos(np.clip(cosines, 0.0, 1.0)))


def random_subspace_baseline(
    d: int,
    ka: int,
    kb: int | None = None,
    *,
    samples: int = DEFAULT_BASELINE_SAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """What two unrelated subspaces of R^d (dims ka, kb) look like: principal angles (each
    rank's mean and 2.5-97.5 % range, sampled), the largest matched |cosine| in a ka x kb
    |cosine| matrix (sampled), and the exact mean of Σ cos² of the principal angles."""
    d, ka = _dimension(d), _dimension(ka)
    kb = ka if kb is None else _dimension(kb)
    if ka > d or kb > d:
        raise InvalidOptionError(f"subspace dimensions ({ka}, {kb}) exceed the space's ({d})")
    if isinstance(samples, bool) or not isinstance(samples, int) or not 2 <= samples <= 100_000:
        raise InvalidOptionError(f"samples must be an integer in [2, 100000], got {samples!r}")
    # Bounded work: at most ~4M entries per frame stack (large d·k get fewer samples,
    # never fewer than 16); the count used is reported.
    samples = max(16, min(samples, _BASELINE_BLOCK_ELEMENTS // (d * max(ka, kb))))
    rng = np.random.default_rng(seed)
    first = random_orthonormal(rng, samples, d, ka)
    second = random_orthonormal(rng, samples, d, kb)
    angles = principal_angles_deg(first, second)  # (samples, min(ka, kb)), ascending
    abs_cosines = np.abs(np.swapaxes(first, 1, 2) @ second)  # (samples, ka, kb)
    low, high = np.percentile(angles, [2.5, 97.5], axis=0)
    return {
        "d": d,
        "ka": ka,
        "kb": kb,
        "principal_angles_deg": {
            "mean": angles.mean(axis=0),
            "p2.5": low,
            "p97.5": high,
            "method": "sampled",
            "samples": samples,
            "seed": seed,
        },
        "max_abs_cosine": {
            "mean": float(abs_cosines.max(axis=(1, 2)).mean()),
            "method": "sampled",
            "samples": samples,
            "seed": seed,
        },
        "sum_squared_cosines": {
            "mean": ka * kb / d,
            "method": "exact",
            "formula": "E‖P_A P_B‖_F² = ka·kb / d",
        },
        "abs_cosine": random_abs_cosine_baseline(d),
    }


def bootstrap_mean_interval(
    values: Any,
    *,
    level: float = 0.95,
    resamples: int = DEFAULT_BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (one number per position):
    `resamples` draws of the positions with replacement, seeded. NaN entries are left out;
    fewer than two finite values give (nan, nan)."""
    array = np.asarray(values, dtype=np.float64).ravel()
    array = array[np.isfinite(array)]
    _check_level(level, resamples)
    if array.size < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    # Drawn in blocks of resamples: bounded memory for campaign-sized sets (10⁴ positions),
    # the same draws as one (resamples, n) array, since the generator's stream is sequential.
    block = max(1, _BOOTSTRAP_BLOCK_ELEMENTS // array.size)
    means = np.concatenate([
        array[rng.integers(0, array.size, size=(min(block, resamples - start), array.size))].mean(axis=1)
        for start in range(0, resamples, block)
    ])  # fmt: skip
    low, high = np.percentile(means, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


def bootstrap_offdiagonal_interval(
    matrix: Any,
    *,
    level: float = 0.95,
    resamples: int = DEFAULT_BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the off-diagonal mean of a pairwise matrix (N, N),
    resampling positions (not pairs, which are not independent): each draw takes N positions
    with replacement and averages the entries between draws of different positions."""
    array = np.asarray(matrix, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] != array.shape[1]:
        raise InvalidOptionError(f"a pairwise matrix must be (N, N), got shape {array.shape}")
    _check_level(level, resamples)
    n = array.shape[0]
    if n < 3:
        return float("nan"), float("nan")
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    # A draw's off-diagonal mean is a quadratic form in its multiplicities c (how often each
    # position was drawn): Σ_{a≠b} c_a c_b M_ab over Σ_{a≠b} c_a c_b F_ab (F: finite entries).
    # One GEMM per block of draws instead of gathering an (n, n) matrix per draw.
    finite = np.isfinite(array)
    np.fill_diagonal(finite, False)
    values = np.where(finite, array, 0.0)
    weights = finite.astype(np.float64)
    block = max(1, _BOOTSTRAP_BLOCK_ELEMENTS // n)
    means = np.empty(resamples)
    for start in range(0, resamples, block):
        rows = draws[start : start + block]
        offsets = (rows + n * np.arange(rows.shape[0])[:, None]).ravel()
        counts = np.bincount(offsets, minlength=rows.size).reshape(rows.shape).astype(np.float64)
        sums = ((counts @ values) * counts).sum(axis=1)
        pairs = ((counts @ weights) * counts).sum(axis=1)
        means[start : start + block] = np.where(pairs > 0, sums / np.maximum(pairs, 1), np.nan)
    means = means[np.isfinite(means)]
    if means.size == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(means, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


def _check_level(level: float, resamples: int) -> None:
    if not 0 < level < 1:
        raise InvalidOptionError(f"the interval's level must be in (0, 1), got {level!r}")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 10:
        raise InvalidOptionError(f"resamples must be an integer >= 10, got {resamples!r}")


def position_statistics(values: Any, *, seed: int = 0) -> dict[str, Any]:
    """Mean, median and bootstrap 95 % interval of the mean of one number per position."""
    array = np.asarray(values, dtype=np.float64).ravel()
    finite = array[np.isfinite(array)]
    if finite.size == 0:
        return {"mean": None, "median": None, "ci95": None, "n": 0}
    low, high = bootstrap_mean_interval(finite, seed=seed)
    return {
        "mean": float(finite.mean()),
        "median": float(np.median(finite)),
        "ci95": None if math.isnan(low) else [low, high],
        "n": int(finite.size),
    }


def top_share(eigenvalues: Any, top: int = 10) -> np.ndarray:
    """Per spectrum (rows of (N, k), descending): the share of the trace in the top `top`
    eigenvalues; NaN where the trace is not positive."""
    values = np.atleast_2d(np.asarray(eigenvalues, dtype=np.float64))
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise InvalidOptionError(f"top must be an integer >= 1, got {top!r}")
    totals = values.sum(axis=1)
    head = values[:, :top].sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(totals > 0, head / totals, np.nan)

"""Statistics a comparison needs to be publishable: random-subspace baselines, THE bootstrap
(every interval the service reports), medians, top-n shares of the trace.

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
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from .errors import InvalidOptionError

DEFAULT_BOOTSTRAP_RESAMPLES = 2000
DEFAULT_LEVEL = 0.95
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
        frames = np.swapaxes(
            np.linalg.solve(np.swapaxes(upper, 1, 2), np.swapaxes(frames, 1, 2)), 1, 2
        )
    return np.asarray(frames)


def principal_angles_deg(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Principal angles (degrees, ascending) between the spans of orthonormal frames, stacked:
    (..., d, ka) and (..., d, kb) give (..., min(ka, kb))."""
    cosines = np.linalg.svd(np.swapaxes(first, -1, -2) @ second, compute_uv=False)
    return np.asarray(np.degrees(np.arccos(np.clip(cosines, 0.0, 1.0))))


def random_subspace_baseline(
    d: int,
    ka: int,
    kb: int | None = None,
    *,
    samples: int = DEFAULT_BASELINE_SAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """What two unrelated subspaces of R^d (dims ka, kb) look like: principal angles (each
    rank's mean and 2.5-97.5 % range, sampled), the largest |cosine| in a ka x kb |cosine|
    matrix and each row's largest (best match), both sampled, and the exact mean of Σ cos² of the principal angles."""
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
        "best_match_abs_cosine": {
            "mean": float(abs_cosines.max(axis=2).mean()),
            "description": "each direction of A against its closest of B, averaged",
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


# -- the bootstrap ---------------------------------------------------------------------------
# One bootstrap for every interval the service reports (comparisons, paired comparisons,
# optimisation reports): units (positions, targets) resampled with replacement, seeded, and the
# interval's bounds read off the resampled statistics with ONE quantile convention (below).

QUANTILE_CONVENTION = (
    "linear interpolation between order statistics (Hyndman & Fan type 7, numpy's default); "
    "an infinite neighbour gives an infinite bound"
)


@dataclass(frozen=True)
class Interval:
    """A statistic of one number per unit with its percentile bootstrap interval. ``low`` and
    ``high`` are NaN where there are too few units (the JSON says null)."""

    statistic: str  # "mean", "median", "off-diagonal mean", "mean difference", ...
    estimate: float
    low: float
    high: float
    n: int
    level: float = DEFAULT_LEVEL
    resamples: int = DEFAULT_BOOTSTRAP_RESAMPLES
    seed: int = 0

    def bounds(self) -> list[float] | None:
        """[low, high], or None where the interval is not defined."""
        if math.isnan(self.low) or math.isnan(self.high):
            return None
        return [self.low, self.high]

    def to_json(self) -> dict[str, Any]:
        """The one shape of an interval in every document: the estimate under its statistic's
        name (``{"median": ..., "low": ..., "high": ...}``), then how it was obtained."""
        finite = self.bounds() is not None
        return {
            self.statistic: _number_or_none(self.estimate),
            "low": self.low if finite else None,
            "high": self.high if finite else None,
            "level": self.level,
            "n": self.n,
            "resamples": self.resamples,
            "seed": self.seed,
            "interval": f"percentile bootstrap over {self.n} units, {self.resamples} resamples "
            f"(seed {self.seed}); quantiles: {QUANTILE_CONVENTION}",
        }


def _number_or_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def percentile_bounds(draws: Any, level: float = DEFAULT_LEVEL) -> tuple[float, float]:
    """The (1 - level)/2 and (1 + level)/2 quantiles of resampled statistics: THE quantile
    convention of every interval (``QUANTILE_CONVENTION``). NaN draws are left out."""
    values = np.sort(np.asarray(draws, dtype=np.float64).ravel())
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    alpha = (1 - level) / 2
    return _quantile(values, alpha), _quantile(values, 1 - alpha)


def _quantile(ordered: np.ndarray, probability: float) -> float:
    position = probability * (ordered.size - 1)
    below = int(math.floor(position))
    above = min(below + 1, ordered.size - 1)
    fraction = position - below
    first, second = float(ordered[below]), float(ordered[above])
    if fraction == 0 or first == second:
        return first
    if math.isinf(first) or math.isinf(second):
        return second if fraction > 0 else first
    return first + fraction * (second - first)


_STATISTICS: dict[str, Any] = {"mean": np.mean, "median": np.median}


def bootstrap(
    values: Any,
    statistic: Literal["mean", "median"] = "mean",
    *,
    level: float = DEFAULT_LEVEL,
    resamples: int = DEFAULT_BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """The statistic (mean or median) of one number per unit and its percentile bootstrap
    interval: ``resamples`` draws of the units with replacement, seeded. NaN entries are left
    out (±inf are kept: a target that never reached a threshold); fewer than two values give
    NaN bounds."""
    if statistic not in _STATISTICS:
        raise InvalidOptionError(
            f"statistic must be one of {sorted(_STATISTICS)}, got {statistic!r}"
        )
    _check_level(level, resamples)
    array = np.asarray(values, dtype=np.float64).ravel()
    array = array[~np.isnan(array)]
    reduce = _STATISTICS[statistic]
    estimate = float(reduce(array)) if array.size else float("nan")
    if array.size < 2:
        return Interval(
            statistic, estimate, math.nan, math.nan, int(array.size), level, resamples, seed
        )
    rng = np.random.default_rng(seed)
    # Drawn in blocks of resamples: bounded memory for campaign-sized sets (10⁴ positions),
    # the same draws as one (resamples, n) array, since the generator's stream is sequential.
    block = max(1, _BOOTSTRAP_BLOCK_ELEMENTS // array.size)
    with np.errstate(invalid="ignore"):  # inf - inf inside a mean of infinite values
        draws = np.concatenate(
            [
                reduce(
                    array[
                        rng.integers(
                            0, array.size, size=(min(block, resamples - start), array.size)
                        )
                    ],
                    axis=1,
                )
                for start in range(0, resamples, block)
            ]
        )
    low, high = percentile_bounds(draws, level)
    return Interval(statistic, estimate, low, high, int(array.size), level, resamples, seed)


def paired_difference(
    first: Any,
    second: Any,
    statistic: Literal["mean", "median"] = "mean",
    *,
    level: float = DEFAULT_LEVEL,
    resamples: int = DEFAULT_BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """``second - first`` unit by unit (the same positions measured twice), its mean or median
    and bootstrap interval, resampling the units (so the pairing is kept). Units where either
    value is NaN are left out."""
    a = np.asarray(first, dtype=np.float64).ravel()
    b = np.asarray(second, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise InvalidOptionError(
            f"paired values need one value per unit on both sides, got {a.size} and {b.size}"
        )
    interval = bootstrap(b - a, statistic, level=level, resamples=resamples, seed=seed)
    return replace(interval, statistic=f"{statistic} difference")


def bootstrap_offdiagonal(
    matrix: Any,
    *,
    level: float = DEFAULT_LEVEL,
    resamples: int = DEFAULT_BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """The off-diagonal mean of a pairwise matrix (N, N) over its finite entries and its
    percentile bootstrap interval, resampling positions (not pairs, which are not
    independent): each draw takes N positions with replacement and averages the entries
    between draws of different positions. Fewer than three positions give NaN bounds."""
    array = np.asarray(matrix, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] != array.shape[1]:
        raise InvalidOptionError(f"a pairwise matrix must be (N, N), got shape {array.shape}")
    _check_level(level, resamples)
    n = array.shape[0]
    finite = np.isfinite(array)
    np.fill_diagonal(finite, False)
    estimate = float(array[finite].mean()) if finite.any() else float("nan")
    if n < 3:
        return Interval(
            "off-diagonal mean", estimate, math.nan, math.nan, n, level, resamples, seed
        )
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    # A draw's off-diagonal mean is a quadratic form in its multiplicities c (how often each
    # position was drawn): Σ_{a≠b} c_a c_b M_ab over Σ_{a≠b} c_a c_b F_ab (F: finite entries).
    # One GEMM per block of draws instead of gathering an (n, n) matrix per draw.
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
    low, high = percentile_bounds(means, level)
    return Interval("off-diagonal mean", estimate, low, high, n, level, resamples, seed)


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
    return {
        "mean": float(finite.mean()),
        "median": float(np.median(finite)),
        "ci95": bootstrap(finite, "mean", seed=seed).bounds(),
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

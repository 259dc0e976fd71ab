"""Homogeneity of sets too large for all N(N−1) pairs: a seeded random sample of positions.

The published matrix needs every pair; a campaign of 10⁴ positions is 10⁸ ordered pairs and
10⁴ positions' eigenvectors in memory. Instead of pairs drawn uniformly over all N (each of
which would need a random read of any position's eigenvectors), m positions are drawn
without replacement (numpy PCG64 with the given seed, so the same call gives the same sample
in every process) and every ordered pair among them is computed with analysis.homogeneity:
only m positions' eigenvectors are ever needed, the m × m matrix still draws as a heatmap,
and its position bootstrap still resamples positions. m is the largest number whose m(m−1)
ordered pairs fit the limit (and at most a caller's cap on positions). The result says
whether it was sampled, with the seed and the positions used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .analysis import homogeneity
from .errors import InvalidOptionError


def positions_for_pairs(max_pairs: int) -> int:
    """The largest m with m(m−1) <= max_pairs (at least 2: one pair each way)."""
    if isinstance(max_pairs, bool) or not isinstance(max_pairs, int) or max_pairs < 2:
        raise InvalidOptionError(f"max_pairs must be an integer >= 2, got {max_pairs!r}")
    m = (1 + math.isqrt(1 + 4 * max_pairs)) // 2
    while m * (m - 1) > max_pairs:
        m -= 1
    while (m + 1) * m <= max_pairs:
        m += 1
    return m


@dataclass(frozen=True)
class PositionSample:
    """The positions (indices into the N of a selection, ascending) a homogeneity uses."""

    positions: np.ndarray  # (m,) int64, ascending
    n_positions_total: int
    seed: int
    limited_by: str | None  # "max_pairs" or "max_positions" when sampled, else None

    @property
    def sampled(self) -> bool:
        return len(self.positions) < self.n_positions_total

    @property
    def n_positions_used(self) -> int:
        return len(self.positions)

    @property
    def n_pairs(self) -> int:
        return self.n_positions_used * (self.n_positions_used - 1)

    def record(self) -> dict[str, Any]:
        """What a result carries so that the sample can be told and redrawn."""
        return {
            "sampled": self.sampled,
            "seed": self.seed,
            "n_positions_total": self.n_positions_total,
            "n_positions_used": self.n_positions_used,
            "n_pairs": self.n_pairs,
            "n_pairs_total": self.n_positions_total * (self.n_positions_total - 1),
            "limited_by": self.limited_by,
            "positions": self.positions.copy(),
        }


def sample_positions(
    n_total: int, *, max_pairs: int, max_positions: int | None = None, seed: int = 0
) -> PositionSample:
    """Every position when all N(N−1) ordered pairs fit `max_pairs` (and N <= `max_positions`);
    else a seeded random subset of m positions, m the most that both limits allow."""
    if isinstance(n_total, bool) or not isinstance(n_total, int) or n_total < 0:
        raise InvalidOptionError(f"n_total must be a non-negative integer, got {n_total!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidOptionError(f"seed must be a non-negative integer, got {seed!r}")
    if max_positions is not None and max_positions < 2:
        raise InvalidOptionError(f"max_positions must be at least 2, got {max_positions!r}")
    by_pairs = positions_for_pairs(max_pairs)
    cap = by_pairs if max_positions is None else min(by_pairs, max_positions)
    if n_total <= cap:
        return PositionSample(np.arange(n_total, dtype=np.int64), n_total, seed, None)
    limited_by = "max_pairs" if by_pairs <= cap else "max_positions"
    rng = np.random.Generator(np.random.PCG64(seed))
    chosen = np.sort(rng.choice(n_total, size=cap, replace=False)).astype(np.int64)
    return PositionSample(chosen, n_total, seed, limited_by)


def homogeneity_of_sample(
    eigenvalues: np.ndarray,
    eigenvectors: np.ndarray,
    sample: PositionSample,
    *,
    dtype: str = "float64",
    device: str = "cpu",
    log_rule: str = "published",
) -> dict[str, Any]:
    """analysis.homogeneity of the sampled positions' eigenpairs ((m, k) and (m, d, k), in the
    order of `sample.positions`), with the sample's record."""
    if np.asarray(eigenvalues).shape[0] != sample.n_positions_used:
        raise InvalidOptionError(
            f"give the eigenpairs of the {sample.n_positions_used} sampled positions, got "
            f"{np.asarray(eigenvalues).shape[0]}"
        )
    return {
        **homogeneity(eigenvalues, eigenvectors, dtype=dtype, device=device, log_rule=log_rule),
        **sample.record(),
    }

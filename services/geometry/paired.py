"""Paired comparisons: two members over the same positions, compared position by position.

Two members measured at the same codes (a trained model and its control, one model's z and w
at w = f(z), two distances at one code) differ at each position by more than their pooled
spreads suggest: the positions' own variation cancels in the differences. For each
per-position figure (the top eigenvalue, dimensions to 99 %, participation ratio, top-10
share), the paired differences b − a, their mean and median, and a bootstrap 95 % interval of
the mean difference (statistics.paired_difference, THE bootstrap: positions resampled, seeded).

Positions are matched by a key per position (a code's digest, or the latent set's seed and
index where the two spaces' codes differ but come from the same draws); only keys both members
hold are compared, in the first member's order.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from .errors import InvalidOptionError
from .linalg import dims_to_reach, participation_ratio, spectra
from .statistics import paired_difference, top_share

MIN_PAIRS = 2


def matched_positions(
    keys_a: Sequence[Hashable | None], keys_b: Sequence[Hashable | None]
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (into a, into b) of the positions whose keys both members hold, in a's order.
    A key held twice by one member is used once (its first position); None never matches."""
    first_in_b: dict[Hashable, int] = {}
    for index, key in enumerate(keys_b):
        if key is not None:
            first_in_b.setdefault(key, index)
    seen: set[Hashable] = set()
    pairs = []
    for index, key in enumerate(keys_a):
        if key is not None and key in first_in_b and key not in seen:
            seen.add(key)
            pairs.append((index, first_in_b[key]))
    if not pairs:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    a, b = zip(*pairs, strict=True)
    return np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)


def position_figures(eigenvalues: np.ndarray, *, full: bool) -> dict[str, np.ndarray]:
    """One number per position: the top eigenvalue and, where the spectra are full (every
    eigenvalue: the trace is known), dims to 99 %, participation ratio and top-10 share."""
    values = spectra(eigenvalues)
    figures = {"top_eigenvalue": values[:, 0]}
    if full:
        figures["dims_99"] = dims_to_reach(values, 0.99).astype(np.float64)
        figures["participation_ratio"] = participation_ratio(values)
        figures["top10_share"] = top_share(values, 10)
    return figures


def paired_differences(
    figures_a: dict[str, np.ndarray],
    figures_b: dict[str, np.ndarray],
    *,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Per figure both members have: over the matched positions (arrays of equal length, the
    same position at each index), the paired differences b − a with their mean, median,
    bootstrap interval of the mean (at `level`), the share of positions where b > a, and
    both members' means."""
    result: dict[str, Any] = {}
    for name in figures_a:
        if name not in figures_b:
            continue
        a = np.asarray(figures_a[name], dtype=np.float64)
        b = np.asarray(figures_b[name], dtype=np.float64)
        if a.shape != b.shape or a.ndim != 1:
            raise InvalidOptionError(
                f"{name}: paired figures must be two (n,) arrays over the same positions, got "
                f"{a.shape} and {b.shape}"
            )
        both = np.isfinite(a) & np.isfinite(b)
        if int(both.sum()) < MIN_PAIRS:
            continue
        difference = b[both] - a[both]
        interval = paired_difference(a[both], b[both], level=level, seed=seed)
        result[name] = {
            "n_pairs": int(both.sum()),
            "mean_a": float(a[both].mean()),
            "mean_b": float(b[both].mean()),
            "mean_difference": float(difference.mean()),
            "median_difference": float(np.median(difference)),
            "ci": interval.bounds(),
            "level": level,
            "share_b_greater": float((difference > 0).mean()),
        }
    return result


def paired_comparison(
    eigenvalues_a: np.ndarray,
    eigenvalues_b: np.ndarray,
    keys_a: Sequence[Hashable | None],
    keys_b: Sequence[Hashable | None],
    *,
    full_a: bool,
    full_b: bool,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any] | None:
    """Match the two members' positions by key and compare their per-position figures; None
    when fewer than two positions match."""
    index_a, index_b = matched_positions(keys_a, keys_b)
    if index_a.size < MIN_PAIRS:
        return None
    figures_a = position_figures(np.asarray(eigenvalues_a)[index_a], full=full_a)
    figures_b = position_figures(np.asarray(eigenvalues_b)[index_b], full=full_b)
    return {
        "n_matched": int(index_a.size),
        "positions_a": index_a,
        "positions_b": index_b,
        "difference": "b - a",
        "bootstrap": {"resampled": "positions", "level": level, "seed": seed},
        "figures": paired_differences(figures_a, figures_b, level=level, seed=seed),
    }

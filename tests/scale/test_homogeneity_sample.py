"""Homogeneity over a seeded sample of positions: how many positions a pair limit allows, the
sample itself (all positions when their pairs fit, else a seeded subset, said so), and its
matrix is analysis.homogeneity of exactly those positions. Also the packed route with its
reused buffers against the published double loop at a shape that takes it."""

from __future__ import annotations

import numpy as np
import pytest

from services.geometry import (
    homogeneity,
    homogeneity_of_sample,
    positions_for_pairs,
    sample_positions,
)
from services.geometry.errors import InvalidOptionError


def _spectra(n: int, d: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal((d, d))
    vectors = np.linalg.qr(shared + 0.5 * rng.standard_normal((n, d, d)))[0][:, :, :k]
    values = -np.sort(-np.exp(2 * rng.standard_normal((n, k))), axis=1)
    return values, vectors


@pytest.mark.parametrize(
    ("max_pairs", "expected"),
    [
        (2, 2),
        (5, 2),
        (6, 3),
        (11, 3),
        (12, 4),
        (249_499, 499),
        (249_500, 500),
        (250_000, 500),
        (250_500, 501),
    ],
)
def test_positions_for_a_pair_limit(max_pairs: int, expected: int) -> None:
    m = positions_for_pairs(max_pairs)
    assert m == expected and m * (m - 1) <= max_pairs < (m + 1) * m


def test_a_pair_limit_below_one_pair_each_way_is_refused() -> None:
    with pytest.raises(InvalidOptionError, match="max_pairs"):
        positions_for_pairs(1)


def test_every_position_when_the_pairs_fit() -> None:
    sample = sample_positions(30, max_pairs=30 * 29, max_positions=30, seed=5)
    assert not sample.sampled and sample.limited_by is None
    np.testing.assert_array_equal(sample.positions, np.arange(30))
    record = sample.record()
    assert record["n_positions_used"] == record["n_positions_total"] == 30
    assert record["n_pairs"] == record["n_pairs_total"] == 870 and record["seed"] == 5


def test_a_seeded_subset_when_they_do_not() -> None:
    sample = sample_positions(1000, max_pairs=90, max_positions=100, seed=3)
    assert sample.sampled and sample.limited_by == "max_pairs"
    assert sample.n_positions_used == 10 and sample.n_pairs == 90
    chosen = sample.positions
    assert np.all(np.diff(chosen) > 0) and chosen.min() >= 0 and chosen.max() < 1000
    # numpy's PCG64 with the seed: the same sample anywhere, another with another seed.
    expected = np.sort(np.random.Generator(np.random.PCG64(3)).choice(1000, 10, replace=False))
    np.testing.assert_array_equal(chosen, expected)
    np.testing.assert_array_equal(sample_positions(1000, max_pairs=90, seed=3).positions, chosen)
    assert not np.array_equal(sample_positions(1000, max_pairs=90, seed=4).positions, chosen)
    capped = sample_positions(1000, max_pairs=10_000, max_positions=7, seed=3)
    assert capped.limited_by == "max_positions" and capped.n_positions_used == 7


def test_bad_limits_are_refused() -> None:
    with pytest.raises(InvalidOptionError, match="max_positions"):
        sample_positions(10, max_pairs=100, max_positions=1)
    with pytest.raises(InvalidOptionError, match="seed"):
        sample_positions(10, max_pairs=100, seed=-1)


def test_the_sampled_matrix_is_the_homogeneity_of_those_positions() -> None:
    values, vectors = _spectra(40, 12, 5, seed=2)
    sample = sample_positions(40, max_pairs=56, seed=11)  # 8 positions
    chosen = sample.positions
    result = homogeneity_of_sample(values[chosen], vectors[chosen], sample)
    assert result["sampled"] is True and result["n_positions_used"] == 8
    assert result["n_positions_total"] == 40 and result["n_pairs"] == 56 and result["seed"] == 11
    full = homogeneity(values, vectors)
    np.testing.assert_allclose(result["log"], full["log"][np.ix_(chosen, chosen)], rtol=1e-10)
    np.testing.assert_allclose(result["linear"], full["linear"][np.ix_(chosen, chosen)], rtol=1e-10)
    with pytest.raises(InvalidOptionError, match="8 sampled positions"):
        homogeneity_of_sample(values, vectors, sample)


def test_packed_route_over_several_blocks_matches_a_direct_computation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """k = d takes the packed route; a small block bound forces several blocks through the
    reused buffers, the last one shorter."""
    from services.geometry import analysis

    monkeypatch.setattr(analysis, "_BLOCK_ELEMENTS", 2 * 6 * 21)  # 2 positions per block
    values, vectors = _spectra(7, 6, 6, seed=5)
    result = homogeneity(values, vectors)
    for i in range(7):
        for j in range(7):
            metric = (vectors[j] * values[j]) @ vectors[j].T
            quotients = np.einsum("dk,de,ek->k", vectors[i], metric, vectors[i])
            expected = np.corrcoef(quotients, values[j])[0, 1]
            assert result["linear"][i, j] == pytest.approx(expected, rel=1e-9)

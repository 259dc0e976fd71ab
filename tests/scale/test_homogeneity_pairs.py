"""Homogeneity over sampled pairs equals the full matrix at those pairs; below the pair
limit it is the full computation; the sample is seeded and said so. Also the packed route
with its reused buffers against the published double loop at a shape that takes it."""

from __future__ import annotations

import numpy as np
import pytest

from services.geometry import homogeneity
from services.geometry.errors import InvalidOptionError
from services.geometry.homogeneity_pairs import homogeneity_sampled


def _spectra(n: int, d: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal((d, d))
    vectors = np.linalg.qr(shared + 0.5 * rng.standard_normal((n, d, d)))[0][:, :, :k]
    values = -np.sort(-np.exp(2 * rng.standard_normal((n, k))), axis=1)
    return values, vectors


def test_sampled_pairs_are_entries_of_the_full_matrix() -> None:
    values, vectors = _spectra(9, 12, 5, seed=2)
    full = homogeneity(values, vectors)
    sampled = homogeneity_sampled(values, vectors, max_pairs=40, seed=7)
    assert sampled["sampled"] is True and sampled["n_pairs"] == 40 and sampled["seed"] == 7
    i, j = sampled["pairs"].T
    assert np.all(i != j)
    np.testing.assert_allclose(sampled["log_values"], full["log"][i, j], rtol=1e-10)
    np.testing.assert_allclose(sampled["linear_values"], full["linear"][i, j], rtol=1e-10)
    again = homogeneity_sampled(values, vectors, max_pairs=40, seed=7)
    np.testing.assert_array_equal(again["pairs"], sampled["pairs"])


def test_below_the_pair_limit_every_pair_is_computed() -> None:
    values, vectors = _spectra(5, 8, 8, seed=3)
    result = homogeneity_sampled(values, vectors, max_pairs=5 * 4)
    full = homogeneity(values, vectors)
    assert result["sampled"] is False and result["n_pairs"] == 20
    np.testing.assert_array_equal(result["log"], full["log"])


def test_a_bad_pair_limit_is_refused() -> None:
    values, vectors = _spectra(3, 4, 2, seed=4)
    with pytest.raises(InvalidOptionError, match="max_pairs"):
        homogeneity_sampled(values, vectors, max_pairs=0)


def test_packed_route_over_several_blocks_matches_a_direct_computation(monkeypatch) -> None:  # type: ignore[no-untyped-def]
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

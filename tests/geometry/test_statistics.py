"""Baselines and intervals against closed forms, Monte Carlo and slow loop references."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.geometry import (
    InvalidOptionError,
    alignment,
    anisotropy,
    bootstrap,
    bootstrap_offdiagonal,
    expected_abs_cosine,
    homogeneity,
    paired_difference,
    percentile_bounds,
    random_abs_cosine_baseline,
    random_subspace_baseline,
    top_share,
)
from services.geometry.statistics import principal_angles_deg, random_orthonormal


def test_expected_abs_cosine_closed_forms() -> None:
    assert expected_abs_cosine(2) == pytest.approx(2 / math.pi)  # E|cos θ|, θ uniform
    assert expected_abs_cosine(3) == pytest.approx(0.5)  # Archimedes: cos θ uniform on [-1, 1]
    assert expected_abs_cosine(1) == 1.0
    for d in (1000, 10_000):
        assert expected_abs_cosine(d) == pytest.approx(math.sqrt(2 / (math.pi * d)), rel=1e-3)
    baseline = random_abs_cosine_baseline(100)
    assert baseline["method"] == "exact" and baseline["mean_squared"] == 0.01


def test_expected_abs_cosine_matches_monte_carlo() -> None:
    rng = np.random.default_rng(3)
    u = rng.standard_normal((50_000, 100))
    v = rng.standard_normal((50_000, 100))
    cos = np.abs((u * v).sum(1)) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)
    assert cos.mean() == pytest.approx(expected_abs_cosine(100), rel=1e-2)


def test_random_frames_are_orthonormal_and_haar() -> None:
    frames = random_orthonormal(np.random.default_rng(0), 4000, 6, 1)
    gram = np.swapaxes(frames, 1, 2) @ frames
    assert np.allclose(gram, 1.0)
    # Haar: every coordinate's square has mean 1/d and the first coordinate is symmetric.
    assert np.allclose((frames[:, :, 0] ** 2).mean(0), 1 / 6, atol=0.01)
    assert abs(frames[:, 0, 0].mean()) < 0.03


def test_principal_angles_match_scipy() -> None:
    from scipy.linalg import subspace_angles

    rng = np.random.default_rng(1)
    a, b = random_orthonormal(rng, 1, 20, 4)[0], random_orthonormal(rng, 1, 20, 3)[0]
    assert np.allclose(principal_angles_deg(a, b), np.sort(np.degrees(subspace_angles(a, b))))


def test_subspace_baseline_agrees_with_its_exact_part_and_is_seeded() -> None:
    baseline = random_subspace_baseline(30, 5, samples=4000, seed=2)
    angles = baseline["principal_angles_deg"]
    assert angles["method"] == "sampled" and angles["samples"] == 4000 and angles["seed"] == 2
    assert np.all(np.diff(angles["mean"]) > 0) and 0 < angles["mean"][0] < 90  # ascending
    # Σ cos² of the principal angles has the exact mean ka·kb/d.
    frames = random_orthonormal(np.random.default_rng(2), 4000, 30, 5)
    others = random_orthonormal(np.random.default_rng(5), 4000, 30, 5)
    sums = (np.cos(np.radians(principal_angles_deg(frames, others))) ** 2).sum(1)
    assert sums.mean() == pytest.approx(baseline["sum_squared_cosines"]["mean"], rel=0.03)
    again = random_subspace_baseline(30, 5, samples=4000, seed=2)
    assert np.array_equal(again["principal_angles_deg"]["mean"], angles["mean"])
    one = random_subspace_baseline(30, 1, samples=20_000, seed=0)
    # k = 1: the angle is arccos|u·v|, cos is concave there, so cos(E θ) >= E|u·v| (Jensen).
    assert np.cos(np.radians(one["principal_angles_deg"]["mean"][0])) > expected_abs_cosine(30)
    assert one["max_abs_cosine"]["mean"] == pytest.approx(expected_abs_cosine(30), rel=0.03)


def test_subspace_baseline_bounds_its_work(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.geometry import statistics

    monkeypatch.setattr(statistics, "_BASELINE_BLOCK_ELEMENTS", 512 * 16 * 40)
    assert random_subspace_baseline(512, 16, samples=500)["max_abs_cosine"]["samples"] == 40
    assert random_subspace_baseline(512, 64, samples=500)["max_abs_cosine"]["samples"] == 16
    with pytest.raises(InvalidOptionError):
        random_subspace_baseline(10, 11)


def test_bootstrap_mean_interval_matches_the_normal_theory() -> None:
    values = np.random.default_rng(0).normal(5.0, 2.0, size=400)
    interval = bootstrap(values, seed=1)
    half = 1.96 * values.std(ddof=1) / math.sqrt(values.size)
    assert interval.estimate == pytest.approx(values.mean())
    assert interval.low < values.mean() < interval.high
    assert (interval.high - interval.low) / 2 == pytest.approx(half, rel=0.12)
    assert bootstrap(values, seed=1) == interval  # seeded
    assert bootstrap([1.0]).bounds() is None
    assert bootstrap([1.0]).to_json()["low"] is None


def _bootstrap_loop(
    values: np.ndarray, statistic: str, resamples: int, seed: int
) -> tuple[float, float]:
    """The slow reference: one resample at a time, the same seeded stream, numpy's linear
    percentiles (the convention the service states)."""
    rng = np.random.default_rng(seed)
    reduce = np.mean if statistic == "mean" else np.median
    draws = [
        reduce(values[rng.integers(0, values.size, size=(1, values.size))][0])
        for _ in range(resamples)
    ]
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(low), float(high)


@pytest.mark.parametrize("statistic", ["mean", "median"])
def test_the_one_bootstrap_matches_a_loop_for_each_statistic(statistic: str) -> None:
    values = np.random.default_rng(3).exponential(2.0, size=57)
    interval = bootstrap(values, statistic, resamples=300, seed=5)  # type: ignore[arg-type]
    assert (interval.low, interval.high) == pytest.approx(
        _bootstrap_loop(values, statistic, 300, 5)
    )
    reduce = np.mean if statistic == "mean" else np.median
    assert interval.estimate == pytest.approx(reduce(values))
    document = interval.to_json()
    assert document[statistic] == interval.estimate and document["n"] == 57
    assert (
        document["low"] == interval.low and document["resamples"] == 300 and document["seed"] == 5
    )


def test_the_quantile_convention_is_numpys_linear_one_extended_to_infinity() -> None:
    draws = np.random.default_rng(2).normal(size=101)
    assert percentile_bounds(draws, 0.9) == pytest.approx(tuple(np.percentile(draws, [5, 95])))
    assert percentile_bounds([1.0, 2.0, np.inf, np.inf], 0.5) == (1.75, math.inf)
    assert percentile_bounds([np.inf] * 4) == (math.inf, math.inf)
    never = bootstrap(np.array([np.inf, np.inf, 3.0]), "median", seed=0)
    assert never.estimate == math.inf and never.high == math.inf


def test_paired_difference_keeps_the_pairing() -> None:
    """A large shift shared by both members cancels when units are paired: the interval of the
    paired mean difference is as narrow as the noise of the difference, not of the values."""
    rng = np.random.default_rng(8)
    base = rng.normal(0.0, 10.0, size=200)  # position-to-position spread
    first, second = base + rng.normal(0, 0.1, 200), base + 1.0 + rng.normal(0, 0.1, 200)
    paired = paired_difference(first, second, seed=2)
    assert paired.statistic == "mean difference"
    assert paired.low < 1.0 < paired.high and paired.high - paired.low < 0.1
    unpaired = bootstrap(second, seed=2).high - bootstrap(first, seed=2).low
    assert unpaired > 1.5  # the values alone cannot resolve the shift
    with pytest.raises(InvalidOptionError, match="one value per unit"):
        paired_difference([1.0, 2.0], [1.0])


def _offdiagonal_interval_loop(
    matrix: np.ndarray, resamples: int, seed: int
) -> tuple[float, float]:
    n = matrix.shape[0]
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    means = []
    for row in draws:
        entries = [matrix[a, b] for a in row for b in row if a != b and np.isfinite(matrix[a, b])]
        means.append(sum(entries) / len(entries))
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def test_bootstrap_offdiagonal_interval_matches_a_loop() -> None:
    rng = np.random.default_rng(4)
    matrix = rng.uniform(0.5, 1.0, size=(9, 9))
    matrix[2, 5] = np.nan
    fast = bootstrap_offdiagonal(matrix, resamples=200, seed=7)
    assert (fast.low, fast.high) == pytest.approx(_offdiagonal_interval_loop(matrix, 200, 7))
    off = ~np.eye(9, dtype=bool) & np.isfinite(matrix)
    assert fast.estimate == pytest.approx(matrix[off].mean())
    constant = np.full((5, 5), 0.9)
    assert bootstrap_offdiagonal(constant).bounds() == pytest.approx([0.9, 0.9])


def test_top_share_and_the_99999_level() -> None:
    values = np.array([[50.0, 30, 10, 5, 3, 1, 0.5, 0.3, 0.1, 0.095, 0.005]])
    assert top_share(values, 10)[0] == pytest.approx(0.99995)
    assert top_share(values, 1)[0] == pytest.approx(0.5)
    result = anisotropy(values)
    assert result["dims_9999"][0] == 10 and result["dims_99999"][0] == 11
    assert result["top10_share_mean"] == pytest.approx(0.99995)
    stats = result["statistics"]
    assert set(stats) >= {"top_eigenvalue", "participation_ratio", "top10_share", "dims_99999"}
    top_k = anisotropy(values[:, :5], latent_dim=11)
    assert top_k["top10_share"] is None and "top10_share" not in top_k["statistics"]


def test_anisotropy_statistics_hold_medians_and_intervals() -> None:
    rng = np.random.default_rng(0)
    values = np.sort(np.exp(rng.normal(0, 2, size=(40, 12))), axis=1)[:, ::-1]
    stats = anisotropy(values)["statistics"]["participation_ratio"]
    ratios = values.sum(1) ** 2 / (values**2).sum(1)
    assert stats["median"] == pytest.approx(np.median(ratios))
    assert stats["ci95"][0] < stats["mean"] < stats["ci95"][1]


def test_homogeneity_reports_intervals_around_its_mean() -> None:
    rng = np.random.default_rng(1)
    basis = np.linalg.qr(rng.standard_normal((8, 8)))[0]
    values = np.sort(np.exp(rng.normal(0, 2, size=(6, 8))), axis=1)[:, ::-1]
    noisy = np.stack([np.linalg.qr(basis + 0.2 * rng.standard_normal((8, 8)))[0] for _ in range(6)])
    result = homogeneity(values, noisy)
    low, high = result["log_offdiag_mean_ci95"]
    assert low <= result["log_offdiag_mean"] <= high


def test_alignment_reports_both_ends_and_the_random_baseline() -> None:
    basis = np.linalg.qr(np.random.default_rng(2).standard_normal((12, 12)))[0]
    mixed = np.concatenate([basis[:, :2], basis[:, 5:6]], axis=1)
    result = alignment(basis[:, :3], mixed)
    assert result["smallest_principal_angle_deg"] == pytest.approx(0, abs=1e-6)
    assert result["largest_principal_angle_deg"] == pytest.approx(90)
    assert result["baseline"]["abs_cosine"]["mean"] == pytest.approx(expected_abs_cosine(12))
    assert result["baseline"]["principal_angles_deg"]["method"] == "sampled"

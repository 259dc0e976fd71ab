"""Analyses against slow, obviously correct loop references and known answers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from services.geometry import (
    InvalidOptionError,
    alignment,
    anisotropy,
    average_metric,
    homogeneity,
    summary_of,
)


def _random_spectra(n: int, d: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    values = np.sort(np.exp(rng.normal(0, 2, size=(n, k))), axis=1)[:, ::-1]
    vectors = np.stack([np.linalg.qr(rng.standard_normal((d, d)))[0][:, :k] for _ in range(n)])
    return values, vectors


def _dims_loop(values: np.ndarray, level: float) -> int:
    total, running = values.sum(), 0.0
    for rank, value in enumerate(values, start=1):
        running += value
        if running / total >= level:
            return rank
    return len(values)


def test_summary_of_has_exactly_the_stored_columns() -> None:
    values = np.array([60.0, 30.0, 9.5, 0.45, 0.05])
    summary = summary_of(values)
    assert summary == {
        "top_eigenvalue": 60.0,
        "trace": 100.0,
        "dims_99": 3,  # 99.5 % at rank 3
        "dims_999": 4,  # 99.95 % at rank 4
        "participation_ratio": pytest.approx(
            100.0**2 / (60**2 + 30**2 + 9.5**2 + 0.45**2 + 0.05**2)
        ),
    }
    assert type(summary["dims_99"]) is int and type(summary["trace"]) is float


def test_anisotropy_matches_a_per_position_loop() -> None:
    values, _ = _random_spectra(7, 12, 12, seed=0)
    result = anisotropy(values)
    for key, level in (("dims_99", 0.99), ("dims_999", 0.999), ("dims_9999", 0.9999)):
        assert result[key].tolist() == [_dims_loop(row, level) for row in values]
    assert np.allclose(
        result["participation_ratio"], [row.sum() ** 2 / (row**2).sum() for row in values]
    )
    assert np.allclose(result["mean"], values.mean(0)) and np.allclose(
        result["median"], np.median(values, 0)
    )
    assert np.all(result["p5"] <= result["median"]) and np.all(result["median"] <= result["p95"])
    assert result["n_positions"] == 7 and result["rank"] == 12


def _homogeneity_loop(values: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(values)
    log, lin = np.zeros((n, n)), np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            metric_j = vectors[j] @ np.diag(values[j]) @ vectors[j].T
            quotients = np.array([u @ metric_j @ u for u in vectors[i].T])
            log[i, j] = np.corrcoef(np.log10(np.abs(quotients)), np.log10(values[j]))[0, 1]
            lin[i, j] = np.corrcoef(quotients, values[j])[0, 1]
    return log, lin


@pytest.mark.parametrize("k", [3, 10])  # k < d/2 and k = d take the two computation routes
def test_homogeneity_matches_the_published_double_loop(k: int) -> None:
    values, vectors = _random_spectra(6, 10, k, seed=1)
    result = homogeneity(values, vectors)
    log, lin = _homogeneity_loop(values, vectors)
    assert np.allclose(result["log"], log, atol=1e-10) and np.allclose(
        result["linear"], lin, atol=1e-10
    )
    off = ~np.eye(6, dtype=bool)
    assert result["log_offdiag_mean"] == pytest.approx(log[off].mean())
    assert result["linear_offdiag_median"] == pytest.approx(np.median(lin[off]))
    single = homogeneity(values, vectors, dtype="float32")
    assert np.allclose(single["log"], log, atol=1e-4)
    on_cpu = homogeneity(values, vectors, device="cpu")
    assert np.array_equal(on_cpu["log"], result["log"]) and isinstance(on_cpu["log"], np.ndarray)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("k", [3, 10])
def test_homogeneity_on_cuda_matches_the_double_loop(k: int) -> None:
    values, vectors = _random_spectra(6, 10, k, seed=1)
    result = homogeneity(values, vectors, device="cuda")
    log, lin = _homogeneity_loop(values, vectors)
    assert isinstance(result["log"], np.ndarray)
    assert np.allclose(result["log"], log, atol=1e-10) and np.allclose(
        result["linear"], lin, atol=1e-10
    )


def test_homogeneity_of_identical_hessians_is_one() -> None:
    values, vectors = _random_spectra(1, 16, 16, seed=2)
    values, vectors = np.repeat(values, 5, axis=0), np.repeat(vectors, 5, axis=0)
    result = homogeneity(values, vectors)
    assert np.allclose(result["log"], 1.0, atol=1e-12) and np.allclose(
        result["linear"], 1.0, atol=1e-12
    )
    assert result["log_offdiag_mean"] == pytest.approx(1.0) and result[
        "linear_offdiag_median"
    ] == pytest.approx(1.0)


def test_average_metric_is_the_mean_of_the_metrics() -> None:
    values, vectors = _random_spectra(4, 6, 6, seed=3)
    mean, eigvals, eigvecs = average_metric(values, vectors)
    expected = np.mean([u @ np.diag(v) @ u.T for v, u in zip(values, vectors, strict=True)], axis=0)
    assert np.allclose(mean, expected)
    assert np.all(np.diff(eigvals) <= 0)
    assert np.allclose(eigvecs @ np.diag(eigvals) @ eigvecs.T, expected)


def test_alignment_known_answers() -> None:
    rng = np.random.default_rng(4)
    basis = np.linalg.qr(rng.standard_normal((8, 8)))[0]
    same = alignment(basis[:, :3], -basis[:, :3])
    assert np.allclose(same["abs_cosine"], np.eye(3)) and np.allclose(
        same["principal_angles_deg"], 0, atol=1e-6
    )
    orthogonal = alignment(basis[:, :3], basis[:, 3:6])
    assert np.allclose(orthogonal["principal_angles_deg"], 90)
    metric = basis @ np.diag(np.arange(8, 0, -1.0)) @ basis.T
    rayleigh = alignment(basis[:, :2], basis[:, 6:8], metric=metric, seed=1)
    assert np.allclose(rayleigh["rayleigh_a"], [8, 7]) and np.allclose(
        rayleigh["rayleigh_b"], [2, 1]
    )
    assert rayleigh["rayleigh_random_mean"] == pytest.approx(4.5, rel=0.15)  # trace / d
    assert rayleigh["rayleigh_a_topk_over_random"] > 1.5


def test_analysis_bad_input() -> None:
    with pytest.raises(InvalidOptionError):
        anisotropy(np.array([[1.0, np.nan]]))
    with pytest.raises(InvalidOptionError):
        homogeneity(np.ones((2, 3)), np.ones((2, 4, 2)))
    values, vectors = _random_spectra(2, 4, 4, seed=0)
    with pytest.raises(InvalidOptionError, match="unknown device"):
        homogeneity(values, vectors, device="abacus")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidOptionError, match="CUDA is not available"):
            homogeneity(values, vectors, device="cuda")
    with pytest.raises(InvalidOptionError, match="different spaces"):
        alignment(np.eye(3), np.eye(4))
    with pytest.raises(InvalidOptionError):
        summary_of(np.ones((2, 2)))


# --------------------------------------------------------------------------- published conventions


def _gan_geometry_log_corr(values: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """GAN-Geometry's compute_hess_corr (numpy branch), log scale, written out slowly."""
    import numpy.ma as ma

    corrcoef: Any = ma.corrcoef  # untyped in numpy
    n = len(values)
    log = np.zeros((n, n))
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(n):
            for j in range(n):
                inner = vectors[i].T @ vectors[j]
                quotients = np.diag((inner * values[j][np.newaxis, :]) @ inner.T)
                log[i, j] = corrcoef(
                    ma.masked_invalid(np.log10(quotients)), ma.masked_invalid(np.log10(values[j]))
                )[0, 1]
    return log


@pytest.mark.parametrize("k", [5, 10])  # the two computation routes
def test_log_homogeneity_leaves_non_positive_eigenvalues_out_as_published(k: int) -> None:
    values, vectors = _random_spectra(6, 10, k, seed=5)
    # Round-off at the bottom of each spectrum: tiny negative and zero eigenvalues.
    values[:, -1] = -1e-9 * np.arange(1, 7)
    values[::2, -2] = 0.0
    result = homogeneity(values, vectors)
    reference = _gan_geometry_log_corr(values, vectors)
    assert result["log_rule"] == "published" and result["log_entries_left_out"] > 0
    assert np.isfinite(reference).all()
    assert np.allclose(result["log"], reference, atol=1e-10)
    if torch.cuda.is_available():  # the masked route on the device gives the same matrix
        on_device = homogeneity(values, vectors, device="cuda")
        assert np.allclose(on_device["log"], reference, atol=1e-10)
        assert on_device["log_entries_left_out"] == result["log_entries_left_out"]
    # log|λ| (the old rule) keeps them as outliers: a different number, still offered.
    kept = homogeneity(values, vectors, log_rule="abs")
    assert kept["log_rule"] == "abs"
    assert abs(kept["log_offdiag_mean"] - result["log_offdiag_mean"]) > 0.01
    with pytest.raises(InvalidOptionError, match="log_rule"):
        homogeneity(values, vectors, log_rule="clip")


def test_published_dims_count_on_the_mean_spectrum() -> None:
    values = np.array([[60.0, 30.0, 9.5, 0.45, 0.05], [80.0, 15.0, 3.0, 1.7, 0.3]])
    result = anisotropy(values)
    # Ours, per position: the first rank reaching 99 %: 3 (99.5 %) and 4 (99.7 %).
    assert result["dims_99"].tolist() == [3, 4]
    # The mean spectrum [70, 22.5, 6.25, 1.075, 0.175] reaches 99.825 % at rank 4: three
    # ranks are still below 99 %, the published count.
    published = result["published_dims_on_mean_spectrum"]
    assert published["dims_99"] == 3 and "mean spectrum" in published["convention"]
    assert "one fewer" in result["dims_convention"]

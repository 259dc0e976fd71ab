"""The average metric fed in chunks equals the one-array geometry.average_metric, and the
analysis device: "auto" is the GPU where there is one, CUDA asked for where there is none is
refused with a clear message."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from services.geometry import AverageMetric, InvalidOptionError, analysis_device, average_metric


def _stack(
    n: int, d: int, k: int, seed: int, dtype: type = np.float64
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors: np.ndarray = np.linalg.qr(rng.standard_normal((n, d, k)))[0].astype(dtype)
    values = -np.sort(-rng.exponential(size=(n, k)) * np.linspace(10, 1, k), axis=1)
    return values, vectors


@pytest.mark.parametrize("chunk", [1, 7, 50])
def test_chunks_give_the_average_metric_of_the_whole_array(chunk: int) -> None:
    values, vectors = _stack(50, 20, 6, seed=1)
    total = AverageMetric(20)
    for start in range(0, 50, chunk):
        total.add(values[start : start + chunk], vectors[start : start + chunk])
    mean, eigvals, eigvecs = total.result()
    expected_mean, expected_vals, expected_vecs = average_metric(values, vectors)
    assert total.n_positions == 50
    np.testing.assert_allclose(
        mean, expected_mean, rtol=0, atol=1e-12 * np.abs(expected_mean).max()
    )
    np.testing.assert_allclose(eigvals, expected_vals, rtol=0, atol=1e-12 * expected_vals[0])
    # The leading axes (well separated) agree, signs fixed the same way.
    np.testing.assert_allclose(eigvecs[:, :6], expected_vecs[:, :6], atol=1e-9)
    # A known answer: the mean of U_i Λ_i U_iᵀ, summed one position at a time.
    direct = sum((v * lam) @ v.T for lam, v in zip(values, vectors, strict=True)) / 50
    np.testing.assert_allclose(mean, direct, rtol=0, atol=1e-12 * np.abs(direct).max())


def test_float32_chunks_are_accumulated_in_float64() -> None:
    values, vectors = _stack(9, 8, 3, seed=2, dtype=np.float32)
    total = AverageMetric(8)
    total.add(values[:4], vectors[:4])
    total.add(values[4:], vectors[4:])
    np.testing.assert_allclose(total.result()[0], average_metric(values, vectors)[0], rtol=1e-12)


def test_bad_chunks_are_refused() -> None:
    values, vectors = _stack(3, 8, 3, seed=3)
    total = AverageMetric(8)
    with pytest.raises(InvalidOptionError, match="no positions"):
        total.result()
    with pytest.raises(InvalidOptionError, match=r"\(3, 8, 3\)"):
        total.add(values, vectors[:, :5])
    total.add(values, vectors)
    with pytest.raises(InvalidOptionError, match="keep 3 eigenpairs"):
        total.add(values[:, :2], vectors[:, :, :2])
    broken = vectors.copy()
    broken[0, 0, 0] = np.nan
    with pytest.raises(InvalidOptionError, match="NaN"):
        total.add(values, broken)


def test_auto_is_the_gpu_where_there_is_one() -> None:
    assert analysis_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert analysis_device("cpu") == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_refused() -> None:
    with pytest.raises(InvalidOptionError, match="CUDA is not available"):
        analysis_device("cuda")
    with pytest.raises(InvalidOptionError, match="CUDA is not available"):
        AverageMetric(4, device="cuda:0")


def test_unknown_devices_are_refused() -> None:
    with pytest.raises(InvalidOptionError, match="unknown device"):
        analysis_device("gpu")
    with pytest.raises(InvalidOptionError, match="'cpu' or 'cuda"):
        analysis_device("meta")

"""The average metric fed in chunks equals its closed form (positions sharing one rotation),
and the analysis device: "auto" is the GPU where there is one, CUDA asked for where there is
none is refused with a clear message."""

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
def test_chunks_give_the_closed_form_average_metric(chunk: int) -> None:
    """Every position's top eigenvectors are columns of one rotation R (in its own order
    and signs), so the average metric is R diag(mean eigenvalue per axis) Rᵀ exactly: its
    eigenvalues are those means, its eigenvectors R's columns."""
    rng = np.random.default_rng(1)
    n, d, k = 50, 20, 6
    rotation = np.linalg.qr(rng.standard_normal((d, d)))[0]
    axis_values = rng.exponential(size=(n, k)) * np.linspace(10, 1, k)  # per axis j < k
    values = np.empty((n, k))
    vectors = np.empty((n, d, k))
    for i in range(n):
        order = np.argsort(-axis_values[i])  # each position lists its axes descending
        signs = rng.choice([-1.0, 1.0], size=k)
        values[i] = axis_values[i, order]
        vectors[i] = rotation[:, order] * signs
    total = AverageMetric(d)
    for start in range(0, n, chunk):
        total.add(values[start : start + chunk], vectors[start : start + chunk])
    mean, eigvals, eigvecs = total.result()
    means = axis_values.mean(axis=0)
    expected = (rotation[:, :k] * means) @ rotation[:, :k].T
    assert total.n_positions == n
    np.testing.assert_allclose(mean, expected, rtol=0, atol=1e-12 * means.max())
    order = np.argsort(-means)
    np.testing.assert_allclose(eigvals[:k], means[order], rtol=1e-12)
    np.testing.assert_allclose(eigvals[k:], 0.0, atol=1e-12 * means.max())
    cosines = np.abs(np.sum(eigvecs[:, :k] * rotation[:, order], axis=0))
    np.testing.assert_allclose(cosines, 1.0, atol=1e-9)
    # The one-array function (one chunk of the same accumulation) agrees.
    np.testing.assert_allclose(average_metric(values, vectors)[0], mean, atol=1e-12 * means.max())


def test_float32_chunks_are_accumulated_in_float64() -> None:
    values, vectors = _stack(9, 8, 3, seed=2, dtype=np.float32)
    total = AverageMetric(8)
    total.add(values[:4], vectors[:4])
    total.add(values[4:], vectors[4:])
    # The float32 inputs are exact in float64: a float64 sum of them agrees to rounding in the
    # last float64 places, where a float32 accumulation would be ~1e-7 off.
    wide = vectors.astype(np.float64)
    direct = (
        sum((v * lam) @ v.T for lam, v in zip(values.astype(np.float64), wide, strict=True)) / 9
    )
    assert total.result()[0].dtype == np.float64
    np.testing.assert_allclose(total.result()[0], direct, rtol=1e-12, atol=1e-14)


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


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_auto_is_the_cpu_without_a_gpu() -> None:
    assert analysis_device("auto") == "cpu"
    assert analysis_device("cpu") == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_auto_is_the_gpu_where_there_is_one() -> None:
    assert analysis_device("auto") == "cuda"
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

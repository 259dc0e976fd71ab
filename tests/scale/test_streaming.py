"""The average metric fed in chunks equals the mean of the positions' metrics summed one at a
time (and numpy's eigenpairs of it), and the analysis device: "auto" is the GPU where there is one, CUDA asked for where there is none is
refused with a clear message."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from services.geometry import AverageMetric, InvalidOptionError, analysis_device


def _stack(n: int, d: int, k: int, seed: int, dtype: type = np.float64) -> tuple[np.ndarray, np.ndarray]:
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
    assert total.n_positions == 50
    # Known answers, not the one-array function (itself one chunk of AverageMetric): the mean
    # of U_i Λ_i U_iᵀ summed one position at a time, and its eigenpairs by numpy's eigh.
    direct = sum((v * lam) @ v.T for lam, v in zip(values, vectors, strict=True)) / 50
    np.testing.assert_allclose(mean, direct, rtol=0, atol=1e-12 * np.abs(direct).max())
    reference_vals, reference_vecs = np.linalg.eigh(direct)
    reference_vals, reference_vecs = reference_vals[::-1], reference_vecs[:, ::-1]
    np.testing.assert_allclose(eigvals, reference_vals, rtol=0, atol=1e-12 * reference_vals[0])
    # The leading axes (well separated) agree up to each axis's sign.
    signs = np.sign(np.sum(eigvecs[:, :6] * reference_vecs[:, :6], axis=0))
    np.testing.assert_allclose(eigvecs[:, :6], reference_vecs[:, :6] * signs, atol=1e-9)
    # Chunking changes nothing: the same as all 50 positions in one chunk.
    whole = AverageMetric(20)
    whole.add(values, vectors)
    np.testing.assert_allclose(eigvecs[:, :6], whole.result()[2][:, :6], atol=1e-9)


def test_float32_chunks_are_accumulated_in_float64() -> None:
    values, vectors = _stack(9, 8, 3, seed=2, dtype=np.float32)
    total = AverageMetric(8)
    total.add(values[:4], vectors[:4])
    total.add(values[4:], vectors[4:])
    # The float32 inputs are exact in float64: a float64 sum of them agrees to rounding in the
    # last float64 places, where a float32 accumulation would be ~1e-7 off.
    wide = vectors.astype(np.float64)
    direct = sum((v * lam) @ v.T for lam, v in zip(values.astype(np.float64), wide, strict=True)) / 9
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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
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

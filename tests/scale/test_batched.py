"""The GPU path (codes batched in one vectorised pass, float64 eigh on the device), checked
on the CPU (the same code on device "cpu") against the per-code route, and on CUDA when
there is one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from services.geometry import (
    Distance,
    Generator,
    SpectrumResult,
    compute_spectrum,
    load_distance,
    load_generator,
    spectrum_from_metric,
)
from services.geometry.batched import jacobian_spectra, spectrum_on_device
from services.geometry.errors import NonFiniteOutputError

FACTORIES = Path(__file__).parents[1] / "geometry" / "factories.py"
TOYS = Path(__file__).parents[1] / "pipeline" / "toy_generators.py"
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def tiny_dcgan() -> Generator:
    return load_generator(f"python:{FACTORIES}:tiny_dcgan")


@pytest.fixture(scope="module")
def mse() -> Distance:
    return load_distance("mse")


def _assert_same_spectrum(batched: SpectrumResult, single: SpectrumResult, *, rtol: float) -> None:
    scale = single.eigenvalues[0]
    assert np.max(np.abs(batched.eigenvalues - single.eigenvalues)) / scale < rtol
    # Deterministic signs on both routes: the vectors agree column by column, not just in
    # direction (well-separated eigenvalues only; the tail may be degenerate).
    top = min(4, single.eigenvectors.shape[1])
    np.testing.assert_allclose(
        batched.eigenvectors[:, :top], single.eigenvectors[:, :top], atol=100 * rtol
    )
    assert batched.summary["trace"] == pytest.approx(single.summary["trace"], rel=rtol)


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-10), ("float32", 2e-5)])
def test_batched_codes_match_one_code_at_a_time(
    tiny_dcgan: Generator, mse: Distance, dtype: str, rtol: float
) -> None:
    codes = tiny_dcgan.sample(5, 11)
    batched = jacobian_spectra(tiny_dcgan, mse, codes, dtype=dtype, batch=6)
    assert len(batched) == 5
    for code, result in zip(codes, batched, strict=True):
        single = compute_spectrum(tiny_dcgan, mse, code, dtype=dtype)
        assert not isinstance(result, Exception)
        _assert_same_spectrum(result, single, rtol=rtol)
        assert result.eigenvectors.dtype == np.dtype(dtype)
        assert result.diagnostics["codes_in_pass"] == 5


def test_batched_top_k_keeps_every_eigenvalue_for_the_figures(
    tiny_dcgan: Generator, mse: Distance
) -> None:
    codes = tiny_dcgan.sample(2, 3)
    (first, _) = jacobian_spectra(tiny_dcgan, mse, codes, top_k=3, dtype="float64")
    full = compute_spectrum(tiny_dcgan, mse, codes[0], dtype="float64")
    assert not isinstance(first, Exception)
    assert first.eigenvectors.shape == (8, 3)
    np.testing.assert_allclose(first.diagnostics["eigenvalues_all"], full.eigenvalues, rtol=1e-10)
    assert first.summary["participation_ratio"] == pytest.approx(
        full.summary["participation_ratio"], rel=1e-10
    )


def test_one_non_finite_code_fails_alone() -> None:
    from tests.pipeline.toy_generators import TRIGGER

    generator = load_generator(f"python:{TOYS}:nan_at_trigger")
    codes = generator.sample(3, 0)
    codes[1, 0] = TRIGGER
    results = jacobian_spectra(generator, load_distance("mse"), codes, dtype="float64")
    assert isinstance(results[1], NonFiniteOutputError)
    for index in (0, 2):
        result = results[index]
        assert not isinstance(result, Exception)
        single = compute_spectrum(generator, load_distance("mse"), codes[index], dtype="float64")
        _assert_same_spectrum(result, single, rtol=1e-10)


def test_device_decomposition_on_the_cpu_is_the_reference_one() -> None:
    rng = np.random.default_rng(0)
    factor = rng.standard_normal((30, 30))
    metric = factor @ factor.T
    on_device = spectrum_on_device(metric, top_k=5, device="cpu")
    reference = spectrum_from_metric(metric, top_k=5)
    np.testing.assert_array_equal(on_device.eigenvalues, reference.eigenvalues)


@needs_cuda
def test_batched_codes_on_cuda_match_the_cpu(tiny_dcgan: Generator, mse: Distance) -> None:
    codes = tiny_dcgan.sample(8, 5)
    on_gpu = jacobian_spectra(tiny_dcgan.to("cuda", torch.float32), mse, codes, dtype="float64")
    for code, result in zip(codes, on_gpu, strict=True):
        single = compute_spectrum(tiny_dcgan, mse, code, dtype="float64")
        assert not isinstance(result, Exception)
        _assert_same_spectrum(result, single, rtol=1e-9)
        assert result.diagnostics["device"].startswith("cuda")


@needs_cuda
def test_float64_eigh_on_cuda_matches_the_host() -> None:
    rng = np.random.default_rng(1)
    factor = rng.standard_normal((300, 300))
    metric = factor @ factor.T
    on_device = spectrum_on_device(metric, top_k=10, device="cuda")
    reference = spectrum_from_metric(metric, top_k=10)
    np.testing.assert_allclose(on_device.eigenvalues, reference.eigenvalues, rtol=1e-10)
    np.testing.assert_allclose(on_device.eigenvectors, reference.eigenvectors, atol=1e-8)
    assert on_device.diagnostics["eigh_device"].startswith("cuda")

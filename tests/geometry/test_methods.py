"""Metric-tensor methods against the serial double-backward reference and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from services.geometry import (
    METHODS,
    Distance,
    Generator,
    NotConvergedError,
    compute_metric,
    compute_spectrum,
    metric_columns,
    spectrum_from_metric,
)

from .conftest import python_generator
from .factories import LINEAR_SHAPE, linear_weights


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def code(dcgan: Generator) -> np.ndarray:
    first: np.ndarray = dcgan.sample(1, seed=11)[0]
    return first


@pytest.fixture(scope="module")
def bp_mse(dcgan: Generator, mse: Distance, code: np.ndarray) -> np.ndarray:
    return compute_metric(dcgan, mse, code, method="bp", dtype="float64")


@pytest.fixture(scope="module")
def bp_lpips(dcgan: Generator, lpips_random: Distance, code: np.ndarray) -> np.ndarray:
    return compute_metric(dcgan, lpips_random, code, method="bp", dtype="float64")


# --------------------------------------------------------------------------- dcgan-faces vs bp


@pytest.mark.parametrize("method", ["jacobian", "hvp"])
def test_exact_methods_match_bp_with_mse(
    dcgan: Generator, mse: Distance, code: np.ndarray, bp_mse: np.ndarray, method: str
) -> None:
    metric = compute_metric(dcgan, mse, code, method=method, dtype="float64")
    assert relative_error(metric, bp_mse) <= 1e-6


@pytest.mark.parametrize("method", ["jacobian", "hvp"])
def test_exact_methods_match_bp_with_lpips(
    dcgan: Generator, lpips_random: Distance, code: np.ndarray, bp_lpips: np.ndarray, method: str
) -> None:
    metric = compute_metric(dcgan, lpips_random, code, method=method, dtype="float64")
    assert relative_error(metric, bp_lpips) <= 1e-6


def test_bp_is_not_trivially_small(bp_mse: np.ndarray, bp_lpips: np.ndarray) -> None:
    # Guards the comparisons above against a vacuous reference.
    for reference in (bp_mse, bp_lpips):
        assert np.linalg.norm(reference) > 1e-3
        assert np.linalg.matrix_rank(reference) == reference.shape[0]


def test_fd_matches_bp_within_1e_5(
    dcgan: Generator, mse: Distance, code: np.ndarray, bp_mse: np.ndarray
) -> None:
    metric = compute_metric(dcgan, mse, code, method="fd", dtype="float64")
    assert relative_error(metric, bp_mse) <= 1e-5


def test_fd_is_not_halved(linear: Generator) -> None:
    # The published finite-difference variant returns Hv / 2; ours must equal the exact H.
    exact = compute_metric(
        linear, _mse(), np.zeros(linear.latent_dim), method="jacobian", dtype="float64"
    )
    fd = compute_metric(
        linear, _mse(), np.zeros(linear.latent_dim), method="fd", dtype="float64", step=0.5
    )
    assert relative_error(fd, exact) < 1e-12


def test_lanczos_top20_matches_exact_eigenvalues() -> None:
    # A 64-d nonlinear generator: single-vector float64 products are cheap here; on
    # dcgan-faces the same check passes (bench/bench_geometry.py reports it) but costs minutes
    # on a loaded 2-core machine.
    generator = python_generator("mlp64")
    code = generator.sample(1, seed=4)[0]
    exact = spectrum_from_metric(
        compute_metric(generator, _mse(), code, method="bp", dtype="float64")
    )
    result = compute_spectrum(generator, _mse(), code, method="lanczos", top_k=20, seed=3)
    relative = np.abs(result.eigenvalues - exact.eigenvalues[:20]) / exact.eigenvalues[:20]
    assert relative.max() <= 1e-6
    assert result.diagnostics["converged"] is True
    assert result.diagnostics["residual_max_relative"] <= 1e-8
    assert result.eigenvectors.shape == (64, 20)
    cosines = np.abs(np.sum(result.eigenvectors[:, :5] * exact.eigenvectors[:, :5], axis=0))
    assert cosines.min() > 1 - 1e-8


def test_lanczos_non_convergence_raises() -> None:
    generator = python_generator("mlp64")
    code = generator.sample(1, seed=0)[0]
    with pytest.raises(NotConvergedError, match="max_iter"):
        compute_spectrum(generator, _mse(), code, method="lanczos", top_k=3, max_iter=1)
    converged = compute_spectrum(generator, _mse(), code, method="lanczos", top_k=3)
    exact = compute_spectrum(generator, _mse(), code, method="jacobian", dtype="float64", top_k=3)
    assert np.allclose(converged.eigenvalues, exact.eigenvalues, rtol=1e-10)


def test_metric_columns_assemble_the_exact_metric(
    dcgan: Generator, lpips_random: Distance, code: np.ndarray, bp_lpips: np.ndarray
) -> None:
    blocks = [
        metric_columns(dcgan, lpips_random, code, start, stop)
        for start, stop in ((0, 37), (37, 100))
    ]
    assembled = np.concatenate(blocks, axis=1)
    assert assembled.shape == (100, 100)
    assert relative_error(assembled, bp_lpips) <= 1e-6
    whole = spectrum_from_metric(assembled)
    assert np.allclose(whole.eigenvalues, spectrum_from_metric(bp_lpips).eigenvalues, rtol=1e-6)


def test_lanczos_with_lpips_through_a_channels_last_generator(
    dcgan: Generator, lpips_random: Distance, code: np.ndarray, bp_lpips: np.ndarray
) -> None:
    """Double backward through LPIPS under vmap, fed a channels_last generator's images (the
    CPU layout of dcgan-faces): torch refused this until the backbone got NCHW input."""
    assert dcgan.channels_last
    result = compute_spectrum(dcgan, lpips_random, code, method="lanczos", top_k=10)
    exact = np.linalg.eigvalsh(bp_lpips)[::-1][:10]
    assert np.max(np.abs(result.eigenvalues - exact) / exact) <= 1e-6


def test_spectra_are_psd_descending_with_small_residuals(
    dcgan: Generator, mse: Distance, lpips_random: Distance, code: np.ndarray
) -> None:
    for distance in (mse, lpips_random):
        result = compute_spectrum(dcgan, distance, code, dtype="float64")
        values = result.eigenvalues
        assert np.all(np.diff(values) <= 0)
        assert values.min() >= -1e-10 * values[0]
        assert result.diagnostics["residual_max_relative"] < 1e-12
        assert result.eigenvectors.dtype == np.float64
        vectors = result.eigenvectors
        assert np.allclose(vectors.T @ vectors, np.eye(100), atol=1e-10)


def test_float32_jacobian_is_close_to_the_float64_reference(
    dcgan: Generator, mse: Distance, code: np.ndarray, bp_mse: np.ndarray
) -> None:
    result = compute_spectrum(dcgan, mse, code)  # defaults: jacobian, float32
    exact = spectrum_from_metric(bp_mse)
    assert result.eigenvectors.dtype == np.float32
    assert result.diagnostics["dtype"] == "float32" and result.diagnostics["products"] == 100
    assert np.abs(result.eigenvalues - exact.eigenvalues).max() <= 1e-5 * exact.eigenvalues[0]


def test_chunked_jacobian_equals_one_batch(tiny_dcgan: Generator) -> None:
    distance, code = _mse(), tiny_dcgan.sample(1, seed=2)[0]
    whole = compute_metric(tiny_dcgan, distance, code, dtype="float64", batch=8)
    chunked = compute_metric(tiny_dcgan, distance, code, dtype="float64", batch=3)
    assert relative_error(chunked, whole) < 1e-13


# --------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("method", ["jacobian", "hvp", "bp", "fd"])
def test_linear_generator_metric_is_2_wtw_over_n(linear: Generator, method: str) -> None:
    weight, _ = linear_weights()
    n = int(np.prod(LINEAR_SHAPE))
    expected = 2 * weight.T @ weight / n
    code = linear.sample(1, seed=0)[0]
    metric = compute_metric(linear, _mse(), code, method=method, dtype="float64")
    assert relative_error(metric, expected) < (1e-9 if method == "fd" else 1e-13)


def test_linear_generator_spectrum_and_lanczos(linear: Generator) -> None:
    weight, _ = linear_weights()
    expected = np.linalg.eigvalsh(2 * weight.T @ weight / weight.shape[0])[::-1]
    for method in ("jacobian", "lanczos"):
        result = compute_spectrum(
            linear, _mse(), np.zeros(6), method=method, top_k=4, dtype="float64"
        )
        assert np.allclose(result.eigenvalues, expected[:4], rtol=1e-12, atol=0)


def test_fd_works_at_the_origin(tiny_dcgan: Generator) -> None:
    distance, zero = _mse(), np.zeros(tiny_dcgan.latent_dim)
    exact = compute_metric(tiny_dcgan, distance, zero, method="jacobian", dtype="float64")
    fd = compute_metric(tiny_dcgan, distance, zero, method="fd", dtype="float64")
    assert np.linalg.norm(exact) > 0
    assert relative_error(fd, exact) < 1e-5


# --------------------------------------------------------------------------- conventions


def test_sign_convention_and_determinism(tiny_dcgan: Generator) -> None:
    code = tiny_dcgan.sample(1, seed=5)[0]
    first = compute_spectrum(tiny_dcgan, _mse(), code, dtype="float64")
    second = compute_spectrum(tiny_dcgan, _mse(), code, dtype="float64")
    assert np.array_equal(first.eigenvalues, second.eigenvalues)
    assert np.array_equal(first.eigenvectors, second.eigenvectors)
    vectors = first.eigenvectors
    largest = vectors[np.argmax(np.abs(vectors), axis=0), np.arange(vectors.shape[1])]
    assert np.all(largest > 0)


def test_spectrum_from_metric_symmetrises_and_reports() -> None:
    rng = np.random.default_rng(0)
    base = rng.standard_normal((5, 5))
    metric = base @ base.T
    skewed = metric + 1e-3 * np.triu(np.ones((5, 5)), 1)
    result = spectrum_from_metric(skewed, top_k=3)
    expected = np.linalg.eigvalsh((skewed + skewed.T) / 2)[::-1][:3]
    assert np.allclose(result.eigenvalues, expected, rtol=1e-13)
    assert result.diagnostics["asymmetry"] > 0
    assert result.eigenvectors.shape == (5, 3)


def test_calls_leave_inputs_and_global_state_alone(tiny_dcgan: Generator) -> None:
    grad_mode, default_dtype = torch.is_grad_enabled(), torch.get_default_dtype()
    rng_state = torch.random.get_rng_state()
    before = {k: v.clone() for k, v in tiny_dcgan.module.state_dict().items()}
    code = tiny_dcgan.sample(1, seed=1)[0]
    code_copy = code.copy()
    for method in METHODS:
        compute_spectrum(tiny_dcgan, _mse(), code, method=method, top_k=3, dtype="float64")
    assert tiny_dcgan.dtype == torch.float32
    assert all(torch.equal(before[k], v) for k, v in tiny_dcgan.module.state_dict().items())
    assert np.array_equal(code, code_copy)
    assert torch.is_grad_enabled() == grad_mode and torch.get_default_dtype() == default_dtype
    assert torch.equal(torch.random.get_rng_state(), rng_state)


def test_diagnostics_are_complete(tiny_dcgan: Generator) -> None:
    code = tiny_dcgan.sample(1, seed=1)[0]
    for method in METHODS:
        result = compute_spectrum(tiny_dcgan, _mse(), code, method=method, top_k=3)
        keys = {"wall_time_s", "products", "dtype", "device", "residual_max", "converged", "method"}
        assert keys <= set(result.diagnostics), method
        assert result.diagnostics["method"] == method and result.diagnostics["products"] > 0
        assert result.eigenvalues.shape == (3,) and result.eigenvectors.shape == (8, 3)


@pytest.mark.parametrize("method", ["jacobian", "hvp", "bp"])
def test_nan_generator_mid_job_raises_typed_error(method: str) -> None:
    """jacobian checks G(z0) from its own primal pass, the others before differentiating:
    either way the error names the image, not the derivatives."""
    from services.geometry import NonFiniteOutputError

    generator = python_generator("nan_far_from_origin")
    compute_spectrum(generator, _mse(), np.ones(4), method=method)  # finite here
    with pytest.raises(NonFiniteOutputError, match="produced NaN/inf at this latent code"):
        compute_spectrum(generator, _mse(), np.full(4, 20.0), method=method)
    with pytest.raises(NonFiniteOutputError, match="produced NaN/inf at this latent code"):
        metric_columns(generator, _mse(), np.full(4, 20.0), 0, 2)


def _mse() -> Distance:
    from services.geometry import load_distance

    return load_distance("mse")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_float32_on_cuda_is_ieee_not_tf32() -> None:
    """cuDNN would use TF32 for float32 convolutions (1e-4 relative error here); the entry
    points switch it off for their duration and restore the setting."""
    from services.geometry import load_distance, load_generator

    generator = load_generator("dcgan-faces", device="cuda")
    code = generator.sample(1, seed=3)[0]
    reference = compute_metric(generator, load_distance("mse"), code, method="bp", dtype="float64")
    assert torch.backends.cudnn.allow_tf32  # torch's default, which the test relies on
    for method in ("jacobian", "bp"):
        metric = compute_metric(generator, load_distance("mse", device="cuda"), code, method=method)
        error = np.linalg.norm(metric - reference) / np.linalg.norm(reference)
        assert error < 1e-5, (method, error)
    assert torch.backends.cudnn.allow_tf32

"""The filterable summary describes the whole spectrum, even when only top-k pairs are kept."""

from __future__ import annotations

import numpy as np
import pytest

from services.geometry import Distance, Generator, anisotropy, compute_spectrum, sefa, summary_of
from tests.geometry.conftest import python_generator


@pytest.fixture(scope="module")
def mlp64() -> Generator:
    return python_generator("mlp64")


def test_top_k_keeps_the_summary_of_every_eigenvalue(mlp64: Generator, mse: Distance) -> None:
    code = mlp64.sample(1, seed=3)[0]
    full = compute_spectrum(mlp64, mse, code, method="jacobian", dtype="float64")
    top = compute_spectrum(mlp64, mse, code, method="jacobian", dtype="float64", top_k=5)
    assert top.eigenvalues.shape == (5,)
    assert top.summary == full.summary
    # Known answer from all 64 eigenvalues, by the definitions, one rank at a time.
    values = [float(v) for v in full.eigenvalues]
    trace = sum(values)
    running = 0.0
    dims: dict[str, int] = {}
    for rank, value in enumerate(values, start=1):
        running += value
        for level, name in ((0.99, "dims_99"), (0.999, "dims_999")):
            if name not in dims and running / trace >= level:
                dims[name] = rank
    assert full.summary["top_eigenvalue"] == values[0]
    assert full.summary["trace"] == pytest.approx(trace, rel=1e-12)
    assert {k: full.summary[k] for k in dims} == dims
    pr = trace**2 / sum(v * v for v in values)
    assert full.summary["participation_ratio"] == pytest.approx(pr, rel=1e-12)
    # The trace is that of all 64 eigenvalues, not of the five kept.
    assert top.summary["trace"] > top.eigenvalues.sum() * (1 + 1e-9)


def test_summary_of_a_spectrum_with_closed_form_figures() -> None:
    # 4, 2, 1, 1: trace 8; cumulative shares 0.5, 0.75, 0.875, 1 (99 % at rank 4); participation
    # ratio 8² / (16 + 4 + 1 + 1) = 64 / 22.
    summary = summary_of(np.array([4.0, 2.0, 1.0, 1.0]))
    assert summary == {
        "top_eigenvalue": 4.0,
        "trace": 8.0,
        "dims_99": 4,
        "dims_999": 4,
        "participation_ratio": pytest.approx(64 / 22, rel=1e-15),
    }
    # 100 equal eigenvalues then 0.5 spread thin: rank 99 holds 99 / 100.5 < 99 % of the trace,
    # rank 100 holds 100 / 100.5 > 99 %.
    flat = np.concatenate([np.ones(100), np.full(101, 0.5 / 101)])
    assert summary_of(flat)["dims_99"] == 100 and summary_of(np.ones(7))["participation_ratio"] == 7


def test_lanczos_reports_only_what_it_knows(mlp64: Generator, mse: Distance) -> None:
    code = mlp64.sample(1, seed=3)[0]
    result = compute_spectrum(mlp64, mse, code, method="lanczos", top_k=4)
    assert result.summary["top_eigenvalue"] == float(result.eigenvalues[0])
    for unknown in ("trace", "dims_99", "dims_999", "participation_ratio"):
        assert result.summary[unknown] is None


def test_sefa_summary_covers_the_whole_factorization(linear: Generator) -> None:
    full, top = sefa(linear), sefa(linear, top_k=2)
    assert top.summary == full.summary
    np.testing.assert_allclose(top.summary["trace"], full.eigenvalues.sum(), rtol=1e-12)


def test_anisotropy_of_truncated_spectra_leaves_out_trace_figures() -> None:
    values = np.array([[4.0, 2.0, 1.0], [3.0, 2.0, 0.5]])
    full = anisotropy(values, latent_dim=3)
    assert full["dims_99"].tolist() == [3, 3] and full["participation_ratio_mean"] > 1
    top2 = anisotropy(values[:, :2], latent_dim=3)
    np.testing.assert_allclose(top2["mean"], [3.5, 2.0])
    for key in ("dims_99", "dims_999", "dims_9999", "participation_ratio"):
        assert top2[key] is None and top2[f"{key}_mean"] is None

"""Column blocks and Lanczos at d = 4096, against the closed form (no eigh of 4096 needed),
and each block's memory bounded by the planner's estimate for it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from services.geometry import (
    Distance,
    Generator,
    compute_spectrum,
    load_distance,
    load_generator,
    metric_columns,
)
from services.pipeline import estimate as planner
from services.pipeline import probe as probing
from tests.scale.wide_generators import WIDE_DIM, exact_metric_columns, exact_top

WIDE = f"python:{Path(__file__).with_name('wide_generators.py')}:linear_wide"


@pytest.fixture(scope="module")
def wide() -> Generator:
    return load_generator(WIDE)


@pytest.fixture(scope="module")
def mse() -> Distance:
    return load_distance("mse")


def test_column_blocks_at_d_4096_assemble_the_exact_metric(wide: Generator, mse: Distance) -> None:
    code = wide.sample(1, 3)[0]
    half = WIDE_DIM // 2
    assembled = np.hstack(
        [
            metric_columns(wide, mse, code, 0, half, batch=256),
            metric_columns(wide, mse, code, half, WIDE_DIM, batch=512),
        ]
    )
    exact = exact_metric_columns(0, WIDE_DIM)
    assert assembled.shape == (WIDE_DIM, WIDE_DIM)
    assert np.linalg.norm(assembled - exact) / np.linalg.norm(exact) < 1e-10


def test_a_column_block_stays_within_its_planned_memory(wide: Generator, mse: Distance) -> None:
    """The planner bounds a block's working memory by (tangent batch, block width), not d·F
    rows: measured torch allocations of one block stay under the estimate's block terms."""
    code = wide.sample(1, 4)[0]
    probe = probing.probe(wide, mse, "float64")
    request = planner.Request("jacobian", "float64", None, 64, 512, "float64")
    estimate = planner.estimate_code(probe, request, "cpu", 64)
    assert estimate.tangent_batch_bytes is not None  # the jacobian route batches tangents
    block_budget = estimate.tangent_batch_bytes + 64 * probe.features * 8 + WIDE_DIM * 512 * 16
    peak, _ = probing._measure(
        lambda: metric_columns(wide, mse, code, 0, 512, dtype="float64", batch=64),
        probe_device := wide.device,
    )
    assert probe_device.type == "cpu"
    assert peak <= 1.3 * block_budget, (peak, block_budget)
    # ... and a block is a small fraction of the whole metric the exact route would hold.
    assert peak < WIDE_DIM * WIDE_DIM * 8


def test_lanczos_top_20_at_d_4096_matches_the_exact_spectrum(
    wide: Generator, mse: Distance
) -> None:
    code = wide.sample(1, 5)[0]
    result = compute_spectrum(wide, mse, code, method="lanczos", top_k=20)
    values, vectors = exact_top(20)
    assert np.max(np.abs(result.eigenvalues - values) / values) < 1e-6
    cosines = np.abs(np.sum(result.eigenvectors * vectors, axis=0))
    assert cosines.min() > 1 - 1e-6
    # Products are counted, and far fewer than the d columns of the exact route.
    assert 20 < result.diagnostics["products"] < WIDE_DIM / 4
    assert result.diagnostics["converged"] is True


def test_the_probe_keeps_its_own_batches_within_a_share_of_the_budget(
    wide: Generator, mse: Distance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model whose 128-tangent batch is large is probed at smaller batches when the budget
    is small: the planning process never holds more than its share for the probe."""
    seen: list[int] = []
    measure = probing._measure

    def recording(run: Callable[[], Any], device: torch.device) -> tuple[int, float]:
        peak, seconds = measure(run, device)
        seen.append(peak)
        return peak, seconds

    monkeypatch.setattr(probing, "_measure", recording)
    probing.probe(wide, mse, "float64")
    unbounded = max(seen)
    seen.clear()
    budget = int(unbounded / probing.PROBE_BUDGET_SHARE / 4)  # the big batch is 4x its share
    probing.probe(wide, mse, "float64", budget=budget)
    assert max(seen) <= 1.5 * budget * probing.PROBE_BUDGET_SHARE, (max(seen), budget, unbounded)

"""A generator too large to render at load time is checked on torch's meta device: its
submission is refused from counts (HTTP 422, and embedded `spectra run`) with no real forward
pass anywhere in the request, naming what would fit."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from torch import nn

from api.app import create_app
from api.cli import main as cli_main
from services.dispatch import CeleryDispatcher, InProcessDispatcher
from services.geometry import load_generator
from services.geometry.models.contract import (
    CHECK_CODES,
    VALUE_CHECK_ACTIVATIONS,
    meta_pass,
    warm_meta_device,
)
from services.store import Store
from tests.api.conftest import assert_problem, bearer, make_settings
from tests.support.checkpoints import write_random_checkpoint
from tests.support.redis_server import PrivateRedis

# Exact route, W+ (d = 14 x 512 = 7168), float64: H alone is 0.4 GiB, over this budget.
BUDGET_GB = 0.25
# 256 px at narrow widths: a small file, but more activations than a load-time forward may use.
WIDTHS = {4: 32, 8: 32, 16: 32, 32: 16, 64: 16, 128: 16, 256: 16}
SPEC: dict[str, Any] = {
    "space": "w+",
    "dtype": "float64",
    "method": "jacobian",
    "latents": {"count": 2, "seed": 0},
}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> str:
    directory = tmp_path_factory.mktemp("large")
    path = write_random_checkpoint(
        directory / "g.pt", size=256, style_dim=512, n_mlp=2, channels=WIDTHS
    )
    return f"stylegan2:{path}"


@pytest.fixture
def real_forwards() -> Iterator[list[str]]:
    """The modules that computed real (non-meta) outputs while the fixture was active.
    Sampling W+ codes runs the mapping network (z -> w, a small MLP): that one is expected."""
    seen: list[str] = []

    def record(module: nn.Module, _inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor) and output.device.type != "meta":
            seen.append(type(module).__name__)

    handle = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        yield seen
    finally:
        handle.remove()


def test_the_test_model_is_over_the_load_time_forward_limit(model: str) -> None:
    generator = load_generator(model, space="w+")
    shapes = meta_pass(generator.module, generator.latent_dim, generator.dtype, CHECK_CODES)
    assert shapes.activations > VALUE_CHECK_ACTIVATIONS
    assert shapes.output_shape == (CHECK_CODES, 3, 256, 256)
    assert generator.facts["output_shape"] == [3, 256, 256]
    assert "meta device" in generator.facts["load_check"]
    # The values it did not check at load are the module's real ones: a worker's forward works.
    images = generator.images(generator.sample(1, seed=0))
    assert images.shape == (1, 3, 256, 256) and bool(torch.isfinite(images).all())


def test_nan_weights_of_a_large_generator_are_refused_at_load(tmp_path: Path) -> None:
    path = write_random_checkpoint(
        tmp_path / "g.pt", size=256, style_dim=512, n_mlp=2, channels=WIDTHS
    )
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["g_ema"]["convs.0.conv.weight"][0, 0, 0, 0, 0] = float("nan")
    torch.save(checkpoint, path)
    with pytest.raises(Exception, match="convs.0.conv.weight.*NaN or inf"):
        load_generator(f"stylegan2:{path}", space="w+")


@pytest.mark.timed
def test_a_large_submission_is_refused_from_counts_without_a_forward_pass(
    pg_url: str, store: Store, model: str, real_forwards: list[str]
) -> None:
    settings = make_settings(
        pg_url, extra_models=model, max_latent_dim=8192, worker_memory_gb=BUDGET_GB
    )
    app = create_app(settings=settings, store=store, dispatcher=InProcessDispatcher(store))
    headers = bearer(store.create_api_key("alice", ["read", "submit"])[1])
    warm_meta_device()  # as a serving process does at its start (api/app.py)
    with TestClient(app) as client:
        real_forwards.clear()
        started = time.perf_counter()
        response = client.post("/v1/jobs", json={"model": model, **SPEC}, headers=headers)
        elapsed = time.perf_counter() - started
    detail = assert_problem(response, 422, "method")["detail"]
    assert "at least (from the architecture's counts)" in detail
    assert "0.25 GiB (SPECTRA_WORKER_MEMORY_GB)" in detail
    assert "method='lanczos'" in detail  # what would fit
    # The model loaded (weights read, shapes checked) and its codes sampled; nothing rendered.
    assert set(real_forwards) <= {"Mapping"}, real_forwards
    assert elapsed < 1.0, elapsed
    assert store.list_jobs(limit=10) == []


def test_spectra_run_refuses_a_large_job_within_seconds(
    pg_url: str,
    model: str,
    real_forwards: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SPECTRA_WORKER_MEMORY_GB", str(BUDGET_GB))
    monkeypatch.setenv("SPECTRA_MAX_LATENT_DIM", "8192")
    from services.config import get_settings

    get_settings.cache_clear()
    try:
        started = time.perf_counter()
        status = cli_main(
            ["run", "--model", model, "--space", "w+", "--dtype", "float64"]
            + ["--method", "jacobian", "--latents", "2", "--database", pg_url]
        )
        elapsed = time.perf_counter() - started
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr()
    assert status != 0
    assert "(SPECTRA_WORKER_MEMORY_GB)" in out.err + out.out
    assert "method='lanczos'" in out.err + out.out
    assert set(real_forwards) <= {"Mapping"}, real_forwards
    assert elapsed < 10.0, elapsed


def test_an_accepted_large_submission_renders_no_image_in_the_request(
    tmp_path: Path, pg_url: str, store: Store, model: str, real_forwards: list[str]
) -> None:
    """Lanczos fits where the exact route does not: the job is accepted, and the request that
    accepts it renders nothing either (eight images of a large generator at once can take
    more memory than the API has): the job records its image variation as not measured."""
    broker = PrivateRedis(tmp_path)  # the planning message goes to a Redis of this test's own
    broker.start()
    try:
        settings = make_settings(
            pg_url, extra_models=model, max_latent_dim=8192, broker_url=broker.url
        )
        app = create_app(settings=settings, store=store, dispatcher=CeleryDispatcher(settings))
        headers = bearer(store.create_api_key("alice", ["read", "submit"])[1])
        warm_meta_device()
        with TestClient(app) as client:
            real_forwards.clear()
            response = client.post(
                "/v1/jobs", json={"model": model, **SPEC, "method": "lanczos"}, headers=headers
            )
    finally:
        broker.stop()
    assert response.status_code == 202, response.text
    assert set(real_forwards) <= {"Mapping"}, real_forwards
    job = store.get_job(response.json()["id"])
    variation = job.resolved["generator"]["facts"]["image_variation"]
    assert variation["pixel_std"] is None and variation["degenerate"] is None
    assert "too large to render where jobs are planned" in variation["not_measured"]

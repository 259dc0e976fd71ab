"""Planning over HTTP and the command line: a dry run shows the plan and creates nothing; a
job that fits no worker is refused at submit with a 422 that says what to change; an
accepted job records its estimate, and a finished one its measurements beside it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.cli import main as cli_main
from services.dispatch import InProcessDispatcher
from services.store import Store
from tests.api.conftest import assert_problem, bearer, make_settings

WIDE = f"python:{Path(__file__).with_name('wide_generators.py')}:linear_wide"
# Below what the exact route needs for d = 4096 (H and eigh's copies, ~0.7 GiB, plus the
# runtime) and above what Lanczos needs.
BUDGET_GB = 0.6


@pytest.fixture
def client(pg_url: str, store: Store) -> Iterator[TestClient]:
    settings = make_settings(
        pg_url, extra_models=WIDE, max_latent_dim=8192, worker_memory_gb=BUDGET_GB
    )
    app = create_app(settings=settings, store=store, dispatcher=InProcessDispatcher(store))
    with TestClient(app) as test_client:
        yield test_client


def _nothing_created(store: Store) -> None:
    assert store.list_jobs(limit=10) == []
    assert store.list_latent_sets("alice", limit=10) == []


def test_a_job_that_fits_no_worker_is_refused_naming_what_to_change(
    client: TestClient, store: Store
) -> None:
    headers = bearer(store.create_api_key("alice", ["read", "submit"])[1])
    spec: dict[str, Any] = {"model": WIDE, "method": "jacobian", "latents": {"count": 2}}
    body = assert_problem(client.post("/v1/jobs", json=spec, headers=headers), 422, "method")
    detail = body["detail"]
    assert "SPECTRA_WORKER_MEMORY_GB" in detail and "0.60 GiB" in detail
    # The route that fits, with its size (top_k: the default above SPECTRA_FULL_EIGENVECTORS_MAX_DIM),
    # by the architecture's counts: refused before any probe.
    assert "method='lanczos' with top_k=100 (at least" in detail
    _nothing_created(store)
    # The same job by the advised route is accepted.
    spec.update(method="lanczos", top_k=100)
    response = client.post("/v1/jobs?dry_run=true", json=spec, headers=headers)
    assert response.status_code == 200, response.text
    plan = response.json()["plan"]
    assert plan["fits"] is True and plan["per_code"]["route"] == "lanczos"
    assert plan["per_code"]["peak_bytes"] <= BUDGET_GB * 1024**3


def test_a_dry_run_shows_the_plan_and_creates_nothing(client: TestClient, store: Store) -> None:
    headers = bearer(store.create_api_key("alice", ["read", "submit"])[1])
    spec = {"model": WIDE, "method": "lanczos", "top_k": 10, "latents": {"count": 3}}
    response = client.post("/v1/jobs?dry_run=true", json=spec, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["dry_run"] is True and body["n_latents"] == 3 and body["latent_dim"] == 4096
    assert body["chunks"] >= 1
    per_code = body["plan"]["per_code"]
    assert per_code["products"] > 10 and per_code["seconds"] > 0
    assert per_code["stored_bytes"] == 4096 * 10 * 4 + 16 * 4096  # vectors, values, code
    assert body["plan"]["total_stored_bytes"] == 3 * per_code["stored_bytes"]
    _nothing_created(store)


def test_spectra_plan_prints_the_plan(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    status = cli_main(
        [
            "plan",
            "--model",
            WIDE,
            "--method",
            "lanczos",
            "--top-k",
            "5",
            "--latents",
            "2",
            "--database",
            pg_url,
        ]
    )
    out = capsys.readouterr().out
    assert status == 0, out
    for row in (
        "products per code",
        "peak memory per code",
        "time per code",
        "stored per code",
        "cost profile",
    ):
        assert row in out
    with Store(pg_url) as store:
        assert store.list_jobs(limit=10) == []


def test_a_finished_job_shows_its_estimate_beside_its_measurement(
    client: TestClient, store: Store
) -> None:
    headers = bearer(store.create_api_key("alice", ["read", "submit"])[1])
    spec = {"model": WIDE, "method": "lanczos", "top_k": 5, "latents": {"count": 1}}
    submitted = client.post("/v1/jobs", json=spec, headers=headers)  # runs in-process
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    detail = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
    assert detail["status"] == "succeeded"
    assert "plan" not in detail["resolved"]  # the plan is not part of the hashed spec
    report = client.get(f"/v1/jobs/{job_id}/plan", headers=headers).json()
    assert report["estimate"]["per_code"]["route"] == "lanczos"
    assert report["estimate"]["profile"]["measured_at"]
    measured, estimate = report["measured"], report["estimate"]["per_code"]
    assert measured["codes"] == 1 and measured["seconds"] > 0 and measured["products"] > 5
    assert measured["peak_rss_bytes"] > 0
    assert report["measured_over_estimate"]["peak_bytes"] == pytest.approx(
        measured["peak_rss_bytes"] / estimate["peak_bytes"]
    )
    other = bearer(store.create_api_key("bob", ["read"])[1])
    assert_problem(client.get(f"/v1/jobs/{job_id}/plan", headers=other), 404)

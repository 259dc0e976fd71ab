"""The planner end to end with a real Celery worker: a submission of a model with no cost
profile is answered at once; the worker's planning task measures the profile, dispatches the
chunks, and the job runs; the next submission of the model is planned from the stored
profile in the request, its chunks created at once."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from services.dispatch import CeleryDispatcher
from services.store import JobRecord, Store
from tests.api.conftest import bearer, make_settings
from tests.pipeline.conftest import (  # noqa: F401  (module fixtures: workers on a private Redis)
    Cluster,
    cluster,
    module_store,
    private_redis,
)
from tests.support.waiting import wait_for

WIDE = f"python:{Path(__file__).with_name('wide_generators.py')}:linear_wide"
BUDGET_GB = 0.6

pytestmark = pytest.mark.slow


def _finished(store: Store, job_id: str, timeout_s: float = 300) -> JobRecord:
    def done() -> JobRecord | None:
        job = store.get_job(job_id)
        return job if job.status in ("succeeded", "failed", "cancelled", "refused") else None

    result = wait_for(done, timeout_s, f"job {job_id} to finish", poll_s=0.2)
    assert isinstance(result, JobRecord)
    return result


@pytest.mark.timed
def test_a_worker_plans_an_unprofiled_job_and_the_next_is_planned_at_once(
    cluster: Cluster,  # noqa: F811
    module_store: Store,  # noqa: F811
    module_pg_url: str,  # noqa: F811
    private_redis: Any,  # noqa: F811
) -> None:
    cluster.env["SPECTRA_WORKER_MEMORY_GB"] = str(BUDGET_GB)
    cluster.env["SPECTRA_WORKER_THREADS"] = "1"
    cluster.start("planner")
    settings = make_settings(
        module_pg_url,
        extra_models=WIDE,
        max_latent_dim=8192,
        worker_memory_gb=BUDGET_GB,
        worker_threads=1,
        broker_url=private_redis.url,
    )
    store = module_store
    app = create_app(settings=settings, store=store, dispatcher=CeleryDispatcher(settings))
    headers = bearer(store.create_api_key("alice", ["read", "submit"])[1])
    spec: dict[str, Any] = {"model": WIDE, "method": "lanczos", "top_k": 5}
    with TestClient(app) as client:
        first = client.post(
            "/v1/jobs", json={**spec, "latents": {"count": 1, "seed": 1}}, headers=headers
        )
        assert first.status_code == 202, first.text
        job = _finished(store, first.json()["id"])
        assert job.status == "succeeded", job.error
        assert job.estimate is not None and job.estimate["probed"] is True
        profile = job.estimate["profile"]

        started = time.perf_counter()
        second = client.post(
            "/v1/jobs", json={**spec, "latents": {"count": 1, "seed": 2}}, headers=headers
        )
        elapsed = time.perf_counter() - started
    assert second.status_code == 202, second.text
    assert elapsed < 1.0, elapsed
    planned = store.get_job(second.json()["id"])
    assert store.list_chunks(planned.id)  # planned in the request, from the stored profile
    assert planned.estimate is not None and planned.estimate["profile"] == profile
    assert _finished(store, planned.id).status == "succeeded"

"""What the HTTP face says when the store is full or read-only, and resuming a finished job."""

from __future__ import annotations

import psycopg
from fastapi.testclient import TestClient

from api.app import create_app
from services.config import Settings
from services.store import Store
from tests.api.conftest import MODEL, RecordingDispatcher, assert_problem, bearer

JOB = {"model": MODEL, "latents": {"count": 4}, "top_k": 3, "chunk_size": 2}


def _make_read_only(pg_url: str) -> None:
    database = pg_url.rsplit("/", 1)[1]
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')


def test_a_store_that_cannot_write_says_so_on_writes_and_in_readiness(
    store: Store, settings: Settings, pg_url: str
) -> None:
    """Writes answer 503 "store full or read-only" (not "cannot be reached"), reads go on,
    and /readyz is not ready and says why."""
    headers = bearer(store.create_api_key("alice", ["read", "submit"])[1])
    _make_read_only(pg_url)
    with Store(pg_url) as read_only:
        dispatcher = RecordingDispatcher()  # nothing is dispatched: nothing can be written
        app = create_app(settings=settings, store=read_only, dispatcher=dispatcher)
        with TestClient(app) as client:
            refused = client.post("/v1/jobs", json=JOB, headers=headers)
            listed = client.get("/v1/jobs", headers=headers)
            ready = client.get("/readyz")
    problem = assert_problem(refused, 503)
    assert problem["type"].endswith("store-full") and "full or read-only" in problem["detail"]
    assert refused.headers["Retry-After"]
    assert listed.status_code == 200 and listed.json()["items"] == []
    assert ready.status_code == 503
    assert "full or read-only" in ready.json()["checks"]["database"]


def test_a_finished_job_is_resumed_by_post_retry(app, store: Store) -> None:  # type: ignore[no-untyped-def]
    headers = bearer(store.create_api_key("alice", ["read", "submit"])[1])
    dispatcher = RecordingDispatcher()
    app.state.dispatcher = dispatcher
    with TestClient(app) as client:
        job = client.post("/v1/jobs", json=JOB, headers=headers).json()
        running = client.post(f"/v1/jobs/{job['id']}/retry", headers=headers)
        client.post(f"/v1/jobs/{job['id']}/cancel", headers=headers)
        resumed = client.post(f"/v1/jobs/{job['id']}/retry", headers=headers)
        reader = bearer(store.create_api_key("bob", ["read", "submit"])[1])
        foreign = client.post(f"/v1/jobs/{job['id']}/retry", headers=reader)
    assert_problem(running, 409)
    assert "only a finished job" in running.json()["detail"]
    assert resumed.status_code == 200 and resumed.json()["status"] == "queued"
    chunks = store.list_chunks(job["id"])
    assert {c.status for c in chunks} == {"queued"}
    assert set(dispatcher.dispatched[-2:]) == {c.id for c in chunks}  # the fresh ids, sent
    assert_problem(foreign, 404)


def test_readiness_checks_both_read_paths_and_that_the_store_can_write(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"database": "ok", "database reads": "ok", "broker": "ok"}

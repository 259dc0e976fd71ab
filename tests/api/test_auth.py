"""API keys: no key -> 401, wrong scope -> 403, another owner's job -> 404, admin sees all."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.store import Store
from tests.api.conftest import MODEL, RecordingDispatcher, assert_problem, bearer

SPEC = {"model": MODEL, "method": "jacobian", "latents": {"count": 2, "seed": 3}, "top_k": 5}


def test_no_key_or_a_bad_key_is_401_with_a_bearer_challenge(client: TestClient) -> None:
    for headers in ({}, bearer("not-a-real-token"), {"Authorization": "Basic dXNlcjpwdw=="}):
        response = client.get("/v1/jobs", headers=headers)
        body = assert_problem(response, 401, field="Authorization")
        assert response.headers["www-authenticate"] == "Bearer"
        assert "spectra keys create" in body["detail"]


def test_a_key_without_the_scope_is_403_and_creates_nothing(
    client: TestClient, store: Store, token: Callable[..., str]
) -> None:
    reader = token("alice", "read")
    response = client.post("/v1/jobs", json=SPEC, headers=bearer(reader))
    body = assert_problem(response, 403, field="Authorization")
    assert "'submit'" in body["detail"]
    assert store.list_jobs() == []
    submitter = token("alice", "submit")
    assert_problem(client.get("/v1/jobs", headers=bearer(submitter)), 403)


def test_another_owners_job_is_404_everywhere_and_admin_sees_it(
    app: FastAPI,
    store: Store,
    token: Callable[..., str],
) -> None:
    app.state.dispatcher = RecordingDispatcher()  # jobs stay queued: nothing to compute
    alice, bob = token("alice", "read,submit"), token("bob", "read,submit")
    admin = token("root", "admin")
    with TestClient(app) as client:
        job = client.post("/v1/jobs", json=SPEC, headers=bearer(alice)).json()
        job_id = job["id"]
        for method, path in (
            ("GET", f"/v1/jobs/{job_id}"),
            ("POST", f"/v1/jobs/{job_id}/cancel"),
            ("GET", f"/v1/jobs/{job_id}/export.npz"),
        ):
            assert_problem(client.request(method, path, headers=bearer(bob)), 404)
        assert client.get("/v1/jobs", headers=bearer(bob)).json()["items"] == []
        # Bob's cancel attempt changed nothing.
        assert store.get_job(job_id).status == "queued"
        # The owner and an admin key see it.
        assert client.get(f"/v1/jobs/{job_id}", headers=bearer(alice)).json()["owner"] == "alice"
        listed = client.get("/v1/jobs", headers=bearer(admin)).json()["items"]
        assert [j["id"] for j in listed] == [job_id]
        # Latent sets follow the same rule.
        set_id = store.get_job(job_id).latent_set_id
        assert client.get(f"/v1/latent-sets/{set_id}", headers=bearer(alice)).status_code == 200
        assert_problem(client.get(f"/v1/latent-sets/{set_id}", headers=bearer(bob)), 404)


def test_health_and_metrics_need_no_key(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "database reads": "ok", "broker": "ok"}
    client.get("/v1/jobs")  # a 401, counted by route template
    metrics = client.get("/metrics").text
    assert 'spectra_http_requests_total{method="GET",route="/v1/jobs",status="401"} 1.0' in metrics

"""The reads clients poll (job status, spectra pages, one spectrum): what they answer, to whom,
and that a running job's status is read fresh on every poll."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from services.store import JobRecord, Store
from tests.api.conftest import assert_problem, bearer
from tests.store.helpers import make_job, save


def _running_job(store: Store, owner: str, n_latents: int) -> JobRecord:
    job = make_job(store, owner=owner, spec_hash=owner, n_latents=n_latents, chunk_size=n_latents)
    [chunk] = store.list_chunks(job.id)
    store.claim_chunk(chunk.id, "worker-1", max_attempts=3)
    return job


def test_status_of_a_running_job_is_fresh_on_every_poll(
    client: TestClient, store: Store, token: Callable[..., str]
) -> None:
    headers = bearer(token("alice", "read"))
    job = _running_job(store, "alice", n_latents=4)
    save(store, job.id, 0)
    store.record_latent_failure(job.id, 3, "NaN in the generator output")
    response = client.get(f"/v1/jobs/{job.id}", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    status = response.json()
    assert (status["status"], status["n_done"], status["n_failed"]) == ("running", 1, 1)
    progress = status["progress"]
    assert (progress["planned"], progress["done"], progress["failed"]) == (4, 1, 1)
    assert progress["fraction"] == 0.5 and progress["rate_per_s"] > 0 and progress["eta_s"] > 0
    assert status["timings"]["started_at"] and status["timings"]["finished_at"] is None
    assert status["failures"] == [{"latent_index": 3, "reason": "NaN in the generator output"}]
    assert status["links"]["self"] == f"/v1/jobs/{job.id}"

    save(store, job.id, 1)  # a worker stores one more: the next poll sees it
    again = client.get(f"/v1/jobs/{job.id}", headers=headers).json()
    assert (again["n_done"], again["progress"]["done"], again["progress"]["fraction"]) == (
        2,
        2,
        0.75,
    )


def test_another_owners_spectra_are_404_and_unlisted_and_admin_sees_them(
    client: TestClient, store: Store, token: Callable[..., str]
) -> None:
    alice, bob, admin = token("alice", "read"), token("bob", "read"), token("root", "admin")
    job = _running_job(store, "alice", n_latents=3)
    for index in range(3):
        save(store, job.id, index, seed=index)
    page = {"job_id": job.id, "limit": 2}
    for key in (alice, admin):
        listed = client.get("/v1/spectra", params=page, headers=bearer(key)).json()
        assert [s["latent_index"] for s in listed["items"]] == [0, 1]
        assert listed["page"] == {"limit": 2, "offset": 0, "count": 2, "next_offset": 2}
        assert set(listed["items"][0]) >= {"id", "top_eigenvalue", "created_at", "links"}
        assert "eigenvalues" not in listed["items"][0]  # a listing carries no arrays
        spectrum_id = listed["items"][1]["id"]
        detail = client.get(f"/v1/spectra/{spectrum_id}", headers=bearer(key))
        assert detail.status_code == 200 and detail.headers["content-type"] == "application/json"
        assert detail.json()["latent_index"] == 1 and len(detail.json()["eigenvalues"]) == 8
    assert client.get("/v1/spectra", params=page, headers=bearer(bob)).json()["items"] == []
    for path in (f"/v1/spectra/{spectrum_id}", f"/v1/spectra/{spectrum_id}/eigenvectors"):
        body = assert_problem(client.get(path, headers=bearer(bob)), 404)
        assert "visible to this API key" in body["detail"]

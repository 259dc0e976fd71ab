"""Jobs through the real app and a real PostgreSQL store, chunks run in-process:
submit (JSON and .npy), follow, query spectra and eigenvectors, export/import .npz, cancel,
Idempotency-Key, pagination."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from services.config import Settings
from services.store import Store
from tests.api.conftest import (
    LATENT_DIM,
    MODEL,
    RecordingDispatcher,
    assert_problem,
    bearer,
    latent_codes_of,
    npy_bytes,
)

TOP_K = 6


@pytest.fixture
def headers(token: Callable[..., str]) -> dict[str, str]:
    return bearer(token("alice", "read,submit"))


def test_submit_follow_query_export_import(
    client: TestClient, store: Store, headers: dict[str, str]
) -> None:
    spec = {
        "model": MODEL,
        "distance": "mse",
        "method": "jacobian",
        "latents": {"count": 3, "seed": 5},
        "top_k": TOP_K,
        "dtype": "float64",
    }
    response = client.post("/v1/jobs", json=spec, headers=headers)
    assert response.status_code == 202, response.text
    submitted = response.json()
    job_id = submitted["id"]
    assert submitted["created"] is True
    assert response.headers["location"] == f"/v1/jobs/{job_id}"

    job = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
    assert job["status"] == "succeeded", job
    assert job["progress"] == {**job["progress"], "planned": 3, "done": 3, "failed": 0}
    assert job["progress"]["fraction"] == 1.0 and job["progress"]["eta_s"] == 0.0
    assert job["failures"] == [] and job["timings"]["finished_at"] is not None

    listed = client.get("/v1/spectra", params={"job_id": job_id}, headers=headers).json()
    assert [s["latent_index"] for s in listed["items"]] == [0, 1, 2]
    first = listed["items"][0]
    detail = client.get(f"/v1/spectra/{first['id']}", headers=headers).json()
    eigenvalues = np.array(detail["eigenvalues"])
    assert eigenvalues.shape == (TOP_K,) and np.all(np.diff(eigenvalues) <= 0)
    assert detail["top_eigenvalue"] == pytest.approx(eigenvalues[0])

    vectors = client.get(
        f"/v1/spectra/{first['id']}/eigenvectors", params={"k": 4}, headers=headers
    ).json()
    # JSON and .npy share one orientation: (d, k), eigenvectors as columns.
    json_columns = np.array(vectors["vectors"])
    assert vectors["layout"] == "columns" and vectors["shape"] == [LATENT_DIM, 4]
    assert json_columns.shape == (LATENT_DIM, 4)
    np.testing.assert_allclose(json_columns.T @ json_columns, np.eye(4), atol=1e-8)  # orthonormal
    raw = client.get(
        f"/v1/spectra/{first['id']}/eigenvectors", params={"k": 4, "format": "npy"}, headers=headers
    )
    columns = np.load(io.BytesIO(raw.content), allow_pickle=False)
    np.testing.assert_array_equal(columns, json_columns)
    np.testing.assert_array_equal(columns, store.eigenvectors(first["id"], k=4))
    too_many = client.get(
        f"/v1/spectra/{first['id']}/eigenvectors", params={"k": TOP_K + 1}, headers=headers
    )
    assert too_many.status_code == 422 and f"only its top {TOP_K}" in too_many.json()["detail"]

    # Ordering and pagination: two pages of the same query cover it once.
    by_top = client.get(
        "/v1/spectra",
        params={"job_id": job_id, "order_by": "-top_eigenvalue", "limit": 2},
        headers=headers,
    ).json()
    assert by_top["page"]["next_offset"] == 2
    rest = client.get(
        "/v1/spectra",
        params={"job_id": job_id, "order_by": "-top_eigenvalue", "limit": 2, "offset": 2},
        headers=headers,
    ).json()
    tops = [s["top_eigenvalue"] for s in by_top["items"] + rest["items"]]
    assert tops == sorted(tops, reverse=True) and len(tops) == 3

    # Export: the published layout, ascending, eigenvectors as columns in the same order.
    exported = client.get(f"/v1/jobs/{job_id}/export.npz", headers=headers)
    assert exported.status_code == 200
    archive = np.load(io.BytesIO(exported.content), allow_pickle=False)
    eva, evc, feat = archive["eva"], archive["evc"], archive["feat"]
    assert (
        eva.shape == (3, TOP_K)
        and evc.shape == (3, LATENT_DIM, TOP_K)
        and feat.shape == (3, LATENT_DIM)
    )
    np.testing.assert_array_equal(eva[0], eigenvalues[::-1])
    np.testing.assert_array_equal(evc[0][:, ::-1][:, :4], json_columns)  # the same orientation
    codes = latent_codes_of(store, job_id)
    np.testing.assert_array_equal(feat, codes)
    import json

    meta = json.loads(str(archive["meta"]))
    assert (meta["model"], meta["distance"], meta["method"], meta["seed"]) == (
        MODEL,
        "mse",
        "jacobian",
        5,
    )
    assert meta["spec"]["latents"] == {"count": 3, "seed": 5} and "numpy" in meta["versions"]

    # Import: a finished job with the same numbers, joining the (model, distance, method) pool.
    files = {"file": ("job.npz", exported.content, "application/octet-stream")}
    imported = client.post("/v1/jobs/import", files=files, headers=headers)
    assert imported.status_code == 201, imported.text
    new_id = imported.json()["id"]
    assert new_id != job_id and imported.json()["status"] == "succeeded"
    again = client.post("/v1/jobs/import", files=files, headers=headers)
    assert again.status_code == 200 and again.json()["id"] == new_id  # same file, same job
    copy = client.get("/v1/spectra", params={"job_id": new_id}, headers=headers).json()["items"]
    copied = client.get(f"/v1/spectra/{copy[0]['id']}", headers=headers).json()
    np.testing.assert_array_equal(copied["eigenvalues"], eigenvalues)
    pool = client.get(
        "/v1/spectra",
        params={"model": MODEL, "distance": "mse", "method": "jacobian"},
        headers=headers,
    ).json()
    assert len(pool["items"]) == 6


def test_upload_idempotency_and_listing(
    client: TestClient, store: Store, headers: dict[str, str]
) -> None:
    codes = np.random.default_rng(0).standard_normal((2, LATENT_DIM))
    files = {"file": ("codes.npy", npy_bytes(codes), "application/octet-stream")}
    spec = '{"model": "dcgan-faces", "top_k": 3, "method": "jacobian"}'
    response = client.post("/v1/jobs/upload", files=files, data={"spec": spec}, headers=headers)
    assert response.status_code == 202, response.text
    job = response.json()
    stored = latent_codes_of(store, job["id"])
    np.testing.assert_array_equal(stored, codes)  # bit for bit

    # The same request with the same key (a client retry) is the same job, not a new one.
    body = {"model": MODEL, "latents": {"count": 1, "seed": 9}, "top_k": 3}
    keyed = {**headers, "Idempotency-Key": "retry-1"}
    first = client.post("/v1/jobs", json=body, headers=keyed)
    second = client.post("/v1/jobs", json=body, headers=keyed)
    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json()["id"] == second.json()["id"] and second.json()["created"] is False
    other = client.post("/v1/jobs", json={**body, "top_k": 4}, headers=keyed)
    assert_problem(other, 422, field="Idempotency-Key")
    assert len(store.list_jobs()) == 2

    page = client.get("/v1/jobs", params={"limit": 1}, headers=headers).json()
    assert len(page["items"]) == 1 and page["page"]["next_offset"] == 1
    done = client.get(
        "/v1/jobs", params={"status": "succeeded", "model": MODEL}, headers=headers
    ).json()
    assert {j["id"] for j in done["items"]} == {job["id"], first.json()["id"]}
    assert client.get("/v1/jobs", params={"model": "other"}, headers=headers).json()["items"] == []


def test_an_idempotency_key_holds_across_api_processes(
    settings: Settings, pg_url: str, headers: dict[str, str]
) -> None:
    """Two apps, each with its own Store on the database (as two `spectra serve` processes):
    a retry that lands on the other one gets the same job, and the key with another body is
    refused there too. Different owners' equal keys are independent."""
    body = {"model": MODEL, "latents": {"count": 1, "seed": 11}, "top_k": 3}
    keyed = {**headers, "Idempotency-Key": "across-1"}
    with Store(pg_url) as first_store, Store(pg_url) as second_store:
        first_app = create_app(
            settings=settings, store=first_store, dispatcher=RecordingDispatcher()
        )
        second_app = create_app(
            settings=settings, store=second_store, dispatcher=RecordingDispatcher()
        )
        with TestClient(first_app) as first, TestClient(second_app) as second:
            created = first.post("/v1/jobs", json=body, headers=keyed)
            retried = second.post("/v1/jobs", json=body, headers=keyed)
            changed = second.post("/v1/jobs", json={**body, "top_k": 4}, headers=keyed)
            bob = {
                **bearer(second_store.create_api_key("bob", ["read", "submit"])[1]),
                "Idempotency-Key": "across-1",
            }
            bobs = second.post("/v1/jobs", json={**body, "top_k": 4}, headers=bob)
        assert created.status_code == 202 and retried.status_code == 200
        assert retried.json()["id"] == created.json()["id"]
        assert_problem(changed, 422, field="Idempotency-Key")
        assert bobs.status_code == 202 and bobs.json()["id"] != created.json()["id"]
        assert len(first_store.list_jobs()) == 2  # nothing created by the refused request


def test_cancel_a_queued_job(app: FastAPI, store: Store, headers: dict[str, str]) -> None:
    dispatcher = RecordingDispatcher()
    app.state.dispatcher = dispatcher
    with TestClient(app) as client:
        body = {"model": MODEL, "latents": {"count": 4}, "top_k": 3, "chunk_size": 2}
        job = client.post("/v1/jobs", json=body, headers=headers).json()
        assert job["status"] == "queued" and len(dispatcher.dispatched) == 2
        cancelled = client.post(f"/v1/jobs/{job['id']}/cancel", headers=headers)
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert {c.status for c in store.list_chunks(job["id"])} == {"cancelled"}
        # Cancelling it again is refused: the job had already finished, nothing changes.
        before = store.get_job(job["id"])
        again = client.post(f"/v1/jobs/{job['id']}/cancel", headers=headers)
        assert_problem(again, 409)
        assert again.json()["title"] == "Job already finished"
        assert (
            "already cancelled" in again.json()["detail"]
            and "nothing was changed" in again.json()["detail"]
        )
        assert store.get_job(job["id"]) == before
        # Nothing to export from a job that never ran.
        assert_problem(client.get(f"/v1/jobs/{job['id']}/export.npz", headers=headers), 409)


def test_codes_given_as_values_come_back_as_a_link(
    app: FastAPI, store: Store, headers: dict[str, str]
) -> None:
    """The submit answer, the job and the job list name explicit (or uploaded) codes by their
    latent set's .npy link and shape, never by echoing the values."""
    app.state.dispatcher = RecordingDispatcher()
    codes = np.random.default_rng(3).standard_normal((2, LATENT_DIM))
    with TestClient(app) as client:
        sent = client.post(
            "/v1/jobs",
            json={"model": MODEL, "latents": {"values": codes.tolist()}, "top_k": 3},
            headers=headers,
        )
        uploaded = client.post(
            "/v1/jobs/upload",
            files={"file": ("c.npy", npy_bytes(codes[:1]))},
            data={"spec": json.dumps({"model": MODEL, "top_k": 2})},
            headers=headers,
        )
        for response, n in ((sent, 2), (uploaded, 1)):
            assert response.status_code == 202, response.text
            job_id = response.json()["id"]
            set_id = store.get_job(job_id).latent_set_id
            link = {"codes": f"/v1/latent-sets/{set_id}/codes.npy", "shape": [n, LATENT_DIM]}
            listed = client.get("/v1/jobs", headers=headers).json()["items"]
            for body in (
                response.json(),
                client.get(f"/v1/jobs/{job_id}", headers=headers).json(),
                next(j for j in listed if j["id"] == job_id),
            ):
                assert body["spec"]["latents"] == link and body["latent_set_id"] == set_id
            download = client.get(link["codes"], headers=headers)
            assert download.status_code == 200
            np.testing.assert_array_equal(np.load(io.BytesIO(download.content)), codes[:n])
        assert "values" in store.get_job(sent.json()["id"]).spec["latents"]  # stored as sent

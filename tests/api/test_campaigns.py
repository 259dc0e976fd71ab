"""Campaigns over HTTP: submitted, followed, compared and cancelled as one; members are jobs."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from services.store import Store
from tests.api.conftest import MODEL, assert_problem, bearer

SPEC = {
    "name": "faces-small",
    "tags": ["test"],
    "models": [MODEL],
    "distances": ["mse"],
    "methods": ["jacobian"],
    "directions": ["sefa"],
    "latents": {"count": 2, "seed": 1},
    "top_k": 6,
}


def test_a_campaign_is_submitted_followed_and_compared_as_one(
    client: TestClient, store: Store, token: Callable[..., str]
) -> None:
    headers = bearer(token("alice", "read,submit"))
    response = client.post("/v1/campaigns", json=SPEC, headers=headers)
    assert response.status_code == 202, response.text
    campaign = response.json()
    assert [m["member"] for m in campaign["members"]] == [f"{MODEL}/mse/jacobian", f"{MODEL}/sefa"]
    assert campaign["status"] == "succeeded" and campaign["progress"]["done"] == 3
    for member in campaign["members"]:  # every member an ordinary job
        assert store.get_job(member["job_id"]).status == "succeeded"
    again = client.post("/v1/campaigns", json=SPEC, headers=headers)
    assert again.status_code == 200 and again.json()["id"] == campaign["id"]
    assert_problem(client.post("/v1/campaigns", json={**SPEC, "top_k": 5}, headers=headers), 409)

    assert (
        client.get(f"/v1/campaigns/{campaign['id']}", headers=headers).json()["status"]
        == "succeeded"
    )
    listed = client.get("/v1/campaigns", params={"tag": "test"}, headers=headers).json()["items"]
    assert [c["id"] for c in listed] == [campaign["id"]]

    result = client.post(f"/v1/campaigns/{campaign['id']}/compare", json={"k": 4}, headers=headers)
    assert result.status_code == 200, result.text
    body = result.json()
    assert [s["label"] for s in body["selections"]] == [f"{MODEL}/mse/jacobian", f"{MODEL}/sefa"]
    (pair,) = body["alignments"]
    assert pair["kind"] == "sefa-vs-hessian" and pair["a"] == f"{MODEL}/sefa"
    assert pair["baseline"]["abs_cosine"]["method"] == "exact"

    # Figures of the members, in the formats a paper takes.
    hessian_job, sefa_job = (m["job_id"] for m in campaign["members"])
    for path, params, magic in (
        (
            "/v1/plots/spectrum",
            {"selection": [hessian_job, f"{MODEL}::sefa"], "format": "svg"},
            b"<?xml",
        ),
        ("/v1/plots/heatmap", {"selection": hessian_job, "format": "pdf"}, b"%PDF"),
        ("/v1/plots/homogeneity", {"selection": [hessian_job], "scale": "linear"}, b"\x89PNG"),
    ):
        figure = client.get(path, params=params, headers=headers)
        assert figure.status_code == 200, figure.text
        assert figure.content.startswith(magic)
    sefa_spectrum = client.get("/v1/spectra", params={"job_id": sefa_job}, headers=headers).json()
    montage = client.get(
        "/v1/plots/montage",
        headers=headers,
        params={
            "spectrum_id": sefa_spectrum["items"][0]["id"],
            "format": "svg",
            "axes": 2,
            "steps": 3,
        },
    )
    assert (
        montage.status_code == 200
        and b"code sampled from dcgan-faces with seed 0" in montage.content
    )

    cancelled = client.post(f"/v1/campaigns/{campaign['id']}/cancel", headers=headers).json()
    assert cancelled["status"] == "succeeded"  # finished members keep their results

    other = bearer(token("bob", "read,submit"))
    assert_problem(client.get(f"/v1/campaigns/{campaign['id']}", headers=other), 404)


def test_a_bad_member_is_refused_naming_it_and_nothing_is_submitted(
    client: TestClient, store: Store, token: Callable[..., str]
) -> None:
    headers = bearer(token("alice", "read,submit"))
    bad = {**SPEC, "name": "bad", "distances": ["mse", "nope"]}
    problem = assert_problem(client.post("/v1/campaigns", json=bad, headers=headers), 422)
    assert problem["member"] == f"{MODEL}/nope/jacobian"
    assert store.list_jobs(owner="alice") == []
    assert client.get("/v1/campaigns", headers=headers).json()["items"] == []
    unserved = {**SPEC, "name": "unserved", "models": ["python:/tmp/x.py:build"]}
    assert_problem(client.post("/v1/campaigns", json=unserved, headers=headers), 422)


def test_models_lists_the_operators_extra_models(
    pg_url: str, store: Store, token: Callable[..., str]
) -> None:
    from pathlib import Path

    from api.app import create_app
    from services.dispatch import InProcessDispatcher
    from tests.api.conftest import make_settings

    extra = f"python:{Path(__file__).parents[1] / 'geometry' / 'factories.py'}:linear"
    settings = make_settings(pg_url, extra_models=extra)
    app = create_app(settings=settings, store=store, dispatcher=InProcessDispatcher(store))
    with TestClient(app) as client:
        listed = client.get("/v1/models", headers=bearer(token("alice", "read"))).json()
    (entry,) = [m for m in listed if m["name"] == extra]
    assert "SPECTRA_EXTRA_MODELS" in entry["description"] and entry["latent_dim"] is None


def test_a_misspelt_filter_is_a_422_not_a_wider_selection(
    client: TestClient, token: Callable[..., str]
) -> None:
    headers = bearer(token("alice", "read"))
    problem = assert_problem(
        client.get("/v1/spectra", params={"modle": MODEL}, headers=headers), 422, field="modle"
    )
    assert "unknown query parameter 'modle'" in problem["detail"]
    assert "job_id" in problem["detail"] and "model" in problem["detail"]  # what it takes
    assert_problem(client.get("/v1/jobs", params={"stauts": "running"}, headers=headers), 422)
    assert client.get("/v1/spectra", params={"model": MODEL}, headers=headers).status_code == 200

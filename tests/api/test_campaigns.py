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

    # The campaign's comparison is ONE stored comparison: 202 and its link, computed by the
    # worker (in process here), the same request again is the same comparison.
    url = f"/v1/campaigns/{campaign['id']}/compare"
    submitted = client.post(url, json={"k": 4}, headers=headers)
    assert submitted.status_code == 202, submitted.text
    comparison_id = submitted.json()["id"]
    assert submitted.headers["Location"] == f"/v1/comparisons/{comparison_id}"
    assert submitted.json()["skipped"] == []
    again = client.post(url, json={"k": 4}, headers=headers)
    assert again.status_code == 200 and again.json()["id"] == comparison_id
    [listed_comparison] = client.get("/v1/comparisons", headers=headers).json()["items"]
    assert listed_comparison["id"] == comparison_id
    stored = client.get(f"/v1/comparisons/{comparison_id}", headers=headers).json()
    assert stored["status"] == "succeeded", stored
    document = stored["document"]
    assert [m["label"] for m in document["members"]] == [f"{MODEL}/mse/jacobian", f"{MODEL}/sefa"]
    assert stored["n_spectra"] == [2, 1]
    (pair,) = document["alignments"]
    assert pair["kind"] == "sefa-vs-hessian" and pair["a"] == f"{MODEL}/sefa"
    assert pair["baselines"]["same_rank_abs_cosine"]["method"] == "exact"
    assert "spectrum.png" in stored["links"]["figures"]
    # Another owner cannot reach the campaign, so cannot compare it either.
    assert_problem(
        client.post(url, json={"k": 4}, headers=bearer(token("bob", "read,submit"))), 404
    )

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

    # Nothing left to cancel: a 409 as for a finished job, and the members keep their results.
    refused = client.post(f"/v1/campaigns/{campaign['id']}/cancel", headers=headers)
    assert "already ended (succeeded)" in assert_problem(refused, 409)["detail"]
    assert client.get(f"/v1/campaigns/{campaign['id']}", headers=headers).json()["status"] == (
        "succeeded"
    )

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

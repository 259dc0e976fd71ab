"""Ids by unique prefix on every route that takes one (issue 25): the 8-character ids the tables
print work; an ambiguous prefix is a 422 listing the matches; a malformed id a 422 saying what an
id looks like; another owner's record is never found or listed by prefix."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from services.store import AmbiguousIdError, MalformedIdError, NotFoundError, Store
from tests.api.conftest import MODEL, assert_problem, bearer

SPEC = {"model": MODEL, "method": "jacobian", "distance": "mse", "latents": {"count": 1, "seed": 3}}


def _job_named(store: Store, pg_url: str, owner: str, job_id: str) -> str:
    """A job (no chunks) under a chosen id, so that prefixes collide on purpose."""
    job, _ = store.create_job(owner, SPEC, SPEC, f"hash-{job_id}", None, 0, [])
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE jobs SET id = :new WHERE id = :old"), {"new": job_id, "old": job.id}
        )
    engine.dispose()
    return job_id


@pytest.fixture
def alice(token: Callable[..., str]) -> dict[str, str]:
    return bearer(token("alice"))


def _submitted_job(client: TestClient, headers: dict[str, str], seed: int) -> str:
    spec = {**SPEC, "latents": {"count": 1, "seed": seed}}
    response = client.post("/v1/jobs", json=spec, headers=headers)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def test_a_printed_prefix_names_the_job_on_every_job_route(
    client: TestClient, alice: dict[str, str]
) -> None:
    job_id = _submitted_job(client, alice, 1)
    for path in (f"/v1/jobs/{job_id[:8]}", f"/v1/jobs/{job_id[:8].upper()}"):
        response = client.get(path, headers=alice)
        assert response.status_code == 200, response.text
        assert response.json()["id"] == job_id
    spectra = client.get(f"/v1/spectra?job_id={job_id[:8]}", headers=alice)
    assert spectra.status_code == 200, spectra.text
    spectrum_id = spectra.json()["items"][0]["id"]
    assert all(item["job_id"] == job_id for item in spectra.json()["items"])
    spectrum = client.get(f"/v1/spectra/{spectrum_id[:8]}", headers=alice)
    assert spectrum.status_code == 200, spectrum.text
    assert spectrum.json()["id"] == spectrum_id
    vectors = client.get(f"/v1/spectra/{spectrum_id[:6]}/eigenvectors?k=1", headers=alice)
    assert vectors.status_code == 200, vectors.text
    assert vectors.json()["spectrum_id"] == spectrum_id
    export = client.get(f"/v1/jobs/{job_id[:8]}/export.npz", headers=alice)
    assert export.status_code == 200, export.text
    assert f"{job_id}.npz" in export.headers["content-disposition"]


def test_a_malformed_id_says_what_an_id_looks_like(
    client: TestClient, alice: dict[str, str]
) -> None:
    for bad in ("not-a-uuid", "ab", "0" * 37, "abc%25"):
        body = assert_problem(client.get(f"/v1/jobs/{bad}", headers=alice), 422, "job_id")
        assert "UUID" in body["detail"] and "prefix" in body["detail"], body
        assert "pattern" not in body["detail"] and "errors" not in body, body
    body = assert_problem(client.get("/v1/spectra?job_id=zz-top", headers=alice), 422, "job_id")
    assert "prefix" in body["detail"]


def test_an_ambiguous_prefix_lists_its_matches_and_owners_stay_apart(
    store: Store, pg_url: str, client: TestClient, token: Callable[..., str]
) -> None:
    alice, bob = bearer(token("alice")), bearer(token("bob"))
    ids = {
        "alice-1": "abcd1234-0000-4000-8000-000000000001",
        "alice-2": "abcd1234-0000-4000-8000-200000000002",
        "bob": "abcd9999-0000-4000-8000-000000000003",
    }
    for name, job_id in ids.items():
        _job_named(store, pg_url, name.split("-")[0], job_id)
    body = assert_problem(client.get("/v1/jobs/abcd1234", headers=alice), 422, "job_id")
    assert body["matches"] == [ids["alice-1"], ids["alice-2"]], body
    # A longer prefix is unique.
    assert (
        client.get(f"/v1/jobs/{ids['alice-2'][:25]}", headers=alice).json()["id"] == ids["alice-2"]
    )
    # "abcd" matches bob's job too, but alice never sees it (listed nor counted) ...
    body = assert_problem(client.get("/v1/jobs/abcd", headers=alice), 422, "job_id")
    assert ids["bob"] not in str(body)
    # ... and bob's own prefix is not found for her, while bob gets his job.
    assert_problem(client.get("/v1/jobs/abcd9", headers=alice), 404)
    assert client.get("/v1/jobs/abcd9", headers=bob).json()["id"] == ids["bob"]


def test_store_resolve_id(store: Store, pg_url: str) -> None:
    job_id = _job_named(store, pg_url, "alice", "0123abcd-0000-4000-8000-00000000000a")
    assert store.resolve_id("job", "0123ABCD", owner="alice") == job_id
    assert store.resolve_id("job", "0123abcd", owner=None) == job_id
    with pytest.raises(NotFoundError):
        store.resolve_id("job", "0123abcd", owner="bob")
    with pytest.raises(MalformedIdError):
        store.resolve_id("job", "01%", owner="alice")
    _job_named(store, pg_url, "alice", job_id[:-1] + "b")
    with pytest.raises(AmbiguousIdError) as error:
        store.resolve_id("job", "0123", owner="alice")
    assert error.value.matches == [job_id, job_id[:-1] + "b"]


def test_repeated_id_parameters_take_prefixes_too(
    store: Store, pg_url: str, client: TestClient, alice: dict[str, str]
) -> None:
    first = _job_named(store, pg_url, "alice", "fedc0000-0000-4000-8000-000000000001")
    _job_named(store, pg_url, "alice", "fedc1111-0000-4000-8000-000000000002")
    body = assert_problem(client.get("/v1/optimisations/report?job=zz", headers=alice), 422, "job")
    assert body["type"].endswith("/invalid-id")
    body = assert_problem(
        client.get("/v1/optimisations/report?job=fedc", headers=alice), 422, "job"
    )
    assert body["type"].endswith("/ambiguous-id") and len(body["matches"]) == 2
    # A unique prefix reaches the report, which speaks of the full id.
    response = client.get("/v1/optimisations/report?job=fedc0", headers=alice)
    assert response.status_code == 422 and first in response.text, response.text


def test_figure_routes_take_spectrum_prefixes(client: TestClient, alice: dict[str, str]) -> None:
    job_id = _submitted_job(client, alice, 2)
    spectrum_id = client.get(f"/v1/spectra?job_id={job_id}", headers=alice).json()["items"][0]["id"]
    for path in (
        f"/v1/plots/montage.png?spectrum_id={spectrum_id[:8]}&axes=1&steps=3",
        f"/v1/plots/montage?spectrum_id={spectrum_id[:8]}&code_from={spectrum_id[:8]}&axes=1&steps=3",
    ):
        response = client.get(path, headers=alice)
        assert response.status_code == 200, response.text
        assert response.content.startswith(b"\x89PNG")
    bad = client.get("/v1/plots/montage?spectrum_id=nope", headers=alice)
    assert "prefix" in assert_problem(bad, 422, "spectrum_id")["detail"]

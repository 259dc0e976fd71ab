"""Comparisons as a stored resource, and ONE comparison through every face: the stored
document over HTTP, its tables route, the synchronous route and the embedded command line
show the same numbers (the same document, the same renderer)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.cli import main
from api.client import SpectraClient
from services.comparisons import Selection, compare, result_document
from services.comparisons.tables import render_tables
from services.store import Store
from tests.api.conftest import MODEL, assert_problem, bearer

TOP_K = 6


def _jobs(client: TestClient, headers: dict[str, str]) -> tuple[str, str]:
    hessian = client.post(
        "/v1/jobs",
        json={
            "model": MODEL,
            "method": "jacobian",
            "latents": {"count": 3, "seed": 2},
            "top_k": TOP_K,
        },
        headers=headers,
    ).json()["id"]
    sefa = client.post(
        "/v1/jobs", json={"model": MODEL, "method": "sefa", "top_k": TOP_K}, headers=headers
    ).json()["id"]
    return hessian, sefa


def _statistics(document: dict) -> list[tuple]:  # type: ignore[type-arg]
    """The numbers a reader takes from a document: every member statistic and alignment."""
    numbers: list[tuple] = []  # type: ignore[type-arg]
    for member in document["members"]:
        for key, stats in member["anisotropy"]["statistics"].items():
            if stats:
                numbers.append(
                    (
                        member["label"],
                        key,
                        stats["median"],
                        stats["mean"],
                        tuple(stats["ci95"] or ()),
                    )
                )
    for a in document["alignments"]:
        numbers.append(
            (a["a"], a["b"], a["same_rank_abs_cosine_mean"], a["best_match_abs_cosine_mean"])
        )
    return numbers


def test_one_comparison_every_face_same_numbers(
    client: TestClient,
    store: Store,
    token: Callable[..., str],
    pg_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    headers = bearer(token("alice", "read,submit"))
    hessian, sefa = _jobs(client, headers)
    selections = [f"{MODEL}:mse:jacobian", f"{MODEL}::sefa"]
    body: dict[str, Any] = {
        "selections": [
            {"model": MODEL, "distance": "mse", "method": "jacobian"},
            {"model": MODEL, "method": "sefa"},
        ],
        "k": 4,
    }

    # The stored resource: 202 at once with its id and links; a worker (here in process) computes.
    submitted = client.post("/v1/comparisons", json=body, headers=headers)
    assert submitted.status_code == 202, submitted.text
    comparison_id = submitted.json()["id"]
    assert submitted.headers["Location"] == f"/v1/comparisons/{comparison_id}"
    stored = client.get(f"/v1/comparisons/{comparison_id}", headers=headers).json()
    assert stored["status"] == "succeeded" and stored["progress"] == 1.0, stored
    document = stored["document"]
    assert document["version"] == 1 and document["request"]["k"] == 4
    assert [m["spectrum_ids"] for m in document["members"]] == [
        [s.id for s in store.list_spectra(job_id=hessian)],
        [s.id for s in store.list_spectra(job_id=sefa)],
    ]  # the exact spectra, recorded
    assert stored["n_spectra"] == [3, 1]
    assert "spectrum.png" in stored["links"]["figures"]
    picture = client.get(stored["links"]["figures"]["spectrum.png"], headers=headers)
    assert picture.status_code == 200 and picture.content.startswith(b"\x89PNG")

    # Idempotent: the same request over the same spectra is the same comparison.
    again = client.post("/v1/comparisons", json=body, headers=headers)
    assert again.status_code == 200 and again.json()["id"] == comparison_id

    # Face 2: the synchronous route's document.
    synchronous = client.post("/v1/compare", json=body, headers=headers).json()["document"]
    assert _statistics(synchronous) == _statistics(document)
    # Face 3: the tables route (THE renderer over the stored document).
    text = client.get(f"/v1/comparisons/{comparison_id}/tables", headers=headers).text
    assert text == render_tables(document)
    csv_text = client.get(
        f"/v1/comparisons/{comparison_id}/tables?format=csv", headers=headers
    ).text
    assert csv_text == render_tables(document, "csv")
    # Face 4: the embedded command line prints the same tables.
    capsys.readouterr()
    assert main(["compare", *selections, "--k", "4", "--database", pg_url]) == 0
    assert capsys.readouterr().out.strip() == text.strip()
    # Face 5: the Python client (its tables rendered from the document by THE renderer).
    with SpectraClient("http://testserver", headers["Authorization"].split()[1],
                       transport=client._transport) as python_client:  # fmt: skip
        again_stored = python_client.submit_comparison(body["selections"], k=4)
        assert again_stored.id == comparison_id  # the same comparison, not a recomputation
        fetched = python_client.comparison(comparison_id)
        assert fetched.tables() == text and fetched.tables("csv") == csv_text
        assert python_client.comparison_figure(comparison_id, "spectrum.png") == picture.content
    # Face 6: the use case in process.
    in_process = compare(
        store,
        [
            Selection(model=MODEL, distance="mse", method="jacobian"),
            Selection(model=MODEL, method="sefa"),
        ],
        owner=None,
        k=4,
    )
    assert _statistics(result_document(in_process)) == _statistics(document)


def test_owner_isolation_cancel_and_refusals(
    client: TestClient, store: Store, token: Callable[..., str]
) -> None:
    alice, bob = bearer(token("alice", "read,submit")), bearer(token("bob", "read,submit"))
    hessian, _ = _jobs(client, alice)
    body = {"selections": [{"job_id": hessian}], "k": 3}
    comparison_id = client.post("/v1/comparisons", json=body, headers=alice).json()["id"]
    # Ids by the prefixes the tables print: a job's in a selection, the comparison's in routes.
    by_prefix = {"selections": [{"job_id": hessian[:8]}], "k": 3}
    assert (
        client.post("/v1/comparisons", json=by_prefix, headers=alice).json()["id"] == comparison_id
    )
    shown = client.get(f"/v1/comparisons/{comparison_id[:8]}", headers=alice).json()
    assert shown["id"] == comparison_id
    assert_problem(client.get(f"/v1/comparisons/{comparison_id}", headers=bob), 404)
    assert client.get("/v1/comparisons", headers=bob).json()["items"] == []
    assert [c["id"] for c in client.get("/v1/comparisons", headers=alice).json()["items"]] == [
        comparison_id
    ]
    # bob cannot compare alice's job either: refused at submission, nothing stored.
    assert_problem(client.post("/v1/comparisons", json=body, headers=bob), 404)
    # A finished comparison cannot be cancelled.
    assert_problem(client.post(f"/v1/comparisons/{comparison_id}/cancel", headers=alice), 409)
    missing = {"selections": [{"model": "no-such-model", "distance": "mse", "method": "jacobian"}]}
    assert_problem(client.post("/v1/comparisons", json=missing, headers=alice), 404)


def test_a_queued_comparison_is_cancelled_and_never_computed(store: Store) -> None:
    from services.comparisons.stored import run_comparison
    from services.config import Settings

    record, created = store.create_comparison(
        "carol",
        "f" * 64,
        {
            "compare": {"selections": [{"job_id": "00000000-0000-0000-0000-000000000000"}]},
            "visible_owner": "carol",
        },
        "test",
    )
    assert created and record.status == "queued"
    assert store.cancel_comparison(record.id)
    assert run_comparison(store, record.id, Settings()).status == "cancelled"
    # A cancelled comparison asked again is computed again (here: it fails, the job is missing).
    again, created = store.create_comparison("carol", "f" * 64, record.request, "test")
    assert created and again.id == record.id and again.status == "queued"
    failed = run_comparison(store, record.id, Settings())
    assert failed.status == "failed" and "not found" in (failed.error or "")

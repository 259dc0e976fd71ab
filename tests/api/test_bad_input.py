"""Bad input gets a 4xx problem document naming the field, and creates no job (nor codes)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.store import Store
from tests.api.conftest import (
    LATENT_DIM,
    MAX_LATENTS,
    MAX_UPLOAD_BYTES,
    MODEL,
    RecordingDispatcher,
    assert_problem,
    bearer,
    npy_bytes,
)


@pytest.fixture
def alice(
    app: FastAPI, store: Store, token: Callable[..., str]
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    app.state.dispatcher = RecordingDispatcher()  # a valid job would only be queued
    with TestClient(app) as client:
        yield client, bearer(token("alice", "read,submit"))


def assert_nothing_created(store: Store) -> None:
    assert store.list_jobs() == []
    assert store.list_latent_sets("alice") == []


def spec(**fields: object) -> dict[str, object]:
    return {"model": MODEL, "method": "jacobian", "latents": {"count": 2}, **fields}


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (spec(model="no-such-gan"), 422, "model"),
        (spec(latents={"values": [[0.1] * (LATENT_DIM - 3)]}), 422, "latents"),
        (spec(latents={"count": MAX_LATENTS + 1}), 422, "latents"),
        (spec(latents={"values": [[0.0] * LATENT_DIM] * (MAX_LATENTS + 1)}), 422, "latents"),
        (spec(top_k=LATENT_DIM + 1), 422, "top_k"),
        (spec(distance="l1"), 422, "distance"),
        (spec(colour="blue"), 422, "colour"),
        (spec(latents={"count": 2, "values": [[0.0]]}), 422, "latents"),
        (spec(method="lanczos", top_k=5, step=0.1), 422, "step"),
        (spec(latents={"count": 0}), 422, "latents.count.count"),
    ],
    ids=[
        "unknown-model",
        "wrong-dimension",
        "too-many-sampled",
        "too-many-values",
        "top-k",
        "unknown-distance",
        "unknown-field",
        "two-latent-kinds",
        "option-of-another-method",
        "zero-codes",
    ],
)
def test_bad_json_spec(
    alice: tuple[TestClient, dict[str, str]],
    store: Store,
    body: dict[str, Any],
    status: int,
    field: str | None,
) -> None:
    client, headers = alice
    problem = assert_problem(client.post("/v1/jobs", json=body, headers=headers), status)
    if field is not None:
        assert problem["field"].startswith(field), problem
    assert_nothing_created(store)


def test_nan_in_json_codes(alice: tuple[TestClient, dict[str, str]], store: Store) -> None:
    client, headers = alice
    row = [0.0] * LATENT_DIM
    row[7] = float("nan")
    # Python's JSON writes NaN as a bare token; the API must refuse it, not compute with it.
    content = json.dumps(spec(latents={"values": [row]}))
    response = client.post(
        "/v1/jobs", content=content, headers={**headers, "Content-Type": "application/json"}
    )
    problem = assert_problem(response, 422)
    assert problem["field"].startswith("latents"), problem
    assert_nothing_created(store)


def upload(
    client: TestClient, headers: dict[str, str], data: bytes, **fields: object
) -> httpx.Response:
    response: httpx.Response = client.post(
        "/v1/jobs/upload",
        files={"file": ("codes.npy", data, "application/octet-stream")},
        data={"spec": json.dumps({"model": MODEL, "top_k": 5, **fields})},
        headers=headers,
    )
    return response


def test_bad_npy_uploads(alice: tuple[TestClient, dict[str, str]], store: Store) -> None:
    client, headers = alice
    nan_codes = np.zeros((2, LATENT_DIM))
    nan_codes[1, 3] = np.nan
    cases = {
        "not-npy": (b"this is not a numpy file", "file"),
        "truncated": (npy_bytes(np.zeros((2, LATENT_DIM)))[:150], "file"),
        "pickled-objects": (
            b"\x93NUMPY"
            + b"\x01\x00"
            + b"\x76\x00"
            + b"{'descr': '|O', 'fortran_order': False, 'shape': (2,), }".ljust(118)
            + b"\n",
            "file",
        ),
        "nan": (npy_bytes(nan_codes), "file"),
        "too-many": (npy_bytes(np.zeros((MAX_LATENTS + 1, LATENT_DIM))), "file"),
        "3-d": (npy_bytes(np.zeros((2, 2, LATENT_DIM))), "file"),
        "strings": (npy_bytes(np.array(["a", "b"])), "file"),
    }
    for name, (data, field) in cases.items():
        problem = assert_problem(upload(client, headers, data), 422, field=field)
        assert problem["detail"], name
    # Right file, wrong model dimension: refused by the pipeline, naming the codes.
    problem = assert_problem(upload(client, headers, npy_bytes(np.zeros((2, 7)))), 422)
    assert problem["field"].startswith("latents"), problem
    # Latents in the spec beside a file: ambiguous, refused.
    data = npy_bytes(np.zeros((2, LATENT_DIM)))
    assert_problem(upload(client, headers, data, latents={"count": 1}), 422, field="spec.latents")
    assert_nothing_created(store)


def test_oversized_upload_is_413_before_the_body_is_read(
    alice: tuple[TestClient, dict[str, str]], store: Store
) -> None:
    client, headers = alice
    big = npy_bytes(np.zeros((MAX_UPLOAD_BYTES // 8 + 100,)))
    problem = assert_problem(upload(client, headers, big), 413, field="body")
    assert str(MAX_UPLOAD_BYTES) in problem["detail"]

    # A chunked body (no Content-Length) is cut off once it passes the limit.
    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_UPLOAD_BYTES // 4096 + 10):
            yield b"\0" * 4096

    response = client.post(
        "/v1/latent-sets/upload",
        content=chunks(),
        headers={**headers, "Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert_problem(response, 413)
    assert_nothing_created(store)


def test_bad_latent_sets_and_queries(
    alice: tuple[TestClient, dict[str, str]], store: Store
) -> None:
    client, headers = alice
    assert_problem(
        client.post("/v1/latent-sets", json={"model": "nope", "count": 2}, headers=headers),
        422,
        field="model",
    )
    assert_problem(
        client.post("/v1/latent-sets", json={"values": [[1.0, 2.0], [3.0]]}, headers=headers), 422
    )
    too_many = {"model": MODEL, "count": MAX_LATENTS + 1}
    assert_problem(client.post("/v1/latent-sets", json=too_many, headers=headers), 422, "count")
    assert_problem(client.get("/v1/jobs?status=done", headers=headers), 422, field="status")
    assert_problem(client.get("/v1/jobs?limit=0", headers=headers), 422, field="limit")
    assert_problem(client.get("/v1/spectra?order_by=colour", headers=headers), 422, "order_by")
    assert_problem(client.get("/v1/jobs/not-a-job", headers=headers), 422, field="job_id")
    unknown = "00000000-0000-4000-8000-000000000000"
    assert_problem(client.get(f"/v1/jobs/{unknown}", headers=headers), 404)
    assert_problem(
        client.get("/v1/jobs", params={"model": "a\x00b"}, headers=headers), 422, "model"
    )
    assert_problem(client.get("/v1/no-such-route", headers=headers), 404)
    assert_nothing_created(store)

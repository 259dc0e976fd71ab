"""What an outside tester found, each as a check: hostile files are refused from what they
declare (nothing inflated or allocated), every body and string is bounded, the device is
validated at submission, huge seeds and huge .npy headers are 422s, and a database that is
down answers 503 with Retry-After within seconds on every route."""

from __future__ import annotations

import io
import json
import resource
import time
import zipfile
from collections.abc import Callable, Iterator

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from services.config import Settings
from services.dispatch import InProcessDispatcher
from services.store import Store
from tests.api.conftest import (
    LATENT_DIM,
    MAX_UPLOAD_BYTES,
    MODEL,
    RecordingDispatcher,
    assert_problem,
    bearer,
    make_settings,
)


@pytest.fixture
def alice(
    app: FastAPI, store: Store, token: Callable[..., str]
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    app.state.dispatcher = RecordingDispatcher()
    with TestClient(app) as client:
        yield client, bearer(token("alice", "read,submit"))


def assert_nothing_created(store: Store) -> None:
    assert store.list_jobs() == []
    assert store.list_latent_sets("alice") == []


def npy_header(shape: tuple[int, ...], descr: str = "<f8") -> bytes:
    """A version 1.0 .npy header declaring ``shape`` (and no data behind it)."""
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    padding = (64 - (10 + len(text) + 1) % 64) % 64  # the format aligns the data to 64 bytes
    header = (text + " " * padding + "\n").encode()
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header


def bomb_npz(member_bytes: int) -> bytes:
    """A small .npz whose ``evc`` member inflates to ``member_bytes`` of zeros."""
    d = 100
    n = member_bytes // (8 * d * d)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("evc.npy", "w", force_zip64=True) as member:
            member.write(npy_header((n, d, d)))
            block = b"\0" * (1 << 20)
            for _ in range(n * d * d * 8 // len(block)):
                member.write(block)
        eva = io.BytesIO()
        np.save(eva, np.zeros((n, d)))
        archive.writestr("eva.npy", eva.getvalue())
    return buffer.getvalue()


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def test_a_zip_bomb_npz_is_refused_from_its_directory_without_inflating(
    client: TestClient, store: Store, token: Callable[..., str], settings: Settings
) -> None:
    """2: a ~1 MB .npz declaring a 1 GiB member is a 422 naming the member, answered before
    a byte is inflated (peak memory does not move by anything like the member's size)."""
    data = bomb_npz(1 << 30)
    assert len(data) < 8 << 20  # a few MB on the wire, a GiB inflated
    app_settings = settings.model_copy(update={"max_upload_bytes": 8 << 20})
    app = create_app(settings=app_settings, store=store, dispatcher=InProcessDispatcher(store))
    headers = bearer(token("alice", "read,submit"))
    before = peak_rss_bytes()
    started = time.perf_counter()
    with TestClient(app) as limited:
        response = limited.post(
            "/v1/jobs/import",
            files={"file": ("bomb.npz", data, "application/octet-stream")},
            headers=headers,
        )
    elapsed = time.perf_counter() - started
    problem = assert_problem(response, 422, field="evc")
    assert "SPECTRA_MAX_ARRAY_BYTES" in problem["detail"]
    assert peak_rss_bytes() - before < 200 << 20, "the member was inflated"
    assert elapsed < 5.0
    assert store.list_jobs() == []


def test_npz_member_declaring_more_than_it_holds_or_objects_is_refused(
    alice: tuple[TestClient, dict[str, str]], store: Store
) -> None:
    client, headers = alice

    def npz(members: dict[str, bytes]) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, content in members.items():
                archive.writestr(name, content)
        return buffer.getvalue()

    lying = npz({"eva.npy": npy_header((10, 10)) + b"\0" * 80, "evc.npy": npy_header((1,))})
    objects = npz({"eva.npy": npy_header((2,), descr="|O"), "evc.npy": npy_header((1,))})
    for data, field in ((lying, "eva"), (objects, "eva")):
        response = client.post(
            "/v1/jobs/import",
            files={"file": ("x.npz", data, "application/octet-stream")},
            headers=headers,
        )
        assert_problem(response, 422, field=field)
    assert store.list_jobs() == []


def upload(client: TestClient, headers: dict[str, str], data: bytes) -> httpx.Response:
    response: httpx.Response = client.post(
        "/v1/jobs/upload",
        files={"file": ("codes.npy", data, "application/octet-stream")},
        data={"spec": json.dumps({"model": MODEL, "top_k": 5})},
        headers=headers,
    )
    return response


def test_a_npy_header_claiming_a_huge_shape_is_422_before_allocating(
    alice: tuple[TestClient, dict[str, str]], store: Store
) -> None:
    """4: a header claiming (100000, 100000) float64 (74.5 GiB) is a 422 naming the limits,
    and so is one claiming more data than the file holds."""
    client, headers = alice
    problem = assert_problem(upload(client, headers, npy_header((100000, 100000))), 422, "file")
    assert "SPECTRA_MAX_LATENTS_PER_JOB" in problem["detail"]
    problem = assert_problem(upload(client, headers, npy_header((3, LATENT_DIM))), 422, "file")
    assert "truncated" in problem["detail"]
    for path in ("/v1/latent-sets/upload",):
        response = client.post(
            path,
            files={"file": ("c.npy", npy_header((100000, 100000)), "application/octet-stream")},
            headers=headers,
        )
        assert_problem(response, 422, "file")
    assert_nothing_created(store)


def test_a_seed_past_64_bits_is_422_and_the_largest_is_accepted(
    alice: tuple[TestClient, dict[str, str]], store: Store
) -> None:
    client, headers = alice
    for seed in (2**63, 2**64 + 5, 10**30):
        body = {"model": MODEL, "latents": {"count": 2, "seed": seed}}
        problem = assert_problem(client.post("/v1/jobs", json=body, headers=headers), 422)
        assert problem["field"] == "latents.count.seed", problem
        response = client.post(
            "/v1/latent-sets", json={"model": MODEL, "count": 2, "seed": seed}, headers=headers
        )
        assert_problem(response, 422)
    assert_nothing_created(store)
    largest = {"model": MODEL, "latents": {"count": 1, "seed": 2**63 - 1}, "top_k": 2}
    assert client.post("/v1/jobs", json=largest, headers=headers).status_code == 202


def test_json_bodies_and_strings_are_bounded(
    alice: tuple[TestClient, dict[str, str]], store: Store
) -> None:
    """3: a body over the limit is a 413 before it is parsed; a long string under it is a 422
    naming the field; nothing is written either way."""
    client, headers = alice
    huge = {"model": MODEL, "latents": {"count": 1}, "device": "x" * (MAX_UPLOAD_BYTES + 1)}
    assert_problem(client.post("/v1/jobs", json=huge, headers=headers), 413, field="body")
    for field, value in (("device", "x" * 5000), ("model", "m" * 5000), ("distance", "d" * 600)):
        body = {"model": MODEL, "latents": {"count": 1}, field: value}
        problem = assert_problem(client.post("/v1/jobs", json=body, headers=headers), 422)
        assert problem["field"] == field, problem
    body = {"model": MODEL, "latents": {"set": "s" * 5000}}
    assert_problem(client.post("/v1/jobs", json=body, headers=headers), 422)
    assert_nothing_created(store)


def test_json_bodies_have_their_own_smaller_limit(
    store: Store, settings: Settings, token: Callable[..., str]
) -> None:
    limited = settings.model_copy(update={"max_upload_bytes": 1 << 20, "max_json_bytes": 4096})
    app = create_app(settings=limited, store=store, dispatcher=RecordingDispatcher())
    headers = bearer(token("alice", "read,submit"))
    body = {"model": MODEL, "latents": {"values": [[0.5] * LATENT_DIM] * 16}}
    with TestClient(app) as client:
        problem = assert_problem(client.post("/v1/jobs", json=body, headers=headers), 413)
        assert "SPECTRA_MAX_JSON_BYTES" in problem["detail"]
        # A file upload of the same size is still within its (larger) limit.
        buffer = io.BytesIO()
        np.save(buffer, np.full((16, LATENT_DIM), 0.5))
        response = client.post(
            "/v1/jobs/upload",
            files={"file": ("c.npy", buffer.getvalue(), "application/octet-stream")},
            data={"spec": json.dumps({"model": MODEL, "top_k": 2})},
            headers=headers,
        )
        assert response.status_code == 202, response.text


def test_a_malformed_device_is_422(alice: tuple[TestClient, dict[str, str]], store: Store) -> None:
    client, headers = alice
    for device in ("cpu:banana", "gpu", "cuda:x", "cuda:0; rm -rf /", "CPU", "cuda:1234"):
        body = {"model": MODEL, "latents": {"count": 1}, "device": device}
        assert_problem(client.post("/v1/jobs", json=body, headers=headers), 422, field="device")
    assert_nothing_created(store)


def test_a_device_no_worker_has_is_refused(
    app: FastAPI, store: Store, token: Callable[..., str]
) -> None:
    """cuda:99 is a well-formed device, but the workers here (the in-process runner on the
    CPU) do not have it: refused at submission, not left queued forever."""
    headers = bearer(token("alice", "read,submit"))
    with TestClient(app) as client:
        body = {"model": MODEL, "latents": {"count": 1}, "device": "cuda:99", "top_k": 2}
        problem = assert_problem(client.post("/v1/jobs", json=body, headers=headers), 422)
        assert problem["field"] == "device" and "cpu" in problem["detail"], problem
        assert store.list_jobs() == []
        body["device"] = "cpu"
        assert client.post("/v1/jobs", json=body, headers=headers).status_code == 202


DOWN_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"


def test_a_database_that_is_down_is_503_with_retry_after_on_every_route(pg_url: str) -> None:
    """5: every route that needs the database answers 503 problem+json with Retry-After,
    within a few seconds, while it is down; /readyz too."""
    settings = make_settings(DOWN_DATABASE)
    app = create_app(
        settings=settings, store=Store(DOWN_DATABASE), dispatcher=RecordingDispatcher()
    )
    headers = {"Authorization": "Bearer lsk_0123456789abcdef.0123456789abcdef0123456789abcdef"}
    job = "00000000-0000-4000-8000-000000000000"
    calls = [
        ("GET", f"/v1/jobs/{job}"),
        ("GET", "/v1/jobs"),
        ("POST", "/v1/jobs"),
        ("GET", "/v1/spectra"),
        ("GET", "/v1/latent-sets"),
        ("GET", "/readyz"),
    ]
    with TestClient(app) as client:
        for method, path in calls:
            started = time.perf_counter()
            body = {"model": MODEL, "latents": {"count": 1}} if method == "POST" else None
            response = client.request(method, path, json=body, headers=headers)
            elapsed = time.perf_counter() - started
            problem = assert_problem(response, 503)
            assert int(response.headers["Retry-After"]) > 0, path
            assert elapsed < 8.0, f"{path} took {elapsed:.1f} s"
            if path == "/readyz":
                assert "unreachable" in problem["checks"]["database"]


def test_wrong_methods_are_405_with_every_allowed_method(
    alice: tuple[TestClient, dict[str, str]], store: Store
) -> None:
    """7: GET on the upload route is a 405 (it met the {set_id} route only by its shape),
    and a 405's Allow lists every method of the path, which several routes share."""
    client, headers = alice
    job = "00000000-0000-4000-8000-000000000000"
    cases = [
        ("GET", "/v1/latent-sets/upload", "POST"),
        ("GET", "/v1/jobs/upload", "POST"),
        ("OPTIONS", "/v1/jobs", "GET, POST"),
        ("DELETE", f"/v1/jobs/{job}", "GET"),
        ("PUT", "/v1/latent-sets", "GET, POST"),
    ]
    for method, path, allowed in cases:
        response = client.request(method, path, headers=headers)
        assert_problem(response, 405)
        assert response.headers["Allow"] == allowed, (method, path, response.headers)
    assert_nothing_created(store)


def test_an_unknown_query_parameter_is_refused_not_ignored(
    alice: tuple[TestClient, dict[str, str]],
) -> None:
    client, headers = alice
    problem = assert_problem(client.get("/v1/jobs?staus=failed", headers=headers), 422)
    assert problem["field"] == "staus" and "status" in problem["detail"]
    assert client.get("/v1/jobs?status=failed", headers=headers).status_code == 200

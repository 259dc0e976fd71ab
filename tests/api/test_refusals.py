"""Inputs an outside campaign found accepted or answered with a 500 (issue 23, points 8 and 9):
each is now refused with a clear 4xx before anything is written or decoded, and the OpenAPI
document and the Allow header say what the routes really answer."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from services.pipeline.chunks import _reason
from services.store import Store
from tests.api.conftest import MODEL, assert_problem, bearer, npy_bytes

HUGE_SEED_MODEL = f"shuffled:{2**64}:{MODEL}"
LATENTS = {"count": 1, "seed": 0}


@pytest.fixture
def auth(token: Callable[..., str]) -> dict[str, str]:
    return bearer(token("alice", "read,submit"))


def _job_count(store: Store) -> int:
    return len(store.list_jobs(owner=None, limit=500))


@pytest.mark.parametrize("seed", [2**63, 2**64, 10**30])
def test_a_control_seed_beyond_64_bits_is_a_422_on_every_route(
    client: TestClient, store: Store, auth: dict[str, str], seed: int
) -> None:
    model = f"shuffled:{seed}:{MODEL}"
    job = {"model": model, "latents": LATENTS}
    requests: list[tuple[str, dict[str, Any]]] = [
        ("/v1/jobs", {"json": job}),
        ("/v1/jobs?dry_run=true", {"json": job}),
        ("/v1/latent-sets", {"json": {"model": model, "count": 2}}),
        ("/v1/campaigns", {"json": {"name": "c", "models": [model], "latents": LATENTS}}),
        ("/v1/optimisations", {"json": {"model": model, "targets": {"count": 1, "seed": 0}}}),
        (
            "/v1/jobs/upload",
            {
                "data": {"spec": json.dumps({"model": model})},
                "files": {
                    "file": ("c.npy", npy_bytes(np.zeros((1, 100))), "application/octet-stream")
                },
            },
        ),
    ]
    for path, body in requests:
        response = client.post(path, headers=auth, **body)
        problem = assert_problem(response, 422)
        assert "2**63" in problem["detail"], (path, problem)
    assert _job_count(store) == 0
    # a control's seed at the bound's edge is still a model name
    edge = client.post(
        "/v1/jobs?dry_run=true",
        headers=auth,
        json={"model": f"shuffled:{2**63 - 1}:{MODEL}", "latents": LATENTS},
    )
    assert edge.status_code != 422 or "2**63" not in edge.text


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (1-bit grey) and whose data is a few bytes:
    what a decompression bomb looks like before it is inflated."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("side", [30_000, 12_000, 5_000])
def test_a_decompression_bomb_png_is_refused_before_decoding(
    client: TestClient, store: Store, auth: dict[str, str], side: int
) -> None:
    files = {"files": ("bomb.png", _png_header_only(side, side), "image/png")}
    response = client.post(
        "/v1/optimisations/upload",
        headers=auth,
        files=files,
        data={"spec": json.dumps({"model": MODEL})},
    )
    assert response.status_code in (413, 422), response.text
    assert "4096" in response.json()["detail"]
    assert _job_count(store) == 0


def test_a_campaign_with_no_member_is_refused(
    client: TestClient, store: Store, auth: dict[str, str]
) -> None:
    body = {"name": "empty", "models": [MODEL], "methods": [], "directions": [], "latents": LATENTS}
    problem = assert_problem(client.post("/v1/campaigns", json=body, headers=auth), 422)
    assert "at least one method" in problem["detail"]
    assert client.get("/v1/campaigns", headers=auth).json()["items"] == []
    assert _job_count(store) == 0


@pytest.mark.parametrize("seed", [False, True, "3", 1.0])
def test_seeds_are_strict_integers(
    client: TestClient, store: Store, auth: dict[str, str], seed: object
) -> None:
    requests = [
        ("/v1/jobs", {"model": MODEL, "latents": {"count": 1, "seed": seed}}),
        ("/v1/latent-sets", {"model": MODEL, "count": 2, "seed": seed}),
        ("/v1/campaigns", {"name": "c", "models": [MODEL], "latents": {"count": 1, "seed": seed}}),
        ("/v1/optimisations", {"model": MODEL, "seed": seed}),
    ]
    for path, body in requests:
        problem = assert_problem(client.post(path, json=body, headers=auth), 422)
        assert "seed" in json.dumps(problem), (path, problem)
    assert _job_count(store) == 0


def test_a_tag_has_a_documented_bound(client: TestClient, auth: dict[str, str]) -> None:
    for tag in ("x" * 101, "x" * 50_000):  # (100,000 characters pass this test's body limit)
        body = {"name": "c", "models": [MODEL], "latents": LATENTS, "tags": [tag]}
        problem = assert_problem(client.post("/v1/campaigns", json=body, headers=auth), 422)
        assert "100 characters" in json.dumps(problem), problem
    schema = client.get("/openapi.json").json()["components"]["schemas"]["CampaignSpec"]
    assert schema["properties"]["tags"]["items"]["maxLength"] == 100


def test_a_failure_reason_names_no_server_path() -> None:
    def fail() -> None:
        raise ValueError("the generator produced NaN")

    try:
        fail()
    except ValueError as error:
        reason = _reason(error)
    assert reason.startswith("ValueError: the generator produced NaN (at test_refusals.py:")
    assert "/" not in reason and "\\" not in reason


def test_openapi_documents_what_the_routes_answer(client: TestClient, auth: dict[str, str]) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    # POST /v1/jobs?dry_run=true answers 200 with the plan: documented.
    ok = paths["/v1/jobs"]["post"]["responses"]["200"]
    assert "dry_run" in ok["description"]
    variants = ok["content"]["application/json"]["schema"]["anyOf"]
    assert {"$ref": "#/components/schemas/JobSubmitted"} in variants and len(variants) == 2
    # The same campaign submitted again answers 200: documented.
    assert "200" in paths["/v1/campaigns"]["post"]["responses"]
    # Upload routes allow POST only, whatever a parametric GET route beside them matches.
    for path in (
        "/v1/jobs/upload",
        "/v1/jobs/import",
        "/v1/optimisations/upload",
        "/v1/latent-sets/upload",
    ):
        for method in ("GET", "PUT", "DELETE"):
            response = client.request(method, path, headers=auth)
            assert response.status_code == 405, (method, path, response.text)
            assert response.headers["allow"] == "POST", (method, path)

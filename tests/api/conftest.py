"""The real app on a real PostgreSQL database per test, with API keys and small limits.

Chunks run in-process by default (the same chunk function the Celery workers run); the one
end-to-end test in test_e2e_celery.py runs them in a real worker subprocess instead.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from services.config import Settings
from services.dispatch import InProcessDispatcher
from services.store import Store

# Small limits so the over-the-limit inputs stay cheap to build.
MAX_LATENTS = 16
MAX_UPLOAD_BYTES = 64 * 1024
MAX_LATENT_DIM = 512
MODEL = "dcgan-faces"
LATENT_DIM = 100


class RecordingDispatcher:
    """Keeps chunks queued (nothing runs) and remembers what it was asked to do."""

    def __init__(self) -> None:
        self.dispatched: list[str] = []
        self.revoked: list[str] = []
        self.comparisons: list[str] = []

    def dispatch(self, chunk_ids: list[str]) -> None:
        self.dispatched.extend(chunk_ids)

    def dispatch_comparison(self, comparison_id: str) -> None:
        self.comparisons.append(comparison_id)

    def revoke(self, chunk_ids: list[str]) -> None:
        self.revoked.extend(chunk_ids)

    def ping(self, timeout_s: float) -> None:
        return None

    def devices(self) -> set[str] | None:
        return None  # unknown: a job's device is not checked


def make_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "mode": "development",
        "database_url": database_url,
        "max_latents_per_job": MAX_LATENTS,
        "max_upload_bytes": MAX_UPLOAD_BYTES,
        "max_latent_dim": MAX_LATENT_DIM,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(pg_url: str) -> Settings:
    return make_settings(pg_url)


@pytest.fixture
def app(settings: Settings, store: Store) -> FastAPI:
    return create_app(settings=settings, store=store, dispatcher=InProcessDispatcher(store))


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def token(store: Store) -> Callable[..., str]:
    """token(owner="alice", scopes="read,submit") -> a fresh API key's bearer token."""

    def make(owner: str = "alice", scopes: str = "read,submit") -> str:
        return store.create_api_key(owner, scopes.split(","))[1]

    return make


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def latent_codes_of(store: Store, job_id: str) -> np.ndarray:
    """The codes a job computed on (every job has a latent set once submitted)."""
    set_id = store.get_job(job_id).latent_set_id
    assert set_id is not None, f"job {job_id} has no latent set"
    return store.latent_codes(set_id)


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def assert_problem(
    response: httpx.Response, status: int, field: str | None = None
) -> dict[str, Any]:
    """The response is an RFC 9457 problem document with this status (and field)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"] and body["detail"] and body["type"].startswith("https://")
    if field is not None:
        assert body.get("field") == field, body
    return body


@pytest.fixture
def pg_url(migrated_pg_url: str) -> str:
    """These tests' databases start migrated: a clone of the session's template (the
    migrations themselves are tested in tests/store/test_migrations.py)."""
    return migrated_pg_url

"""File-based generators run code from the named file: over HTTP only the built-in registry
and the operator's SPECTRA_EXTRA_MODELS are served, and a refused name never gets loaded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from api.app import create_app
from services.store import Store
from tests.api.conftest import RecordingDispatcher, assert_problem, bearer, make_settings

FACTORY = '''
import pathlib, torch
pathlib.Path({marker!r}).write_text("imported")

class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 3 * 2 * 2)
    def forward(self, codes):
        return torch.tanh(self.linear(codes)).reshape(-1, 3, 2, 2)

def build():
    return Tiny(), 4
'''


def _client(store: Store, pg_url: str, **overrides: object) -> TestClient:
    settings = make_settings(pg_url, **overrides)
    return TestClient(create_app(settings=settings, store=store, dispatcher=RecordingDispatcher()))


def _factory(tmp_path: Path) -> tuple[str, Path]:
    marker = tmp_path / "imported.txt"
    source = tmp_path / "tiny_generator.py"
    source.write_text(FACTORY.format(marker=str(marker)))
    return f"python:{source}:build", marker


def test_an_unlisted_file_model_is_refused_and_never_imported(
    store: Store, pg_url: str, token: Callable[..., str], tmp_path: Path
) -> None:
    name, marker = _factory(tmp_path)
    headers = bearer(token("alice", "read,submit"))
    with _client(store, pg_url) as client:
        job = client.post("/v1/jobs", headers=headers, json={"model": name, "latents": {"count": 2}})
        assert_problem(job, 422, "model")
        assert "SPECTRA_EXTRA_MODELS" in job.json()["detail"]
        sampled = client.post("/v1/latent-sets", headers=headers, json={"model": name, "count": 2})
        assert_problem(sampled, 422, "model")
    assert not marker.exists()
    assert store.list_jobs() == [] and store.list_latent_sets("alice") == []


def test_a_listed_file_model_is_served(
    store: Store, pg_url: str, token: Callable[..., str], tmp_path: Path
) -> None:
    name, marker = _factory(tmp_path)
    headers = bearer(token("alice", "read,submit"))
    with _client(store, pg_url, extra_models=f"dcgan-faces, {name}") as client:
        response = client.post(
            "/v1/jobs", headers=headers, json={"model": name, "latents": {"count": 2, "seed": 0}}
        )
    assert response.status_code == 202, response.text
    assert marker.exists()
    assert [job.model for job in store.list_jobs()] == [name]

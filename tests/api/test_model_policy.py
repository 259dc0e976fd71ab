"""File-based generators run code from the named file: over HTTP only the built-in registry
and the operator's SPECTRA_EXTRA_MODELS are served, and a refused name never gets loaded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.cli import main as cli_main
from services.export import PublishedSpectra, from_npz_bytes, import_job, to_npz_bytes
from services.geometry.models.controls import CONTROL_KINDS
from services.patterns import FILE_MODEL_SCHEMES, names_a_file
from services.store import Store
from tests.api.conftest import RecordingDispatcher, assert_problem, bearer, make_settings

FACTORY = """
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
"""


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
        job = client.post(
            "/v1/jobs", headers=headers, json={"model": name, "latents": {"count": 2}}
        )
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


def _published_npz(model: str) -> bytes:
    """Two small spectra in the published layout whose meta names ``model``."""
    rng = np.random.default_rng(0)
    vectors = np.stack([np.linalg.qr(rng.normal(size=(4, 4)))[0] for _ in range(2)])
    spectra = PublishedSpectra(
        eigenvalues=np.array([[4.0, 3.0, 2.0, 1.0], [5.0, 2.0, 1.0, 0.5]]),
        eigenvectors=vectors,
        codes=rng.normal(size=(2, 4)),
        meta={"model": model, "distance": "mse", "method": "jacobian"},
    )
    return to_npz_bytes(spectra)


def test_import_accepts_only_labels_the_server_serves(
    store: Store, pg_url: str, token: Callable[..., str], tmp_path: Path
) -> None:
    name, marker = _factory(tmp_path)
    headers = bearer(token("alice", "read,submit"))
    with _client(store, pg_url) as client:
        for meta_model, override in ((name, None), ("dcgan-faces", name)):
            files = {"file": ("s.npz", _published_npz(meta_model), "application/octet-stream")}
            data = {"model": override} if override else {}
            response = client.post("/v1/jobs/import", headers=headers, files=files, data=data)
            assert "SPECTRA_EXTRA_MODELS" in assert_problem(response, 422, "model")["detail"]
        assert store.list_jobs() == []
        served = client.post(
            "/v1/jobs/import",
            headers=headers,
            files={"file": ("s.npz", _published_npz("dcgan-faces"), "application/octet-stream")},
        )
        assert served.status_code == 201, served.text
    with _client(store, pg_url, extra_models=name) as client:
        files = {"file": ("s.npz", _published_npz(name), "application/octet-stream")}
        listed = client.post("/v1/jobs/import", headers=headers, files=files)
        assert listed.status_code == 201, listed.text
    assert not marker.exists()  # importing never loads a model


def test_an_imported_file_label_is_never_loaded_by_the_command_line(
    store: Store, pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The attack: an HTTP client stored a job whose label names its file, and the
    # operator's `spectra compare JOB --plots DIR` then ran that file. (Stored here directly,
    # as an older server's import accepted it.)
    name, marker = _factory(tmp_path)
    published = from_npz_bytes(_published_npz(name), max_array_bytes=10**6)
    job, _ = import_job(store, "alice", published, source_sha256="0" * 64)
    plots = tmp_path / "plots"
    code = cli_main(["compare", job.id, "--plots", str(plots), "--database", pg_url])
    assert code == 0, capsys.readouterr().err
    assert not marker.exists()
    assert (plots / "spectrum.png").exists() and not list(plots.glob("montage-*"))


def test_which_labels_name_files() -> None:
    assert set(FILE_MODEL_SCHEMES) == {
        "python:",
        "torchscript:",
        "stylegan2:",
        "stylegan2-ada:",
        "biggan-deep:",
    }
    assert set(CONTROL_KINDS) == {"shuffled", "shuffled-published", "random-init"}  # stripped
    for name in (
        "python:/x.py:f",
        "shuffled:3:stylegan2:/a.pt",
        "shuffled-published:3:stylegan2:/a.pt",
        "random-init:0:biggan-deep:/d",
    ):
        assert names_a_file(name)
    for name in (
        "dcgan-faces",
        "shuffled:3:dcgan-faces",
        "shuffled-published:3:dcgan-faces",
        "random-init:1:dcgan-faces",
    ):
        assert not names_a_file(name)

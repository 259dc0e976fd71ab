"""Optimisation jobs in the spaces a model offers (issue 14 on top of issue 16): a tiny random
StyleGAN2 optimised in w end to end, with targets generated from w codes, and a basis from
its z space refused for a w job (422, nothing written)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.app import create_app
from services.dispatch import InProcessDispatcher
from services.geometry import load_generator
from services.store import Store
from tests.api.conftest import assert_problem, bearer, make_settings
from tests.support.checkpoints import write_random_checkpoint

SIZE: dict[str, Any] = {"size": 8, "style_dim": 4, "n_mlp": 1, "channels": {4: 4, 8: 3}}
TABLES = ("jobs", "chunks", "target_sets", "optimisation_results", "latent_sets")


RGB_SCALE = 0.2  # a random net's images overshoot [-1, 1]; the to_rgb layers are linear


@pytest.fixture
def model(tmp_path: Path) -> str:
    """A random StyleGAN2 whose images lie in [-1, 1], as generated targets must: its to_rgb
    weights and biases scaled down (the image, a sum of to_rgb outputs, scales with them)."""
    path = write_random_checkpoint(tmp_path / "sg2.pt", **SIZE)
    checkpoint = torch.load(path)
    for key, value in checkpoint["g_ema"].items():
        rgb = key.startswith(("to_rgb1.", "to_rgbs.")) and "modulation" not in key
        if rgb and key.endswith(("conv.weight", ".bias")):
            checkpoint["g_ema"][key] = value * RGB_SCALE
    torch.save(checkpoint, path)
    return f"stylegan2:{path}"


@pytest.fixture
def client(
    store: Store, pg_url: str, model: str, token: Callable[..., str]
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: a second thread only contends
    settings = make_settings(pg_url, extra_models=f"{model},dcgan-faces")
    app = create_app(settings=settings, store=store, dispatcher=InProcessDispatcher(store))
    with TestClient(app) as test_client:
        yield test_client, bearer(token("alice", "read,submit"))
    torch.set_num_threads(threads)


def _counts(store: Store) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}


def _spectra_job(http: TestClient, headers: dict[str, str], model: str, space: str) -> str:
    spec = {
        "model": model,
        "space": space,
        "psi": 0.7,
        "latents": {"count": 3, "seed": 1},
        "dtype": "float64",
    }
    response = http.post("/v1/jobs", json=spec, headers=headers)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _optimise_body(model: str, basis_job: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "space": "w",
        "psi": 0.7,
        "targets": {"count": 2, "seed": 3},
        "optimiser": "adam-topk",
        "k": 2,
        "basis": {"job": basis_job},
        "steps": 8,
        **extra,
    }


def test_optimise_in_w_runs_end_to_end_on_w_targets(
    client: tuple[TestClient, dict[str, str]], model: str, store: Store
) -> None:
    http, headers = client
    basis_job = _spectra_job(http, headers, model, "w")
    assert store.get_job(basis_job).status == "succeeded"
    response = http.post(
        "/v1/optimisations", json=_optimise_body(model, basis_job), headers=headers
    )
    assert response.status_code == 202, response.text
    job = store.get_job(response.json()["id"])
    assert job.status == "succeeded", job.error
    assert (job.resolved["space"], job.resolved["psi"]) == ("w", 0.7)
    assert (
        job.resolved["generator"]["latent_dim"] == 4 and job.resolved["basis"]["job"] == basis_job
    )
    # Targets are images of w codes: the w space's own samples, rendered in w.
    generator = load_generator(model, space="w", psi=0.7)
    codes = store.target_codes(job.resolved["targets"]["id"])
    assert codes is not None and np.array_equal(codes, generator.sample(2, seed=3))
    images = store.target_images(job.resolved["targets"]["id"])
    assert np.allclose(images, generator.images(codes).numpy(), atol=1e-6)
    results = store.optimisation_results(job.id)
    assert [r.d for r in results] == [4, 4]
    assert all(r.final_loss <= r.losses[:, 0].min() for r in results)  # Adam went downhill


def test_a_z_basis_is_refused_for_a_w_job_and_nothing_is_written(
    client: tuple[TestClient, dict[str, str]], model: str, store: Store
) -> None:
    http, headers = client
    basis_job = _spectra_job(http, headers, model, "z")
    before = _counts(store)
    refused = http.post("/v1/optimisations", json=_optimise_body(model, basis_job), headers=headers)
    problem = assert_problem(refused, 422, "basis")
    assert "space z" in problem["detail"] and "space w" in problem["detail"]
    # In z the truncation changes the map: a z basis at psi 0.7 is not one for psi 1.
    z_job = _optimise_body(model, basis_job, space="z", psi=None)
    z_job = {key: value for key, value in z_job.items() if value is not None}
    problem = assert_problem(
        http.post("/v1/optimisations", json=z_job, headers=headers), 422, "basis"
    )
    assert "psi=0.7" in problem["detail"]
    lacking = {"model": "dcgan-faces", "space": "w", "targets": {"count": 1}}
    problem = assert_problem(
        http.post("/v1/optimisations", json=lacking, headers=headers), 422, "space"
    )
    assert "exists only for StyleGAN2" in problem["detail"]
    assert _counts(store) == before

"""BigGAN's spaces (noise, class, both) over HTTP: jobs record the fixed half, a space the
family lacks is a 422 that stores nothing, GET /v1/models lists the spaces."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from services.dispatch import InProcessDispatcher
from services.store import Store
from tests.api.conftest import assert_problem, bearer, latent_codes_of, make_settings
from tests.geometry.test_generators import _write_tiny_biggan


@pytest.fixture(scope="module")
def biggan(tmp_path_factory: pytest.TempPathFactory) -> str:
    directory = tmp_path_factory.mktemp("biggan")
    _write_tiny_biggan(directory)
    return f"biggan-deep:{directory}"


@pytest.fixture
def client(
    store: Store, pg_url: str, biggan: str, token: Callable[..., str]
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    settings = make_settings(pg_url, extra_models=biggan)
    app = create_app(settings=settings, store=store, dispatcher=InProcessDispatcher(store))
    with TestClient(app) as test_client:
        yield test_client, bearer(token("alice", "read,submit"))


def test_noise_job_stores_noise_codes_and_records_the_fixed_class(
    client: tuple[TestClient, dict[str, str]], biggan: str, store: Store
) -> None:
    http, headers = client
    body = {
        "model": biggan,
        "space": "noise",
        "latents": {"count": 2, "seed": 3},
        "dtype": "float64",
        "top_k": 4,
    }
    response = http.post("/v1/jobs", headers=headers, json=body)
    assert response.status_code in (200, 201, 202), response.text
    job = store.get_job(response.json()["id"])
    assert job.status == "succeeded", job.error
    assert job.resolved["space"] == "noise" and job.resolved["generator"]["latent_dim"] == 16
    facts = job.resolved["generator"]["facts"]
    assert facts["space"] == "noise" and len(facts["fixed_class_embedding"]) == 16
    assert job.latent_set_id is not None
    latent_set = store.get_latent_set(job.latent_set_id, "alice")
    assert (latent_set.d, latent_set.seed) == (16, 3)
    assert f"class {facts['fixed_class']}'s embedding" in (latent_set.name or "")
    # Without a space a BigGAN job is in `both` (its z of before), d = noise + class.
    legacy = http.post("/v1/jobs", headers=headers, json={**body, "space": "z"}).json()
    default = store.get_job(legacy["id"])
    assert default.resolved["space"] == "both" and default.resolved["generator"]["latent_dim"] == 32
    codes = latent_codes_of(store, default.id)
    assert np.array_equal(codes[:, :16], latent_codes_of(store, job.id))


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ({"space": "w"}, "BigGAN has no space 'w'; use one of both, noise, class"),
        ({"space": "class", "method": "sefa", "latents": None}, "space 'class' has none"),
        ({"space": "noise", "psi": 0.5}, "psi"),
        ({"space": "banana"}, ""),
    ],
    ids=["stylegan-space", "sefa-in-class", "psi", "unknown-space"],
)
def test_a_space_biggan_lacks_is_a_422_and_stores_nothing(
    client: tuple[TestClient, dict[str, str]],
    biggan: str,
    store: Store,
    spec: dict[str, Any],
    says: str,
) -> None:
    http, headers = client
    body = {"model": biggan, "latents": {"count": 2}, **spec}
    body = {k: v for k, v in body.items() if v is not None}
    field = "psi" if "psi" in spec else "space"
    problem = assert_problem(http.post("/v1/jobs", headers=headers, json=body), 422, field)
    assert says in problem["detail"]
    assert store.list_jobs() == [] and store.list_latent_sets("alice") == []


def test_models_list_biggan_spaces(client: tuple[TestClient, dict[str, str]]) -> None:
    http, headers = client
    models = {m["name"]: m for m in http.get("/v1/models", headers=headers).json()}
    assert models["biggan-deep:DIR"]["spaces"] == ["both", "noise", "class"]

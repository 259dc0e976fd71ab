"""The model zoo over HTTP: StyleGAN2 spaces, controls, GANSpace, layer metrics, bad input."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from api.app import create_app
from services.dispatch import InProcessDispatcher
from services.store import Store
from tests.api.conftest import assert_problem, bearer, make_settings
from tests.support.checkpoints import random_state_dict, write_random_checkpoint

SIZE: dict[str, Any] = {"size": 8, "style_dim": 4, "n_mlp": 1, "channels": {4: 4, 8: 3}}
ZooClient = tuple[TestClient, dict[str, str]]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    good = write_random_checkpoint(tmp_path / "good.pt", **SIZE)
    state = random_state_dict(**SIZE)
    del state["to_rgb1.conv.modulation.bias"]
    torch.save({"g_ema": state}, tmp_path / "bad.pt")
    return {"good": f"stylegan2:{good}", "bad": f"stylegan2:{tmp_path / 'bad.pt'}"}


@pytest.fixture
def client(
    store: Store, pg_url: str, files: dict[str, str], token: Callable[..., str]
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    settings = make_settings(pg_url, extra_models=f"{files['good']},{files['bad']}")
    app = create_app(settings=settings, store=store, dispatcher=InProcessDispatcher(store))
    with TestClient(app) as test_client:
        yield test_client, bearer(token("alice", "read,submit"))


def submit(client: TestClient, headers: dict[str, str], **spec: object) -> httpx.Response:
    response: httpx.Response = client.post("/v1/jobs", headers=headers, json=spec)
    return response


def test_wplus_job_stores_codes_of_its_space_and_records_it(
    client: ZooClient, files: dict[str, str], store: Store
) -> None:
    http, headers = client
    response = submit(
        http,
        headers,
        model=files["good"],
        space="w+",
        psi=0.7,
        latents={"count": 2, "seed": 3},
        dtype="float64",
    )
    assert response.status_code in (200, 201, 202), response.text
    job = store.get_job(response.json()["id"])
    assert job.resolved["space"] == "w+" and job.resolved["psi"] == 0.7
    assert job.resolved["generator"]["latent_dim"] == 4 * 4  # num_ws = 4 at 8 px
    assert job.resolved["generator"]["facts"]["space"] == "w+"
    assert job.latent_set_id is not None
    latent_set = store.get_latent_set(job.latent_set_id, "alice")
    assert (latent_set.d, latent_set.seed) == (16, 3)
    assert "z ~ N(0, I) from numpy seed 3" in (latent_set.name or "")
    codes = store.latent_codes(job.latent_set_id)
    assert np.allclose(codes[:, :4], codes[:, 12:])  # every slot holds the sampled w


def test_ganspace_and_sefa_jobs_store_one_spectrum(
    client: ZooClient, files: dict[str, str], store: Store
) -> None:
    http, headers = client
    for spec in (
        {"method": "ganspace", "samples": 200},
        {"method": "sefa", "normalize_rows": False},
    ):
        response = submit(http, headers, model=files["good"], space="w", **spec)
        assert response.status_code in (200, 201, 202), response.text
        job = store.get_job(response.json()["id"])
        assert job.status == "succeeded" and job.n_latents == 1, job.error


def test_models_describe_schemes_spaces_and_layers(client: ZooClient) -> None:
    http, headers = client
    models = {m["name"]: m for m in http.get("/v1/models", headers=headers).json()}
    assert models["stylegan2:PATH"]["spaces"] == ["z", "w", "w+"]
    assert (
        models["stylegan2:PATH"]["scheme"] is True
        and models["stylegan2:PATH"]["latent_dim"] is None
    )
    assert "synthesis.conv1" in models["stylegan2:PATH"]["layers"]
    assert models["dcgan-faces"]["layers"][0] == "net.0"
    assert "shuffled:SEED:BASE" in models


@pytest.mark.parametrize(
    ("which", "spec", "field", "says"),
    [
        ("bad", {}, "model", "missing key 'to_rgb1.conv.modulation.bias'"),
        ("dcgan", {"space": "w+"}, "space", "exists only for StyleGAN2"),
        ("good", {"distance": "layer:synthesis.nope"}, "distance", "unknown layer"),
        (
            "good",
            {"method": "ganspace", "layer": "nope", "latents": None},
            "layer",
            "unknown layer",
        ),
        ("good", {"psi": 1.5}, "psi", ""),
        ("good", {"psi": 0}, "psi", ""),
        ("good", {"method": "sefa", "latents": None}, "space", "use space 'w'"),
        (
            "good",
            {"space": "w", "method": "sefa", "layers": [40], "latents": None},
            "layers",
            "does not exist",
        ),
        ("dcgan-control", {"space": "w"}, "space", "exists only for StyleGAN2"),
    ],
    ids=[
        "key-mismatch",
        "wplus-on-dcgan",
        "unknown-layer",
        "unknown-ganspace-layer",
        "psi-above-1",
        "psi-zero",
        "sefa-in-z",
        "sefa-layer",
        "control-space",
    ],
)
def test_bad_zoo_input_is_a_4xx_and_stores_nothing(
    client: ZooClient,
    files: dict[str, str],
    store: Store,
    which: str,
    spec: dict[str, Any],
    field: str,
    says: str,
) -> None:
    http, headers = client
    model = {"dcgan": "dcgan-faces", "dcgan-control": "shuffled:0:dcgan-faces"}.get(which)
    body = {"model": model or files[which], "latents": {"count": 2}, **spec}
    body = {k: v for k, v in body.items() if v is not None}
    problem = assert_problem(submit(http, headers, **body), 422, field)
    assert says in problem["detail"]
    assert store.list_jobs() == [] and store.list_latent_sets("alice") == []


def test_a_control_is_served_iff_its_base_is(client: ZooClient, files: dict[str, str]) -> None:
    http, headers = client
    refused = submit(
        http, headers, model="shuffled:0:stylegan2:/elsewhere.pt", latents={"count": 1}
    )
    assert_problem(refused, 422, "model")
    served = submit(http, headers, model=f"shuffled:1:{files['good']}", latents={"count": 1})
    assert served.status_code in (200, 201, 202), served.text

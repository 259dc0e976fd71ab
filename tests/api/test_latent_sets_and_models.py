"""Latent sets (sampled, JSON, .npy upload; download bit for bit; used by a job) and models."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.geometry import load_generator
from services.store import Store
from tests.api.conftest import LATENT_DIM, MODEL, RecordingDispatcher, bearer, npy_bytes


def test_latent_sets_and_models(app: FastAPI, store: Store, token: Callable[..., str]) -> None:
    app.state.dispatcher = RecordingDispatcher()
    headers = bearer(token("alice", "read,submit"))
    with TestClient(app) as client:
        sampled = client.post(
            "/v1/latent-sets", json={"model": MODEL, "count": 3, "seed": 4}, headers=headers
        )
        assert sampled.status_code == 201, sampled.text
        view = sampled.json()
        assert (view["n"], view["d"], view["source"], view["seed"]) == (3, LATENT_DIM, "sampled", 4)
        download = client.get(view["links"]["download"], headers=headers)
        codes = np.load(io.BytesIO(download.content), allow_pickle=False)
        # The generator's own sampler with the same seed: the same codes.
        np.testing.assert_array_equal(codes, load_generator(MODEL).sample(3, 4))
        again = client.post(
            "/v1/latent-sets", json={"model": MODEL, "count": 3, "seed": 4}, headers=headers
        )
        assert again.json()["id"] == view["id"]  # stored once

        mine = np.random.default_rng(1).standard_normal((2, LATENT_DIM))
        uploaded = client.post(
            "/v1/latent-sets/upload",
            headers=headers,
            files={"file": ("c.npy", npy_bytes(mine))},
            data={"name": "two"},
        )
        assert uploaded.status_code == 201 and uploaded.json()["name"] == "two"
        back = client.get(f"/v1/latent-sets/{uploaded.json()['id']}/codes.npy", headers=headers)
        np.testing.assert_array_equal(np.load(io.BytesIO(back.content)), mine)
        as_json = client.post("/v1/latent-sets", json={"values": mine.tolist()}, headers=headers)
        assert as_json.json()["id"] == uploaded.json()["id"]  # same codes, same set

        listed = client.get("/v1/latent-sets", headers=headers).json()["items"]
        assert {s["id"] for s in listed} == {view["id"], uploaded.json()["id"]}

        job = client.post(
            "/v1/jobs",
            headers=headers,
            json={"model": MODEL, "latents": {"set": uploaded.json()["id"]}, "top_k": 3},
        )
        assert job.status_code == 202, job.text
        assert store.get_job(job.json()["id"]).latent_set_id == uploaded.json()["id"]
        assert job.json()["n_latents"] == 2

        models = {m["name"]: m for m in client.get("/v1/models", headers=headers).json()}
        assert models[MODEL]["latent_dim"] == LATENT_DIM
        assert len(models[MODEL]["facts"]["weights_sha256"]) == 64  # recorded by the job

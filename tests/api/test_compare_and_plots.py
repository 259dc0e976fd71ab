"""Compare and pictures over HTTP, on spectra computed in this test (dcgan-faces, mse)."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from services.store import Store
from tests.api.conftest import LATENT_DIM, MODEL, assert_problem, bearer

TOP_K = 8
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_compare_and_pictures(client: TestClient, store: Store, token: Callable[..., str]) -> None:
    headers = bearer(token("alice", "read,submit"))
    hessian = client.post(
        "/v1/jobs",
        json={
            "model": MODEL,
            "method": "jacobian",
            "latents": {"count": 3, "seed": 1},
            "top_k": TOP_K,
        },
        headers=headers,
    ).json()
    sefa = client.post(
        "/v1/jobs", json={"model": MODEL, "method": "sefa", "top_k": TOP_K}, headers=headers
    ).json()
    assert store.get_job(hessian["id"]).status == "succeeded"
    assert store.get_job(sefa["id"]).status == "succeeded", store.get_job(sefa["id"]).error

    body = {
        "selections": [
            {"job_id": hessian["id"]},
            {"job_id": sefa["id"], "label": "sefa"},
            {"model": MODEL, "distance": "mse", "method": "jacobian", "label": "pool"},
        ],
        "k": 5,
    }
    response = client.post("/v1/compare", json=body, headers=headers)
    assert response.status_code == 200, response.text
    result = response.json()
    first, second, pool = result["selections"]
    assert (first["n_spectra"], first["d"], first["k"]) == (3, LATENT_DIM, TOP_K)
    # The table is of the full spectra stored with the top k (every eigenvalue): per-rank
    # statistics over all d ranks, the first k those of the stored eigenvalues...
    stored = store.list_spectra(job_id=hessian["id"])
    mean = np.asarray(first["anisotropy"]["mean"])
    assert mean.shape == (LATENT_DIM,)
    np.testing.assert_allclose(
        mean[:TOP_K], np.mean([s.eigenvalues for s in stored], axis=0), rtol=1e-12
    )
    # ...and exact trace-based figures: those of each spectrum's whole-spectrum summary.
    assert first["anisotropy"]["dims_99"] == [s.dims_99 for s in stored]
    assert all(s.dims_99 is not None and s.dims_99 > TOP_K for s in stored)
    np.testing.assert_allclose(
        first["anisotropy"]["participation_ratio"],
        np.array([s.participation_ratio for s in stored], dtype=float),
        rtol=1e-12,
    )
    assert any("top 8 of 100" in note and "full spectra" in note for note in result["notes"])
    assert first["homogeneity"]["n_positions"] == 3 and "log" not in first["homogeneity"]
    assert -1 <= first["homogeneity"]["log_offdiag_mean"] <= 1
    assert second["homogeneity"] is None and second["n_spectra"] == 1

    kinds = {(a["a"], a["b"]): a for a in result["alignments"]}
    sefa_pair = kinds[("sefa", first["label"])]
    assert sefa_pair["kind"] == "sefa-vs-hessian" and sefa_pair["k"] == 5
    angles = np.array(sefa_pair["principal_angles_deg"])
    assert angles.shape == (5,) and np.all((angles >= 0) & (angles <= 90.0001))
    # A job against the pool that holds exactly its spectra: the same axes, angles ~ 0.
    same = kinds[(first["label"], "pool")]
    np.testing.assert_allclose(same["principal_angles_deg"], 0, atol=1e-4)
    np.testing.assert_allclose(same["matched_abs_cosine"], 1, atol=1e-8)

    # Pictures.
    for path, params in (
        ("/v1/plots/spectrum.png", {"selection": [hessian["id"], f"{MODEL}:mse:jacobian"]}),
        ("/v1/plots/homogeneity.png", {"selection": [hessian["id"]]}),
    ):
        picture = client.get(path, params=params, headers=headers)
        assert picture.status_code == 200, picture.text
        assert picture.headers["content-type"] == "image/png" and picture.content[:8] == PNG_MAGIC
    spectrum_id = stored[0].id
    montage = client.get(
        "/v1/plots/montage.png",
        headers=headers,
        params={"spectrum_id": spectrum_id, "axes": 3, "steps": 4},
    )
    assert montage.status_code == 200, montage.text
    width, height = Image.open(io.BytesIO(montage.content)).size
    assert 3 * 64 < height < width  # three axes of 64 px tiles, four steps, annotated
    # One montage renderer: the PNG route draws exactly the annotated figure.
    annotated = client.get(
        "/v1/plots/montage",
        headers=headers,
        params={"spectrum_id": spectrum_id, "axes": 3, "steps": 4, "format": "png"},
    )
    assert annotated.status_code == 200, annotated.text
    assert annotated.content == montage.content

    # Selections that match nothing or are malformed are 4xx problems.
    missing = {"selections": [{"model": "nope", "distance": "mse", "method": "jacobian"}]}
    assert_problem(client.post("/v1/compare", json=missing, headers=headers), 404)
    assert_problem(client.post("/v1/compare", json={"selections": [{}]}, headers=headers), 422)
    assert_problem(
        client.get("/v1/plots/homogeneity.png", params={"selection": sefa["id"]}, headers=headers),
        422,
    )
    other = bearer(token("bob", "read"))
    assert_problem(client.post("/v1/compare", json=body, headers=other), 404)

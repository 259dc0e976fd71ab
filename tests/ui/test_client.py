"""The typed Python client against a live server: the documented notebook example runs as
written, errors are typed with the problem document, and the async twin agrees."""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from api.client import (
    AsyncSpectraClient,
    Conflict,
    InvalidRequest,
    NotFound,
    ServerUnreachable,
    SpectraClient,
    Unauthorized,
)
from tests.ui.conftest import LiveServer

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "python-client.md"


def example_code() -> str:
    blocks = re.findall(r"```python\n(.*?)```", EXAMPLE.read_text(), flags=re.S)
    assert len(blocks) >= 5, "the example lost its code cells"
    return "\n".join(blocks)


def test_documented_example_runs(live_server: LiveServer) -> None:
    token = live_server.store.create_api_key("notebook", ["read", "submit"])[1]
    env = {**os.environ, "SPECTRA_SERVER_URL": live_server.url, "SPECTRA_TOKEN": token}
    done = subprocess.run(
        [sys.executable, "-c", example_code()], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "(3, 16) top eigenvalues" in out and "sefa-vs-hessian" in out
    assert "404 Not found" in out
    assert "422 top_k" in out  # the problem document names the field


def test_typed_errors_lists_and_async(live_server: LiveServer) -> None:
    token = live_server.store.create_api_key("carol", ["read", "submit"])[1]
    with SpectraClient(live_server.url, token) as client:
        job = client.follow(
            client.submit(
                {"model": "dcgan-faces", "top_k": 4, "latents": {"count": 2, "seed": 1}}
            ).id,
            progress=False,
            interval_s=0.2,
            timeout_s=120,
        )
        assert job.status == "succeeded" and job.progress is not None and job.progress.done == 2
        listed = client.jobs(status="succeeded")
        assert [j.id for j in listed.items] == [job.id] and listed.next_offset is None
        assert client.jobs(status="failed").items == []
        assert [j.id for j in client.iter_jobs()] == [job.id]
        spectra = client.spectra(job_id=job.id, order_by="-top_eigenvalue").items
        tops = [s.top_eigenvalue for s in spectra]
        assert len(spectra) == 2 and None not in tops
        assert tops == sorted((t for t in tops if t is not None), reverse=True)
        stored = np.array([s.eigenvalues for s in live_server.store.list_spectra(job_id=job.id)])
        np.testing.assert_allclose(client.eigenvalues(job.id), stored, rtol=1e-6)

        with pytest.raises(NotFound) as missing:
            client.cancel("00000000-0000-4000-8000-000000000000")
        assert missing.value.problem["type"].startswith("https://")
        with pytest.raises(InvalidRequest) as invalid:
            client.submit({"model": "dcgan-faces", "method": "nope"})
        assert invalid.value.status == 422 and "method" in str(invalid.value.field)
        with pytest.raises(ValueError, match="spectrum_id"):
            client.figure("montage")

    with SpectraClient(live_server.url, "wrong-token") as stranger, pytest.raises(Unauthorized):
        stranger.jobs()
    with SpectraClient("http://127.0.0.1:9", token, timeout_s=2) as nowhere:
        with pytest.raises(ServerUnreachable) as unreachable:
            nowhere.jobs()
        assert unreachable.value.status == 0

    async def async_twin() -> None:
        async with AsyncSpectraClient(live_server.url, token) as client:
            again = await client.follow(job.id, interval_s=0.1)
            assert again.id == job.id and again.status == "succeeded"
            assert [j.id for j in (await client.jobs()).items] == [job.id]
            np.testing.assert_allclose(await client.eigenvalues(job.id), stored, rtol=1e-6)
            with pytest.raises(NotFound):
                await client.job("00000000-0000-4000-8000-000000000000")

    asyncio.run(async_twin())


def public_operations(client_class: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(client_class, inspect.isfunction)
        if not name.startswith("_") and name not in ("close", "aclose")
    }


def test_the_async_client_offers_every_operation_of_the_sync_one() -> None:
    sync_ops = public_operations(SpectraClient)
    async_ops = public_operations(AsyncSpectraClient)
    assert len(sync_ops) >= 15 and sorted(async_ops) == sorted(sync_ops)
    for name, signature in sync_ops.items():
        twin = async_ops[name]
        assert list(twin.parameters.values()) == list(signature.parameters.values()), name
        member = getattr(AsyncSpectraClient, name)
        expected = (
            inspect.isasyncgenfunction if name == "iter_jobs" else inspect.iscoroutinefunction
        )
        assert expected(member), f"AsyncSpectraClient.{name} is not awaited"


def test_async_and_sync_clients_give_the_same_answers(live_server: LiveServer) -> None:
    token = live_server.store.create_api_key("dave", ["read", "submit"])[1]
    spec = {"model": "dcgan-faces", "top_k": 4, "latents": {"count": 2, "seed": 5}}
    codes = np.random.default_rng(0).standard_normal((1, 100))
    with SpectraClient(live_server.url, token) as client:
        job = client.follow(client.submit(spec).id, progress=False, interval_s=0.2, timeout_s=120)
        first = client.spectra(job_id=job.id, limit=1).items[0]
        expected = {
            "jobs": [j.id for j in client.iter_jobs()],
            "spectrum": client.spectrum(first.id).eigenvalues,
            "vectors": client.eigenvectors(first.id, k=2),
            "compare": client.compare([job.id], k=2).raw["selections"][0]["anisotropy"],
            "models": [m.name for m in client.models()],
            "png": client.figure("spectrum", selections=[job.id])[:8],
        }

    async def twin() -> None:
        async with AsyncSpectraClient(live_server.url, token) as client:
            again = await client.submit(spec)
            assert again.id == job.id and again.created is False
            uploaded = await client.submit_codes(codes, {"model": "dcgan-faces", "top_k": 2})
            assert uploaded.n_latents == 1 and uploaded.latent_set_id is not None
            done = await client.follow(uploaded.id, progress=False, interval_s=0.2, timeout_s=120)
            assert done.status == "succeeded" and done.timings is not None
            assert [j.id async for j in client.iter_jobs()] == [uploaded.id, *expected["jobs"]]
            listed = (await client.spectra(job_id=job.id, limit=1)).items
            assert listed == [first]
            spectrum = await client.spectrum(first.id)
            np.testing.assert_array_equal(spectrum.eigenvalues, expected["spectrum"])
            vectors = await client.eigenvectors(first.id, k=2)
            np.testing.assert_array_equal(vectors, expected["vectors"])
            exported = await client.export(job.id)
            assert exported[:2] == b"PK"
            imported = await client.import_npz(exported, method="jacobian")
            assert imported.status == "succeeded" and imported.n_done == 2
            np.testing.assert_allclose(
                await client.eigenvalues(imported.id), await client.eigenvalues(job.id)
            )
            compared = await client.compare([job.id], k=2)
            assert compared.raw["selections"][0]["anisotropy"] == expected["compare"]
            assert [m.name for m in await client.models()] == expected["models"]
            png = await client.figure("spectrum", selections=[job.id])
            assert png[:8] == expected["png"] == b"\x89PNG\r\n\x1a\n"
            with pytest.raises(Conflict):
                await client.cancel(job.id)

    asyncio.run(twin())

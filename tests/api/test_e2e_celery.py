"""End to end as deployed: `spectra serve` (uvicorn) and `spectra worker --cpu` (a real Celery
worker) as subprocesses on PostgreSQL and a private Redis; the `spectra` client submits over
HTTP and follows the job to success; then query, compare, export and re-import over HTTP."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from api.cli import main
from services.store import Store
from tests.api.conftest import LATENT_DIM, MODEL, latent_codes_of
from tests.support.net import free_port
from tests.support.redis_server import PrivateRedis

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 120.0


def wait_until(
    condition: Callable[[], bool], timeout_s: float, what: str, logs: list[Path]
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs if p.exists())
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}\n{tails}")


def _stop(process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server of our own: no other test's worker can take our messages."""
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def test_submit_follow_query_compare_export_reimport(
    pg_url: str, private_redis: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = Store(pg_url)
    store.migrate()
    env = {
        **os.environ,
        "SPECTRA_MODE": "development",
        "SPECTRA_DATABASE_URL": pg_url,
        "SPECTRA_BROKER_URL": private_redis,
        "SPECTRA_DEVICE": "cpu",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),
    }
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    logs = [tmp_path / "server.log", tmp_path / "worker.log"]
    cli = [sys.executable, "-m", "api.cli"]
    with logs[0].open("wb") as server_log, logs[1].open("wb") as worker_log:
        server = subprocess.Popen(
            [*cli, "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            env=env,
            cwd=tmp_path,
            stdout=server_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        worker = subprocess.Popen(
            [*cli, "worker", "--cpu"],
            env=env,
            cwd=tmp_path,
            stdout=worker_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, START_TIMEOUT_S, "the API to be ready (database and broker)", logs)
        assert (
            main(
                [
                    "keys",
                    "create",
                    "--owner",
                    "erin",
                    "--scopes",
                    "read,submit",
                    "--database",
                    pg_url,
                ]
            )
            == 0
        )
        token = capsys.readouterr().out.strip().splitlines()[-1]

        # Submit over HTTP with the client command and follow it to the end.
        code = main(
            [
                "submit",
                "--server",
                base,
                "--token",
                token,
                "--model",
                MODEL,
                "--method",
                "jacobian",
                "--latents",
                "3",
                "--seed",
                "2",
                "--top-k",
                "6",
                "--chunk-size",
                "1",
                "--follow",
                "--interval",
                "0.3",
            ]
        )
        output = capsys.readouterr()
        assert code == 0, output.out + output.err + logs[1].read_text()[-3000:]
        job_id = output.out.strip().splitlines()[-1]
        assert "succeeded" in output.out
        job = store.get_job(job_id)
        assert (job.status, job.n_done, job.owner) == ("succeeded", 3, "erin")
        chunks = store.list_chunks(job_id)
        assert len(chunks) == 3 and all(
            c.lease_owner and c.lease_owner.startswith("cpu@") for c in chunks
        )

        assert main(["status", job_id, "--server", base, "--token", token]) == 0
        assert "3/3 done" in capsys.readouterr().out

        # Codes from a .npy file go up as a multipart upload; then follow with `status`.
        codes = np.random.default_rng(7).standard_normal((2, LATENT_DIM))
        np.save(tmp_path / "codes.npy", codes)
        assert (
            main(
                [
                    "submit",
                    "--server",
                    base,
                    "--token",
                    token,
                    "--model",
                    MODEL,
                    "--latents",
                    str(tmp_path / "codes.npy"),
                    "--top-k",
                    "4",
                ]
            )
            == 0
        )
        uploaded_id = capsys.readouterr().out.strip().splitlines()[-1]
        assert (
            main(
                [
                    "status",
                    uploaded_id,
                    "--follow",
                    "--interval",
                    "0.3",
                    "--server",
                    base,
                    "--token",
                    token,
                ]
            )
            == 0
        )
        capsys.readouterr()
        uploaded = store.get_job(uploaded_id)
        assert uploaded.status == "succeeded"
        np.testing.assert_array_equal(latent_codes_of(store, uploaded_id), codes)

        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
            spectra = http.get("/v1/spectra", params={"job_id": job_id}).json()["items"]
            assert [s["latent_index"] for s in spectra] == [0, 1, 2]
            by_name = {"model": MODEL, "distance": "mse", "method": "jacobian"}
            mixed = http.post("/v1/compare", json={"selections": [{"job_id": job_id}, by_name]})
            # The uploaded job kept another top-k: the name alone mixes unlike spectra.
            assert mixed.status_code == 422 and mixed.json()["differing"] == ["kept"], mixed.text
            compared = http.post(
                "/v1/compare",
                json={"selections": [{"job_id": job_id}, {**by_name, "kept": "top-6"}]},
            )
            assert compared.status_code == 200, compared.text
            assert compared.json()["selections"][0]["n_spectra"] == 3
            exported = http.get(f"/v1/jobs/{job_id}/export.npz")
            assert exported.status_code == 200
            archive = np.load(io.BytesIO(exported.content), allow_pickle=False)
            assert archive["evc"].shape == (3, LATENT_DIM, 6)
            reimported = http.post("/v1/jobs/import", files={"file": ("x.npz", exported.content)})
            assert reimported.status_code == 201, reimported.text
            copy_id = reimported.json()["id"]
            first = http.get(f"/v1/spectra/{spectra[0]['id']}").json()
            copy = http.get("/v1/spectra", params={"job_id": copy_id}).json()["items"][0]
            assert (
                http.get(f"/v1/spectra/{copy['id']}").json()["eigenvalues"] == first["eigenvalues"]
            )
            metrics = http.get("/metrics").text
            assert (
                'spectra_jobs_submitted_total{method="jacobian",model="dcgan-faces"} 2.0' in metrics
            )

        # Cancelling a finished job changes nothing, and says so (409 -> exit 1).
        capsys.readouterr()
        assert main(["cancel", job_id, "--server", base, "--token", token]) == 1
        refused = capsys.readouterr().err
        assert "HTTP 409" in refused and "already succeeded; nothing was changed" in refused
        assert store.get_job(job_id).status == "succeeded"
    finally:
        _stop(worker)
        _stop(server)
        store.close()

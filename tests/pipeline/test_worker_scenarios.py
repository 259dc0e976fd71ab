"""The seven failure scenarios of issue 5, with real Celery worker subprocesses (prefork,
concurrency 1, started like `spectra worker --cpu`), a private Redis and real PostgreSQL.

Workers are shared by the tests of this module (each test uses its own jobs); a test that
kills the whole worker leaves the next test to start a fresh one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
import torch
from celery import Celery

from services.config import Settings
from services.pipeline import JobSpec, cancel_job, run_job_inprocess, submit_job
from services.store import JobRecord, Store
from tests.conftest import PG_ADMIN_DSN
from tests.pipeline import toy_generators
from tests.pipeline.conftest import MAX_ATTEMPTS, Cluster
from tests.support.redis_server import PrivateRedis
from tests.support.waiting import finished, wait_for
from worker.celery_app import CHUNK_QUEUE, CHUNK_TASK

pytestmark = pytest.mark.slow  # a minute of worker scenarios: started first

TOY_FILE = Path(toy_generators.__file__).resolve()
SLOW_MODEL = f"python:{TOY_FILE}:slow"
NAN_MODEL = f"python:{TOY_FILE}:nan_at_trigger"


def _submit(store: Store, sender: Celery, owner: str, **spec: Any) -> JobRecord:
    def dispatch(chunk_ids: list[str]) -> None:
        for chunk_id in chunk_ids:
            sender.send_task(CHUNK_TASK, args=[chunk_id], task_id=chunk_id, queue=CHUNK_QUEUE)

    job, created = submit_job(store, JobSpec(**spec), owner, dispatch, settings=Settings())
    assert created
    return job


def _submit_slow(store: Store, sender: Celery, scenario: int, count: int) -> JobRecord:
    """``count`` codes of the slow toy in chunks of 4, owned by and seeded with the scenario."""
    return _submit(
        store,
        sender,
        f"scenario-{scenario}",
        model=SLOW_MODEL,
        latents={"count": count, "seed": scenario},
        chunk_size=4,
    )


def _mid_chunk(store: Store, job_id: str, timeout_s: float = 60, at_least: int = 1) -> None:
    """Wait until a chunk is running with part of its latents stored and part still to do."""

    def partway() -> bool:
        stored = store.stored_latent_indices(job_id)
        return len(stored) >= at_least and any(
            chunk.status == "running"
            and 0 < len(stored & set(chunk.latent_indices)) < len(chunk.latent_indices)
            for chunk in store.list_chunks(job_id)
        )

    wait_for(partway, timeout_s, "a chunk to be part-way through", poll_s=0.02)


def _assert_each_latent_once(store: Store, job_id: str, n: int) -> None:
    spectra = store.list_spectra(job_id=job_id, limit=1000)
    assert sorted(s.latent_index for s in spectra) == list(range(n))
    job = store.get_job(job_id)
    assert job.n_done == n and job.n_failed == 0
    for spectrum in spectra:  # every row complete: vectors readable, right shape
        vectors = store.eigenvectors(spectrum.id)
        assert vectors.shape == (spectrum.d, spectrum.k)
        assert np.isfinite(vectors).all() and np.isfinite(spectrum.eigenvalues).all()


def test_1_three_chunk_job_matches_the_inprocess_runner(
    cluster: Cluster, module_store: Store, sender: Celery, sqlite_url: str
) -> None:
    cluster.running()
    spec = dict(
        model="dcgan-faces",
        distance="mse",
        method="jacobian",
        dtype="float32",
        latents={"count": 3, "seed": 11},
        chunk_size=1,
    )
    job = _submit(module_store, sender, "scenario-1", **spec)
    assert len(module_store.list_chunks(job.id)) == 3
    assert finished(module_store, job.id, timeout_s=180).status == "succeeded"
    _assert_each_latent_once(module_store, job.id, 3)
    assert all(c.attempts == 1 for c in module_store.list_chunks(job.id))

    embedded = Store(sqlite_url)
    embedded.migrate()
    local, _ = submit_job(embedded, JobSpec(**spec), "scenario-1", None, settings=Settings())  # type: ignore[arg-type]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the workers: the same arithmetic, to the last bit
    try:
        assert run_job_inprocess(embedded, local.id).status == "succeeded"
    finally:
        torch.set_num_threads(threads)
    assert local.resolved["latent_set"]["sha256"] == job.resolved["latent_set"]["sha256"]
    remote = {s.latent_index: s for s in module_store.list_spectra(job_id=job.id, limit=100)}
    for mine in embedded.list_spectra(job_id=local.id, limit=100):
        theirs = remote[mine.latent_index]
        np.testing.assert_array_equal(mine.code, theirs.code)
        np.testing.assert_array_equal(mine.eigenvalues, theirs.eigenvalues)
        np.testing.assert_array_equal(
            embedded.eigenvectors(mine.id), module_store.eigenvectors(theirs.id)
        )


def test_2_pool_child_killed_mid_chunk(
    cluster: Cluster, module_store: Store, sender: Celery
) -> None:
    worker = cluster.running()
    job = _submit_slow(module_store, sender, 2, count=8)
    _mid_chunk(module_store, job.id)
    (child,) = worker.pool_children()
    os.kill(child, signal.SIGKILL)

    assert finished(module_store, job.id).status == "succeeded"
    _assert_each_latent_once(module_store, job.id, 8)
    attempts = sorted(c.attempts for c in module_store.list_chunks(job.id))
    assert attempts == [1, 2]  # the killed chunk ran again, once; the other was untouched
    assert worker.alive() and child not in worker.pool_children()


def test_3_whole_worker_killed_and_replaced(
    cluster: Cluster, module_store: Store, sender: Celery
) -> None:
    worker = cluster.running()
    job = _submit_slow(module_store, sender, 3, count=8)
    _mid_chunk(module_store, job.id)
    cluster.kill(worker)
    stored_before = module_store.stored_latent_indices(job.id)

    replacement = cluster.start()
    assert finished(module_store, job.id).status == "succeeded"
    _assert_each_latent_once(module_store, job.id, 8)
    chunks = module_store.list_chunks(job.id)
    assert max(c.attempts for c in chunks) == 2 and all(c.attempts <= MAX_ATTEMPTS for c in chunks)
    # What the dead worker stored was kept, not recomputed.
    kept = {s.latent_index: s.created_at for s in module_store.list_spectra(job_id=job.id)}
    assert stored_before <= set(kept)
    assert replacement.alive()


def test_4_redis_restarted_mid_job(
    cluster: Cluster, module_store: Store, sender: Celery, private_redis: PrivateRedis
) -> None:
    worker = cluster.running()
    job = _submit_slow(module_store, sender, 4, count=12)
    _mid_chunk(module_store, job.id)
    private_redis.restart()  # no persistence: every queued and unacknowledged message is gone

    assert finished(module_store, job.id, timeout_s=120).status == "succeeded"
    _assert_each_latent_once(module_store, job.id, 12)
    assert worker.alive()


def test_5_cancel_stops_at_the_next_latent_and_keeps_results(
    cluster: Cluster, module_store: Store, sender: Celery
) -> None:
    cluster.running()
    job = _submit_slow(module_store, sender, 5, count=12)
    _mid_chunk(module_store, job.id)
    cancel_job(module_store, job.id, revoke=lambda ids: sender.control.revoke(ids))
    at_cancel = len(module_store.stored_latent_indices(job.id))

    final = finished(module_store, job.id, timeout_s=30)
    assert final.status == "cancelled"
    stored = len(module_store.stored_latent_indices(job.id))
    # The latent in progress when the flag was set may still be stored; nothing after it.
    assert at_cancel <= stored <= at_cancel + 1 < 12
    assert {c.status for c in module_store.list_chunks(job.id)} <= {"succeeded", "cancelled"}
    time.sleep(1.0)
    assert len(module_store.stored_latent_indices(job.id)) == stored
    assert len(module_store.list_spectra(job_id=job.id, limit=100)) == stored


def test_6_generator_nan_on_one_code_fails_that_latent_only(
    cluster: Cluster, module_store: Store, sender: Celery
) -> None:
    worker = cluster.running()
    codes = np.random.default_rng(6).standard_normal((4, toy_generators.LATENT_DIM))
    codes[2, 0] = toy_generators.TRIGGER
    job = _submit(
        module_store,
        sender,
        "scenario-6",
        model=NAN_MODEL,
        latents={"values": codes.tolist()},
        chunk_size=2,
    )
    final = finished(module_store, job.id)
    assert final.status == "succeeded" and final.n_done == 3 and final.n_failed == 1
    (failure,) = module_store.latent_failures(job.id)
    assert failure.latent_index == 2 and "NonFiniteOutputError" in failure.reason
    assert sorted(s.latent_index for s in module_store.list_spectra(job_id=job.id)) == [0, 1, 3]
    assert [c.attempts for c in module_store.list_chunks(job.id)] == [1, 1]

    # The same worker process is alive and takes the next job.
    next_job = _submit(
        module_store, sender, "scenario-6", model="dcgan-faces", latents={"count": 2, "seed": 6}
    )
    assert finished(module_store, next_job.id).status == "succeeded"
    assert worker.alive() and cluster.running() is worker


def test_7_database_connections_terminated_mid_job(
    cluster: Cluster, module_store: Store, sender: Celery, module_pg_url: str
) -> None:
    worker = cluster.running()
    database = module_pg_url.rsplit("/", 1)[1]
    job = _submit_slow(module_store, sender, 7, count=12)
    terminated = 0
    for at_least in (1, 6):
        _mid_chunk(module_store, job.id, at_least=at_least)
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            rows = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            ).fetchall()
        terminated += sum(1 for (ok,) in rows if ok)
    assert terminated >= 2  # the worker's connections (and ours) were really cut

    assert finished(module_store, job.id).status == "succeeded"
    _assert_each_latent_once(module_store, job.id, 12)
    assert worker.alive()


def test_launcher_starts_a_cpu_worker_and_stops_it_on_sigterm(
    module_pg_url: str, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    """`spectra worker --cpu` is `launch(None, cpu=True)`: one prefork worker, concurrency 1;
    SIGTERM is passed on for a warm shutdown and the launcher exits 0."""
    from tests.pipeline.conftest import worker_env

    log = tmp_path / "launcher.log"
    with log.open("wb") as out:
        launcher = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; from worker.launcher import launch; sys.exit(launch(None, cpu=True))",
            ],
            env={**os.environ, **worker_env(module_pg_url, private_redis.url)},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: "ready." in log.read_text(errors="replace"), 90, "the launched worker")
        text = log.read_text(errors="replace")
        assert "concurrency: 1 (prefork)" in text and "cpu@" in text
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=60) == 0
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()


def test_6b_poison_latents_each_fail_with_their_reason_after_the_attempt_cap(
    cluster: Cluster, module_store: Store, sender: Celery
) -> None:
    """Every latent of this chunk kills the pool child that computes it: each is recorded as
    its own failure once MAX_ATTEMPTS runs ended on it, the chunk goes on past it and
    finishes, and the job (no latent done) fails with the first latent's reason."""
    worker = cluster.running()
    children_before = set(worker.pool_children())
    job = _submit(
        module_store,
        sender,
        "scenario-6b",
        model=f"python:{TOY_FILE}:crash",
        latents={"count": 2, "seed": 8},
        chunk_size=2,
    )
    final = finished(module_store, job.id, timeout_s=180)
    (chunk,) = module_store.list_chunks(job.id)
    failures = module_store.latent_failures(job.id)
    assert chunk.status == "succeeded" and chunk.attempts <= MAX_ATTEMPTS, (chunk, failures)
    assert sorted(f.latent_index for f in failures) == [0, 1]
    for failure in failures:
        assert f"({MAX_ATTEMPTS} of {MAX_ATTEMPTS} attempts)" in failure.reason, failure.reason
    assert final.status == "failed" and "ended before it finished" in (final.error or "")
    assert final.n_failed == 2 and final.n_done == 0
    assert module_store.list_spectra(job_id=job.id) == []
    # Each attempt cost a pool child; the worker itself lived through all of them.
    assert worker.alive() and not children_before & set(worker.pool_children())

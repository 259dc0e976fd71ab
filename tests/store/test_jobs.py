"""Jobs and chunks: dedupe, guarded transitions, leases, cancellation, progress, final status."""

from __future__ import annotations

import threading
from datetime import UTC

import pytest
from sqlalchemy import text

from services.store import ChunkPlan, InvalidDataError, JobRecord, NotFoundError, Store

from .helpers import make_job, save


def test_same_spec_twice_is_one_job(store: Store) -> None:
    first = make_job(store, n_latents=4, chunk_size=2)
    again, created = store.create_job(
        "alice", {"other": "spec"}, {}, "spec-1", None, 99, [ChunkPlan(0, [0])]
    )
    assert created is False and again.id == first.id and again.n_latents == 4
    assert len(store.list_chunks(first.id)) == 2  # the second call created no chunks
    _, created_for_bob = store.create_job("bob", {}, {}, "spec-1", None, 1, [ChunkPlan(0, [0])])
    assert created_for_bob is True  # dedupe is per owner


def test_concurrent_submissions_of_one_spec_create_one_job(db_url: str) -> None:
    with Store(db_url) as setup:
        setup.migrate()
    stores = [Store(db_url), Store(db_url)]
    barrier = threading.Barrier(2)
    results: list[tuple[JobRecord, bool]] = []

    def submit(store: Store) -> None:
        barrier.wait(timeout=30)
        results.append(store.create_job("alice", {}, {}, "same", None, 2, [ChunkPlan(0, [0, 1])]))

    threads = [threading.Thread(target=submit, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for store in stores:
        store.close()
    assert sorted(created for _, created in results) == [False, True]
    assert results[0][0].id == results[1][0].id
    with Store(db_url) as check:
        assert len(check.list_jobs()) == 1 and len(check.list_chunks(results[0][0].id)) == 1


def test_bad_plans_are_refused_before_anything_is_written(store: Store) -> None:
    with pytest.raises(InvalidDataError, match="outside 0..1"):
        store.create_job("alice", {}, {}, "h", None, 2, [ChunkPlan(0, [0, 2])])
    with pytest.raises(InvalidDataError, match="appears twice"):
        store.create_job("alice", {}, {}, "h", None, 2, [ChunkPlan(0, [0]), ChunkPlan(0, [1])])
    with pytest.raises(InvalidDataError, match="finite"):
        store.create_job("alice", {"step": float("nan")}, {}, "h", None, 1, [])
    with pytest.raises(NotFoundError, match="latent set"):
        store.create_job("alice", {}, {}, "h", "missing-set", 1, [ChunkPlan(0, [0])])
    assert store.list_jobs() == []


def test_job_records_are_frozen_and_timestamps_utc(store: Store) -> None:
    job = make_job(store)
    assert job.created_at.tzinfo == UTC and store.get_job(job.id).created_at.tzinfo == UTC
    with pytest.raises(AttributeError):
        job.status = "running"  # type: ignore[misc]
    with pytest.raises(NotFoundError):
        store.get_job(job.id, owner="mallory")
    assert [j.id for j in store.list_jobs(owner="alice", status="queued", model="dcgan-faces")] == [
        job.id
    ]
    assert store.list_jobs(owner="bob") == []


def test_job_transitions_are_guarded(store: Store) -> None:
    job = make_job(store)
    assert store.transition_job(job.id, ["queued"], "running") is True
    assert store.transition_job(job.id, ["queued"], "running") is False  # duplicate delivery
    assert store.transition_job(job.id, ["running"], "failed", error="boom") is True
    assert store.transition_job(job.id, ["queued", "running"], "succeeded") is False
    final = store.get_job(job.id)
    assert (final.status, final.error) == ("failed", "boom")
    assert final.started_at is not None and final.finished_at is not None
    with pytest.raises(InvalidDataError, match="unknown job status"):
        store.transition_job(job.id, ["failed"], "paused")


def test_claim_heartbeat_finish_and_duplicate_delivery(store: Store) -> None:
    job = make_job(store, n_latents=2, chunk_size=2)
    [chunk] = store.list_chunks(job.id)
    claimed = store.claim_chunk(chunk.id, "worker-a", max_attempts=3)
    assert claimed is not None and claimed.status == "running" and claimed.attempts == 1
    assert claimed.lease_owner == "worker-a" and claimed.latent_indices == (0, 1)
    assert store.get_job(job.id).status == "running"  # the first claim starts the job
    assert store.claim_chunk(chunk.id, "worker-b", max_attempts=3) is None  # leased
    assert store.heartbeat(chunk.id, "worker-b") is False
    assert store.heartbeat(chunk.id, "worker-a") is True
    assert store.finish_chunk(chunk.id, "worker-b", "succeeded") is False  # not its lease
    assert store.finish_chunk(chunk.id, "worker-a", "succeeded") is True
    # A duplicate delivery cannot move the finished chunk back or finish it again.
    assert store.claim_chunk(chunk.id, "worker-a", max_attempts=3) is None
    assert store.finish_chunk(chunk.id, "worker-a", "failed", error="late") is False
    assert store.requeue_chunk(chunk.id, older_than_s=0) is False
    assert store.heartbeat(chunk.id, "worker-a") is False
    final = store.get_chunk(chunk.id)
    assert (final.status, final.error, final.attempts) == ("succeeded", None, 1)
    with pytest.raises(InvalidDataError, match="final chunk status"):
        store.finish_chunk(chunk.id, "worker-a", "running")
    with pytest.raises(NotFoundError):
        store.claim_chunk("no-such-chunk", "worker-a", max_attempts=3)


def test_two_workers_racing_for_one_chunk_get_one_lease(db_url: str) -> None:
    with Store(db_url) as setup:
        setup.migrate()
        job = make_job(setup, n_latents=8, chunk_size=1)
        chunk_ids = [chunk.id for chunk in setup.list_chunks(job.id)]
    stores = [Store(db_url), Store(db_url)]
    barrier = threading.Barrier(2)
    wins: dict[str, list[str]] = {chunk_id: [] for chunk_id in chunk_ids}

    def race(store: Store, worker: str) -> None:
        for chunk_id in chunk_ids:
            barrier.wait(timeout=30)
            if store.claim_chunk(chunk_id, worker, max_attempts=3) is not None:
                wins[chunk_id].append(worker)

    threads = [threading.Thread(target=race, args=(s, f"w{i}")) for i, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for store in stores:
        store.close()
    assert all(len(winners) == 1 for winners in wins.values()), wins
    with Store(db_url) as check:
        assert all(c.attempts == 1 for c in check.list_chunks(job.id))


def test_stale_chunks_are_requeued_and_attempts_are_capped(store: Store) -> None:
    job = make_job(store, n_latents=1, chunk_size=1)
    [chunk] = store.list_chunks(job.id)
    assert store.claim_chunk(chunk.id, "w1", max_attempts=2) is not None
    assert store.stale_chunks(older_than_s=3600) == []
    assert store.requeue_chunk(chunk.id, older_than_s=3600) is False  # heartbeat is fresh
    assert [c.id for c in store.stale_chunks(older_than_s=0)] == [chunk.id]
    assert store.requeue_chunk(chunk.id, older_than_s=0) is True
    assert store.requeue_chunk(chunk.id, older_than_s=0) is False  # already queued
    assert store.finish_chunk(chunk.id, "w1", "succeeded") is False  # the lease was lost
    second = store.claim_chunk(chunk.id, "w2", max_attempts=2)
    assert second is not None and second.attempts == 2
    assert store.requeue_chunk(chunk.id, older_than_s=0) is True
    assert store.claim_chunk(chunk.id, "w3", max_attempts=2) is None  # poison chunk
    exhausted = store.get_chunk(chunk.id)
    assert exhausted.status == "failed" and exhausted.error == "attempts exhausted (2 of 2)"
    failed_job = store.refresh_job_status(job.id)
    assert failed_job.status == "failed"
    assert failed_job.error == "chunk 0 failed: attempts exhausted (2 of 2)"


def test_cancel_is_a_flag_plus_cancelled_queued_chunks(store: Store) -> None:
    job = make_job(store, n_latents=4, chunk_size=2)
    running, queued = store.list_chunks(job.id)
    assert store.claim_chunk(running.id, "w1", max_attempts=3) is not None
    assert store.is_cancelled(job.id) is False
    assert store.request_cancel(job.id) is True
    assert store.request_cancel(job.id) is False
    assert store.is_cancelled(job.id) is True
    assert store.claim_chunk(queued.id, "w2", max_attempts=3) is None
    assert store.get_chunk(queued.id).status == "cancelled"
    assert store.finish_chunk(running.id, "w1", "cancelled") is True  # it saw the flag
    assert store.refresh_job_status(job.id).status == "cancelled"
    assert store.transition_job(job.id, ["queued", "running"], "succeeded") is False
    finished = make_job(store, spec_hash="done")
    store.transition_job(finished.id, ["queued"], "succeeded")
    assert store.request_cancel(finished.id) is False
    assert store.is_cancelled(finished.id) is False
    with pytest.raises(NotFoundError):
        store.request_cancel("no-such-job")


def _run_all_chunks(store: Store, job: JobRecord, fail_index: int | None = None) -> None:
    for chunk in store.list_chunks(job.id):
        assert store.claim_chunk(chunk.id, "w", max_attempts=3) is not None
        status = "failed" if chunk.index == fail_index else "succeeded"
        error = "CUDA out of memory" if status == "failed" else None
        assert store.finish_chunk(chunk.id, "w", status, error=error)


def test_refresh_job_status_rules(store: Store) -> None:
    ok = make_job(store, spec_hash="ok", n_latents=4, chunk_size=2)
    first = store.list_chunks(ok.id)[0]
    store.claim_chunk(first.id, "w", max_attempts=3)
    assert store.refresh_job_status(ok.id).status == "running"  # a chunk is still running
    store.finish_chunk(first.id, "w", "succeeded")
    second = store.list_chunks(ok.id)[1]
    store.claim_chunk(second.id, "w", max_attempts=3)
    store.finish_chunk(second.id, "w", "succeeded")
    for index in range(3):
        save(store, ok.id, index)
    store.record_latent_failure(ok.id, 3, "NaN image")  # one latent failing does not fail it
    done = store.refresh_job_status(ok.id)
    assert (done.status, done.n_done, done.n_failed) == ("succeeded", 3, 1)
    assert store.refresh_job_status(ok.id) == done  # terminal: unchanged

    broken = make_job(store, spec_hash="broken", n_latents=4, chunk_size=2)
    _run_all_chunks(store, broken, fail_index=1)
    failed = store.refresh_job_status(broken.id)
    assert (failed.status, failed.error) == ("failed", "chunk 1 failed: CUDA out of memory")

    hopeless = make_job(store, spec_hash="hopeless", n_latents=2, chunk_size=2)
    _run_all_chunks(store, hopeless)
    for index in range(2):
        store.record_latent_failure(hopeless.id, index, f"NaN at {index}")
    every = store.refresh_job_status(hopeless.id)
    assert (every.status, every.error) == ("failed", "every latent failed; latent 0: NaN at 0")


def test_job_progress(store: Store) -> None:
    job = make_job(store, n_latents=4, chunk_size=4)
    before = store.job_progress(job.id)
    assert (before.planned, before.done, before.failed, before.started_at) == (4, 0, 0, None)
    assert before.rate is None and before.eta_s is None and before.elapsed_s is None
    [chunk] = store.list_chunks(job.id)
    store.claim_chunk(chunk.id, "w", max_attempts=3)
    assert store.job_progress(job.id).eta_s is None  # nothing finished: rate unknown
    save(store, job.id, 0)
    store.record_latent_failure(job.id, 1, "NaN")
    running = store.job_progress(job.id)
    assert (running.done, running.failed, running.status) == (1, 1, "running")
    assert running.rate is not None and running.rate > 0 and running.elapsed_s is not None
    assert running.eta_s == pytest.approx(2 / running.rate)
    for index in (2, 3):
        save(store, job.id, index)
    store.finish_chunk(chunk.id, "w", "succeeded")
    store.refresh_job_status(job.id)
    final = store.job_progress(job.id)
    assert (final.status, final.done, final.eta_s) == ("succeeded", 3, 0.0)


def test_postgres_connections_killed_mid_job_are_replaced(pg_store: Store) -> None:
    """Reads retry once on a fresh pool, writes pre-ping: no call fails after a kill."""
    import psycopg

    from tests.conftest import PG_ADMIN_DSN

    job = make_job(pg_store)
    save(pg_store, job.id, 0)
    [record] = pg_store.list_spectra(job_id=job.id)
    with pg_store.engine.connect() as conn:
        database = conn.execute(text("SELECT current_database()")).scalar_one()

    def kill_all() -> int:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            row = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            ).fetchone()
        return 0 if row is None else int(row[0])

    assert kill_all() >= 2  # the read pool's and the write pool's connections
    assert pg_store.eigenvectors(record.id, k=2).shape == (16, 2)  # raw binary read path
    assert kill_all() >= 1
    assert pg_store.get_job(job.id).id == job.id  # SQLAlchemy read path
    assert kill_all() >= 1
    pg_store.ping()  # a health check after a restart of the server says "up"
    assert save(pg_store, job.id, 1) is True  # write path (pre-ping)
    assert pg_store.get_job(job.id).n_done == 2

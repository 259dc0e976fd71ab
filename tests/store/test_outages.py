"""A store that cannot answer or cannot write is the store's own error (never the driver's), a
cancel is a point in time, a run handed back for a cause outside it is not charged, and a
finished job's missing latents can be computed again."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from services.store import (
    ConflictError,
    JobClosedError,
    Store,
    StoreFull,
    StoreUnavailable,
)

from .helpers import make_job, save

CLOSED_PORT = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"


def test_a_database_that_cannot_be_reached_is_store_unavailable_on_every_path() -> None:
    with Store(CLOSED_PORT) as store:
        with pytest.raises(StoreUnavailable, match="cannot be reached"):
            store.get_job("00000000-0000-0000-0000-000000000000")  # the prepared hot read
        with pytest.raises(StoreUnavailable):
            store.list_jobs()  # a SQLAlchemy read
        with pytest.raises(StoreUnavailable):
            make_job(store)  # a write
        with pytest.raises(StoreUnavailable):
            asyncio.run(store.get_job_async("00000000-0000-0000-0000-000000000000"))


@pytest.fixture
def read_only_url(pg_url: str) -> Iterator[str]:
    """A migrated database whose sessions are read-only, as on a standby (SQLSTATE 25006)."""
    with Store(pg_url) as store:
        store.migrate()
    database = pg_url.rsplit("/", 1)[1]
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
    yield pg_url


def test_a_read_only_database_is_store_full_and_reads_still_work(read_only_url: str) -> None:
    with Store(read_only_url) as store:
        assert store.list_jobs() == []
        with pytest.raises(StoreFull, match="full or read-only"):
            make_job(store)
        with pytest.raises(StoreFull, match="full or read-only"):
            store.ping()  # readiness says what it is


@pytest.mark.parametrize("write", ["spectrum", "failure"])
def test_nothing_is_stored_after_a_cancel(store: Store, write: str) -> None:
    job = make_job(store, n_latents=4, chunk_size=4)
    (chunk,) = store.list_chunks(job.id)
    assert store.claim_chunk(chunk.id, "w", 3) is not None
    assert save(store, job.id, 0)
    assert store.request_cancel(job.id)
    with pytest.raises(JobClosedError, match="cancelled"):
        if write == "spectrum":
            save(store, job.id, 1)
        else:
            store.record_latent_failure(job.id, 1, "NaN")
    assert save(store, job.id, 0) is False  # a repeated write of a result it holds: nothing
    after = store.get_job(job.id)
    assert after.status == "cancelled" and after.n_done == 1 and after.n_failed == 0
    assert store.stored_latent_indices(job.id) == {0}


def test_a_cancel_racing_the_writes_leaves_nothing_after_it(pg_store: Store) -> None:
    """Writers store latents as fast as they can while the job is cancelled: what is stored
    when the cancel has answered is all that is ever stored, and n_done counts exactly it."""
    job = make_job(pg_store, n_latents=400, chunk_size=400)
    stop = threading.Event()
    refused: list[int] = []

    def writer(offset: int) -> None:
        with Store(pg_store.url) as own:
            for index in range(offset, 400, 4):
                if stop.is_set():
                    return
                try:
                    save(own, job.id, index, d=8, k=4)
                except JobClosedError:
                    refused.append(index)
                    return

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    while len(pg_store.stored_latent_indices(job.id)) < 20:
        time.sleep(0.005)
    pg_store.request_cancel(job.id)
    cancelled = pg_store.get_job(job.id)
    at_cancel = pg_store.stored_latent_indices(job.id)
    for thread in threads:
        thread.join(timeout=60)
    stop.set()
    final = pg_store.get_job(job.id)
    spectra = pg_store.list_spectra(job_id=job.id, limit=1000)
    assert refused, "a writer should have met the cancel"
    assert final.n_done == cancelled.n_done == len(spectra) == len(at_cancel)
    assert {s.latent_index for s in spectra} == at_cancel


def test_a_chunk_handed_back_is_not_charged(store: Store) -> None:
    """release_chunk (the store was unavailable too long) gives back the attempt and does not
    mark the latent in progress; a stale lease requeued by the reaper does (the run may have
    died on it): with max_attempts 1 the latter is a poison latent at once."""
    job = make_job(store, n_latents=2, chunk_size=2)
    (chunk,) = store.list_chunks(job.id)
    assert store.claim_chunk(chunk.id, "w", 1) is not None
    assert store.start_latent(chunk.id, "w", 1)
    assert store.release_chunk(chunk.id, "w")
    assert not store.release_chunk(chunk.id, "w")  # no longer ours
    again = store.claim_chunk(chunk.id, "w2", 1)
    assert again is not None and again.attempts == 1
    assert store.latent_failures(job.id) == []

    assert store.start_latent(chunk.id, "w2", 1)
    assert store.requeue_chunk(chunk.id, older_than_s=0)
    store.claim_chunk(chunk.id, "w3", 1)
    (failure,) = store.latent_failures(job.id)
    assert failure.latent_index == 1 and "died" in failure.reason


def test_resume_computes_again_what_a_finished_job_is_missing(store: Store) -> None:
    job = make_job(store, n_latents=4, chunk_size=2)
    first, second = store.list_chunks(job.id)
    for chunk in (first, second):
        assert store.claim_chunk(chunk.id, "w", 3) is not None
    for index in (0, 1, 2):
        assert save(store, job.id, index)
    store.record_latent_failure(job.id, 3, "its worker process died on it")
    for chunk in (first, second):
        assert store.finish_chunk(chunk.id, "w", "succeeded")
    done = store.refresh_job_status(job.id)
    assert done.status == "succeeded" and (done.n_done, done.n_failed) == (3, 1)

    reopened, chunk_ids = store.reopen_job(job.id)
    assert reopened.status == "queued" and reopened.finished_at is None
    assert (reopened.n_done, reopened.n_failed) == (3, 0)
    assert store.latent_failures(job.id) == []
    (requeued,) = chunk_ids
    assert requeued != second.id  # a fresh id: a message revoked at a cancel stays dead
    chunks = {c.id: c for c in store.list_chunks(job.id)}
    assert chunks[first.id].status == "succeeded"
    assert chunks[requeued].status == "queued" and chunks[requeued].attempts == 0
    assert chunks[requeued].latent_indices == (2, 3)
    with pytest.raises(ConflictError, match="only a finished job"):
        store.reopen_job(job.id)

    assert store.claim_chunk(requeued, "w", 3) is not None
    assert save(store, job.id, 3)
    assert store.finish_chunk(requeued, "w", "succeeded")
    final = store.refresh_job_status(job.id)
    assert final.status == "succeeded" and (final.n_done, final.n_failed) == (4, 0)
    with pytest.raises(ConflictError, match="nothing to resume"):
        store.reopen_job(job.id)


def test_resume_of_a_cancelled_job_requeues_its_cancelled_chunks(store: Store) -> None:
    job = make_job(store, n_latents=4, chunk_size=2)
    assert store.request_cancel(job.id)
    reopened, chunk_ids = store.reopen_job(job.id)
    assert reopened.status == "queued" and not reopened.cancel_requested
    assert len(chunk_ids) == 2
    assert {c.status for c in store.list_chunks(job.id)} == {"queued"}
    assert not store.is_cancelled(job.id)

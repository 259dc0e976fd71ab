"""The API's hot reads (get_job, latent_failures, get_spectrum, list_spectra) are statements
built once and, on PostgreSQL, run straight on psycopg, in a thread or (the ``*_async`` forms)
on an asyncio pool: they must answer exactly what the SQLAlchemy reads answer."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg.rows import tuple_row
from sqlalchemy import text

from services.store import InvalidDataError, NotFoundError, Store
from services.store.prepared import _KEPT_CURSORS, DriverReads
from tests.conftest import PG_ADMIN_DSN

from .helpers import make_job, save


def _timestamps(store: Store, job_id: str, spectrum_id: str) -> list[datetime | None]:
    job = store.get_job(job_id)
    [failure] = store.latent_failures(job_id)
    [listed] = store.list_spectra(job_id=job_id, owner="alice")
    one = store.get_spectrum(spectrum_id)
    stamps = [job.created_at, job.started_at, job.updated_at, failure.created_at]
    return [*stamps, listed.created_at, one.created_at]


def test_postgres_timestamps_are_utc_whatever_the_session_time_zone(pg_url: str) -> None:
    database = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE \"{database}\" SET timezone TO 'Asia/Kolkata'")
    with Store(pg_url) as store:
        store.migrate()
        with store.engine.connect() as conn:  # sessions really answer in +05:30
            assert conn.execute(text("SHOW timezone")).scalar_one() == "Asia/Kolkata"
        job = make_job(store, n_latents=2, chunk_size=2)
        [chunk] = store.list_chunks(job.id)
        store.claim_chunk(chunk.id, "w", max_attempts=3)
        save(store, job.id, 0)
        store.record_latent_failure(job.id, 1, "NaN")
        [spectrum] = store.list_spectra(job_id=job.id)
        stamps = _timestamps(store, job.id, spectrum.id)
        assert all(stamp is not None and stamp.tzinfo is UTC for stamp in stamps)
        # The same instants as the SQLAlchemy path (list_jobs) reads.
        [listed] = store.list_jobs(owner="alice")
        assert (stamps[0], stamps[1]) == (listed.created_at, listed.started_at)


def test_progress_of_a_read_job_is_its_job_progress(store: Store) -> None:
    job = make_job(store, n_latents=2, chunk_size=2)
    [chunk] = store.list_chunks(job.id)
    store.claim_chunk(chunk.id, "w", max_attempts=3)
    save(store, job.id, 0)
    store.record_latent_failure(job.id, 1, "NaN")
    store.finish_chunk(chunk.id, "w", "succeeded")
    finished = store.refresh_job_status(job.id)
    assert finished.status == "succeeded"  # finished: progress no longer moves with the clock
    assert store.progress_of(store.get_job(job.id)) == store.job_progress(job.id)
    assert store.get_job(job.id, owner="alice") == finished
    with pytest.raises(NotFoundError):
        store.get_job(job.id, owner="bob")
    with pytest.raises(NotFoundError):
        store.get_spectrum("00000000-0000-0000-0000-000000000000")


def test_every_spectra_filter_combination_selects_what_it_names(store: Store) -> None:
    """Each combination of filters is its own cached statement; a statement reused with the
    wrong combination, or values bound to the wrong names, would select other rows."""
    alice = make_job(store, owner="alice", spec_hash="a", n_latents=3)
    bob = make_job(store, owner="bob", spec_hash="b", n_latents=3)
    variants = [
        {"model": "dcgan-faces", "distance": "mse", "method": "jacobian"},
        {"model": "other", "distance": "mse", "method": "hvp"},
        {"model": "dcgan-faces", "distance": "lpips-alex", "method": "hvp"},
    ]
    for job in (alice, bob):
        for index, variant in enumerate(variants):
            save(
                store,
                job.id,
                index,
                seed=index,
                model=variant["model"],
                distance=variant["distance"],
                method=variant["method"],
            )
    every = store.list_spectra(limit=100)
    assert len(every) == 6
    owners = {alice.id: "alice", bob.id: "bob"}
    wanted_values = {"job_id": bob.id, **variants[2]}
    for size in range(len(wanted_values) + 1):
        for names in itertools.combinations(wanted_values, size):
            filters = {name: wanted_values[name] for name in names}
            for owner in (None, "alice", "bob"):
                expected = [
                    r.id
                    for r in every
                    if all(getattr(r, name) == value for name, value in filters.items())
                    and owner in (None, owners[r.job_id])
                ]
                got = store.list_spectra(**filters, owner=owner, limit=100)  # type: ignore[arg-type]
                assert [r.id for r in got] == expected, (filters, owner)
                summaries = store.list_spectrum_summaries(**filters, owner=owner, limit=100)  # type: ignore[arg-type]
                assert [s.id for s in summaries] == expected, (filters, owner)
    # A summary is its spectrum's metadata, field for field.
    [summary] = store.list_spectrum_summaries(job_id=bob.id, method="jacobian")
    spectrum = store.get_spectrum(summary.id, owner="bob")
    assert all(getattr(summary, f) == getattr(spectrum, f) for f in summary.__dataclass_fields__)
    with pytest.raises(NotFoundError):
        store.get_spectrum(summary.id, owner="alice")
    with pytest.raises(TypeError, match="jobid"):  # a misspelt filter selects nothing wider
        store.list_spectra(jobid=bob.id)  # type: ignore[call-arg]
    second_page_by_top = store.list_spectra(order_by="-top_eigenvalue", limit=2, offset=1)
    tops = sorted((r.top_eigenvalue for r in every if r.top_eigenvalue is not None), reverse=True)
    assert len(tops) == len(every)  # every listed spectrum has a top eigenvalue
    assert [r.top_eigenvalue for r in second_page_by_top] == tops[1:3]


# -- the same reads from an event loop (the API's async routes) ------------------------------


def _same_spectrum(a: object, b: object) -> bool:
    fields = a.__dataclass_fields__  # type: ignore[attr-defined]
    return type(a) is type(b) and all(
        np.array_equal(getattr(a, f), getattr(b, f))
        if isinstance(getattr(a, f), np.ndarray)
        else getattr(a, f) == getattr(b, f)
        for f in fields
    )


def _threaded_fallbacks(store: Store) -> list[object]:
    """Record each read the async path hands to a thread instead of running on the loop."""
    calls: list[object] = []
    reads = store._async_reads
    run_sync = reads._run_sync

    def counted(plan: object) -> object:
        calls.append(plan)
        return run_sync(plan)  # type: ignore[arg-type]

    reads._run_sync = counted
    return calls


def test_async_reads_answer_exactly_what_the_threaded_reads_answer(store: Store) -> None:
    """On PostgreSQL from the pool, without a thread once opened; on SQLite (and before
    opening) through the threaded read. Same records, same NotFoundError either way."""
    job = make_job(store, n_latents=3)
    other = make_job(store, owner="bob", spec_hash="b", n_latents=1)
    for index in range(2):
        save(store, job.id, index, seed=index)
    save(store, other.id, 0, seed=5)
    assert store.record_latent_failure(job.id, 2, "NaN in the generator's output")
    [spectrum, *_] = store.list_spectra(job_id=job.id)
    postgres = store.engine.dialect.name == "postgresql"
    fallbacks = _threaded_fallbacks(store)

    async def reads() -> list[object]:
        return [
            await store.get_job_async(job.id),
            await store.get_job_async(job.id, owner="alice"),
            await store.latent_failures_async(job.id),
            await store.get_spectrum_async(spectrum.id),
            await store.get_spectrum_async(spectrum.id, owner="alice"),
            await store.list_spectrum_summaries_async(owner="alice", limit=2, offset=1),
            await store.list_spectrum_summaries_async(order_by="-top_eigenvalue", limit=10),
        ]

    def expected() -> list[object]:
        return [
            store.get_job(job.id),
            store.get_job(job.id, owner="alice"),
            store.latent_failures(job.id),
            store.get_spectrum(spectrum.id),
            store.get_spectrum(spectrum.id, owner="alice"),
            store.list_spectrum_summaries(owner="alice", limit=2, offset=1),
            store.list_spectrum_summaries(order_by="-top_eigenvalue", limit=10),
        ]

    async def opened() -> list[object]:
        await store.open_async_reads()
        try:
            answers = await reads()
            with pytest.raises(NotFoundError):
                await store.get_job_async(job.id, owner="bob")
            with pytest.raises(NotFoundError):
                await store.get_spectrum_async(spectrum.id, owner="bob")
            with pytest.raises(InvalidDataError):
                await store.list_spectrum_summaries_async(order_by="colour")
            return answers
        finally:
            await store.close_async_reads()

    threaded = asyncio.run(reads())  # not opened: every read in a thread
    assert len(fallbacks) == 7
    fallbacks.clear()
    pooled = asyncio.run(opened())
    assert len(fallbacks) == (0 if postgres else 9)  # with the two NotFound reads
    want = expected()
    for got in (threaded, pooled):
        assert got[0] == want[0] and got[1] == want[1] and got[2] == want[2]
        assert got[2] and got[0].n_failed == 1  # type: ignore[attr-defined]
        assert _same_spectrum(got[3], want[3]) and _same_spectrum(got[4], want[4])
        assert got[5] == want[5] and got[6] == want[6]
        assert len(got[5]) == 1 and len(got[6]) == 3  # type: ignore[arg-type]


def test_async_reads_from_another_event_loop_run_in_a_thread(pg_store: Store) -> None:
    """An asyncio pool belongs to the loop that opened it; any other loop gets the same
    answer through the threaded read."""
    job = make_job(pg_store)
    fallbacks = _threaded_fallbacks(pg_store)

    def from_another_loop() -> object:
        return asyncio.run(pg_store.get_job_async(job.id))

    async def main() -> tuple[object, object]:
        await pg_store.open_async_reads()
        try:
            here = await pg_store.get_job_async(job.id)
            there = await asyncio.to_thread(from_another_loop)
            return here, there
        finally:
            await pg_store.close_async_reads()

    here, there = asyncio.run(main())
    assert here == there == pg_store.get_job(job.id)
    assert len(fallbacks) == 1


def test_async_reads_survive_killed_connections(pg_store: Store) -> None:
    """A read that meets a connection the server killed runs once more on another."""
    job = make_job(pg_store)
    with pg_store.engine.connect() as conn:
        database = conn.execute(text("SELECT current_database()")).scalar_one()

    async def main() -> list[int]:
        await pg_store.open_async_reads()
        try:
            answers = [(await pg_store.get_job_async(job.id)).n_latents]
            for _ in range(2):
                with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
                    admin.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = %s AND pid <> pg_backend_pid()",
                        (database,),
                    )
                answers.append((await pg_store.get_job_async(job.id)).n_latents)
            return answers
        finally:
            await pg_store.close_async_reads()

    assert asyncio.run(main()) == [4, 4, 4]


def test_driver_reads_keep_a_cursor_only_after_a_small_one_row_result(pg_url: str) -> None:
    """A kept cursor holds its last result until the next read: a small one-row answer may
    stay, a large or many-row one must go at once; a cursor of another connection is never
    reused (the pool clears its per-connection dict on reconnecting; this does not rely on it)."""
    kept: dict[str, Any] = {}
    with psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True) as driver:
        reads = DriverReads(driver, kept)
        one = reads.rows("SELECT 1 AS one", {}, row_factory=tuple_row)
        assert one == [(1,)]
        [first] = kept[_KEPT_CURSORS].values()
        assert reads.rows("SELECT 2 AS two", {}, row_factory=tuple_row) == [(2,)]
        [again] = kept[_KEPT_CURSORS].values()
        assert again is first  # reused, not a new cursor per read

        big = reads.rows(
            "SELECT repeat('x', %(n)s) AS big", {"n": (1 << 20) + 1}, row_factory=tuple_row
        )
        assert len(big[0][0]) == (1 << 20) + 1
        assert kept[_KEPT_CURSORS] == {} and first.closed  # its 1 MiB result went with it
        many = reads.rows("SELECT generate_series(1, 3)", {}, row_factory=tuple_row)
        assert many == [(1,), (2,), (3,)]
        assert kept[_KEPT_CURSORS] == {}

        reads.rows("SELECT 1", {}, row_factory=tuple_row)
        [stale] = kept[_KEPT_CURSORS].values()
    with psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True) as other:
        assert DriverReads(other, kept).rows("SELECT 3", {}, row_factory=tuple_row) == [(3,)]
        [fresh] = kept[_KEPT_CURSORS].values()
        assert fresh is not stale and fresh.connection is other

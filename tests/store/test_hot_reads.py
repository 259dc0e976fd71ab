"""The API's hot reads (get_job, latent_failures, get_spectrum, list_spectra) are statements
built once and, on PostgreSQL, run straight on psycopg: they must answer exactly what the
SQLAlchemy reads answer."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import psycopg
import pytest
from sqlalchemy import text

from services.store import NotFoundError, Store

from .helpers import make_job, save


def _timestamps(store: Store, job_id: str, spectrum_id: str) -> list[datetime]:
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
            save(store, job.id, index, seed=index, **variant)
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
    second_page_by_top = store.list_spectra(order_by="-top_eigenvalue", limit=2, offset=1)
    tops = sorted((r.top_eigenvalue for r in every), reverse=True)
    assert [r.top_eigenvalue for r in second_page_by_top] == tops[1:3]

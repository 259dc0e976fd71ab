"""Spectra: atomic idempotent writes, bit-exact round trips, slice reads, queries, bad input."""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
from typing import Any

import numpy as np
import psycopg
import pytest
from sqlalchemy import Engine, event, text

from services.store import InvalidDataError, NotFoundError, SpectrumToSave, Store, StoreFull
from services.store.queries import _VECTOR_SQL_POSTGRES
from tests.conftest import PG_ADMIN_DSN

from .helpers import count_rows, make_job, save, spectrum_arrays

SUMMARY = {
    "top_eigenvalue": 3.0,
    "trace": 6.0,
    "dims_99": 3,
    "dims_999": 3,
    "participation_ratio": 2.57,
}


def _bits(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array).tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_is_bit_for_bit(store: Store, dtype: type) -> None:
    job = make_job(store)
    code, eigenvalues, vectors = spectrum_arrays(d=24, k=10, dtype=dtype, seed=3)
    # Values that text formats or careless casts would change.
    info = np.finfo(dtype)
    vectors[0, :4] = [info.tiny / 4, -0.0, info.max, info.eps]  # subnormal, signed zero, extremes
    eigenvalues[-1] = 5e-324  # smallest float64 subnormal
    code[0] = -0.0
    stored = store.save_spectrum(
        job.id,
        0,
        code,
        eigenvalues,
        vectors,
        summary=SUMMARY,
        diagnostics={},
        model="m",
        distance="mse",
        method="jacobian",
        dtype=np.dtype(dtype).name,
    )
    assert stored is True
    [record] = store.list_spectra(job_id=job.id)
    assert (record.k, record.d) == (10, 24)
    assert _bits(record.eigenvalues) == _bits(eigenvalues.astype(np.float64))
    assert record.code is not None and _bits(record.code) == _bits(code)
    read = store.eigenvectors(record.id)
    assert read.dtype == dtype and read.shape == (24, 10)
    assert _bits(read) == _bits(vectors)
    read[0, 0] = 1.0  # callers get their own writable array
    with store.engine.connect() as conn:
        stored_sha, dtype_name, rows, cols = conn.execute(
            text("SELECT sha256, dtype, rows, cols FROM eigenvectors")
        ).one()
    rows_le = np.ascontiguousarray(vectors.T, dtype=np.dtype(dtype).newbyteorder("<"))
    assert stored_sha == hashlib.sha256(rows_le.tobytes()).hexdigest()
    assert (dtype_name, rows, cols) == (np.dtype(dtype).name, 10, 24)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_top_k_is_the_leading_columns_read_as_a_slice(store: Store, dtype: type) -> None:
    job = make_job(store)
    arrays = [spectrum_arrays(d=16, k=8, dtype=dtype, seed=seed)[2] for seed in range(3)]
    for index in range(3):
        save(store, job.id, index, seed=index, dtype=dtype)
    ids = [record.id for record in store.list_spectra(job_id=job.id)]
    assert _bits(store.eigenvectors(ids[1], k=3)) == _bits(arrays[1][:, :3])
    stacked = store.top_k_eigenvectors([ids[2], ids[0]], 2)
    assert stacked.shape == (2, 16, 2) and stacked.dtype == dtype
    assert _bits(stacked[0]) == _bits(arrays[2][:, :2])
    assert _bits(stacked[1]) == _bits(arrays[0][:, :2])
    with pytest.raises(InvalidDataError, match="only 8"):
        store.eigenvectors(ids[0], k=9)
    with pytest.raises(NotFoundError):
        store.top_k_eigenvectors([ids[0], "no-such-spectrum"], 2)


def test_postgres_top_k_reads_only_the_needed_toast_chunks(pg_store: Store) -> None:
    """With STORAGE EXTERNAL, substr fetches a few TOAST chunks, not the 1 MiB blob."""
    job = make_job(pg_store)
    save(pg_store, job.id, 0, d=512, k=512)
    [record] = pg_store.list_spectra(job_id=job.id)

    def toast_blocks(k: int) -> int:
        """Buffers touched by the store's own PostgreSQL eigenvector query."""
        driver = pg_store.engine.raw_connection()
        try:
            with contextlib.closing(driver.cursor()) as cursor:
                cursor.execute(
                    "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + _VECTOR_SQL_POSTGRES,
                    {"k": k, "ids": [record.id]},
                )
                row = cursor.fetchone()
                assert row is not None  # EXPLAIN answers one row
                plan = row[0]
        finally:
            driver.close()
        node = plan[0]["Plan"]
        return int(node["Shared Hit Blocks"] + node["Shared Read Blocks"])

    top_10 = toast_blocks(10)
    whole = toast_blocks(512)
    assert whole > 100  # ~1 MiB in 2 kB TOAST chunks, 4 per page
    assert top_10 < 12, (top_10, whole)


def test_metadata_queries_never_touch_eigenvectors(store: Store) -> None:
    job = make_job(store)
    save(store, job.id, 0)
    statements: list[str] = []

    def remember(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", remember)  # the read and write engines
    try:
        [record] = store.list_spectra(job_id=job.id)
        store.get_spectrum(record.id)
        store.eigenvalue_matrix(job_id=job.id)
    finally:
        event.remove(Engine, "before_cursor_execute", remember)
    assert statements and not any("eigenvectors" in s for s in statements)


def test_second_write_of_a_latent_is_a_no_op(store: Store) -> None:
    job = make_job(store)
    assert save(store, job.id, 0, seed=1) is True
    assert save(store, job.id, 0, seed=2) is False  # first write wins, nothing overwritten
    [record] = store.list_spectra(job_id=job.id)
    assert _bits(store.eigenvectors(record.id)) == _bits(spectrum_arrays(seed=1)[2])
    assert count_rows(store, "eigenvectors") == 1
    assert store.get_job(job.id).n_done == 1


def _to_save(job_id: str, latent_index: int, seed: int) -> SpectrumToSave:
    code, eigenvalues, vectors = spectrum_arrays(seed=seed)
    return SpectrumToSave(
        job_id,
        latent_index,
        code,
        eigenvalues,
        vectors,
        summary=SUMMARY,
        diagnostics={},
        model="m",
        distance="mse",
        method="jacobian",
        dtype="float32",
    )


def test_a_batch_is_stored_as_each_spectrum_would_be(store: Store) -> None:
    job = make_job(store)
    assert save(store, job.id, 1, seed=9) is True  # already there: the first write wins
    flags = store.save_spectra([_to_save(job.id, i, seed=i) for i in range(4)])
    assert flags == [True, False, True, True]
    records = {r.latent_index: r for r in store.list_spectra(job_id=job.id)}
    assert sorted(records) == [0, 1, 2, 3]
    for index, seed in ((0, 0), (1, 9), (2, 2), (3, 3)):
        stored = store.eigenvectors(records[index].id)
        assert _bits(stored) == _bits(spectrum_arrays(seed=seed)[2])
    assert store.get_job(job.id).n_done == 4


def test_a_batch_with_one_bad_spectrum_writes_nothing(store: Store) -> None:
    job = make_job(store)
    bad = _to_save(job.id, 2, seed=2)
    bad = SpectrumToSave(
        bad.job_id,
        bad.latent_index,
        bad.code,
        bad.eigenvalues[::-1].copy(),  # ascending: refused
        bad.eigenvectors,
        summary=SUMMARY,
        diagnostics={},
        model="m",
        distance="mse",
        method="jacobian",
        dtype="float32",
    )
    with pytest.raises(InvalidDataError, match="descending"):
        store.save_spectra([_to_save(job.id, 0, seed=0), _to_save(job.id, 1, seed=1), bad])
    assert count_rows(store, "spectra") == count_rows(store, "eigenvectors") == 0
    assert store.get_job(job.id).n_done == 0


def test_two_concurrent_writers_store_one_row_and_both_return(db_url: str) -> None:
    """Two workers (own engines, own connections) race on the same latents."""
    with Store(db_url) as setup:
        setup.migrate()
        job = make_job(setup, n_latents=12)
    writers = [Store(db_url), Store(db_url)]
    latents = range(12)
    results: dict[int, list[bool]] = {i: [] for i in latents}
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def write(writer: Store, seed: int) -> None:
        try:
            for index in latents:
                barrier.wait(timeout=30)
                results[index].append(save(writer, job.id, index, seed=seed))
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=write, args=(w, s)) for s, w in enumerate(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for writer in writers:
        writer.close()
    assert not errors, errors
    assert all(sorted(outcome) == [False, True] for outcome in results.values()), results
    with Store(db_url) as check:
        assert count_rows(check, "spectra") == 12
        assert count_rows(check, "eigenvectors") == 12
        assert check.get_job(job.id).n_done == 12
        assert check.stored_latent_indices(job.id) == set(latents)


@pytest.mark.parametrize("first_commits", [True, False])
def test_postgres_writer_waits_for_an_uncommitted_twin(
    pg_store: Store, first_commits: bool
) -> None:
    """A second writer blocks on the first's uncommitted row, then does nothing (it committed)
    or stores its own (it rolled back). Deterministic: the first transaction is held open."""
    job = make_job(pg_store)
    outcome: list[bool] = []
    with pg_store.engine.connect() as first:
        first.begin()
        first.execute(
            text(
                "INSERT INTO spectra (id, job_id, latent_index, model, distance, method, dtype, "
                "k, d, eigenvalues, diagnostics, created_at) VALUES ('held', :job, 0, 'm', 'mse', "
                "'jacobian', 'float32', 8, 16, :values, '{}', now())"
            ),
            {"job": job.id, "values": np.ones(8).tobytes()},
        )
        second = threading.Thread(target=lambda: outcome.append(save(pg_store, job.id, 0)))
        second.start()
        second.join(timeout=0.5)
        assert second.is_alive(), "the second writer should wait for the first transaction"
        if first_commits:
            first.commit()
        else:
            first.rollback()
        second.join(timeout=30)
    assert outcome == [not first_commits]
    assert count_rows(pg_store, "spectra") == 1
    assert count_rows(pg_store, "eigenvectors") == (0 if first_commits else 1)


BAD_INPUTS = [
    ("eigenvalues 2-D", {"eigenvalues": np.ones((2, 2))}, "eigenvalues must be 1-D"),
    ("k mismatch", {"eigenvalues": np.ones(5)}, "k = len(eigenvalues) = 5"),
    ("vectors 1-D", {"eigenvectors": np.ones(16, np.float32)}, "eigenvectors must be 2-D"),
    ("code dimension", {"code": np.ones(15)}, "latent code has dimension 15"),
    ("ascending", {"eigenvalues": np.arange(8.0)}, "descending order"),
    ("NaN eigenvalue", {"eigenvalues": np.array([1.0, np.nan, 0.5, 0.1, 0, 0, 0, 0])}, "NaN"),
    ("inf vector", {"eigenvectors": np.full((16, 8), np.inf, np.float32)}, "NaN or infinite"),
    ("NaN code", {"code": np.full(16, np.nan)}, "NaN"),
    ("int16 vectors", {"eigenvectors": np.ones((16, 8), np.float16)}, "float32 or float64"),
    ("NaN summary", {"summary": {**SUMMARY, "trace": float("nan")}}, "trace is nan"),
    ("unknown summary key", {"summary": {"top_eigenvalue": 1.0, "traec": 2.0}}, "traec"),
    ("NaN diagnostics", {"diagnostics": {"residual": float("nan")}}, "finite numbers"),
    ("bad dtype", {"dtype": "float16"}, "unknown dtype"),
    ("negative index", {"latent_index": -1}, "non-negative integer"),
]


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_refused_and_writes_nothing(
    sqlite_url: str, case: tuple[str, dict[str, Any], str]
) -> None:
    _, changes, message = case
    with Store(sqlite_url) as store:
        store.migrate()
        job = make_job(store)
        code, eigenvalues, vectors = spectrum_arrays()
        arguments: dict[str, Any] = {
            "job_id": job.id,
            "latent_index": 0,
            "code": code,
            "eigenvalues": eigenvalues,
            "eigenvectors": vectors,
            "summary": SUMMARY,
            "diagnostics": {},
            "model": "m",
            "distance": "mse",
            "method": "jacobian",
            "dtype": "float32",
        }
        arguments.update(changes)
        with pytest.raises(InvalidDataError, match=re.escape(message)):
            store.save_spectrum(**arguments)
        assert count_rows(store, "spectra") == count_rows(store, "eigenvectors") == 0
        assert store.get_job(job.id).n_done == 0


def test_unknown_job_is_refused_on_both_backends(store: Store) -> None:
    with pytest.raises(NotFoundError, match="create the job"):
        save(store, "no-such-job", 0)
    with pytest.raises(NotFoundError):
        store.record_latent_failure("no-such-job", 0, "boom")
    assert count_rows(store, "spectra") == count_rows(store, "latent_failures") == 0


def test_a_failure_inside_the_transaction_leaves_no_partial_rows(pg_store: Store) -> None:
    """If the eigenvector insert fails, the spectrum row and the counter roll back with it."""
    job = make_job(pg_store)
    with pg_store.engine.begin() as conn:
        conn.execute(
            text(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'disk full (simulated)'; END $$"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER refuse BEFORE INSERT ON eigenvectors "
                "FOR EACH ROW EXECUTE FUNCTION refuse()"
            )
        )
    # The write's statements run on the driver: its own error, untranslated (not availability).
    with pytest.raises(psycopg.Error, match="disk full"):
        save(pg_store, job.id, 0)
    assert count_rows(pg_store, "spectra") == 0
    assert pg_store.get_job(job.id).n_done == 0
    with pg_store.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER refuse ON eigenvectors"))
    assert save(pg_store, job.id, 0) is True  # the retry stores it


def test_sefa_spectrum_without_code(store: Store) -> None:
    job = make_job(store, n_latents=1)
    _, eigenvalues, vectors = spectrum_arrays()
    assert store.save_spectrum(
        job.id,
        0,
        None,
        eigenvalues,
        vectors,
        summary={},
        diagnostics={},
        model="m",
        distance="none",
        method="sefa",
        dtype="float64",
    )
    [record] = store.list_spectra(job_id=job.id)
    assert record.code is None and record.top_eigenvalue is None and record.d == 16


def test_latent_failures_count_once_and_a_later_success_replaces_them(store: Store) -> None:
    job = make_job(store, n_latents=3)
    assert store.record_latent_failure(job.id, 1, "generator produced NaN") is True
    assert store.record_latent_failure(job.id, 1, "again") is False
    save(store, job.id, 0)
    assert store.record_latent_failure(job.id, 0, "too late") is False  # already done
    assert store.stored_latent_indices(job.id) == {0, 1}
    [failure] = store.latent_failures(job.id)
    assert (failure.latent_index, failure.reason) == (1, "generator produced NaN")
    job_now = store.get_job(job.id)
    assert (job_now.n_done, job_now.n_failed) == (1, 1)
    assert save(store, job.id, 1) is True  # a retry succeeded
    job_now = store.get_job(job.id)
    assert (job_now.n_done, job_now.n_failed) == (2, 0)
    assert store.latent_failures(job.id) == []


def test_selection_pagination_ordering_and_eigenvalue_matrix(store: Store) -> None:
    alice = make_job(store, owner="alice", spec_hash="a")
    bob = make_job(store, owner="bob", spec_hash="b", model="other")
    tops = [5.0, 1.0, 3.0]
    for index, top in enumerate(tops):
        save(
            store,
            alice.id,
            index,
            seed=index,
            summary={**SUMMARY, "top_eigenvalue": top, "participation_ratio": None},
        )
    save(store, bob.id, 0, model="other")
    ordered = store.list_spectra(model="dcgan-faces", order_by="-top_eigenvalue")
    assert [r.top_eigenvalue for r in ordered] == [5.0, 3.0, 1.0]
    page = store.list_spectra(owner="alice", order_by="latent_index", limit=2, offset=1)
    assert [r.latent_index for r in page] == [1, 2]
    assert len(store.list_spectra(owner="bob")) == 1
    assert store.list_spectra(distance="lpips-alex") == []
    with pytest.raises(InvalidDataError, match="cannot order spectra"):
        store.list_spectra(order_by="eigenvalues")
    matrix, ids = store.eigenvalue_matrix(owner="alice", k=3)
    assert matrix.shape == (3, 3) and len(ids) == 3
    expected = np.stack([spectrum_arrays(seed=i)[1][:3] for i in range(3)])
    assert _bits(matrix) == _bits(expected)
    assert store.get_spectrum(ids[0]).latent_index == 0
    with pytest.raises(InvalidDataError, match="ask for fewer"):
        store.eigenvalue_matrix(owner="alice", k=9)
    empty, no_ids = store.eigenvalue_matrix(model="nothing")
    assert empty.shape[0] == 0 and no_ids == []


def test_column_blocks_round_trip_and_are_idempotent(store: Store) -> None:
    job = make_job(store, n_latents=1)
    metric = np.random.default_rng(0).standard_normal((6, 6))
    assert store.save_column_block(job.id, 0, 3, 6, metric[:, 3:6]) is True
    assert store.save_column_block(job.id, 0, 0, 3, metric[:, 0:3]) is True
    assert store.save_column_block(job.id, 0, 0, 3, metric[:, 0:3] * 2) is False
    blocks = store.column_blocks(job.id, 0)
    assert [(start, stop) for start, stop, _ in blocks] == [(0, 3), (3, 6)]
    assert _bits(np.hstack([block for _, _, block in blocks])) == _bits(metric)
    with pytest.raises(InvalidDataError, match="shape"):
        store.save_column_block(job.id, 0, 6, 8, metric[:, :3])
    with pytest.raises(NotFoundError):
        store.save_column_block("nope", 0, 0, 3, metric[:, :3])


def test_a_spectrum_written_to_a_read_only_database_is_store_full(migrated_pg_url: str) -> None:
    """The write's statements run on the driver, whose error for a read-only transaction is
    not an OperationalError: it must still read as StoreFull (work waits and resumes), not
    as a failure of the latent."""
    with Store(migrated_pg_url) as store:
        job = make_job(store)
    database = migrated_pg_url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
    with Store(migrated_pg_url) as store:  # new sessions take the setting
        with pytest.raises(StoreFull):
            save(store, job.id, 0)
        assert store.get_job(job.id).n_done == 0  # reads go on

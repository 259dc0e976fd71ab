"""Results written by the workers, one latent at a time and idempotent on (job_id,
latent_index): spectra with their eigenvectors, latent failures, and the column blocks of a
Hessian split across chunks."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any

import numpy as np
from sqlalchemy import (
    Column,
    Select,
    bindparam,
    select,
    text,
)
from sqlalchemy.engine import Connection

from .codecs import (
    Digest,
    check_status,
    float_array,
    from_le,
    json_document,
    le_bytes,
    new_id,
    non_negative_int,
    sha256_hex,
)
from .connection import StoreConnection, retry_read
from .errors import InvalidDataError
from .failures import count_done, record_failure_once
from .jobs import job_closed, job_not_found, require_open_job
from .models import utcnow
from .prepared import ReadPlan, in_transaction, postgres_sql, prepare
from .records import (
    VECTOR_DTYPES,
    LatentFailureRecord,
)
from .status import TERMINAL_STATUSES
from .tables import (
    COLUMN_BLOCKS,
    EIGENVECTORS,
    LATENT_FAILURES,
    SPECTRA,
)

SUMMARY_KEYS = ("top_eigenvalue", "trace", "dims_99", "dims_999", "participation_ratio")

_LATENT_FAILURES_OF_JOB = prepare(
    select(
        LATENT_FAILURES.c.job_id,
        LATENT_FAILURES.c.latent_index,
        LATENT_FAILURES.c.reason,
        LATENT_FAILURES.c.created_at,
    )
    .where(LATENT_FAILURES.c.job_id == bindparam("job_id"))
    .order_by(LATENT_FAILURES.c.latent_index)
)


def _summary_columns(summary: Mapping[str, Any]) -> dict[str, float | int | None]:
    unknown = sorted(set(summary) - set(SUMMARY_KEYS))
    if unknown:
        raise InvalidDataError(
            f"unknown summary key(s) {unknown}; allowed: {', '.join(SUMMARY_KEYS)}"
        )
    columns: dict[str, float | int | None] = {}
    for key in SUMMARY_KEYS:
        value = summary.get(key)
        if value is None:
            columns[key] = None
            continue
        try:
            number = float(value)
        except (TypeError, ValueError) as error:
            raise InvalidDataError(f"summary {key} must be a number, got {value!r}") from error
        if not np.isfinite(number):
            raise InvalidDataError(f"summary {key} is {number}; it must be finite")
        if key.startswith("dims_"):
            if number != int(number) or number < 0:
                raise InvalidDataError(f"summary {key} must be a non-negative integer, got {value}")
            columns[key] = int(number)
        else:
            columns[key] = number
    return columns


# save_spectrum on PostgreSQL in two statements of one transaction instead of five. The first
# checks the job (locking its row, and storing nothing once it is terminal), inserts the spectrum row (first write wins) and, only if it was new, its
# eigenvector bytes; the second, sent once the thread hashing those bytes is done (it ran while
# the server stored them), records the sha256 and counts the spectrum on its job, clearing a
# failure recorded earlier for the same latent. Casts type the NULL-able parameters, which an
# INSERT ... SELECT cannot infer from the target columns.
_INSERT_SPECTRUM_POSTGRES = text(
    """
WITH job AS (SELECT id, status FROM jobs WHERE id = :job_id FOR UPDATE),
spectrum AS (
    INSERT INTO spectra (id, job_id, latent_index, model, distance, method, dtype, k, d,
                         eigenvalues, code, top_eigenvalue, trace, dims_99, dims_999,
                         participation_ratio, wall_time_s, diagnostics, created_at)
    SELECT :id, job.id, :latent_index, :model, :distance, :method, :dtype, :k, :d,
           :eigenvalues, CAST(:code AS bytea), CAST(:top_eigenvalue AS double precision),
           CAST(:trace AS double precision), CAST(:dims_99 AS integer),
           CAST(:dims_999 AS integer), CAST(:participation_ratio AS double precision),
           CAST(:wall_time_s AS double precision), CAST(:diagnostics AS json), :created_at
    FROM job WHERE job.status IN ('queued', 'running')
    ON CONFLICT (job_id, latent_index) DO NOTHING
    RETURNING id
),
vectors AS (
    INSERT INTO eigenvectors (spectrum_id, dtype, rows, cols, sha256, data)
    SELECT id, :vector_dtype, :k, :d, '', :data FROM spectrum
    RETURNING spectrum_id
)
SELECT (SELECT status FROM job) AS job_status, EXISTS (SELECT FROM vectors) AS stored
"""
)
_COUNT_SPECTRUM_POSTGRES = text(
    """
WITH digest AS (
    UPDATE eigenvectors SET sha256 = :sha256 WHERE spectrum_id = :spectrum_id
),
cleared AS (
    DELETE FROM latent_failures WHERE job_id = :job_id AND latent_index = :latent_index
    RETURNING 1
)
UPDATE jobs SET n_done = n_done + 1, n_failed = n_failed - (SELECT count(*) FROM cleared)
WHERE id = :job_id
"""
)

_INSERT_SPECTRUM_SQL = postgres_sql(_INSERT_SPECTRUM_POSTGRES)
_COUNT_SPECTRUM_SQL = postgres_sql(_COUNT_SPECTRUM_POSTGRES)


@dataclass(frozen=True)
class SpectrumToSave:
    """One spectrum as save_spectrum takes it (see there for the arrays' shapes and dtypes)."""

    job_id: str
    latent_index: int
    code: np.ndarray | None
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    _: KW_ONLY
    summary: dict[str, Any]
    diagnostics: dict[str, Any]
    model: str
    distance: str
    method: str
    dtype: str


def _prepared(spectrum: SpectrumToSave) -> tuple[dict[str, Any], str, bytes]:
    """The checked spectrum row, its eigenvectors' dtype and their bytes; InvalidDataError
    (nothing written) for anything the store would not take."""
    latent_index = non_negative_int(spectrum.latent_index, "latent_index")
    check_status(spectrum.dtype, VECTOR_DTYPES, "dtype")
    values = float_array(spectrum.eigenvalues, "eigenvalues", ndim=1)
    vectors = float_array(spectrum.eigenvectors, "eigenvectors", ndim=2)
    if vectors.dtype.name not in VECTOR_DTYPES:
        raise InvalidDataError(
            f"eigenvectors must be float32 or float64, got {vectors.dtype}; convert them first"
        )
    d, k = vectors.shape
    if np.any(np.diff(values.astype(np.float64)) > 0):
        raise InvalidDataError(
            "eigenvalues must be in descending order, with the eigenvector columns in the "
            "same order (top-k reads take the first k); sort both first"
        )
    if values.shape[0] != k:
        raise InvalidDataError(
            f"eigenvectors must be (d, k) with k = len(eigenvalues) = {values.shape[0]}, "
            f"got shape {vectors.shape}"
        )
    if k > d:
        raise InvalidDataError(f"eigenvectors shape {vectors.shape}: more vectors than dimensions")
    code_bytes = None
    if spectrum.code is not None:
        code_array = float_array(spectrum.code, "latent code", ndim=1)
        if code_array.shape[0] != d:
            raise InvalidDataError(
                f"latent code has dimension {code_array.shape[0]} but eigenvectors have d = {d}"
            )
        code_bytes = le_bytes(code_array, "float64")
    columns = _summary_columns(spectrum.summary)
    diagnostics_doc = json_document(spectrum.diagnostics, "diagnostics")
    wall_time = diagnostics_doc.get("wall_time_s")
    row = {
        "id": new_id(),
        "job_id": spectrum.job_id,
        "latent_index": latent_index,
        "model": spectrum.model,
        "distance": spectrum.distance,
        "method": spectrum.method,
        "dtype": spectrum.dtype,
        "k": k,
        "d": d,
        "eigenvalues": le_bytes(values, "float64"),
        "code": code_bytes,
        "wall_time_s": float(wall_time) if isinstance(wall_time, int | float) else None,
        "diagnostics": diagnostics_doc,
        "created_at": utcnow(),
        **dict.fromkeys(SUMMARY_KEYS),
        **columns,
    }
    return row, vectors.dtype.name, le_bytes(vectors.T, vectors.dtype.name)


def _spectrum_of(job_id: str, latent_index: int) -> Select[Any]:
    return select(SPECTRA.c.id).where(
        SPECTRA.c.job_id == job_id, SPECTRA.c.latent_index == latent_index
    )


def _blocks_of(job_id: str, latent_index: int, *columns: Column[Any]) -> Select[Any]:
    """Start, stop and ``columns`` of one latent's stored column blocks, by start."""
    return (
        select(COLUMN_BLOCKS.c.start, COLUMN_BLOCKS.c.stop, *columns)
        .where(COLUMN_BLOCKS.c.job_id == job_id, COLUMN_BLOCKS.c.latent_index == latent_index)
        .order_by(COLUMN_BLOCKS.c.start)
    )


class ResultStore(StoreConnection):
    # -- spectra ---------------------------------------------------------------------------

    def save_spectrum(
        self,
        job_id: str,
        latent_index: int,
        code: np.ndarray | None,
        eigenvalues: np.ndarray,
        eigenvectors: np.ndarray,
        *,
        summary: dict[str, Any],
        diagnostics: dict[str, Any],
        model: str,
        distance: str,
        method: str,
        dtype: str,
    ) -> bool:
        """Store one spectrum atomically; True if stored, False if (job_id, latent_index) was
        already there (the first write wins; nothing is compared or overwritten).

        eigenvalues: (k,) stored as float64. eigenvectors: (d, k) columns, float32 or float64,
        stored in their own dtype bit for bit. code: (d,) stored as float64, or None (sefa).
        ``dtype`` is the computation dtype, recorded. A latent failure recorded earlier for the
        same latent is removed (the retry succeeded).
        """
        spectrum = SpectrumToSave(
            job_id,
            latent_index,
            code,
            eigenvalues,
            eigenvectors,
            summary=summary,
            diagnostics=diagnostics,
            model=model,
            distance=distance,
            method=method,
            dtype=dtype,
        )
        return self.save_spectra([spectrum])[0]

    def save_spectra(self, spectra: Sequence[SpectrumToSave]) -> list[bool]:
        """Store a batch of spectra in ONE transaction (all or nothing), each as save_spectrum
        would; one flag per spectrum, in order. An import or a bulk writer pays one commit per
        batch instead of one per spectrum (a commit is a disk sync on SQLite)."""
        prepared = [_prepared(spectrum) for spectrum in spectra]
        # sha256 of a large matrix is not free; it runs in a thread (hashlib releases the
        # GIL) while the server stores the data.
        digests = [Digest(data) for _, _, data in prepared]
        try:
            with self._write() as conn:
                save = self._save_postgres if self._postgres else self._save_portable
                return [
                    save(conn, row, vector_dtype, data, digest)
                    for (row, vector_dtype, data), digest in zip(prepared, digests, strict=True)
                ]
        finally:
            for digest in digests:
                digest.result()

    def _save_portable(
        self,
        conn: Connection,
        spectrum: dict[str, Any],
        vector_dtype: str,
        data: bytes,
        digest: Digest,
    ) -> bool:
        """save_spectrum on SQLite: statement by statement, through the models."""
        job_failures = require_open_job(
            conn,
            spectrum["job_id"],
            stored=_spectrum_of(spectrum["job_id"], spectrum["latent_index"]),
        )
        if job_failures is None:
            return False
        statement = (
            self._insert(SPECTRA)
            .values(**spectrum)
            .on_conflict_do_nothing(index_elements=["job_id", "latent_index"])
            .returning(SPECTRA.c.id)
        )
        if conn.execute(statement).scalar_one_or_none() is None:
            return False
        conn.execute(
            EIGENVECTORS.insert().values(
                spectrum_id=spectrum["id"],
                dtype=vector_dtype,
                rows=spectrum["k"],
                cols=spectrum["d"],
                sha256=digest.result(),
                data=data,
            )
        )
        return self._count_done(conn, spectrum["job_id"], spectrum["latent_index"], job_failures)

    @staticmethod
    def _save_postgres(
        conn: Connection,
        spectrum: dict[str, Any],
        vector_dtype: str,
        data: bytes,
        digest: Digest,
    ) -> bool:
        """save_spectrum on PostgreSQL: two statements (see _INSERT_SPECTRUM_POSTGRES), run on
        the transaction's own psycopg connection (SQLAlchemy's execution of a statement of 25
        parameters costs more client time than psycopg's)."""
        answer = in_transaction(
            conn,
            _INSERT_SPECTRUM_SQL,
            {
                **spectrum,
                "diagnostics": json.dumps(spectrum["diagnostics"]),
                "vector_dtype": vector_dtype,
                "data": data,
            },
        )
        assert answer is not None  # the statement's last SELECT always answers one row
        status, stored = answer
        if status is None:
            raise job_not_found(spectrum["job_id"])
        if status in TERMINAL_STATUSES:
            if conn.execute(_spectrum_of(spectrum["job_id"], spectrum["latent_index"])).first():
                return False  # a repeated write of a result stored before the job ended
            raise job_closed(spectrum["job_id"], status)
        if not stored:
            return False
        in_transaction(
            conn,
            _COUNT_SPECTRUM_SQL,
            {
                "spectrum_id": spectrum["id"],
                "sha256": digest.result(),
                "job_id": spectrum["job_id"],
                "latent_index": spectrum["latent_index"],
            },
        )
        return True

    @staticmethod
    def _count_done(conn: Connection, job_id: str, latent_index: int, job_failures: int) -> bool:
        """Count a newly stored spectrum on its job; a failure recorded earlier for the same
        latent (the retry succeeded) is removed and uncounted."""
        count_done(conn, job_id, latent_index, may_have_failed=bool(job_failures))
        return True

    def record_latent_failure(self, job_id: str, latent_index: int, reason: str) -> bool:
        """Record once that a latent could not be computed (e.g. the generator produced NaN).
        False if a failure or a spectrum is already stored for it."""
        latent_index = non_negative_int(latent_index, "latent_index")
        if not reason:
            raise InvalidDataError("a latent failure needs a reason")
        with self._write() as conn:
            return record_failure_once(
                conn, self._insert, job_id, latent_index, reason, _spectrum_of(job_id, latent_index)
            )

    def latent_failures(self, job_id: str) -> list[LatentFailureRecord]:
        return self._run_read(self._latent_failures_read(job_id))

    async def latent_failures_async(self, job_id: str) -> list[LatentFailureRecord]:
        """latent_failures, awaitable (see open_async_reads)."""
        return await self._async_reads.run(self._latent_failures_read(job_id))

    @staticmethod
    def _latent_failures_read(job_id: str) -> ReadPlan[list[LatentFailureRecord]]:
        def finish(rows: list[dict[str, Any]]) -> list[LatentFailureRecord]:
            return [LatentFailureRecord(**row) for row in rows]

        return ReadPlan(_LATENT_FAILURES_OF_JOB, {"job_id": job_id}, finish)

    @retry_read
    def stored_latent_indices(self, job_id: str) -> set[int]:
        """Latents with a result: a stored spectrum or a recorded failure (a re-run skips them)."""
        done = select(SPECTRA.c.latent_index).where(SPECTRA.c.job_id == job_id)
        failed = select(LATENT_FAILURES.c.latent_index).where(LATENT_FAILURES.c.job_id == job_id)
        with self._read() as conn:
            return set(conn.execute(done.union(failed)).scalars())

    # -- column blocks of one large Hessian ------------------------------------------------

    def save_column_block(
        self,
        job_id: str,
        latent_index: int,
        start: int,
        stop: int,
        block: np.ndarray,
        *,
        seconds: float | None = None,
        peak_bytes: int | None = None,
    ) -> bool:
        """Store H[:, start:stop] (shape (d, stop - start), float32/float64 kept bit for bit),
        with what computing it cost (seconds, peak resident bytes) where measured.
        Idempotent on (job_id, latent_index, start): False if already stored."""
        latent_index = non_negative_int(latent_index, "latent_index")
        start, stop = non_negative_int(start, "start"), non_negative_int(stop, "stop")
        array = float_array(block, "column block", ndim=2)
        if array.dtype.name not in VECTOR_DTYPES:
            raise InvalidDataError(f"column block must be float32 or float64, got {array.dtype}")
        if stop <= start or array.shape[1] != stop - start or stop > array.shape[0]:
            raise InvalidDataError(
                f"column block for columns [{start}, {stop}) must have shape "
                f"(d, {stop - start}) with stop <= d; got {array.shape}"
            )
        data = le_bytes(array, array.dtype.name)
        statement = (
            self._insert(COLUMN_BLOCKS)
            .values(
                job_id=job_id,
                latent_index=latent_index,
                start=start,
                stop=stop,
                rows=array.shape[0],
                dtype=array.dtype.name,
                sha256=sha256_hex(data),
                data=data,
                created_at=utcnow(),
                seconds=None if seconds is None else float(seconds),
                peak_bytes=None
                if peak_bytes is None
                else non_negative_int(peak_bytes, "peak_bytes"),
            )
            .on_conflict_do_nothing(index_elements=["job_id", "latent_index", "start"])
            .returning(COLUMN_BLOCKS.c.start)
        )
        with self._write() as conn:
            block_there = select(COLUMN_BLOCKS.c.start).where(
                COLUMN_BLOCKS.c.job_id == job_id,
                COLUMN_BLOCKS.c.latent_index == latent_index,
                COLUMN_BLOCKS.c.start == start,
            )
            if require_open_job(conn, job_id, stored=block_there) is None:
                return False
            return conn.execute(statement).scalar_one_or_none() is not None

    @retry_read
    def column_block_costs(
        self, job_id: str, latent_index: int
    ) -> list[tuple[int, int, float | None, int | None]]:
        """(start, stop, seconds, peak bytes) of one latent's stored blocks, by start; no data."""
        query = _blocks_of(
            job_id, latent_index, COLUMN_BLOCKS.c.seconds, COLUMN_BLOCKS.c.peak_bytes
        )
        with self._read() as conn:
            return [
                (row.start, row.stop, row.seconds, row.peak_bytes) for row in conn.execute(query)
            ]

    def column_blocks(self, job_id: str, latent_index: int) -> list[tuple[int, int, np.ndarray]]:
        """Stored blocks of one latent's Hessian as (start, stop, (d, stop - start)), by start."""
        query = _blocks_of(
            job_id, latent_index, COLUMN_BLOCKS.c.rows, COLUMN_BLOCKS.c.dtype, COLUMN_BLOCKS.c.data
        )
        with self._read() as conn:
            return [
                (
                    row.start,
                    row.stop,
                    np.array(from_le(row.data, row.dtype, (row.rows, row.stop - row.start))),
                )
                for row in conn.execute(query)
            ]

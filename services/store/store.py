"""The Store: the only code in the service that speaks SQL.

Every public method opens its own short transaction and returns plain frozen records.
State changes of jobs and chunks are guarded compare-and-set updates
(``UPDATE ... WHERE id = :id AND status IN (...)``) that report whether a row changed, so a
message delivered twice does nothing the second time. Writes of results are idempotent on
(job_id, latent_index) through ``INSERT ... ON CONFLICT DO NOTHING``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import secrets
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta
from importlib import resources
from typing import Any, ParamSpec, TypedDict, TypeVar, Unpack

import numpy as np
from psycopg.rows import namedtuple_row
from sqlalchemy import (
    Engine,
    LargeBinary,
    RowMapping,
    Select,
    String,
    Table,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    literal,
    select,
    text,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from .async_reads import AsyncReads
from .engine import SQLITE_BEGIN_OPTION, make_engine, make_read_engine, normalise_url
from .errors import IdempotencyConflictError, InvalidDataError, NotFoundError, StoreError
from .models import Base, utcnow
from .optimisations import OptimisationStore
from .prepared import Disconnected, PreparedRead, ReadPlan, fetch, prepare, run_on_driver
from .records import (
    JOB_STATUSES,
    LATENT_SOURCES,
    TERMINAL_STATUSES,
    VECTOR_DTYPES,
    ApiKeyRecord,
    ChunkPlan,
    ChunkRecord,
    GeneratorRecord,
    JobProgress,
    JobRecord,
    LatentFailureRecord,
    LatentSetRecord,
    SpectrumRecord,
    SpectrumSummaryRecord,
)

_T = Base.metadata.tables
GENERATORS: Table = _T["generators"]
LATENT_SETS: Table = _T["latent_sets"]
JOBS: Table = _T["jobs"]
CHUNKS: Table = _T["chunks"]
SPECTRA: Table = _T["spectra"]
EIGENVECTORS: Table = _T["eigenvectors"]
LATENT_FAILURES: Table = _T["latent_failures"]
COLUMN_BLOCKS: Table = _T["column_blocks"]
API_KEYS: Table = _T["api_keys"]
IDEMPOTENCY_KEYS: Table = _T["idempotency_keys"]

# How long an Idempotency-Key holds its job; an older record is replaced by the key's next use.
IDEMPOTENCY_TTL = timedelta(hours=24)

SUMMARY_KEYS = ("top_eigenvalue", "trace", "dims_99", "dims_999", "participation_ratio")
SPECTRUM_ORDERS = ("latent_index", "created_at", *SUMMARY_KEYS)
MAX_PAGE = 1000
IDS_PER_QUERY = 500
ALEMBIC_LOCK_KEY = 0x5350_4543  # pg advisory lock held while migrating ("SPEC")

_LATENT_SET_META = [c for c in LATENT_SETS.c if c.name != "codes"]
_SPECTRUM_META = list(SPECTRA.c)  # eigenvalues and code are small (k and d float64)

# The reads behind the API's most frequent requests (job status, spectra pages, one spectrum).
_JOB_BY_ID = prepare(select(JOBS).where(JOBS.c.id == bindparam("id")))
_JOB_OF_OWNER = prepare(
    select(JOBS).where(JOBS.c.id == bindparam("id"), JOBS.c.owner == bindparam("owner"))
)
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
_SPECTRUM_BY_ID = prepare(select(*_SPECTRUM_META).where(SPECTRA.c.id == bindparam("id")))
_SPECTRUM_OF_OWNER = prepare(
    select(*_SPECTRUM_META)
    .join(JOBS, JOBS.c.id == SPECTRA.c.job_id)
    .where(SPECTRA.c.id == bindparam("id"), JOBS.c.owner == bindparam("owner"))
)
_SPECTRUM_SUMMARY = [SPECTRA.c[field.name] for field in dataclasses.fields(SpectrumSummaryRecord)]


def _selected(query: Select[Any], filters: Sequence[str], by_owner: bool) -> Select[Any]:
    """``query`` over spectra narrowed by each named filter (job_id, model, distance, method)
    and, with ``by_owner``, by the owner of their job, all bound by name (see
    _selection_params)."""
    query = query.where(*(SPECTRA.c[f] == bindparam(f) for f in filters))
    if by_owner:
        query = query.join(JOBS, JOBS.c.id == SPECTRA.c.job_id).where(
            JOBS.c.owner == bindparam("owner")
        )
    return query


def _selection_params(
    job_id: str | None, model: str | None, distance: str | None, method: str | None
) -> dict[str, str]:
    """The filters a selection of spectra names (the ones not None), by name."""
    filters = {"job_id": job_id, "model": model, "distance": distance, "method": method}
    return {name: value for name, value in filters.items() if value is not None}


@functools.lru_cache(maxsize=1024)  # 2**4 filter sets x owner or not x 14 orders x 2
def _spectra_page_read(
    filters: tuple[str, ...], by_owner: bool, order_by: str, summaries: bool
) -> PreparedRead:
    """One page of spectra (whole rows, or the summary columns): each named filter (job_id,
    model, distance, method) and the owner of their job bound by name, as are limit and
    offset. ``order_by``: as in list_spectra."""
    columns = _SPECTRUM_SUMMARY if summaries else _SPECTRUM_META
    query = _selected(select(*columns), filters, by_owner)
    column = SPECTRA.c[order_by.removeprefix("-")]
    ordering = (column.desc() if order_by.startswith("-") else column.asc()).nulls_last()
    return prepare(
        query.order_by(ordering, SPECTRA.c.job_id, SPECTRA.c.id)
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )


def _new_id() -> str:
    return str(uuid.uuid4())


def _le_bytes(array: np.ndarray, dtype: str) -> bytes:
    """C-order little-endian bytes of ``array`` in ``dtype``. One copy even for a transposed
    view (tobytes reorders as it copies; ascontiguousarray first would copy twice)."""
    return np.asarray(array, dtype=np.dtype(dtype).newbyteorder("<")).tobytes(order="C")


def _from_le(buffer: bytes, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """Read-only native-order array viewed on ``buffer`` (bytes from the database)."""
    array = np.frombuffer(buffer, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)
    return array.astype(np.dtype(dtype), copy=False)


def _readonly(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _json_document(value: Mapping[str, Any], what: str) -> dict[str, Any]:
    """A JSON-safe copy (numpy scalars and arrays converted); NaN/inf refused."""
    if not isinstance(value, Mapping):
        raise InvalidDataError(f"{what} must be a dict, got {type(value).__name__}")
    try:
        return dict(json.loads(json.dumps(dict(value), default=_json_default, allow_nan=False)))
    except (TypeError, ValueError) as error:
        raise InvalidDataError(
            f"{what} must be JSON-serialisable with finite numbers only: {error}"
        ) from error


def _float_array(value: Any, what: str, ndim: int) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "fiu":
        raise InvalidDataError(f"{what} must be a real numeric array, got dtype {array.dtype}")
    if array.ndim != ndim:
        raise InvalidDataError(f"{what} must be {ndim}-D, got shape {array.shape}")
    if 0 in array.shape:
        raise InvalidDataError(f"{what} is empty (shape {array.shape})")
    if not np.isfinite(array).all():
        bad = int(array.size - np.isfinite(array).sum())
        raise InvalidDataError(
            f"{what} contains {bad} NaN or infinite value(s); nothing was stored"
        )
    return array


def _check_status(status: str, allowed: Sequence[str], what: str) -> None:
    if status not in allowed:
        raise InvalidDataError(f"unknown {what} {status!r}; expected one of {', '.join(allowed)}")


def _check_page(limit: int, offset: int) -> None:
    if not 0 <= limit <= MAX_PAGE:
        raise InvalidDataError(f"limit must be between 0 and {MAX_PAGE}, got {limit}")
    if offset < 0:
        raise InvalidDataError(f"offset must be >= 0, got {offset}")


def _non_negative_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise InvalidDataError(f"{what} must be a non-negative integer, got {value!r}")
    return int(value)


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


class _Digest(threading.Thread):
    """sha256 of a buffer computed in the background; ``result()`` waits for it."""

    def __init__(self, data: bytes) -> None:
        super().__init__(daemon=True)
        self._data = data
        self._hexdigest = ""
        self.start()

    def run(self) -> None:
        self._hexdigest = hashlib.sha256(self._data).hexdigest()

    def result(self) -> str:
        self.join()
        return self._hexdigest


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _retry_read(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run a read again, once, on a fresh pool if its connection turned out to be dead
    (server restart, pg_terminate_backend): reads skip the pre-ping round trip instead."""

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except (sa_exc.DBAPIError, Disconnected) as error:
            if isinstance(error, sa_exc.DBAPIError) and not error.connection_invalidated:
                raise
            store = args[0]
            assert isinstance(store, Store)
            store._reader.dispose(close=False)  # every pooled connection may be dead
            return method(*args, **kwargs)

    return wrapper


def _vector_query(spectrum_ids: list[str], k: int | None) -> Select[Any]:
    """Eigenvector rows; with ``k`` only the first k·d·itemsize bytes of each blob (substr)."""
    itemsize = case((EIGENVECTORS.c.dtype == "float64", 8), else_=4)
    payload = (
        EIGENVECTORS.c.data
        if k is None
        else func.substr(
            EIGENVECTORS.c.data, 1, k * EIGENVECTORS.c.cols * itemsize, type_=LargeBinary
        )
    )
    return select(
        EIGENVECTORS.c.spectrum_id,
        EIGENVECTORS.c.dtype,
        EIGENVECTORS.c.rows,
        EIGENVECTORS.c.cols,
        payload.label("payload"),
    ).where(EIGENVECTORS.c.spectrum_id.in_(spectrum_ids))


# The same query as _vector_query, for psycopg's binary result format: bytea in text format is
# hex, twice the bytes to send and to decode (a full 512 x 512 float32 read: 16 ms vs 2.6 ms).
_VECTOR_SQL_POSTGRES = """
SELECT spectrum_id, dtype, rows, cols,
       CASE WHEN %(k)s::int IS NULL THEN data
            ELSE substr(data, 1, %(k)s::int * cols * CASE WHEN dtype = 'float64' THEN 8 ELSE 4 END)
       END AS payload
FROM eigenvectors WHERE spectrum_id = ANY(%(ids)s)
"""


# save_spectrum on PostgreSQL in two statements of one transaction instead of five. The first
# checks the job, inserts the spectrum row (first write wins) and, only if it was new, its
# eigenvector bytes; the second, sent once the thread hashing those bytes is done (it ran while
# the server stored them), records the sha256 and counts the spectrum on its job, clearing a
# failure recorded earlier for the same latent. Casts type the NULL-able parameters, which an
# INSERT ... SELECT cannot infer from the target columns.
_INSERT_SPECTRUM_POSTGRES = text(
    """
WITH job AS (SELECT id FROM jobs WHERE id = :job_id),
spectrum AS (
    INSERT INTO spectra (id, job_id, latent_index, model, distance, method, dtype, k, d,
                         eigenvalues, code, top_eigenvalue, trace, dims_99, dims_999,
                         participation_ratio, wall_time_s, diagnostics, created_at)
    SELECT :id, job.id, :latent_index, :model, :distance, :method, :dtype, :k, :d,
           :eigenvalues, CAST(:code AS bytea), CAST(:top_eigenvalue AS double precision),
           CAST(:trace AS double precision), CAST(:dims_99 AS integer),
           CAST(:dims_999 AS integer), CAST(:participation_ratio AS double precision),
           CAST(:wall_time_s AS double precision), CAST(:diagnostics AS json), :created_at
    FROM job
    ON CONFLICT (job_id, latent_index) DO NOTHING
    RETURNING id
),
vectors AS (
    INSERT INTO eigenvectors (spectrum_id, dtype, rows, cols, sha256, data)
    SELECT id, :vector_dtype, :k, :d, '', :data FROM spectrum
    RETURNING spectrum_id
)
SELECT EXISTS (SELECT FROM job) AS job_found, EXISTS (SELECT FROM vectors) AS stored
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


class SpectraQuery(TypedDict, total=False):
    """A page of stored spectra: each filter given narrows the selection (``owner``: only that
    owner's jobs); ``order_by`` is one of SPECTRUM_ORDERS (default latent_index), prefixed
    with "-" for descending (e.g. "-top_eigenvalue"), ties broken by job and id so pages are
    stable; ``limit`` (default 50) and ``offset`` (default 0) page through it."""

    job_id: str | None
    model: str | None
    distance: str | None
    method: str | None
    owner: str | None
    order_by: str
    limit: int
    offset: int


def _job_not_found(job_id: str) -> NotFoundError:
    return NotFoundError(f"job {job_id!r} not found; create the job before saving results")


class Store(OptimisationStore):
    """Results, jobs, chunks, latent sets, generators and API keys in one SQL database.

    ``url``: ``sqlite:///path.db`` (embedded) or ``postgresql+psycopg://user@host/db``.
    """

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self._engine: Engine = make_engine(self.url)
        self._reader: Engine = make_read_engine(self.url, self._engine)
        self._postgres = self._engine.dialect.name == "postgresql"
        self._async_reads = AsyncReads(self.url if self._postgres else None, self._run_read)

    # -- plumbing --------------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for migrations, tests and benchmarks; not for queries)."""
        return self._engine

    def close(self) -> None:
        """Close every pooled connection."""
        self._reader.dispose()
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A connection for reads (autocommit on PostgreSQL; see make_read_engine). Methods
        using it are decorated with _retry_read."""
        with self._reader.connect() as conn:
            yield conn

    @_retry_read
    def _run_read(self, plan: ReadPlan[_R]) -> _R:
        with self._read() as conn:
            rows = fetch(conn, plan.read, plan.params)
        return plan.finish(rows)

    async def open_async_reads(self) -> None:
        """Let the ``*_async`` reads run on the calling event loop without threads (PostgreSQL;
        see async_reads). Until then, and on other loops, they run in a thread. The API's
        lifespan opens and closes it."""
        await self._async_reads.open()

    async def close_async_reads(self) -> None:
        await self._async_reads.close()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One transaction; committed on success, rolled back (nothing written) on error."""
        with self._engine.connect() as conn:
            if not self._postgres:
                conn.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
            with conn.begin():
                yield conn

    def _insert(self, table: Table) -> Any:
        return pg_insert(table) if self._postgres else sqlite_insert(table)

    def migrate(self) -> None:
        """``alembic upgrade head`` on this store's database, in one transaction. Idempotent,
        and safe to run from several processes at once (the API and workers starting together):
        PostgreSQL serialises them on an advisory lock, SQLite on BEGIN IMMEDIATE."""
        from alembic import command

        config = alembic_config(self.url)
        with self._write() as conn:
            if self._postgres:
                conn.execute(select(func.pg_advisory_xact_lock(ALEMBIC_LOCK_KEY)))
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def ping(self) -> None:
        """Raise StoreError if the database cannot be reached or answer."""
        try:
            self._select_one()
        except sa_exc.DBAPIError as error:
            raise StoreError(
                f"database at {self._engine.url.render_as_string(hide_password=True)} is not "
                f"reachable: {error.orig}. Check SPECTRA_DATABASE_URL and that the server runs."
            ) from error

    @_retry_read
    def _select_one(self) -> None:
        with self._read() as conn:
            conn.execute(select(1)).scalar_one()

    # -- generators ------------------------------------------------------------------------

    def upsert_generator(
        self,
        name: str,
        family: str,
        latent_dim: int,
        weights_sha256: str | None,
        options: dict[str, Any],
    ) -> None:
        """Record a generator (or update what is known about it)."""
        if _non_negative_int(latent_dim, "latent_dim") == 0:
            raise InvalidDataError("latent_dim must be positive")
        now = utcnow()
        values = {
            "family": family,
            "latent_dim": int(latent_dim),
            "weights_sha256": weights_sha256,
            "options": _json_document(options, "generator options"),
            "updated_at": now,
        }
        statement = self._insert(GENERATORS).values(name=name, created_at=now, **values)
        statement = statement.on_conflict_do_update(index_elements=["name"], set_=values)
        with self._write() as conn:
            conn.execute(statement)

    @_retry_read
    def list_generators(self) -> list[GeneratorRecord]:
        columns = [c for c in GENERATORS.c if c.name != "created_at"]
        with self._read() as conn:
            rows = conn.execute(select(*columns).order_by(GENERATORS.c.name)).mappings()
            return [GeneratorRecord(**row) for row in rows]

    # -- latent sets -----------------------------------------------------------------------

    def create_latent_set(
        self,
        owner: str,
        codes: np.ndarray,
        *,
        name: str | None = None,
        source: str = "uploaded",
        model: str | None = None,
        seed: int | None = None,
    ) -> LatentSetRecord:
        """Store (n, d) codes as float64 once per owner: the same codes (same shape and bytes)
        stored again return the existing set, whatever name they are given the second time."""
        _check_status(source, LATENT_SOURCES, "latent set source")
        if source == "sampled" and (model is None or seed is None):
            raise InvalidDataError("a sampled latent set must record the model and the seed")
        array = _float_array(codes, "latent codes", ndim=2)
        n, d = array.shape
        data = _le_bytes(array, "float64")
        digest = _sha256(f"{n}x{d}:".encode() + data)
        statement = (
            self._insert(LATENT_SETS)
            .values(
                id=_new_id(),
                owner=owner,
                name=name,
                source=source,
                model=model,
                seed=None if seed is None else int(seed),
                n=n,
                d=d,
                sha256=digest,
                codes=data,
                created_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["owner", "sha256"])
        )
        with self._write() as conn:
            conn.execute(statement)
            row = (
                conn.execute(
                    select(*_LATENT_SET_META).where(
                        LATENT_SETS.c.owner == owner, LATENT_SETS.c.sha256 == digest
                    )
                )
                .mappings()
                .one()
            )
            return LatentSetRecord(**row)

    @_retry_read
    def get_latent_set(self, set_id: str, owner: str | None = None) -> LatentSetRecord:
        """The set's metadata; NotFoundError if it does not exist or ``owner`` does not own it."""
        query = select(*_LATENT_SET_META).where(LATENT_SETS.c.id == set_id)
        if owner is not None:
            query = query.where(LATENT_SETS.c.owner == owner)
        with self._read() as conn:
            row = conn.execute(query).mappings().one_or_none()
        if row is None:
            raise NotFoundError(f"latent set {set_id!r} not found")
        return LatentSetRecord(**row)

    @_retry_read
    def latent_codes(self, set_id: str) -> np.ndarray:
        """(n, d) float64 codes, bit for bit as stored."""
        query = select(LATENT_SETS.c.n, LATENT_SETS.c.d, LATENT_SETS.c.codes).where(
            LATENT_SETS.c.id == set_id
        )
        with self._read() as conn:
            row = conn.execute(query).one_or_none()
        if row is None:
            raise NotFoundError(f"latent set {set_id!r} not found")
        return np.array(_from_le(row.codes, "float64", (row.n, row.d)))

    @_retry_read
    def list_latent_sets(
        self, owner: str, limit: int = 50, offset: int = 0
    ) -> list[LatentSetRecord]:
        _check_page(limit, offset)
        query = (
            select(*_LATENT_SET_META)
            .where(LATENT_SETS.c.owner == owner)
            .order_by(LATENT_SETS.c.created_at.desc(), LATENT_SETS.c.id)
            .limit(limit)
            .offset(offset)
        )
        with self._read() as conn:
            return [LatentSetRecord(**row) for row in conn.execute(query).mappings()]

    # -- jobs ------------------------------------------------------------------------------

    def create_job(
        self,
        owner: str,
        spec: dict[str, Any],
        resolved: dict[str, Any],
        spec_hash: str,
        latent_set_id: str | None,
        n_latents: int,
        chunks: list[ChunkPlan],
    ) -> tuple[JobRecord, bool]:
        """Create a job and its chunks in one transaction.

        The same (owner, spec_hash) submitted again (even concurrently) is the same job:
        returns ``(existing_job, False)`` and creates nothing.
        """
        n_latents = _non_negative_int(n_latents, "n_latents")
        chunk_rows = self._chunk_rows(chunks, n_latents)
        spec_doc = _json_document(spec, "job spec")
        resolved_doc = _json_document(resolved, "resolved job spec")
        if not spec_hash:
            raise InvalidDataError("spec_hash must not be empty")
        model = resolved_doc.get("model", spec_doc.get("model"))
        now = utcnow()
        job_id = _new_id()
        statement = (
            self._insert(JOBS)
            .values(
                id=job_id,
                owner=owner,
                status="queued",
                spec=spec_doc,
                resolved=resolved_doc,
                spec_hash=spec_hash,
                latent_set_id=latent_set_id,
                model=None if model is None else str(model),
                n_latents=n_latents,
                n_done=0,
                n_failed=0,
                cancel_requested=False,
                error=None,
                created_at=now,
                started_at=None,
                finished_at=None,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["owner", "spec_hash"])
            .returning(JOBS.c.id)
        )
        with self._write() as conn:
            if latent_set_id is not None:
                exists = conn.execute(
                    select(LATENT_SETS.c.id).where(LATENT_SETS.c.id == latent_set_id)
                ).first()
                if exists is None:
                    raise NotFoundError(f"latent set {latent_set_id!r} not found")
            created = conn.execute(statement).scalar_one_or_none() is not None
            if created:
                for row in chunk_rows:
                    row.update(job_id=job_id, created_at=now)
                if chunk_rows:
                    conn.execute(CHUNKS.insert(), chunk_rows)
                where = JOBS.c.id == job_id
            else:
                where = and_(JOBS.c.owner == owner, JOBS.c.spec_hash == spec_hash)
            job = conn.execute(select(JOBS).where(where)).mappings().one()
            return JobRecord(**job), created

    @staticmethod
    def _chunk_rows(chunks: list[ChunkPlan], n_latents: int) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        seen: set[int] = set()
        for plan in chunks:
            index = _non_negative_int(plan.index, "chunk index")
            if index in seen:
                raise InvalidDataError(f"chunk index {index} appears twice in the plan")
            seen.add(index)
            latents = [_non_negative_int(i, "latent index") for i in plan.latent_indices]
            out_of_range = [i for i in latents if i >= n_latents]
            if out_of_range:
                raise InvalidDataError(
                    f"chunk {index} names latent indices {out_of_range[:5]} outside 0..{n_latents - 1}"
                )
            block = plan.column_block
            if block is not None:
                start, stop = (_non_negative_int(v, "column block bound") for v in block)
                if stop <= start:
                    raise InvalidDataError(
                        f"chunk {index}: column block ({start}, {stop}) is empty"
                    )
                block = (start, stop)
            rows.append(
                {
                    "id": _new_id(),
                    "index": index,
                    "latent_indices": latents,
                    "block_start": None if block is None else block[0],
                    "block_stop": None if block is None else block[1],
                    "status": "queued",
                    "attempts": 0,
                    "lease_owner": None,
                    "heartbeat_at": None,
                    "started_at": None,
                    "finished_at": None,
                    "error": None,
                }
            )
        return rows

    def get_job(self, job_id: str, owner: str | None = None) -> JobRecord:
        """The job; NotFoundError if it does not exist or ``owner`` does not own it."""
        return self._run_read(self._job_read(job_id, owner))

    async def get_job_async(self, job_id: str, owner: str | None = None) -> JobRecord:
        """get_job, awaitable (see open_async_reads)."""
        return await self._async_reads.run(self._job_read(job_id, owner))

    @staticmethod
    def _job_read(job_id: str, owner: str | None) -> ReadPlan[JobRecord]:
        def finish(rows: list[dict[str, Any]]) -> JobRecord:
            if not rows:
                raise NotFoundError("job not found; check the job id (and that it is yours)")
            return JobRecord(**rows[0])

        if owner is None:
            return ReadPlan(_JOB_BY_ID, {"id": job_id}, finish)
        return ReadPlan(_JOB_OF_OWNER, {"id": job_id, "owner": owner}, finish)

    @staticmethod
    def _job(conn: Connection, query: Select[Any]) -> JobRecord:
        row = conn.execute(query).mappings().one_or_none()
        if row is None:
            raise NotFoundError("job not found; check the job id (and that it is yours)")
        return JobRecord(**row)

    @_retry_read
    def list_jobs(
        self,
        owner: str | None = None,
        status: str | None = None,
        model: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[JobRecord]:
        """Newest first."""
        _check_page(limit, offset)
        query = select(JOBS)
        if owner is not None:
            query = query.where(JOBS.c.owner == owner)
        if status is not None:
            _check_status(status, JOB_STATUSES, "job status")
            query = query.where(JOBS.c.status == status)
        if model is not None:
            query = query.where(JOBS.c.model == model)
        query = query.order_by(JOBS.c.created_at.desc(), JOBS.c.id).limit(limit).offset(offset)
        with self._read() as conn:
            return [JobRecord(**row) for row in conn.execute(query).mappings()]

    def transition_job(
        self,
        job_id: str,
        from_statuses: Sequence[str],
        to_status: str,
        *,
        error: str | None = None,
    ) -> bool:
        """Guarded CAS: move the job to ``to_status`` only if its status is in
        ``from_statuses``. True if it moved. Sets started_at on the first move to running and
        finished_at on a move to a terminal status; ``error`` replaces the stored error."""
        for status in (*from_statuses, to_status):
            _check_status(status, JOB_STATUSES, "job status")
        with self._write() as conn:
            return self._cas_job(conn, job_id, list(from_statuses), to_status, error)

    @staticmethod
    def _cas_job(
        conn: Connection, job_id: str, from_statuses: list[str], to_status: str, error: str | None
    ) -> bool:
        now = utcnow()
        values: dict[str, Any] = {"status": to_status, "updated_at": now, "error": error}
        if to_status == "running":
            values["started_at"] = func.coalesce(JOBS.c.started_at, now)
        if to_status in TERMINAL_STATUSES:
            values["finished_at"] = now
        result = conn.execute(
            update(JOBS)
            .where(JOBS.c.id == job_id, JOBS.c.status.in_(from_statuses))
            .values(**values)
        )
        return result.rowcount == 1

    def request_cancel(self, job_id: str) -> bool:
        """Cancel a job that is queued or running: set its cancel flag (running chunks see it
        through ``is_cancelled`` between latents and stop), mark it cancelled, and cancel its
        still-queued chunks so they cannot be claimed. True if this call cancelled it; False
        if it was already finished or cancelled. NotFoundError for an unknown job."""
        now = utcnow()
        with self._write() as conn:
            result = conn.execute(
                update(JOBS)
                .where(JOBS.c.id == job_id, JOBS.c.status.in_(("queued", "running")))
                .values(
                    cancel_requested=True,
                    status="cancelled",
                    finished_at=now,
                    updated_at=now,
                    error="cancelled on request",
                )
            )
            if result.rowcount == 0:
                self._job(conn, select(JOBS).where(JOBS.c.id == job_id))  # raises if unknown
                return False
            conn.execute(
                update(CHUNKS)
                .where(CHUNKS.c.job_id == job_id, CHUNKS.c.status == "queued")
                .values(status="cancelled", finished_at=now, error="job cancelled")
            )
            return True

    @_retry_read
    def is_cancelled(self, job_id: str) -> bool:
        query = select(JOBS.c.cancel_requested, JOBS.c.status).where(JOBS.c.id == job_id)
        with self._read() as conn:
            row = conn.execute(query).one_or_none()
        if row is None:
            raise NotFoundError(f"job {job_id!r} not found")
        return bool(row.cancel_requested) or row.status == "cancelled"

    def job_progress(self, job_id: str) -> JobProgress:
        """Counts and speed. ``rate`` = (done + failed) / elapsed; ``eta_s`` = remaining / rate
        while the job is queued or running and rate > 0, 0 once succeeded, otherwise None."""
        return self.progress_of(self.get_job(job_id))

    @staticmethod
    def progress_of(job: JobRecord) -> JobProgress:
        """job_progress of a job record already read (no query: a status view reads the job
        once)."""
        finished = job.n_done + job.n_failed
        elapsed = rate = eta = None
        if job.started_at is not None:
            end = job.finished_at or utcnow()
            elapsed = max((end - job.started_at).total_seconds(), 0.0)
            if elapsed > 0 and finished > 0:
                rate = finished / elapsed
        if job.status == "succeeded":
            eta = 0.0
        elif job.status in ("queued", "running") and rate:
            eta = max(job.n_latents - finished, 0) / rate
        return JobProgress(
            job_id=job.id,
            status=job.status,
            planned=job.n_latents,
            done=job.n_done,
            failed=job.n_failed,
            started_at=job.started_at,
            finished_at=job.finished_at,
            elapsed_s=elapsed,
            rate=rate,
            eta_s=eta,
        )

    def refresh_job_status(self, job_id: str) -> JobRecord:
        """Finish the job once every chunk is terminal (otherwise change nothing).

        - any chunk failed -> job failed, error "chunk <index> failed: <its error>" (lowest index);
        - else any chunk cancelled -> job cancelled;
        - else every planned latent failed (none done) -> job failed, with the first reason;
        - else -> succeeded (latents that failed individually stay listed in latent_failures).
        A job that is already succeeded, failed or cancelled is returned unchanged.
        """
        with self._write() as conn:
            job = self._job(conn, select(JOBS).where(JOBS.c.id == job_id))
            if job.status in TERMINAL_STATUSES:
                return job
            chunks = conn.execute(
                select(CHUNKS.c.index, CHUNKS.c.status, CHUNKS.c.error)
                .where(CHUNKS.c.job_id == job_id)
                .order_by(CHUNKS.c.index)
            ).all()
            if any(chunk.status not in TERMINAL_STATUSES for chunk in chunks):
                return job
            failed = [chunk for chunk in chunks if chunk.status == "failed"]
            cancelled = [chunk for chunk in chunks if chunk.status == "cancelled"]
            error: str | None = None
            if failed:
                reason = failed[0].error or "no reason recorded"
                to_status, error = "failed", f"chunk {failed[0].index} failed: {reason}"
            elif cancelled:
                to_status, error = "cancelled", f"chunk {cancelled[0].index} was cancelled"
            elif job.n_latents > 0 and job.n_done == 0 and job.n_failed >= job.n_latents:
                first = conn.execute(
                    select(LATENT_FAILURES.c.latent_index, LATENT_FAILURES.c.reason)
                    .where(LATENT_FAILURES.c.job_id == job_id)
                    .order_by(LATENT_FAILURES.c.latent_index)
                    .limit(1)
                ).one()
                to_status = "failed"
                error = f"every latent failed; latent {first.latent_index}: {first.reason}"
            else:
                to_status = "succeeded"
            self._cas_job(conn, job_id, ["queued", "running"], to_status, error)
            return self._job(conn, select(JOBS).where(JOBS.c.id == job_id))

    # -- chunks ----------------------------------------------------------------------------

    @staticmethod
    def _chunk(row: RowMapping) -> ChunkRecord:
        values = dict(row)
        start, stop = values.pop("block_start"), values.pop("block_stop")
        values["column_block"] = None if start is None else (start, stop)
        values["latent_indices"] = tuple(values["latent_indices"])
        return ChunkRecord(**values)

    @_retry_read
    def list_chunks(self, job_id: str) -> list[ChunkRecord]:
        query = select(CHUNKS).where(CHUNKS.c.job_id == job_id).order_by(CHUNKS.c.index)
        with self._read() as conn:
            return [self._chunk(row) for row in conn.execute(query).mappings()]

    @_retry_read
    def get_chunk(self, chunk_id: str) -> ChunkRecord:
        with self._read() as conn:
            row = conn.execute(select(CHUNKS).where(CHUNKS.c.id == chunk_id)).mappings().first()
        if row is None:
            raise NotFoundError(f"chunk {chunk_id!r} not found")
        return self._chunk(row)

    def claim_chunk(self, chunk_id: str, worker_id: str, max_attempts: int) -> ChunkRecord | None:
        """Take the lease on a queued chunk.

        One transaction:
        1. CAS queued -> running where attempts < max_attempts: attempts += 1, lease_owner =
           worker_id, heartbeat_at = started_at = now, error cleared; the job moves
           queued -> running (started_at set once). Returns the claimed chunk.
        2. Otherwise, if the chunk is queued with attempts >= max_attempts, CAS it to failed
           with error "attempts exhausted (<n> of <max>)"; returns None.
        3. Otherwise (running under someone's lease, finished, cancelled) returns None and
           changes nothing. NotFoundError if the chunk does not exist.
        """
        if _non_negative_int(max_attempts, "max_attempts") < 1:
            raise InvalidDataError("max_attempts must be at least 1")
        now = utcnow()
        with self._write() as conn:
            claimed = (
                conn.execute(
                    update(CHUNKS)
                    .where(
                        CHUNKS.c.id == chunk_id,
                        CHUNKS.c.status == "queued",
                        CHUNKS.c.attempts < max_attempts,
                    )
                    .values(
                        status="running",
                        attempts=CHUNKS.c.attempts + 1,
                        lease_owner=worker_id,
                        heartbeat_at=now,
                        started_at=now,
                        finished_at=None,
                        error=None,
                    )
                    .returning(*CHUNKS.c)
                )
                .mappings()
                .one_or_none()
            )
            if claimed is not None:
                self._cas_job(conn, claimed["job_id"], ["queued"], "running", None)
                return self._chunk(claimed)
            exhausted = conn.execute(
                update(CHUNKS)
                .where(
                    CHUNKS.c.id == chunk_id,
                    CHUNKS.c.status == "queued",
                    CHUNKS.c.attempts >= max_attempts,
                )
                .values(
                    status="failed",
                    finished_at=now,
                    lease_owner=None,
                    error=literal("attempts exhausted (")
                    + cast(CHUNKS.c.attempts, String)
                    + literal(f" of {max_attempts})"),
                )
            )
            if exhausted.rowcount == 0:
                known = conn.execute(select(CHUNKS.c.id).where(CHUNKS.c.id == chunk_id)).first()
                if known is None:
                    raise NotFoundError(f"chunk {chunk_id!r} not found")
            return None

    def heartbeat(self, chunk_id: str, worker_id: str) -> bool:
        """Renew the lease. False if the chunk is no longer running under this worker (it was
        requeued, cancelled or finished): the worker should then stop working on it."""
        with self._write() as conn:
            result = conn.execute(
                update(CHUNKS)
                .where(
                    CHUNKS.c.id == chunk_id,
                    CHUNKS.c.status == "running",
                    CHUNKS.c.lease_owner == worker_id,
                )
                .values(heartbeat_at=utcnow())
            )
            return result.rowcount == 1

    def finish_chunk(
        self, chunk_id: str, worker_id: str, status: str, error: str | None = None
    ) -> bool:
        """CAS running (leased by worker_id) -> succeeded / failed / cancelled. False if the
        chunk is not running under this worker (a duplicate delivery, a lost lease)."""
        _check_status(status, TERMINAL_STATUSES, "final chunk status")
        with self._write() as conn:
            result = conn.execute(
                update(CHUNKS)
                .where(
                    CHUNKS.c.id == chunk_id,
                    CHUNKS.c.status == "running",
                    CHUNKS.c.lease_owner == worker_id,
                )
                .values(status=status, error=error, finished_at=utcnow())
            )
            return result.rowcount == 1

    @_retry_read
    def stale_chunks(self, older_than_s: float) -> list[ChunkRecord]:
        """Running chunks whose last heartbeat is older than ``older_than_s`` seconds
        (timestamps come from the writers' clocks, in UTC)."""
        cutoff = utcnow() - timedelta(seconds=older_than_s)
        query = (
            select(CHUNKS)
            .where(CHUNKS.c.status == "running", CHUNKS.c.heartbeat_at < cutoff)
            .order_by(CHUNKS.c.heartbeat_at)
        )
        with self._read() as conn:
            return [self._chunk(row) for row in conn.execute(query).mappings()]

    def requeue_chunk(self, chunk_id: str, older_than_s: float | None = None) -> bool:
        """CAS running -> queued, only if its heartbeat is older than ``older_than_s`` (default:
        settings.stale_after_s). The lease is dropped; attempts are kept, so a chunk that keeps
        killing its worker ends failed in ``claim_chunk`` instead of looping."""
        if older_than_s is None:
            from services.config import get_settings

            older_than_s = get_settings().stale_after_s
        cutoff = utcnow() - timedelta(seconds=older_than_s)
        with self._write() as conn:
            result = conn.execute(
                update(CHUNKS)
                .where(
                    CHUNKS.c.id == chunk_id,
                    CHUNKS.c.status == "running",
                    CHUNKS.c.heartbeat_at < cutoff,
                )
                .values(
                    status="queued",
                    lease_owner=None,
                    heartbeat_at=None,
                    error=f"requeued: no heartbeat for more than {older_than_s:g} s",
                )
            )
            return result.rowcount == 1

    # -- spectra ---------------------------------------------------------------------------

    def _require_job(self, conn: Connection, job_id: str) -> int:
        """NotFoundError unless the job exists; returns its count of failed latents."""
        n_failed = conn.execute(select(JOBS.c.n_failed).where(JOBS.c.id == job_id)).scalar()
        if n_failed is None:
            raise _job_not_found(job_id)
        return int(n_failed)

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
        latent_index = _non_negative_int(latent_index, "latent_index")
        _check_status(dtype, VECTOR_DTYPES, "dtype")
        values = _float_array(eigenvalues, "eigenvalues", ndim=1)
        vectors = _float_array(eigenvectors, "eigenvectors", ndim=2)
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
            raise InvalidDataError(
                f"eigenvectors shape {vectors.shape}: more vectors than dimensions"
            )
        code_bytes = None
        if code is not None:
            code_array = _float_array(code, "latent code", ndim=1)
            if code_array.shape[0] != d:
                raise InvalidDataError(
                    f"latent code has dimension {code_array.shape[0]} but eigenvectors have d = {d}"
                )
            code_bytes = _le_bytes(code_array, "float64")
        columns = _summary_columns(summary)
        diagnostics_doc = _json_document(diagnostics, "diagnostics")
        wall_time = diagnostics_doc.get("wall_time_s")
        spectrum = {
            "id": _new_id(),
            "job_id": job_id,
            "latent_index": latent_index,
            "model": model,
            "distance": distance,
            "method": method,
            "dtype": dtype,
            "k": k,
            "d": d,
            "eigenvalues": _le_bytes(values, "float64"),
            "code": code_bytes,
            "wall_time_s": float(wall_time) if isinstance(wall_time, int | float) else None,
            "diagnostics": diagnostics_doc,
            "created_at": utcnow(),
            **dict.fromkeys(SUMMARY_KEYS),
            **columns,
        }
        data = _le_bytes(vectors.T, vectors.dtype.name)
        # sha256 of 1 MiB costs 1-5 ms (CPUs with and without SHA instructions); it runs in a
        # thread (hashlib releases the GIL) while the server stores the data.
        digest = _Digest(data)
        try:
            with self._write() as conn:
                save = self._save_postgres if self._postgres else self._save_portable
                return save(conn, spectrum, vectors.dtype.name, data, digest)
        finally:
            digest.result()

    def _save_portable(
        self,
        conn: Connection,
        spectrum: dict[str, Any],
        vector_dtype: str,
        data: bytes,
        digest: _Digest,
    ) -> bool:
        """save_spectrum on SQLite: statement by statement, through the models."""
        job_failures = self._require_job(conn, spectrum["job_id"])
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
        digest: _Digest,
    ) -> bool:
        """save_spectrum on PostgreSQL: two statements (see _INSERT_SPECTRUM_POSTGRES)."""
        found, stored = conn.execute(
            _INSERT_SPECTRUM_POSTGRES,
            {
                **spectrum,
                "diagnostics": json.dumps(spectrum["diagnostics"]),
                "vector_dtype": vector_dtype,
                "data": data,
            },
        ).one()
        if not found:
            raise _job_not_found(spectrum["job_id"])
        if not stored:
            return False
        conn.execute(
            _COUNT_SPECTRUM_POSTGRES,
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
        cleared = 0
        if job_failures:  # a retry of a latent that failed before replaces its failure
            cleared = conn.execute(
                delete(LATENT_FAILURES).where(
                    LATENT_FAILURES.c.job_id == job_id,
                    LATENT_FAILURES.c.latent_index == latent_index,
                )
            ).rowcount
        conn.execute(
            update(JOBS)
            .where(JOBS.c.id == job_id)
            .values(n_done=JOBS.c.n_done + 1, n_failed=JOBS.c.n_failed - cleared)
        )
        return True

    def record_latent_failure(self, job_id: str, latent_index: int, reason: str) -> bool:
        """Record once that a latent could not be computed (e.g. the generator produced NaN).
        False if a failure or a spectrum is already stored for it."""
        latent_index = _non_negative_int(latent_index, "latent_index")
        if not reason:
            raise InvalidDataError("a latent failure needs a reason")
        statement = (
            self._insert(LATENT_FAILURES)
            .values(job_id=job_id, latent_index=latent_index, reason=reason, created_at=utcnow())
            .on_conflict_do_nothing(index_elements=["job_id", "latent_index"])
            .returning(LATENT_FAILURES.c.id)
        )
        with self._write() as conn:
            self._require_job(conn, job_id)
            done = conn.execute(
                select(SPECTRA.c.id).where(
                    SPECTRA.c.job_id == job_id, SPECTRA.c.latent_index == latent_index
                )
            ).first()
            if done is not None or conn.execute(statement).scalar_one_or_none() is None:
                return False
            conn.execute(
                update(JOBS).where(JOBS.c.id == job_id).values(n_failed=JOBS.c.n_failed + 1)
            )
            return True

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

    @_retry_read
    def stored_latent_indices(self, job_id: str) -> set[int]:
        """Latents with a result: a stored spectrum or a recorded failure (a re-run skips them)."""
        done = select(SPECTRA.c.latent_index).where(SPECTRA.c.job_id == job_id)
        failed = select(LATENT_FAILURES.c.latent_index).where(LATENT_FAILURES.c.job_id == job_id)
        with self._read() as conn:
            return set(conn.execute(done.union(failed)).scalars())

    @staticmethod
    def _spectrum(row: Mapping[str, Any]) -> SpectrumRecord:
        values = dict(row)
        values["eigenvalues"] = _readonly(_from_le(values["eigenvalues"], "float64", (row["k"],)))
        if values["code"] is not None:
            values["code"] = _readonly(_from_le(values["code"], "float64", (row["d"],)))
        return SpectrumRecord(**values)

    def list_spectra(self, **query: Unpack[SpectraQuery]) -> list[SpectrumRecord]:
        """Metadata and eigenvalues, never eigenvectors (see SpectraQuery for the filters,
        the order and the page)."""
        return self._run_read(self._spectra_page(False, query))

    def list_spectrum_summaries(self, **query: Unpack[SpectraQuery]) -> list[SpectrumSummaryRecord]:
        """list_spectra without the arrays and diagnostics: what a listing shows."""
        return self._run_read(self._spectra_page(True, query))

    async def list_spectrum_summaries_async(
        self, **query: Unpack[SpectraQuery]
    ) -> list[SpectrumSummaryRecord]:
        """list_spectrum_summaries, awaitable (see open_async_reads)."""
        return await self._async_reads.run(self._spectra_page(True, query))

    @classmethod
    def _spectra_page(cls, summaries: bool, query: SpectraQuery) -> ReadPlan[Any]:
        """One page of spectra: SpectrumSummaryRecords, or with ``summaries`` False whole
        SpectrumRecords (arrays, diagnostics)."""
        unknown = set(query) - set(SpectraQuery.__annotations__)
        if unknown:  # a misspelt filter must not widen the selection silently
            raise TypeError(f"unknown spectra query arguments: {', '.join(sorted(unknown))}")
        owner = query.get("owner")
        order_by = query.get("order_by", "latent_index")
        limit, offset = query.get("limit", 50), query.get("offset", 0)
        _check_page(limit, offset)
        if order_by.removeprefix("-") not in SPECTRUM_ORDERS:
            raise InvalidDataError(
                f"cannot order spectra by {order_by!r}; use one of {', '.join(SPECTRUM_ORDERS)} "
                "(prefix '-' for descending)"
            )
        filters = _selection_params(
            query.get("job_id"), query.get("model"), query.get("distance"), query.get("method")
        )
        params: dict[str, Any] = dict(filters)
        read = _spectra_page_read(tuple(filters), owner is not None, order_by, summaries)
        if owner is not None:
            params["owner"] = owner
        params.update(limit=limit, offset=offset)

        def finish(rows: list[dict[str, Any]]) -> list[Any]:
            if summaries:
                return [SpectrumSummaryRecord(**row) for row in rows]
            return [cls._spectrum(row) for row in rows]

        return ReadPlan(read, params, finish)

    def get_spectrum(self, spectrum_id: str, owner: str | None = None) -> SpectrumRecord:
        """The spectrum; NotFoundError if it does not exist or ``owner`` does not own its job."""
        return self._run_read(self._spectrum_read(spectrum_id, owner))

    async def get_spectrum_async(self, spectrum_id: str, owner: str | None = None) -> SpectrumRecord:
        """get_spectrum, awaitable (see open_async_reads)."""
        return await self._async_reads.run(self._spectrum_read(spectrum_id, owner))

    @classmethod
    def _spectrum_read(cls, spectrum_id: str, owner: str | None) -> ReadPlan[SpectrumRecord]:
        def finish(rows: list[dict[str, Any]]) -> SpectrumRecord:
            if not rows:
                raise NotFoundError(f"spectrum {spectrum_id!r} not found")
            return cls._spectrum(rows[0])

        if owner is None:
            return ReadPlan(_SPECTRUM_BY_ID, {"id": spectrum_id}, finish)
        return ReadPlan(_SPECTRUM_OF_OWNER, {"id": spectrum_id, "owner": owner}, finish)

    def eigenvectors(self, spectrum_id: str, k: int | None = None) -> np.ndarray:
        """(d, k) eigenvectors as columns in their stored dtype, the top ``k`` (all when None).
        Reads only the first k·d·itemsize bytes of the blob."""
        return self._read_vectors([spectrum_id], k)[0]

    def top_k_eigenvectors(self, spectrum_ids: Sequence[str], k: int) -> np.ndarray:
        """(n, d, k): the top-k eigenvectors of each spectrum, in the order given. All must
        share d; float32 and float64 together come back as float64."""
        if k is None or _non_negative_int(k, "k") == 0:
            raise InvalidDataError("k must be a positive integer")
        if not spectrum_ids:
            raise InvalidDataError("give at least one spectrum id")
        blocks = self._read_vectors(list(spectrum_ids), k)
        dims = {block.shape[0] for block in blocks}
        if len(dims) > 1:
            raise InvalidDataError(
                f"spectra have different latent dimensions {sorted(dims)}; select one model's"
            )
        return np.stack(blocks).astype(np.result_type(*blocks), copy=False)

    @_retry_read
    def _read_vectors(self, spectrum_ids: list[str], k: int | None) -> list[np.ndarray]:
        if k is not None and _non_negative_int(k, "k") == 0:
            raise InvalidDataError("k must be a positive integer")
        found: dict[str, Any] = {}
        with self._read() as conn:
            for start in range(0, len(spectrum_ids), IDS_PER_QUERY):
                batch = spectrum_ids[start : start + IDS_PER_QUERY]
                fetched: Sequence[Any] = (
                    self._vector_rows_postgres(conn, batch, k)
                    if self._postgres
                    else conn.execute(_vector_query(batch, k)).all()
                )
                found.update((row.spectrum_id, row) for row in fetched)
        arrays = []
        for spectrum_id in spectrum_ids:
            row = found.get(spectrum_id)
            if row is None:
                raise NotFoundError(f"no eigenvectors stored for spectrum {spectrum_id!r}")
            rows = row.rows if k is None else k
            if rows > row.rows:
                raise InvalidDataError(
                    f"asked for the top {k} eigenvectors but spectrum {spectrum_id} stores "
                    f"only {row.rows}"
                )
            # A copy makes the result writable; the transpose is a view: (k, d) rows -> (d, k).
            matrix = np.array(_from_le(row.payload, row.dtype, (rows, row.cols)))
            arrays.append(matrix.T)
        return arrays

    @staticmethod
    def _vector_rows_postgres(
        conn: Connection, spectrum_ids: list[str], k: int | None
    ) -> list[Any]:
        return run_on_driver(
            conn,
            _VECTOR_SQL_POSTGRES,
            {"k": k, "ids": spectrum_ids},
            row_factory=namedtuple_row,
            binary=True,
        )

    @_retry_read
    def eigenvalue_matrix(
        self,
        *,
        job_id: str | None = None,
        model: str | None = None,
        distance: str | None = None,
        method: str | None = None,
        owner: str | None = None,
        k: int | None = None,
    ) -> tuple[np.ndarray, list[str]]:
        """(N, k) float64 eigenvalues (descending) of the selected spectra, ordered by job and
        latent index, with their ids. ``k`` defaults to the smallest k in the selection (each
        row truncated to its top k); asking for more than a spectrum stores is an error."""
        if k is not None and _non_negative_int(k, "k") == 0:
            raise InvalidDataError("k must be a positive integer (or None for the smallest k)")
        params: dict[str, Any] = _selection_params(job_id, model, distance, method)
        query = _selected(
            select(SPECTRA.c.id, SPECTRA.c.k, SPECTRA.c.eigenvalues), list(params), owner is not None
        ).order_by(SPECTRA.c.job_id, SPECTRA.c.latent_index)
        if owner is not None:
            params["owner"] = owner
        with self._read() as conn:
            rows = conn.execute(query, params).all()
        if not rows:
            return np.zeros((0, k or 0)), []
        width = min(row.k for row in rows) if k is None else int(k)
        if any(row.k < width for row in rows):
            raise InvalidDataError(
                f"k={width} but the selection holds spectra with only {min(r.k for r in rows)} "
                "eigenvalues; ask for fewer"
            )
        matrix = np.stack([_from_le(row.eigenvalues, "float64", (row.k,))[:width] for row in rows])
        return matrix, [row.id for row in rows]

    # -- column blocks of one large Hessian ------------------------------------------------

    def save_column_block(
        self, job_id: str, latent_index: int, start: int, stop: int, block: np.ndarray
    ) -> bool:
        """Store H[:, start:stop] (shape (d, stop - start), float32/float64 kept bit for bit).
        Idempotent on (job_id, latent_index, start): False if already stored."""
        latent_index = _non_negative_int(latent_index, "latent_index")
        start, stop = _non_negative_int(start, "start"), _non_negative_int(stop, "stop")
        array = _float_array(block, "column block", ndim=2)
        if array.dtype.name not in VECTOR_DTYPES:
            raise InvalidDataError(f"column block must be float32 or float64, got {array.dtype}")
        if stop <= start or array.shape[1] != stop - start or stop > array.shape[0]:
            raise InvalidDataError(
                f"column block for columns [{start}, {stop}) must have shape "
                f"(d, {stop - start}) with stop <= d; got {array.shape}"
            )
        data = _le_bytes(array, array.dtype.name)
        statement = (
            self._insert(COLUMN_BLOCKS)
            .values(
                job_id=job_id,
                latent_index=latent_index,
                start=start,
                stop=stop,
                rows=array.shape[0],
                dtype=array.dtype.name,
                sha256=_sha256(data),
                data=data,
                created_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["job_id", "latent_index", "start"])
            .returning(COLUMN_BLOCKS.c.start)
        )
        with self._write() as conn:
            self._require_job(conn, job_id)
            return conn.execute(statement).scalar_one_or_none() is not None

    @_retry_read
    def column_blocks(self, job_id: str, latent_index: int) -> list[tuple[int, int, np.ndarray]]:
        """Stored blocks of one latent's Hessian as (start, stop, (d, stop - start)), by start."""
        query = (
            select(
                COLUMN_BLOCKS.c.start,
                COLUMN_BLOCKS.c.stop,
                COLUMN_BLOCKS.c.rows,
                COLUMN_BLOCKS.c.dtype,
                COLUMN_BLOCKS.c.data,
            )
            .where(COLUMN_BLOCKS.c.job_id == job_id, COLUMN_BLOCKS.c.latent_index == latent_index)
            .order_by(COLUMN_BLOCKS.c.start)
        )
        with self._read() as conn:
            return [
                (
                    row.start,
                    row.stop,
                    np.array(_from_le(row.data, row.dtype, (row.rows, row.stop - row.start))),
                )
                for row in conn.execute(query)
            ]

    # -- API keys --------------------------------------------------------------------------

    @staticmethod
    def _api_key(row: RowMapping) -> ApiKeyRecord:
        values = dict(row)
        values["scopes"] = tuple(values["scopes"])
        return ApiKeyRecord(**values)

    def create_api_key(self, owner: str, scopes: list[str]) -> tuple[ApiKeyRecord, str]:
        """A new key for ``owner``. The token is returned once; only its sha256 is stored."""
        if not owner:
            raise InvalidDataError("an API key needs an owner")
        if isinstance(scopes, str) or not all(isinstance(s, str) and s for s in scopes):
            raise InvalidDataError(f"scopes must be a list of non-empty strings, got {scopes!r}")
        token = secrets.token_urlsafe(32)
        row = {
            "id": _new_id(),
            "owner": owner,
            "token_sha256": _sha256(token.encode()),
            "scopes": list(scopes),
            "created_at": utcnow(),
            "revoked": False,
        }
        with self._write() as conn:
            conn.execute(API_KEYS.insert().values(**row))
        del row["token_sha256"]
        return self._api_key(row), token  # type: ignore[arg-type]

    @_retry_read
    def verify_api_key(self, token: str) -> ApiKeyRecord | None:
        """The key's record if ``token`` is a live key, else None. Lookup is by the token's
        sha256 (a unique index), so timing reveals nothing about stored tokens."""
        if not token:
            return None
        query = select(
            API_KEYS.c.id,
            API_KEYS.c.owner,
            API_KEYS.c.scopes,
            API_KEYS.c.created_at,
            API_KEYS.c.revoked,
        ).where(API_KEYS.c.token_sha256 == _sha256(token.encode()), API_KEYS.c.revoked.is_(False))
        with self._read() as conn:
            row = conn.execute(query).mappings().one_or_none()
        return None if row is None else self._api_key(row)

    def revoke_api_key(self, key_id: str) -> bool:
        """Revoke a key for good. True if it was live."""
        with self._write() as conn:
            result = conn.execute(
                update(API_KEYS)
                .where(API_KEYS.c.id == key_id, API_KEYS.c.revoked.is_(False))
                .values(revoked=True)
            )
            return result.rowcount == 1

    # -- idempotency keys ------------------------------------------------------------------

    @_retry_read
    def job_for_idempotency_key(
        self, owner: str, key: str, request_sha256: str
    ) -> JobRecord | None:
        """The job this owner's Idempotency-Key submitted in the last 24 hours, or None.
        IdempotencyConflictError if the key came then with a different request."""
        cutoff = utcnow() - IDEMPOTENCY_TTL
        query = select(IDEMPOTENCY_KEYS.c.request_sha256, IDEMPOTENCY_KEYS.c.job_id).where(
            IDEMPOTENCY_KEYS.c.owner == owner,
            IDEMPOTENCY_KEYS.c.key == key,
            IDEMPOTENCY_KEYS.c.created_at >= cutoff,
        )
        with self._read() as conn:
            row = conn.execute(query).one_or_none()
        if row is None:
            return None
        _check_same_request(row.request_sha256, request_sha256)
        return self.get_job(row.job_id, owner=owner)

    def remember_idempotency_key(
        self, owner: str, key: str, request_sha256: str, job_id: str
    ) -> None:
        """Record that the key submitted ``job_id`` (replacing a record older than 24 hours).
        IdempotencyConflictError if the key is meanwhile recorded with a different request
        (two concurrent submissions under one key with different bodies: the later one)."""
        if not key or not request_sha256:
            raise InvalidDataError("an idempotency record needs a key and a request hash")
        now = utcnow()
        values = {"request_sha256": request_sha256, "job_id": job_id, "created_at": now}
        statement = (
            self._insert(IDEMPOTENCY_KEYS)
            .values(owner=owner, key=key, **values)
            .on_conflict_do_update(
                index_elements=["owner", "key"],
                set_=values,
                where=IDEMPOTENCY_KEYS.c.created_at < now - IDEMPOTENCY_TTL,
            )
        )
        recorded = select(IDEMPOTENCY_KEYS.c.request_sha256).where(
            IDEMPOTENCY_KEYS.c.owner == owner, IDEMPOTENCY_KEYS.c.key == key
        )
        with self._write() as conn:
            self._require_job(conn, job_id)
            conn.execute(statement)
            _check_same_request(conn.execute(recorded).scalar_one(), request_sha256)


def _check_same_request(recorded_sha256: str, request_sha256: str) -> None:
    if recorded_sha256 != request_sha256:
        raise IdempotencyConflictError(
            "this Idempotency-Key was already used with a different request body; use a new "
            "key for a different job"
        )


def alembic_config(url: str) -> Any:
    """Alembic Config for the migrations shipped inside this package, aimed at ``url``."""
    from alembic.config import Config

    package = resources.files("services.store")
    config = Config(str(package / "alembic.ini"))
    config.set_main_option("script_location", str(package / "migrations"))
    config.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return config

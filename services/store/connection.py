"""Connections of the store: the write engine (one transaction per call), the read engine
(autocommit, retried once on a fresh pool when its connection was dead), the awaitable
reads, migrations and the ping."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import Any, ParamSpec, Self, TypeVar

from psycopg.rows import dict_row
from sqlalchemy import Column, Engine, RowMapping, Table, func, literal_column, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from .async_reads import AsyncReads
from .availability import STORE_FULL_MESSAGE, raise_translated, store_errors
from .engine import (
    SQLITE_BEGIN_OPTION,
    broken_foreign_keys,
    make_engine,
    make_read_engine,
    normalise_url,
    sqlite_foreign_keys_off,
)
from .errors import NotFoundError, StoreFull, StoreUnavailable
from .prepared import Disconnected, DriverReads, ReadPlan, fetch, in_utc, prepare

ALEMBIC_LOCK_KEY = 0x5350_4543  # pg advisory lock held while migrating ("SPEC")
_SELECT_ONE = prepare(select(literal_column("1").label("one")))
# Sorted under a 64 kB work_mem, these rows go to temporary files (in the data directory's
# filesystem unless temp_tablespaces says otherwise).
_SPILLING_SORT = (
    "SELECT count(*) FROM (SELECT md5(g::text) AS h FROM generate_series(1, 20000) AS g "
    "ORDER BY h OFFSET 0) AS spilled"
)

_P = ParamSpec("_P")
_R = TypeVar("_R")


def retry_read(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run a read again, once, on a fresh pool if its connection turned out to be dead
    (server restart, pg_terminate_backend): reads skip the pre-ping round trip instead.
    Any other unavailability drops the pool too, so that the first read after the database
    is back connects afresh instead of meeting the connections of before the outage."""

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        store = args[0]
        assert isinstance(store, StoreConnection)
        try:
            return method(*args, **kwargs)
        except StoreUnavailable as error:
            store._reader.dispose(close=False)  # every pooled connection may be dead
            if not error.connection_lost:
                raise
            return method(*args, **kwargs)

    return wrapper


class PooledDriverRead:
    """``with`` a pooled read connection's DriverReads; the connection goes back to the pool
    after the block, a dead one dropped from it (the caller's retry_read runs the read again),
    and a driver's availability error becomes the store's own, as in store_errors.

    SQLAlchemy's Connection around the driver's (built, reset and torn down per call) cost a
    small read more CPU than psycopg's own round trip, and so, to a lesser degree, did two
    generator-based context managers: hence a plain class."""

    __slots__ = ("_engine", "_pooled")

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._pooled: Any = None

    def __enter__(self) -> DriverReads:
        try:
            self._pooled = self._engine.raw_connection()
        except BaseException as error:
            raise_translated(error)
        driver = self._pooled.driver_connection
        assert driver is not None  # a checked-out connection has its driver's
        return DriverReads(driver, self._pooled.info)

    def __exit__(self, _kind: object, error: BaseException | None, _trace: object) -> None:
        pooled, self._pooled = self._pooled, None
        if isinstance(error, Disconnected):
            pooled.invalidate(error)
        pooled.close()
        if error is not None:
            raise_translated(error)


class StoreConnection:
    """What every part of the Store shares: the engines and the transaction helpers."""

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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A connection for reads (autocommit on PostgreSQL; see make_read_engine). Methods
        using it are decorated with retry_read."""
        with store_errors(), self._reader.connect() as conn:
            yield conn

    def _driver_read(self) -> PooledDriverRead:
        """PostgreSQL: reads straight on a pooled read connection's psycopg connection (see
        PooledDriverRead)."""
        return PooledDriverRead(self._reader)

    @retry_read
    def _run_read(self, plan: ReadPlan[_R]) -> _R:
        # Translated by _read/_driver_read; retried once on a fresh pool by retry_read.
        if self._postgres:
            with self._driver_read() as reads:
                found = reads.rows(plan.read.postgres_sql, plan.params, row_factory=dict_row)
            return plan.finish(in_utc(found, plan.read))
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
        with store_errors(), self._engine.connect() as conn:
            if not self._postgres:
                conn.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
            with conn.begin():
                yield conn

    def _insert(self, table: Table) -> Any:
        return pg_insert(table) if self._postgres else sqlite_insert(table)

    def _insert_once_per_owner(
        self, table: Table, meta: Sequence[Column[Any]], values: Mapping[str, Any]
    ) -> RowMapping:
        """Insert a content-addressed set (unique on owner and sha256) unless its owner already
        holds the same bytes; the stored row's ``meta`` columns either way, so that a re-upload
        answers with the first upload's id."""
        statement = (
            self._insert(table)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["owner", "sha256"])
        )
        stored = select(*meta).where(
            table.c.owner == values["owner"], table.c.sha256 == values["sha256"]
        )
        with self._write() as conn:
            conn.execute(statement)
            return conn.execute(stored).mappings().one()

    def _owned_row(
        self, table: Table, meta: Sequence[Column[Any]], row_id: str, owner: str | None, noun: str
    ) -> RowMapping:
        """The ``meta`` columns of row ``row_id``; NotFoundError (naming the ``noun``) if it does
        not exist or ``owner``, when given, does not own it. Callers are decorated with retry_read."""
        query = select(*meta).where(table.c.id == row_id)
        if owner is not None:
            query = query.where(table.c.owner == owner)
        with self._read() as conn:
            row = conn.execute(query).mappings().one_or_none()
        if row is None:
            raise NotFoundError(f"{noun} {row_id!r} not found")
        return row

    def migrate(self) -> None:
        """``alembic upgrade head`` on this store's database, in one transaction. Idempotent,
        and safe to run from several processes at once (the API and workers starting together):
        PostgreSQL serialises them on an advisory lock, SQLite on BEGIN IMMEDIATE."""
        from alembic import command

        config = alembic_config(self.url)
        with store_errors(), self._engine.connect() as conn, sqlite_foreign_keys_off(conn):
            if not self._postgres:
                conn.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
            with conn.begin():
                if self._postgres:
                    conn.execute(select(func.pg_advisory_xact_lock(ALEMBIC_LOCK_KEY)))
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
                if broken := broken_foreign_keys(conn):
                    raise RuntimeError(f"a migration left references that point nowhere: {broken}")

    def ping(self) -> None:
        """Raise StoreUnavailable if the database cannot be reached or answer, StoreFull if
        it cannot write (see probe_writes)."""
        self._select_one()
        self.probe_writes()

    async def ping_async(self) -> None:
        """ping's read half on the path the API's hot reads take (the event loop's pool), so
        readiness tells what those reads will meet, not only what a fresh connection meets."""
        await self._async_reads.run(ReadPlan(_SELECT_ONE, {}, lambda rows: None))

    @retry_read
    def _select_one(self) -> None:
        with self._read() as conn:
            conn.execute(select(1)).scalar_one()

    def probe_writes(self) -> None:
        """StoreFull unless the database can write to its disk now. PostgreSQL: not read-only,
        and a sort made to spill a few hundred kilobytes to temporary files in the data
        directory succeeds (a full disk fails it; nothing is left behind, no table grows).
        SQLite: a write transaction can begin."""
        with self._write() as conn:
            if not self._postgres:
                return
            if conn.execute(text("SHOW transaction_read_only")).scalar_one() == "on":
                raise StoreFull(STORE_FULL_MESSAGE)
            conn.execute(text("SET LOCAL work_mem = '64kB'"))
            conn.execute(text(_SPILLING_SORT)).scalar_one()


def alembic_config(url: str) -> Any:
    """Alembic Config for the migrations shipped inside this package, aimed at ``url``."""
    from alembic.config import Config

    package = resources.files("services.store")
    config = Config(str(package / "alembic.ini"))
    config.set_main_option("script_location", str(package / "migrations"))
    config.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return config

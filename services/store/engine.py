"""Engines for PostgreSQL (deployment) and SQLite (embedded), configured in one place.

Used by the Store and by the Alembic environment, so migrations see the same connection
settings as the code that uses the schema.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url

SQLITE_BUSY_TIMEOUT_S = 30.0
SQLITE_BEGIN_OPTION = "sqlite_begin"  # execution option: "DEFERRED" (reads) or "IMMEDIATE"
# Seconds a new PostgreSQL connection may take. A server that is down or unreachable then
# fails a request within seconds (the API answers 503) instead of after the OS's TCP timeout.
PG_CONNECT_TIMEOUT_S = 3


def normalise_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and use psycopg 3, the driver this project ships."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    backend = make_url(url).get_backend_name()
    if backend == "postgresql":
        # pre_ping: a worker's connection may be killed (pg_terminate_backend, a restart)
        # mid-job; the next checkout then replaces it instead of failing the next call.
        return create_engine(
            url,
            pool_pre_ping=True,
            pool_size=5,
            max_overflow=10,
            connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S},
        )
    if backend == "sqlite":
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
        )
        _configure_sqlite(engine)
        return engine
    raise ValueError(
        f"unsupported database URL {url!r}: use sqlite:///path/to/file.db or "
        "postgresql+psycopg://user@host:5432/dbname (SPECTRA_DATABASE_URL)"
    )


def make_read_engine(url: str, engine: Engine) -> Engine:
    """The engine for reads. On PostgreSQL a second pool in autocommit and without pre-ping:
    a read is one statement, and BEGIN, ROLLBACK and the ping would triple its round trips
    (the top-10 eigenvector read is one round trip). A read that meets a dead connection is
    retried once by the Store on a fresh pool instead. On SQLite: the same engine.

    Ten connections and no overflow: overflow connections are closed when returned, and under
    a burst of threaded reads the API spent more time opening PostgreSQL connections (a
    backend started per connect) than reading; readers beyond ten wait for one instead."""
    if engine.dialect.name != "postgresql":
        return engine
    return create_engine(
        normalise_url(url),
        isolation_level="AUTOCOMMIT",
        # Nothing to reset: an autocommit connection holds no transaction, and the rollback
        # SQLAlchemy sends by default on return is a driver call per read for nothing.
        pool_reset_on_return=None,
        pool_size=10,
        max_overflow=0,
        connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S},
    )


def _switch_to_wal(cursor: sqlite3.Cursor) -> None:
    """PRAGMA journal_mode=WAL, retried until the busy timeout: on a new database file the
    switch needs an exclusive lock, and SQLite answers "database is locked" at once, without
    waiting on the busy handler, when another connection is starting a transaction there (two
    processes migrating a fresh embedded store at once)."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _configure_sqlite(engine: Engine) -> None:
    """WAL, a busy timeout, foreign keys, and transactions that SQLite actually honours.

    pysqlite's own transaction handling starts transactions late and never for reads; we turn
    it off and emit BEGIN ourselves. Write transactions use BEGIN IMMEDIATE (execution option
    ``sqlite_begin``) so two writers queue on the busy timeout instead of one failing with
    "database is locked" when it upgrades a read lock.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        _switch_to_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(SQLITE_BEGIN_OPTION, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


@contextmanager
def sqlite_foreign_keys_off(conn: Connection) -> Iterator[None]:
    """Foreign keys off on a SQLite connection while a migration runs, then on again.

    A batch migration rebuilds a table (copy, drop, rename), and with foreign keys on the drop
    first deletes the table's rows, and through ON DELETE CASCADE every row that references
    them: an embedded store holding jobs would lose its chunks and spectra, or refuse to
    migrate. SQLite ignores the pragma inside a transaction, so it is set on the driver's
    connection before BEGIN. Elsewhere nothing is done."""
    if conn.dialect.name != "sqlite":
        yield
        return
    raw = conn.connection.dbapi_connection
    assert raw is not None
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        raw.execute("PRAGMA foreign_keys=ON")


def broken_foreign_keys(conn: Connection) -> list[tuple[object, ...]]:
    """The rows whose references point nowhere (SQLite's foreign_key_check), checked at the end
    of a migration run with the keys off; PostgreSQL enforces them throughout."""
    if conn.dialect.name != "sqlite":
        return []
    return [tuple(row) for row in conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()]

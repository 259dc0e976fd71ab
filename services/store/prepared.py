"""Statements built once and, on PostgreSQL, run straight on the driver: the API's hot reads,
one spectrum's eigenvectors, and a spectrum's write.

Through SQLAlchemy a small statement costs several times the CPU that psycopg alone needs
(building the statement, its cache key, the execution context and the result wrapper); at
the API's request rates that was most of a request (figures: bench/results, store and API).
A ``PreparedRead`` keeps the statement as SQLAlchemy Core, so the SQL is written once and
SQLite runs it through SQLAlchemy as before, and compiles it once for PostgreSQL, whose rows
come back from psycopg as plain dicts. Values are always bound by name (``bindparam``), never
embedded, so the compiled text is reusable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Generic, TypeVar

import psycopg
from psycopg.rows import RowFactory
from sqlalchemy import Select
from sqlalchemy.dialects.postgresql import psycopg as postgresql_psycopg
from sqlalchemy.engine import Connection
from sqlalchemy.sql.expression import ClauseElement

from .models import UTCDateTime

_POSTGRESQL = postgresql_psycopg.dialect()  # type: ignore[no-untyped-call]

_T = TypeVar("_T")


class Disconnected(Exception):
    """A raw driver call found its connection dead (wrapped so that reads can retry it)."""


@dataclass(frozen=True)
class PreparedRead:
    statement: Select[Any]
    postgres_sql: str
    # Timestamp columns: psycopg answers in the session's time zone, the store in UTC.
    utc_columns: tuple[str, ...]


def postgres_sql(statement: ClauseElement) -> str:
    """``statement`` compiled once for psycopg, its parameters bound by name (%(name)s)."""
    return str(statement.compile(dialect=_POSTGRESQL))


def prepare(statement: Select[Any]) -> PreparedRead:
    return PreparedRead(
        statement=statement,
        postgres_sql=postgres_sql(statement),
        utc_columns=tuple(
            str(column.key)
            for column in statement.selected_columns
            if isinstance(column.type, UTCDateTime)
        ),
    )


@dataclass(frozen=True)
class ReadPlan(Generic[_T]):
    """One read, ready to run on either path (a thread's connection, or the event loop's; see
    async_reads): the statement, its parameters, and what turns its rows into the answer."""

    read: PreparedRead
    params: Mapping[str, Any]
    finish: Callable[[list[dict[str, Any]]], _T]


def fetch(conn: Connection, read: PreparedRead, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rows of ``read`` as dicts keyed by column name through SQLAlchemy (SQLite; on
    PostgreSQL the store runs reads on the driver, see DriverReads)."""
    return [dict(row) for row in conn.execute(read.statement, dict(params)).mappings()]


def in_utc(rows: list[dict[str, Any]], read: PreparedRead) -> list[dict[str, Any]]:
    """psycopg's rows with ``read``'s timestamp columns moved to UTC, in place."""
    for row in rows:
        for name in read.utc_columns:
            if row[name] is not None:
                row[name] = row[name].astimezone(UTC)
    return rows


# A cursor kept with its connection keeps its last result until the next read; only a one-row
# result up to this size may stay (the top-k reads, a job's or a spectrum's metadata).
_KEPT_RESULT_BYTES = 1 << 20
_KEPT_CURSORS = "spectra-kept-cursors"


class DriverReads:
    """Reads straight on one pooled PostgreSQL connection's psycopg connection, on a cursor
    kept with that connection between checkouts (``kept``: the pool's per-connection dict).
    A new cursor looks up its type loaders again, a noticeable part of a one-row read; a
    cursor that holds more than a small one-row result is closed instead."""

    def __init__(self, driver: psycopg.Connection[Any], kept: dict[Any, Any]) -> None:
        self._driver = driver
        self._cursors: dict[bool, psycopg.Cursor[Any]] = kept.setdefault(_KEPT_CURSORS, {})

    def rows(
        self,
        sql: str,
        params: Mapping[str, Any],
        *,
        row_factory: RowFactory[Any],
        binary: bool = False,
    ) -> list[Any]:
        """Every row of one query. A dead connection is reported as Disconnected (its pool
        drops it; the Store retries reads once)."""
        cursor = self._cursors.pop(binary, None)
        if cursor is None or cursor.closed or cursor.connection is not self._driver:
            cursor = self._driver.cursor(binary=binary)
        try:
            if cursor.row_factory is not row_factory:  # setting it builds a row maker
                cursor.row_factory = row_factory
            cursor.execute(sql, params)
            rows: list[Any] = cursor.fetchall()
        except psycopg.OperationalError as error:
            cursor.close()
            if self._driver.broken or self._driver.closed:
                raise Disconnected(str(error)) from error
            raise
        except BaseException:
            cursor.close()
            raise
        if _small_one_row(rows):
            self._cursors[binary] = cursor
        else:
            cursor.close()  # its result goes now, not at the next read
        return rows


def _small_one_row(rows: list[Any]) -> bool:
    """At most one row, whose text and bytes values total at most _KEPT_RESULT_BYTES."""
    if len(rows) > 1:
        return False
    if not rows:
        return True
    values = rows[0].values() if isinstance(rows[0], dict) else rows[0]
    held = sum(len(value) for value in values if isinstance(value, bytes | str))
    return held <= _KEPT_RESULT_BYTES


def in_transaction(conn: Connection, sql: str, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """Run one statement of ``conn``'s transaction on its psycopg connection; its first row,
    if any. A connection found dead is invalidated, so that the pool does not hand it out
    again (as SQLAlchemy's own execution would have)."""
    driver = conn.connection.driver_connection
    assert driver is not None
    try:
        with driver.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone() if cursor.description is not None else None
    except psycopg.OperationalError as error:
        if driver.broken or driver.closed:
            conn.invalidate(error)
        raise

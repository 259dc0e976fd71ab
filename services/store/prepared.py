"""Reads built once and, on PostgreSQL, run straight on the driver: the API's hot reads.

Through SQLAlchemy a small SELECT costs several times the CPU that psycopg alone needs
(building the statement, its cache key, the execution context and the result wrapper); at
the API's request rates that was most of a request (figures: README, bench/bench_store.py). A ``PreparedRead`` keeps the statement as
SQLAlchemy Core, so the SQL is written once and SQLite runs it through SQLAlchemy as before,
and compiles it once for PostgreSQL, whose rows come back from psycopg as plain dicts. Values
are always bound by name (``bindparam``), never embedded, so the compiled text is reusable.
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


def prepare(statement: Select[Any]) -> PreparedRead:
    return PreparedRead(
        statement=statement,
        postgres_sql=str(statement.compile(dialect=_POSTGRESQL)),
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


class DriverReads:
    """Reads straight on one pooled PostgreSQL connection's psycopg connection."""

    def __init__(self, driver: psycopg.Connection[Any]) -> None:
        self._driver = driver

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
        try:
            with self._driver.cursor(binary=binary, row_factory=row_factory) as cursor:
                cursor.execute(sql, params)
                rows: list[Any] = cursor.fetchall()
                return rows
        except psycopg.OperationalError as error:
            if self._driver.broken or self._driver.closed:
                raise Disconnected(str(error)) from error
            raise

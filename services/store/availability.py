"""The store's own words for "the database cannot take this call now": the driver's errors
(SQLAlchemy's, psycopg's, its pool's, SQLite's) become StoreUnavailable, or StoreFull when the
disk is full or the database read-only. Everything above the store (the worker's retries, the
API's 503, readiness, the command line) knows only these two types."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import psycopg
import psycopg_pool
from sqlalchemy import exc as sa_exc

from .errors import StoreFull, StoreUnavailable
from .prepared import Disconnected

# SQLSTATEs of a database that cannot write: disk_full (53100), read_only_sql_transaction
# (25006, a standby or default_transaction_read_only).
_FULL_SQLSTATES = frozenset({"53100", "25006"})
_FULL_PHRASES = ("no space left on device", "database or disk is full", "readonly database")
# SQLite's extended codes that mean the same (SHMSIZE: the WAL index could not be extended,
# which on a full filesystem is the first write to fail, reported as "disk I/O error").
_FULL_SQLITE_CODES = ("SQLITE_FULL", "SQLITE_READONLY", "SQLITE_IOERR_SHMSIZE")
# SQLite reports these as OperationalError too, but they are the request's (or the
# schema's) fault, not a server that cannot answer.
_SQLITE_NOT_AVAILABILITY = ("no such table", "no such column", "syntax error")

DRIVER_UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError,  # connection refused, timed out, terminated, disk full
    sa_exc.InterfaceError,  # a connection that is already closed
    sa_exc.TimeoutError,  # no pooled connection came free in time
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg_pool.PoolTimeout,
    Disconnected,
    sqlite3.OperationalError,
)

STORE_FULL_MESSAGE = (
    "the store is full or read-only: the database cannot write (its disk is full, or it is "
    "a read-only server); reads still work. Free space on the database server's disk (or "
    "make it writable); work waits and resumes by itself"
)


def is_full(error: BaseException) -> bool:
    """True when ``error`` (or the driver error under it) says the database cannot write."""
    seen: BaseException | None = error
    while seen is not None:
        if getattr(seen, "sqlstate", None) in _FULL_SQLSTATES:
            return True
        if str(getattr(seen, "sqlite_errorname", "")).startswith(_FULL_SQLITE_CODES):
            return True
        if any(phrase in str(seen).lower() for phrase in _FULL_PHRASES):
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__
    return False


def translated(error: BaseException) -> StoreUnavailable | None:
    """The store's error for a driver error, or None when it is not about availability."""
    if isinstance(error, StoreUnavailable):
        return error
    if _full_sqlstate(error):
        return StoreFull(STORE_FULL_MESSAGE)
    if not isinstance(error, DRIVER_UNAVAILABLE_ERRORS):
        return None
    text = str(getattr(error, "orig", None) or error).strip().splitlines()
    first = text[0] if text else type(error).__name__
    sqlite = isinstance(error, sqlite3.OperationalError) or isinstance(
        getattr(error, "orig", None), sqlite3.OperationalError
    )
    if sqlite and any(phrase in first for phrase in _SQLITE_NOT_AVAILABILITY):
        return None
    if is_full(error):
        return StoreFull(STORE_FULL_MESSAGE)
    lost = isinstance(error, Disconnected) or (
        isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated
    )
    return StoreUnavailable(
        f"the database cannot be reached right now ({type(error).__name__}: {first}); "
        "nothing was written. Retry in a few seconds; check that the server runs and "
        "SPECTRA_DATABASE_URL",
        connection_lost=lost,
    )


def _full_sqlstate(error: BaseException) -> bool:
    """A database that cannot write, said by psycopg's error (raised by the store's reads and
    writes on the driver) or by SQLAlchemy's around it. (A read-only transaction is not an
    OperationalError to psycopg, so the availability errors' types alone would miss it.)"""
    driver_error = error.orig if isinstance(error, sa_exc.DBAPIError) else error
    return isinstance(driver_error, psycopg.Error) and driver_error.sqlstate in _FULL_SQLSTATES


@contextmanager
def store_errors() -> Iterator[None]:
    """Raise the store's own error in place of a driver's availability error."""
    try:
        yield
    except BaseException as error:
        raise_translated(error)


def raise_translated(error: BaseException) -> NoReturn:
    """Raise the store's own error for ``error`` (from it), or ``error`` itself when it is not
    about availability or is the store's already."""
    mine = translated(error)
    if mine is None or mine is error:
        raise error
    raise mine from error


# The one set of "wait and send again" errors: the worker's retries and the API's 503.
STORE_UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (StoreUnavailable,)

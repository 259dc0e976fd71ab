"""Which errors mean "the database cannot be reached right now" rather than "this request is
wrong": a server that is down, restarting or swamped. The API answers those with 503 and
Retry-After; the client's request was fine and may be sent again as it is."""

from __future__ import annotations

import psycopg
import psycopg_pool
from sqlalchemy import exc as sa_exc

from .prepared import Disconnected

DATABASE_UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    sa_exc.OperationalError,  # connection refused, timed out, terminated, server restarting
    sa_exc.InterfaceError,  # a connection that is already closed
    sa_exc.TimeoutError,  # no pooled connection came free in time
    psycopg.OperationalError,
    psycopg_pool.PoolTimeout,
    Disconnected,
)

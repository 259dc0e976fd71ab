"""The API's hot reads on the event loop: the same prepared statements, on an asyncio pool.

A read in a worker thread costs the API more than its query: the hand-off to the thread, and
then the thread and the event loop taking turns at the GIL. At 50 clients back to back that
turn-taking, not the work, set the tail (40 threads: p99 about 240 ms at 700 requests/s on
2 cores; with 3 threads the same reads gave about 50 ms at 1100 requests/s). Reads run here
wait on the database without a thread and queue for a connection in arrival order.

Only the loop that opened the pool uses it (an asyncio pool belongs to one loop); a read from
any other loop, a store that is not PostgreSQL, or before ``open`` runs the synchronous read in
a thread instead, with the same answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sqlalchemy.engine import make_url

from .availability import store_errors
from .engine import PG_CONNECT_TIMEOUT_S
from .prepared import Disconnected, ReadPlan, in_utc

_T = TypeVar("_T")

# One event loop runs every read's Python; past a few connections more only queue in the
# database. The pool holds them open (no connect per burst) and never more than this.
POOL_MIN_SIZE = 2
POOL_MAX_SIZE = 8
# How long a read waits for a connection before failing (the database down, or swamped): the
# API then answers 503 with Retry-After within seconds rather than holding the client.
POOL_TIMEOUT_S = 3.0


def psycopg_conninfo(sqlalchemy_url: str) -> str:
    """``postgresql+psycopg://…`` as the libpq URI psycopg takes (query options kept)."""
    url = make_url(sqlalchemy_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class AsyncReads:
    """Runs ReadPlans without a thread on the loop that opened it; elsewhere via ``run_sync``."""

    def __init__(self, url: str | None, run_sync: Callable[[ReadPlan[Any]], Any]) -> None:
        # url: the PostgreSQL URL, or None where the store is not PostgreSQL (no pool, ever).
        self._conninfo = None if url is None else psycopg_conninfo(url)
        self._run_sync = run_sync
        self._pool: AsyncConnectionPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stale = False  # the pool gave no connection in time: renew it when one works
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def is_open(self) -> bool:
        return self._pool is not None and self._loop is not None and not self._loop.is_closed()

    async def open(self) -> None:
        """Open the pool on the running loop (a no-op without PostgreSQL, or while a live loop
        already has it). Connections are made in the background: a database that is down now
        does not stop the caller from starting; its reads fail, as the threaded ones would."""
        if self._conninfo is None or self.is_open:
            return
        pool = AsyncConnectionPool(
            self._conninfo,
            min_size=POOL_MIN_SIZE,
            max_size=POOL_MAX_SIZE,
            # autocommit: a read is one statement, without BEGIN/ROLLBACK round trips.
            kwargs={"autocommit": True, "connect_timeout": PG_CONNECT_TIMEOUT_S},
            timeout=POOL_TIMEOUT_S,
            open=False,
            name="spectra-async-reads",
        )
        await pool.open(wait=False)
        self._pool, self._loop = pool, asyncio.get_running_loop()

    async def close(self) -> None:
        """Close the pool if the running loop owns it (other loops cannot close it cleanly)."""
        if self._pool is not None and self._loop is asyncio.get_running_loop():
            pool, self._pool, self._loop = self._pool, None, None
            await pool.close()

    async def run(self, plan: ReadPlan[_T]) -> _T:
        pool = self._pool
        if pool is None or self._loop is not asyncio.get_running_loop():
            result: _T = await asyncio.to_thread(self._run_sync, plan)
            return result
        if self._stale:
            return await self._read_and_renew(plan)
        with store_errors():
            try:
                return plan.finish(await self._rows(pool, plan))
            except Disconnected:
                # A dead connection (server restart, pg_terminate_backend) is dropped by the
                # pool when returned, and every idle one may be dead too: the pool checks
                # them (one round trip each) and the read runs once more, as the threaded
                # reads do. A cancelled query is not retried, as there.
                await pool.check()
                return plan.finish(await self._rows(pool, plan))
            except PoolTimeout:
                # No connection came: the database is down, or was, and the pool's own
                # reconnection backs off (up to a minute after a long outage). Reads go the
                # threaded way, which connects afresh, until one succeeds; then a new pool.
                self._stale = True
                return await self._read_and_renew(plan)

    async def _read_and_renew(self, plan: ReadPlan[_T]) -> _T:
        """A read on a fresh connection in a thread (StoreUnavailable while the database is
        still down); once one succeeds, the pool is replaced by a new one."""
        result: _T = await asyncio.to_thread(self._run_sync, plan)
        if self._stale:
            self._stale = False
            old, self._pool = self._pool, None
            await self.open()
            if old is not None:
                closing = asyncio.create_task(old.close(timeout=1.0))
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
        return result

    @staticmethod
    async def _rows(pool: AsyncConnectionPool, plan: ReadPlan[Any]) -> list[dict[str, Any]]:
        async with pool.connection() as conn:
            try:
                async with conn.cursor(row_factory=dict_row) as cursor:
                    await cursor.execute(plan.read.postgres_sql, plan.params)
                    return in_utc(await cursor.fetchall(), plan.read)
            except psycopg.OperationalError as error:
                if conn.broken or conn.closed:
                    raise Disconnected(str(error)) from error
                raise

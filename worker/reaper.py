"""The reaper: puts back to work what a dead worker or a lost broker left behind.

Two ways a chunk gets stuck, both repaired from PostgreSQL's record, never from Redis alone:
- running, but its heartbeat went stale (the worker or its host died, or lost the database):
  requeue it (compare-and-set, so a live worker keeps its chunk) and dispatch it again;
- queued, but no message for it exists any more (Redis restarted without its data, a
  dispatch failed after the commit): dispatch it again.
Dispatching twice is harmless: the chunk is claimed by compare-and-set and the second
delivery does nothing. Attempts are capped by the claim, so a chunk that kills every worker
that runs it ends failed with its reason instead of looping.

Every worker runs a reaper thread in its main process (no separate beat service to deploy);
a Redis lock lets only one of them sweep per interval.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis

from services.celery_config import plan_task_id
from services.store import ACTIVE_STATUSES, ChunkRecord, Store, StoreUnavailable

log = logging.getLogger(__name__)

REAPER_LOCK_KEY = "latent-spectra:reaper-lock"
# Kombu's Redis transport keeps delivered-but-unacknowledged messages in this hash.
KOMBU_UNACKED_KEY = "unacked"
_ACTIVE_JOB_STATUSES = ACTIVE_STATUSES


@dataclass
class ReapReport:
    requeued: list[str] = field(default_factory=list)  # stale running chunks put back
    redispatched: list[str] = field(default_factory=list)  # queued chunks with no message
    replanned: list[str] = field(default_factory=list)  # unplanned jobs with no message
    # Stale, but the store could not answer (or write) within the staleness period: their
    # runners may be alive and waiting on it, unable to beat. Left alone this sweep.
    deferred: list[str] = field(default_factory=list)


class StoreOutages:
    """When the reaper last found the store unable to answer or to write. A heartbeat that
    went silent while the store was down (or its disk full) says nothing about its worker:
    the beat could not be written. Leases are judged again once the store has answered for a
    whole staleness period."""

    def __init__(self) -> None:
        self._last: float | None = None

    def saw_one(self) -> None:
        self._last = time.monotonic()

    def answered_for_s(self) -> float:
        return math.inf if self._last is None else time.monotonic() - self._last


def reap(
    store: Store,
    dispatch: Callable[[list[str]], None],
    *,
    stale_after_s: float,
    in_flight: Callable[[], set[str]] | None = None,
    queued_grace_s: float | None = None,
    now: datetime | None = None,
    outages: StoreOutages | None = None,
    plan: Callable[[str], None] | None = None,
) -> ReapReport:
    """One sweep. `stale_after_s`: the lease's staleness (settings.stale_after_s). `in_flight`
    returns the chunk ids the broker still holds (queued or delivered); without it, queued
    chunks are left alone (only stale ones are repaired). `queued_grace_s` (default
    `stale_after_s`) spares chunks just created, whose message may be on its way.
    `outages`: the sweeps' memory of the store being unable to answer or write (probed
    each sweep); while it answered for less than `stale_after_s`, no lease is judged stale."""
    report = ReapReport()
    try:
        _requeue_stale(store, stale_after_s, outages, report)
    except StoreUnavailable:
        if outages is not None:
            outages.saw_one()
        raise
    if report.requeued:
        dispatch(report.requeued)
    if in_flight is None:
        return report
    grace = stale_after_s if queued_grace_s is None else queued_grace_s
    now = now or datetime.now(UTC)
    held = in_flight()
    orphans = [
        chunk.id
        for chunk in _queued_chunks(store)
        if chunk.id not in held
        and chunk.id not in report.requeued
        and (now - _aware(chunk.created_at)).total_seconds() >= grace
    ]
    if orphans:
        dispatch(orphans)
        report.redispatched = orphans
    if plan is not None:  # jobs accepted unplanned whose planning message was lost
        for job_id in store.unplanned_job_ids(older_than_s=grace):
            if plan_task_id(job_id) not in held:
                plan(job_id)
                report.replanned.append(job_id)
    return report


def _requeue_stale(
    store: Store, stale_after_s: float, outages: StoreOutages | None, report: ReapReport
) -> None:
    if outages is not None:
        store.probe_writes()  # StoreFull while the disk is full: beats cannot be written
    stale = store.stale_chunks(stale_after_s)
    if outages is not None and outages.answered_for_s() < stale_after_s:
        report.deferred = [chunk.id for chunk in stale]
        return
    for chunk in stale:
        if store.requeue_chunk(chunk.id, older_than_s=stale_after_s):
            report.requeued.append(chunk.id)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _queued_chunks(store: Store) -> Iterable[ChunkRecord]:
    for status in _ACTIVE_JOB_STATUSES:
        offset = 0
        while True:
            jobs = store.list_jobs(status=status, limit=200, offset=offset)
            for job in jobs:
                if job.cancel_requested:
                    continue
                yield from (c for c in store.list_chunks(job.id) if c.status == "queued")
            if len(jobs) < 200:
                break
            offset += 200


def broker_task_ids(client: redis.Redis, queue: str) -> set[str]:
    """Task ids of the messages Redis holds for `queue`: waiting in its lists (one per
    priority step) or delivered and not yet acknowledged."""
    ids: set[str] = set()
    for key in client.scan_iter(match=f"{queue}*", count=100):
        name = key.decode() if isinstance(key, bytes) else key
        if name != queue and not name.startswith(f"{queue}\x06\x16"):
            continue
        if client.type(key) not in (b"list", "list"):
            continue
        for raw in client.lrange(key, 0, -1):
            task_id = _task_id(raw)
            if task_id:
                ids.add(task_id)
    for raw in client.hvals(KOMBU_UNACKED_KEY):
        try:
            message = json.loads(raw)[0]
        except (ValueError, IndexError, TypeError):
            continue
        task_id = _task_id(json.dumps(message))
        if task_id:
            ids.add(task_id)
    return ids


def _task_id(raw: bytes | str) -> str | None:
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    headers = message.get("headers") or {}
    task_id = headers.get("id") or (message.get("properties") or {}).get("correlation_id")
    return str(task_id) if task_id else None


class ReaperThread(threading.Thread):
    """Sweeps every `interval_s` in the worker's main process while holding the lock."""

    def __init__(
        self,
        sweep: Callable[[], ReapReport],
        lock_client: redis.Redis,
        *,
        interval_s: float,
        holder: str,
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(name="spectra-reaper", daemon=True)
        self._sweep = sweep
        self._lock_client = lock_client
        self._interval_s = interval_s
        self._holder = holder
        self._on_tick = on_tick
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        while not self._stop_event.wait(self._interval_s):
            try:
                if self._on_tick is not None:
                    self._on_tick()
                # Expires on its own: a reaper that dies never blocks the others.
                ttl_ms = max(100, int(self._interval_s * 900))
                if not self._lock_client.set(REAPER_LOCK_KEY, self._holder, nx=True, px=ttl_ms):
                    continue
                report = self._sweep()
                if report.requeued or report.redispatched:
                    log.warning(
                        "reaper: requeued %d stale chunk(s) %s, redispatched %d orphan(s) %s",
                        len(report.requeued),
                        report.requeued,
                        len(report.redispatched),
                        report.redispatched,
                    )
            except Exception:  # the broker or the database is down: try again next time
                log.exception("reaper sweep failed; retrying in %.1f s", self._interval_s)

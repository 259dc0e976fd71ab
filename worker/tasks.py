"""Celery tasks: thin wrappers over the chunk function, plus dispatch, revoke and the reaper.

The task id of a chunk's message is the chunk id, so revoking a chunk is revoking its id, and
a chunk dispatched twice is visibly the same task.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import redis
from celery import Task, signals
from celery.exceptions import SoftTimeLimitExceeded

from services import worker_devices
from services.dispatch import CeleryDispatcher
from services.pipeline.chunks import STORE_WAITS, run_chunk
from services.pipeline.costs import Workers
from services.pipeline.lease import LeaseSettings
from services.pipeline.resources import set_compute_threads
from services.store import Store
from worker import metrics
from worker.celery_app import CHUNK_QUEUE, CHUNK_TASK, SETTINGS, app
from worker.launcher import die_with_parent
from worker.reaper import ReaperThread, StoreOutages, broker_task_ids, reap

log = logging.getLogger(__name__)

_stores: dict[int, Store] = {}  # one Store (engine, pool) per process id
_reaper: ReaperThread | None = None
_outages = StoreOutages()  # what this process's reaper saw of the store
LEASE = LeaseSettings.of(SETTINGS)


def get_store() -> Store:
    """This process's Store. Keyed by pid: a forked pool child never uses its parent's pool."""
    store = _stores.get(os.getpid())
    if store is None:
        store = _stores[os.getpid()] = Store(SETTINGS.database_url)
    return store


@signals.worker_process_init.connect  # type: ignore[untyped-decorator]
def _die_with_worker(**_: Any) -> None:
    # A pool child outliving its worker (killed by SIGKILL, or by its launcher's death)
    # would compute on as an orphan no one supervises; the kernel ends it with its parent.
    die_with_parent()


@signals.worker_process_init.connect  # type: ignore[untyped-decorator]
def _set_compute_threads(**_: Any) -> None:
    # The count the planner probed with (SPECTRA_WORKER_THREADS), so planned times are ours.
    set_compute_threads(SETTINGS.worker_threads)


@signals.worker_process_init.connect  # type: ignore[untyped-decorator]
def _forget_parent_connections(**_: Any) -> None:
    # The child inherited the parent's pooled sockets; drop them without closing (closing
    # would end the parent's sessions on the server).
    for pid, store in list(_stores.items()):
        if pid != os.getpid():
            store.engine.dispose(close=False)
            del _stores[pid]


@app.task(  # type: ignore[untyped-decorator]
    bind=True,
    name=CHUNK_TASK,
    autoretry_for=STORE_WAITS,
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=8,
)
def run_chunk_task(self: Task, chunk_id: str) -> str:
    """Run one chunk on this worker's device. The lease holder is the worker node and its
    main process id: stable while the pool replaces a dead child, so a redelivered chunk is
    recognised as ours and taken over at once."""
    worker_id = f"{self.request.hostname}:{os.getppid()}"
    store = get_store()
    return metrics.measured_chunk(
        store,
        chunk_id,
        lambda on_latent: run_chunk(
            store,
            chunk_id,
            worker_id,
            lease=LEASE,
            device=SETTINGS.device,
            on_latent=on_latent,
            abort_on=(SoftTimeLimitExceeded,),
        ),
    )


_dispatcher = CeleryDispatcher(app=app)  # the one dispatcher, on this worker's own app


def dispatch(chunk_ids: list[str]) -> None:
    """Enqueue chunks on the `gpu` queue (call only after the job's rows are committed)."""
    _dispatcher.dispatch(chunk_ids)


def revoke(chunk_ids: list[str]) -> None:
    """Tell every worker to drop these chunks' messages if they have not started."""
    _dispatcher.revoke(chunk_ids)


def reaper_interval_s() -> float:
    """A few sweeps per staleness period: the sweep is what turns a stale lease into work
    again, so it bounds the recovery time together with stale_after_s."""
    return max(0.5, min(SETTINGS.stale_after_s / 5, 30.0))


def sweep_once() -> Any:
    settings = SETTINGS
    client = redis.Redis.from_url(settings.broker_url)
    try:
        return reap(
            get_store(),
            dispatch,
            stale_after_s=settings.stale_after_s,
            in_flight=lambda: broker_task_ids(client, CHUNK_QUEUE),
            outages=_outages,
            plan=lambda job_id: _dispatcher.plan_job(job_id, Workers.from_settings(settings)),
        )
    finally:
        client.close()


@signals.worker_ready.connect  # type: ignore[untyped-decorator]
def _start_reaper(sender: Any = None, **_: Any) -> None:
    global _reaper
    settings = SETTINGS
    node = str(getattr(sender, "hostname", "worker"))
    client = redis.Redis.from_url(settings.broker_url)
    interval = reaper_interval_s()

    def advertise_device() -> None:
        # Expires after a few missed refreshes: a dead worker's device drops out on its own.
        worker_devices.advertise(client, node, settings.device, ttl_s=3 * interval + 5)

    try:
        advertise_device()
    except redis.RedisError:
        log.warning("could not advertise this worker's device yet; retrying with the reaper")
    _reaper = ReaperThread(
        sweep_once,
        client,
        interval_s=interval,
        holder=f"{node}:{os.getpid()}",
        on_tick=advertise_device,
    )
    _reaper.start()


@signals.worker_ready.connect  # type: ignore[untyped-decorator]
def _serve_metrics(**_: Any) -> None:
    # In the main process, which outlives its pool children and sums what they wrote.
    settings = SETTINGS
    if settings.worker_metrics_port:
        metrics.serve(settings.worker_metrics_port, settings.broker_url, CHUNK_QUEUE)


@signals.worker_shutdown.connect  # type: ignore[untyped-decorator]
def _stop_reaper(**_: Any) -> None:
    if _reaper is not None:
        _reaper.stop()

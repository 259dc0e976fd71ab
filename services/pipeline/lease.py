"""The lease a chunk's runner holds: the settings it runs under, the heartbeat that keeps the
lease alive, and how it meets a store that cannot answer: it waits.

An unavailable or full store (StoreUnavailable, StoreFull) is nobody's fault on the runner's
side: the runner keeps its lease and its place, retries the same call (store calls are single
transactions and idempotent, so a retry never half-writes) with a backoff, and goes on where
it was once the database answers again. Only past ``store_wait_s`` does the call raise; the
runner then hands its chunk back without charging the latent it was computing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from services.config import Settings
from services.store import Store, StoreFull, StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_DELAY_S = 0.2
LONGEST_DELAY_S = 2.0  # once the database is back, a waiting runner notices within this


@dataclass(frozen=True)
class LeaseSettings:
    """What a chunk's runner needs of the settings, read once at the edge (worker start, the
    command line) and passed in."""

    heartbeat_interval_s: float
    stale_after_s: float
    max_chunk_attempts: int
    store_wait_s: float

    @classmethod
    def of(cls, settings: Settings, *, store_wait_s: float | None = None) -> LeaseSettings:
        """``store_wait_s``: how long one store call may wait (default: the setting)."""
        return cls(
            heartbeat_interval_s=settings.heartbeat_interval_s,
            stale_after_s=settings.stale_after_s,
            max_chunk_attempts=settings.max_chunk_attempts,
            store_wait_s=settings.store_wait_s if store_wait_s is None else store_wait_s,
        )

    @classmethod
    def defaults(cls, *, store_wait_s: float | None = None) -> LeaseSettings:
        """The defaults declared in services.config, without reading the environment (for
        embedded runs whose caller passes nothing; the edges pass ``of(settings)``)."""
        return cls.of(Settings.model_construct(), store_wait_s=store_wait_s)


class StoreWait:
    """Calls a store method, waiting while the store is unavailable (at most ``wait_s`` per
    call), with one log line when a wait starts and one when it ends."""

    def __init__(self, wait_s: float) -> None:
        self.wait_s = wait_s

    def __call__(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        deadline = time.monotonic() + self.wait_s
        delay = FIRST_DELAY_S
        waiting_since: float | None = None
        while True:
            try:
                result = call(*args, **kwargs)
            except StoreUnavailable as error:
                now = time.monotonic()
                if now + delay > deadline:
                    raise
                if waiting_since is None:
                    waiting_since = now
                    log.warning("%s; waiting (up to %.0f s)", _what(error), self.wait_s)
                time.sleep(delay)
                delay = min(2 * delay, LONGEST_DELAY_S)
                continue
            if waiting_since is not None:
                log.warning(
                    "the store answers again after %.1f s", time.monotonic() - waiting_since
                )
            return result


def _what(error: StoreUnavailable) -> str:
    return "the store is full or read-only" if isinstance(error, StoreFull) else str(error)


class Heartbeat(AbstractContextManager["Heartbeat"]):
    """Beats for a claimed chunk from a background thread while the chunk computes (a single
    code can take minutes on a large model). `lost` turns true when the store says the lease
    is no longer ours (the reaper gave the chunk to someone else): stop, write nothing more."""

    def __init__(
        self, store: Store, chunk_id: str, worker_id: str, interval_s: float, retry: StoreWait
    ) -> None:
        self._store, self._chunk_id, self._worker_id = store, chunk_id, worker_id
        self._interval_s = interval_s
        self.retry = retry  # every store call of the run goes through it: a wait, not a failure
        self._stop = threading.Event()
        self.lost = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chunk-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def still_ours(self) -> bool:
        """Renew the lease now and say whether it is still ours: asked before every write,
        so a worker that was cut off or frozen past the staleness limit (its chunk given to
        another) stops before writing anything, instead of at its next beat."""
        if self.lost.is_set():
            return False
        if not self.retry(self._store.heartbeat, self._chunk_id, self._worker_id):
            self.lost.set()
            return False
        return True

    def starting(self, latent_index: int) -> bool:
        """Record (with the lease renewed) that this latent is being computed now: if the run
        dies on it, the next run of the chunk knows which latent it died on, and a latent
        that kills every run is recorded as that latent's failure (see claim_chunk)."""
        if self.lost.is_set():
            return False
        if not self.retry(self._store.start_latent, self._chunk_id, self._worker_id, latent_index):
            self.lost.set()
            return False
        return True

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                if not self._store.heartbeat(self._chunk_id, self._worker_id):
                    self.lost.set()
                    return
            except StoreUnavailable as error:  # beat again next interval; the lease waits too
                log.warning("heartbeat for chunk %s failed (%s); retrying", self._chunk_id, error)
            except Exception:
                log.warning(
                    "heartbeat for chunk %s failed; retrying", self._chunk_id, exc_info=True
                )

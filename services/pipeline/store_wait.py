"""How a chunk's runner meets a store that cannot answer: it waits.

An unavailable or full store (StoreUnavailable, StoreFull) is nobody's fault on the runner's
side: the runner keeps its lease and its place, retries the same call (store calls are single
transactions and idempotent, so a retry never half-writes) with a backoff, and goes on where
it was once the database answers again. Only past ``store_wait_s`` does the call raise; the
runner then hands its chunk back without charging the latent it was computing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from services.config import Settings
from services.store import StoreFull, StoreUnavailable

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

"""Waiting for an event instead of sleeping a fixed time: poll a condition until it holds."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from services.store import JobRecord, Store

T = TypeVar("T")
TERMINAL = ("succeeded", "failed", "cancelled")


def wait_for(
    condition: Callable[[], T | None], timeout_s: float, what: str, poll_s: float = 0.05
) -> T:
    """The condition's first truthy value; an AssertionError naming ``what`` after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def finished(store: Store, job_id: str, timeout_s: float = 120, poll_s: float = 0.1) -> JobRecord:
    """The job once it and every one of its chunks are in a terminal state."""

    def settled() -> JobRecord | None:
        job = store.get_job(job_id)
        chunks_done = all(c.status in TERMINAL for c in store.list_chunks(job_id))
        return job if job.status in TERMINAL and chunks_done else None

    return wait_for(settled, timeout_s, f"job {job_id} to finish", poll_s)

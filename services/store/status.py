"""The one set of statuses jobs and chunks move through (the store's CAS state machine).

``queued -> running -> succeeded | failed | cancelled``; a running chunk may go back to
queued when its lease goes stale. A job the planner's worker found too big for every worker
goes ``queued -> refused`` before any chunk exists (the 422 of a submission planned at once).
The values are the strings stored in the database, and a ``Status`` compares equal to its
string.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, get_args


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REFUSED = "refused"


# As a type, for request parameters and schemas (pydantic and mypy need a literal).
StatusName = Literal["queued", "running", "succeeded", "failed", "cancelled", "refused"]
if get_args(StatusName) != tuple(Status):  # pragma: no cover - a programming error
    raise RuntimeError("StatusName must list exactly the values of Status, in order")

JOB_STATUSES: tuple[str, ...] = tuple(s.value for s in Status)
CHUNK_STATUSES: tuple[str, ...] = JOB_STATUSES
ACTIVE_STATUSES: tuple[str, ...] = (Status.QUEUED.value, Status.RUNNING.value)
TERMINAL_STATUSES: tuple[str, ...] = (
    Status.SUCCEEDED.value,
    Status.FAILED.value,
    Status.CANCELLED.value,
    Status.REFUSED.value,
)

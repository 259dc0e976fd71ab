"""Errors raised by the store. Each message says what was wrong and what to do about it."""

from __future__ import annotations


class StoreError(ValueError):
    """Base class of every error the store raises on purpose."""


class NotFoundError(StoreError):
    """The job, chunk, spectrum, latent set or key does not exist (or is not visible to you)."""


class ConflictError(StoreError):
    """The request contradicts what is already stored."""


class InvalidDataError(StoreError):
    """Arrays of the wrong shape or dtype, NaN/inf values, unknown statuses or options."""


class IdempotencyConflictError(ConflictError):
    """An Idempotency-Key used again with a different request."""


class JobClosedError(ConflictError):
    """A result for a job that is already succeeded, failed or cancelled: nothing is stored
    after a job's terminal status (a cancel is a point in time)."""


class StoreUnavailable(Exception):
    """The database cannot take this call right now (down, restarting, unreachable, out of
    connections): the call was fine and may be sent again as it is; nothing was written.

    Not a StoreError: callers wait and retry it (the worker) or answer 503 (the API), and it
    must never be charged to the request or the latent that met it. ``connection_lost``: a
    pooled connection turned out to be dead (a read may run once more on a fresh pool)."""

    def __init__(self, message: str, *, connection_lost: bool = False) -> None:
        super().__init__(message)
        self.connection_lost = connection_lost


class StoreFull(StoreUnavailable):
    """The database's disk is full or the database is read-only: reads work, writes do not,
    until an operator frees space (or makes it writable). A wait, like any unavailability."""

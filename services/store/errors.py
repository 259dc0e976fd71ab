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

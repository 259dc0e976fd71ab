"""Recording an Idempotency-Key, on a connection that is already in a transaction: the job
store claims the key in the very transaction that creates the job, so a refused request
(the key already bound to a different body) rolls back and creates nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.engine import Connection

from .errors import IdempotencyConflictError, InvalidDataError
from .models import utcnow
from .tables import IDEMPOTENCY_KEYS

IDEMPOTENCY_TTL = timedelta(hours=24)


def record_idempotency_key(
    conn: Connection,
    insert: Callable[[Table], Any],
    owner: str,
    key: str,
    request_sha256: str,
    job_id: str,
) -> None:
    """Bind ``key`` to ``job_id`` (replacing a record older than 24 hours). Two transactions
    claiming one key queue on its row; the later one finds the earlier's request, and if it
    is not the same one raises IdempotencyConflictError (its transaction then rolls back)."""
    if not key or not request_sha256:
        raise InvalidDataError("an idempotency record needs a key and a request hash")
    now = utcnow()
    values = {"request_sha256": request_sha256, "job_id": job_id, "created_at": now}
    conn.execute(
        insert(IDEMPOTENCY_KEYS)
        .values(owner=owner, key=key, **values)
        .on_conflict_do_update(
            index_elements=["owner", "key"],
            set_=values,
            where=IDEMPOTENCY_KEYS.c.created_at < now - IDEMPOTENCY_TTL,
        )
    )
    recorded = conn.execute(
        select(IDEMPOTENCY_KEYS.c.request_sha256).where(
            IDEMPOTENCY_KEYS.c.owner == owner, IDEMPOTENCY_KEYS.c.key == key
        )
    ).scalar_one()
    check_same_request(recorded, request_sha256)


def check_same_request(recorded_sha256: str, request_sha256: str) -> None:
    if recorded_sha256 != request_sha256:
        raise IdempotencyConflictError(
            "this Idempotency-Key was already used with a different request body; use a new "
            "key for a different job"
        )

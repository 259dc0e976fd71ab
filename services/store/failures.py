"""Counting one item of a job (a latent of a spectra job, a target of an optimisation job) as
done or, once, as failed: both kinds keep their failures in one table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import CompoundSelect, Select, Table, delete, literal_column, select, update
from sqlalchemy.engine import Connection

from .jobs import require_open_job
from .models import utcnow
from .tables import JOBS, LATENT_FAILURES


def record_failure_once(
    conn: Connection,
    insert: Callable[[Table], Any],
    job_id: str,
    index: int,
    reason: str,
    result: Select[Any],
) -> bool:
    """Part of the caller's write transaction: record that item ``index`` of the job failed
    with ``reason`` and count it on the job. False, nothing written, if ``result`` (a select
    of the item's stored result) or an earlier failure is there; NotFoundError /
    JobClosedError from require_open_job otherwise when the job is missing or closed."""
    statement = (
        insert(LATENT_FAILURES)
        .values(job_id=job_id, latent_index=index, reason=reason, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["job_id", "latent_index"])
        .returning(LATENT_FAILURES.c.id)
    )
    failed = select(LATENT_FAILURES.c.id).where(
        LATENT_FAILURES.c.job_id == job_id, LATENT_FAILURES.c.latent_index == index
    )
    either: CompoundSelect[Any] = result.with_only_columns(literal_column("1")).union_all(
        failed.with_only_columns(literal_column("1"))
    )
    if require_open_job(conn, job_id, stored=either) is None:
        return False
    if (
        conn.execute(result).first() is not None
        or conn.execute(statement).scalar_one_or_none() is None
    ):
        return False
    conn.execute(update(JOBS).where(JOBS.c.id == job_id).values(n_failed=JOBS.c.n_failed + 1))
    return True


def count_done(conn: Connection, job_id: str, index: int, *, may_have_failed: bool = True) -> None:
    """Part of the caller's write transaction: count a newly stored result of item ``index`` on
    its job; a failure recorded earlier for the item (a retry that succeeded) is removed and
    uncounted. ``may_have_failed`` False (the job counts no failure) skips looking for one."""
    cleared = 0
    if may_have_failed:
        cleared = conn.execute(
            delete(LATENT_FAILURES).where(
                LATENT_FAILURES.c.job_id == job_id, LATENT_FAILURES.c.latent_index == index
            )
        ).rowcount
    conn.execute(
        update(JOBS)
        .where(JOBS.c.id == job_id)
        .values(n_done=JOBS.c.n_done + 1, n_failed=JOBS.c.n_failed - cleared)
    )

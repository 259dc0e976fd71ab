"""Poison latents: a latent that kills every run of its chunk (its worker process dies on
it) is recorded as that latent's failure, so the rest of the chunk goes on.

A chunk's ``attempts`` counts its runs, and ``current_latent_deaths`` those among them that
ended on ``current_latent`` while it has no result. Those have a cap of their own: at
``max_attempts`` the latent is recorded as failed and they are given back. The chunk's cap
applies to the other runs (``chunk_attempts``): one that ended before it marked any latent
(its model's load killed it, or its lease went stale while it loaded) is the chunk's, and must
not use up the cap of the next latent's runs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Table, case, exists, func, null, update
from sqlalchemy.engine import Connection

from .tables import CHUNKS, JOBS, LATENT_FAILURES, SPECTRA


def chunk_attempts() -> ColumnElement[int]:
    """The runs of a chunk charged to the chunk itself: its attempts less the runs that ended
    on the latent in progress (those count against that latent, and are given back if it is
    recorded as failed). Meaningful after count_run_ended_on_latent in the same transaction,
    which leaves ``current_latent_deaths`` at 0 unless ``current_latent`` has no result."""
    return CHUNKS.c.attempts - CHUNKS.c.current_latent_deaths


def count_run_ended_on_latent(
    conn: Connection,
    insert: Callable[[Table], Any],
    postgres: bool,
    chunk_id: str,
    max_attempts: int,
    now: datetime,
) -> None:
    """Part of claim_chunk's transaction: if the run before this claim ended while computing
    ``current_latent`` (not stored, not failed), count it against that latent; at
    ``max_attempts`` such runs record the latent as failed with the reason, give back the
    attempts it used and clear the mark, so the claim goes on with the rest of the chunk.
    A mark whose latent has its result by now is cleared with its count: the runs that died
    on it stay charged to the chunk (a chunk that kills its worker ends failed by its cap)."""
    unfinished = ~exists().where(
        SPECTRA.c.job_id == CHUNKS.c.job_id, SPECTRA.c.latent_index == CHUNKS.c.current_latent
    ) & ~exists().where(
        LATENT_FAILURES.c.job_id == CHUNKS.c.job_id,
        LATENT_FAILURES.c.latent_index == CHUNKS.c.current_latent,
    )
    counted = (
        conn.execute(
            update(CHUNKS)
            .where(
                CHUNKS.c.id == chunk_id,
                CHUNKS.c.status == "queued",
                CHUNKS.c.current_latent.is_not(None),
            )
            .values(
                # Both read the row as it was before this update: kept or cleared together.
                current_latent_deaths=case(
                    (unfinished, CHUNKS.c.current_latent_deaths + 1), else_=0
                ),
                current_latent=case((unfinished, CHUNKS.c.current_latent), else_=null()),
            )
            .returning(CHUNKS.c.job_id, CHUNKS.c.current_latent, CHUNKS.c.current_latent_deaths)
        )
        .mappings()
        .one_or_none()
    )
    if (
        counted is None
        or counted["current_latent"] is None
        or counted["current_latent_deaths"] < max_attempts
    ):
        return
    latent, deaths = counted["current_latent"], counted["current_latent_deaths"]
    reason = (
        f"every run that computed latent {latent} ended before it finished ({deaths} of "
        f"{max_attempts} attempts): its worker process died on it (a crash in the "
        "generator or the distance, or out of memory) or lost its lease; the rest of the "
        "chunk went on without it"
    )
    conn.execute(
        insert(LATENT_FAILURES)
        .values(job_id=counted["job_id"], latent_index=latent, reason=reason, created_at=now)
        .on_conflict_do_nothing(index_elements=["job_id", "latent_index"])
    )
    conn.execute(
        update(JOBS).where(JOBS.c.id == counted["job_id"]).values(n_failed=JOBS.c.n_failed + 1)
    )
    conn.execute(
        update(CHUNKS)
        .where(CHUNKS.c.id == chunk_id)
        .values(
            attempts=func.greatest(CHUNKS.c.attempts - deaths, 0)
            if postgres
            else func.max(CHUNKS.c.attempts - deaths, 0),
            current_latent=None,
            current_latent_deaths=0,
        )
    )

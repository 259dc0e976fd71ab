"""The chunk lease protocol: claim a queued chunk, say which latent it computes, renew the
lease, finish it, and give stale leases back (the reaper).

Every step is a guarded compare-and-set on the chunk's row, so a message delivered twice or a
worker that lost its lease changes nothing. A run that ended while computing a latent counts
against that latent at the next claim (latent_deaths.py).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import RowMapping, String, case, cast, literal, select, update

from .codecs import check_status, non_negative_int
from .connection import StoreConnection, retry_read
from .errors import InvalidDataError, NotFoundError
from .jobs import cas_job
from .latent_deaths import chunk_attempts, count_run_ended_on_latent
from .models import utcnow
from .records import TERMINAL_STATUSES, ChunkRecord
from .tables import CHUNKS


class ChunkLeaseStore(StoreConnection):
    @staticmethod
    def _chunk(row: RowMapping) -> ChunkRecord:
        values = dict(row)
        start, stop = values.pop("block_start"), values.pop("block_stop")
        values["column_block"] = None if start is None else (start, stop)
        values["latent_indices"] = tuple(values["latent_indices"])
        return ChunkRecord(**values)

    def _update_leased(self, chunk_id: str, worker_id: str, **values: Any) -> bool:
        """CAS on a chunk running under ``worker_id``'s lease: set ``values``; False (nothing
        changed) if the chunk is not running under this worker (requeued, cancelled, finished,
        a duplicate delivery)."""
        with self._write() as conn:
            result = conn.execute(
                update(CHUNKS)
                .where(
                    CHUNKS.c.id == chunk_id,
                    CHUNKS.c.status == "running",
                    CHUNKS.c.lease_owner == worker_id,
                )
                .values(**values)
            )
            return result.rowcount == 1

    @retry_read
    def list_chunks(self, job_id: str) -> list[ChunkRecord]:
        query = select(CHUNKS).where(CHUNKS.c.job_id == job_id).order_by(CHUNKS.c.index)
        with self._read() as conn:
            return [self._chunk(row) for row in conn.execute(query).mappings()]

    @retry_read
    def get_chunk(self, chunk_id: str) -> ChunkRecord:
        with self._read() as conn:
            row = conn.execute(select(CHUNKS).where(CHUNKS.c.id == chunk_id)).mappings().first()
        if row is None:
            raise NotFoundError(f"chunk {chunk_id!r} not found")
        return self._chunk(row)

    def claim_chunk(self, chunk_id: str, worker_id: str, max_attempts: int) -> ChunkRecord | None:
        """Take the lease on a queued chunk.

        One transaction:
        1. CAS queued -> running where the runs charged to the chunk (its attempts less the
           runs that ended on the latent in progress, see below) < max_attempts: attempts
           += 1, lease_owner = worker_id, heartbeat_at = started_at = now, error cleared; the
           job moves queued -> running (started_at set once). Returns the claimed chunk.
        2. Otherwise, if the chunk is queued with max_attempts runs charged to it, CAS it to
           failed with error "attempts exhausted (<n> of <max>)"; returns None.
        3. Otherwise (running under someone's lease, finished, cancelled) returns None and
           changes nothing. NotFoundError if the chunk does not exist.

        Before 1: a run that ended while computing a latent (``current_latent``, set by
        ``start_latent``) counts against that latent. Once ``max_attempts`` runs ended on
        the same latent, the latent is recorded as failed with that reason, the attempts it
        used are given back, and the claim goes on with the rest of the chunk: one latent that
        kills its worker every time costs its own result, not the chunk's. Until then those
        runs count towards the latent's cap, not the chunk's, so that a run charged to the
        chunk (one that ended before it marked a latent: its model's load killed it, or the
        reaper requeued it while it was still loading) cannot close the chunk before the
        latent's own cap is reached.
        """
        if non_negative_int(max_attempts, "max_attempts") < 1:
            raise InvalidDataError("max_attempts must be at least 1")
        now = utcnow()
        with self._write() as conn:
            count_run_ended_on_latent(
                conn, self._insert, self._postgres, chunk_id, max_attempts, now
            )
            claimed = (
                conn.execute(
                    update(CHUNKS)
                    .where(
                        CHUNKS.c.id == chunk_id,
                        CHUNKS.c.status == "queued",
                        chunk_attempts() < max_attempts,
                    )
                    .values(
                        status="running",
                        attempts=CHUNKS.c.attempts + 1,
                        lease_owner=worker_id,
                        heartbeat_at=now,
                        started_at=now,
                        finished_at=None,
                        error=None,
                    )
                    .returning(*CHUNKS.c)
                )
                .mappings()
                .one_or_none()
            )
            if claimed is not None:
                cas_job(conn, claimed["job_id"], ["queued"], "running", None)
                return self._chunk(claimed)
            exhausted = conn.execute(
                update(CHUNKS)
                .where(
                    CHUNKS.c.id == chunk_id,
                    CHUNKS.c.status == "queued",
                    chunk_attempts() >= max_attempts,
                )
                .values(
                    status="failed",
                    finished_at=now,
                    lease_owner=None,
                    error=literal("attempts exhausted (")
                    + cast(chunk_attempts(), String)
                    + literal(f" of {max_attempts})"),
                )
            )
            if exhausted.rowcount == 0:
                known = conn.execute(select(CHUNKS.c.id).where(CHUNKS.c.id == chunk_id)).first()
                if known is None:
                    raise NotFoundError(f"chunk {chunk_id!r} not found")
            return None

    def start_latent(self, chunk_id: str, worker_id: str, latent_index: int) -> bool:
        """Record that this run is computing ``latent_index`` now (renewing the lease). False
        if the chunk is no longer running under this worker: stop then, as for heartbeat."""
        latent_index = non_negative_int(latent_index, "latent_index")
        return self._update_leased(
            chunk_id,
            worker_id,
            heartbeat_at=utcnow(),
            current_latent_deaths=case(
                (CHUNKS.c.current_latent == latent_index, CHUNKS.c.current_latent_deaths),
                else_=0,
            ),
            current_latent=latent_index,
        )

    def heartbeat(self, chunk_id: str, worker_id: str) -> bool:
        """Renew the lease. False if the chunk is no longer running under this worker (it was
        requeued, cancelled or finished): the worker should then stop working on it."""
        return self._update_leased(chunk_id, worker_id, heartbeat_at=utcnow())

    def finish_chunk(
        self, chunk_id: str, worker_id: str, status: str, error: str | None = None
    ) -> bool:
        """CAS running (leased by worker_id) -> succeeded / failed / cancelled. False if the
        chunk is not running under this worker (a duplicate delivery, a lost lease)."""
        check_status(status, TERMINAL_STATUSES, "final chunk status")
        return self._update_leased(
            chunk_id,
            worker_id,
            status=status,
            error=error,
            finished_at=utcnow(),
            current_latent=None,
            current_latent_deaths=0,
        )

    @retry_read
    def stale_chunks(self, older_than_s: float) -> list[ChunkRecord]:
        """Running chunks whose last heartbeat is older than ``older_than_s`` seconds
        (timestamps come from the writers' clocks, in UTC)."""
        cutoff = utcnow() - timedelta(seconds=older_than_s)
        query = (
            select(CHUNKS)
            .where(CHUNKS.c.status == "running", CHUNKS.c.heartbeat_at < cutoff)
            .order_by(CHUNKS.c.heartbeat_at)
        )
        with self._read() as conn:
            return [self._chunk(row) for row in conn.execute(query).mappings()]

    def requeue_chunk(self, chunk_id: str, older_than_s: float) -> bool:
        """CAS running -> queued, only if its heartbeat is older than ``older_than_s`` (the
        reaper passes settings.stale_after_s). The lease is dropped; attempts are kept, so a
        chunk that keeps killing its worker ends failed in ``claim_chunk`` instead of looping."""
        cutoff = utcnow() - timedelta(seconds=older_than_s)
        with self._write() as conn:
            result = conn.execute(
                update(CHUNKS)
                .where(
                    CHUNKS.c.id == chunk_id,
                    CHUNKS.c.status == "running",
                    CHUNKS.c.heartbeat_at < cutoff,
                )
                .values(
                    status="queued",
                    lease_owner=None,
                    heartbeat_at=None,
                    error=f"requeued: no heartbeat for more than {older_than_s:g} s",
                )
            )
            return result.rowcount == 1

    def release_chunk(self, chunk_id: str, worker_id: str) -> bool:
        """CAS running (leased by worker_id) -> queued, charging nothing: the run gave the
        chunk back for a cause outside it (the store was unavailable too long), so the attempt
        it used is given back and the latent it was computing is not marked as one it died
        on. False if the chunk is not running under this worker."""
        return self._update_leased(
            chunk_id,
            worker_id,
            status="queued",
            lease_owner=None,
            heartbeat_at=None,
            # The mark is cleared, so the runs it counted leave with it: charged to neither
            # the latent nor the chunk, as this run is charged to neither.
            attempts=case(
                (chunk_attempts() > 0, chunk_attempts() - 1),
                else_=0,
            ),
            current_latent=None,
            current_latent_deaths=0,
            error="handed back: the store was unavailable",
        )

"""The job state machine: creating jobs with their chunks, reading them, compare-and-set
transitions, cancel, progress, and settling a job once its chunks are done.

State changes are guarded updates (``UPDATE ... WHERE id = :id AND status IN (...)``) that
report whether a row changed, so a message delivered twice does nothing the second time.
The chunk lease protocol (claim, heartbeat, finish, requeue) is in leases.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Select,
    and_,
    bindparam,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.sql import Executable

from .codecs import (
    check_page,
    check_status,
    json_document,
    new_id,
    non_negative_int,
)
from .connection import StoreConnection, retry_read
from .errors import ConflictError, InvalidDataError, JobClosedError, NotFoundError
from .idempotency import record_idempotency_key
from .models import utcnow
from .prepared import ReadPlan, prepare
from .records import (
    ACTIVE_STATUSES,
    JOB_STATUSES,
    TERMINAL_STATUSES,
    ChunkPlan,
    JobProgress,
    JobRecord,
)
from .tables import CHUNKS, JOBS, LATENT_FAILURES, LATENT_SETS, OPTIMISATION_RESULTS, SPECTRA

_JOB_BY_ID = prepare(select(JOBS).where(JOBS.c.id == bindparam("id")))
_JOB_OF_OWNER = prepare(
    select(JOBS).where(JOBS.c.id == bindparam("id"), JOBS.c.owner == bindparam("owner"))
)


def job_not_found(job_id: str) -> NotFoundError:
    return NotFoundError(f"job {job_id!r} not found; create the job before saving results")


def require_job(conn: Connection, job_id: str) -> int:
    """NotFoundError unless the job exists; returns its count of failed latents."""
    n_failed = conn.execute(select(JOBS.c.n_failed).where(JOBS.c.id == job_id)).scalar()
    if n_failed is None:
        raise job_not_found(job_id)
    return int(n_failed)


def require_open_job(
    conn: Connection, job_id: str, *, stored: Executable | None = None
) -> int | None:
    """NotFoundError unless the job exists, JobClosedError once it is succeeded, failed or
    cancelled; returns its count of failed latents. The job's row stays locked until the
    transaction ends (PostgreSQL), so a cancel committed meanwhile is seen: a result is either
    stored before the terminal status or not at all. ``stored``: a select of the result being
    written; when the job is terminal and it is already there, None (a repeated write, which
    changes nothing) instead of the error."""
    row = conn.execute(
        select(JOBS.c.n_failed, JOBS.c.status).where(JOBS.c.id == job_id).with_for_update()
    ).first()
    if row is None:
        raise job_not_found(job_id)
    if row.status in TERMINAL_STATUSES:
        if stored is not None and conn.execute(stored).first() is not None:
            return None
        raise job_closed(job_id, row.status)
    return int(row.n_failed)


def job_closed(job_id: str, status: str) -> JobClosedError:
    return JobClosedError(
        f"job {job_id} is {status}: nothing more is stored for it (a result computed after "
        "the job ended is dropped; resume the job to compute what is missing)"
    )


def job_read(job_id: str, owner: str | None) -> ReadPlan[JobRecord]:
    """The read of one job (of ``owner`` when given): NotFoundError when there is none."""

    def finish(rows: list[dict[str, Any]]) -> JobRecord:
        if not rows:
            raise NotFoundError("job not found; check the job id (and that it is yours)")
        return JobRecord(**rows[0])

    if owner is None:
        return ReadPlan(_JOB_BY_ID, {"id": job_id}, finish)
    return ReadPlan(_JOB_OF_OWNER, {"id": job_id, "owner": owner}, finish)


def cas_job(
    conn: Connection, job_id: str, from_statuses: list[str], to_status: str, error: str | None
) -> bool:
    """Move the job to ``to_status`` only if its status is in ``from_statuses`` (in ``conn``'s
    transaction); True if it moved."""
    now = utcnow()
    values: dict[str, Any] = {"status": to_status, "updated_at": now, "error": error}
    if to_status == "running":
        values["started_at"] = func.coalesce(JOBS.c.started_at, now)
    if to_status in TERMINAL_STATUSES:
        values["finished_at"] = now
    result = conn.execute(
        update(JOBS).where(JOBS.c.id == job_id, JOBS.c.status.in_(from_statuses)).values(**values)
    )
    return result.rowcount == 1


class JobStore(StoreConnection):
    # -- jobs ------------------------------------------------------------------------------

    def create_job(
        self,
        owner: str,
        spec: dict[str, Any],
        resolved: dict[str, Any],
        spec_hash: str,
        latent_set_id: str | None,
        n_latents: int,
        chunks: list[ChunkPlan],
        *,
        idempotency_key: str | None = None,
        request_sha256: str | None = None,
        estimate: dict[str, Any] | None = None,
    ) -> tuple[JobRecord, bool]:
        """Create a job and its chunks in one transaction (`estimate`: the plan's figures with
        its times, kept beside the job for comparison with what it measures).

        The same (owner, spec_hash) submitted again (even concurrently) is the same job:
        returns ``(existing_job, False)`` and creates nothing. An ``idempotency_key`` is
        claimed in the same transaction: if the key is bound to another request (even one
        committing at this moment) IdempotencyConflictError is raised and nothing is created.
        """
        n_latents = non_negative_int(n_latents, "n_latents")
        chunk_rows = self._chunk_rows(chunks, n_latents)
        spec_doc = json_document(spec, "job spec")
        resolved_doc = json_document(resolved, "resolved job spec")
        if not spec_hash:
            raise InvalidDataError("spec_hash must not be empty")
        model = resolved_doc.get("model", spec_doc.get("model"))
        now = utcnow()
        job_id = new_id()
        statement = (
            self._insert(JOBS)
            .values(
                id=job_id,
                owner=owner,
                status="queued",
                spec=spec_doc,
                resolved=resolved_doc,
                estimate=None if estimate is None else json_document(estimate, "estimate"),
                spec_hash=spec_hash,
                latent_set_id=latent_set_id,
                model=None if model is None else str(model),
                n_latents=n_latents,
                n_done=0,
                n_failed=0,
                cancel_requested=False,
                error=None,
                created_at=now,
                started_at=None,
                finished_at=None,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["owner", "spec_hash"])
            .returning(JOBS.c.id)
        )
        with self._write() as conn:
            if latent_set_id is not None:
                exists = conn.execute(
                    select(LATENT_SETS.c.id).where(LATENT_SETS.c.id == latent_set_id)
                ).first()
                if exists is None:
                    raise NotFoundError(f"latent set {latent_set_id!r} not found")
            created = conn.execute(statement).scalar_one_or_none() is not None
            if created:
                for row in chunk_rows:
                    row.update(job_id=job_id, created_at=now)
                if chunk_rows:
                    conn.execute(CHUNKS.insert(), chunk_rows)
                where = JOBS.c.id == job_id
            else:
                where = and_(JOBS.c.owner == owner, JOBS.c.spec_hash == spec_hash)
            job = conn.execute(select(JOBS).where(where)).mappings().one()
            if idempotency_key:
                record_idempotency_key(
                    conn, self._insert, owner, idempotency_key, request_sha256 or "", job["id"]
                )
            return JobRecord(**job), created

    @staticmethod
    def _chunk_rows(chunks: list[ChunkPlan], n_latents: int) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        seen: set[int] = set()
        for plan in chunks:
            index = non_negative_int(plan.index, "chunk index")
            if index in seen:
                raise InvalidDataError(f"chunk index {index} appears twice in the plan")
            seen.add(index)
            latents = [non_negative_int(i, "latent index") for i in plan.latent_indices]
            out_of_range = [i for i in latents if i >= n_latents]
            if out_of_range:
                raise InvalidDataError(
                    f"chunk {index} names latent indices {out_of_range[:5]} outside 0..{n_latents - 1}"
                )
            block = plan.column_block
            if block is not None:
                start, stop = (non_negative_int(v, "column block bound") for v in block)
                if stop <= start:
                    raise InvalidDataError(
                        f"chunk {index}: column block ({start}, {stop}) is empty"
                    )
                block = (start, stop)
            rows.append(
                {
                    "id": new_id(),
                    "index": index,
                    "latent_indices": latents,
                    "block_start": None if block is None else block[0],
                    "block_stop": None if block is None else block[1],
                    "status": "queued",
                    "attempts": 0,
                    "lease_owner": None,
                    "heartbeat_at": None,
                    "started_at": None,
                    "finished_at": None,
                    "error": None,
                }
            )
        return rows

    def get_job(self, job_id: str, owner: str | None = None) -> JobRecord:
        """The job; NotFoundError if it does not exist or ``owner`` does not own it."""
        return self._run_read(job_read(job_id, owner))

    async def get_job_async(self, job_id: str, owner: str | None = None) -> JobRecord:
        """get_job, awaitable (see open_async_reads)."""
        return await self._async_reads.run(job_read(job_id, owner))

    @staticmethod
    def _job(conn: Connection, query: Select[Any]) -> JobRecord:
        row = conn.execute(query).mappings().one_or_none()
        if row is None:
            raise NotFoundError("job not found; check the job id (and that it is yours)")
        return JobRecord(**row)

    @retry_read
    def list_jobs(
        self,
        owner: str | None = None,
        status: str | None = None,
        model: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[JobRecord]:
        """Newest first."""
        check_page(limit, offset)
        query = select(JOBS)
        if owner is not None:
            query = query.where(JOBS.c.owner == owner)
        if status is not None:
            check_status(status, JOB_STATUSES, "job status")
            query = query.where(JOBS.c.status == status)
        if model is not None:
            query = query.where(JOBS.c.model == model)
        query = query.order_by(JOBS.c.created_at.desc(), JOBS.c.id).limit(limit).offset(offset)
        with self._read() as conn:
            return [JobRecord(**row) for row in conn.execute(query).mappings()]

    def transition_job(
        self,
        job_id: str,
        from_statuses: Sequence[str],
        to_status: str,
        *,
        error: str | None = None,
    ) -> bool:
        """Guarded CAS: move the job to ``to_status`` only if its status is in
        ``from_statuses``. True if it moved. Sets started_at on the first move to running and
        finished_at on a move to a terminal status; ``error`` replaces the stored error."""
        for status in (*from_statuses, to_status):
            check_status(status, JOB_STATUSES, "job status")
        with self._write() as conn:
            return cas_job(conn, job_id, list(from_statuses), to_status, error)

    def request_cancel(self, job_id: str) -> bool:
        """Cancel a job that is queued or running: set its cancel flag (running chunks see it
        through ``is_cancelled`` between latents and stop), mark it cancelled, and cancel its
        still-queued chunks so they cannot be claimed. True if this call cancelled it; False
        if it was already finished or cancelled. NotFoundError for an unknown job."""
        now = utcnow()
        with self._write() as conn:
            result = conn.execute(
                update(JOBS)
                .where(JOBS.c.id == job_id, JOBS.c.status.in_(ACTIVE_STATUSES))
                .values(
                    cancel_requested=True,
                    status="cancelled",
                    finished_at=now,
                    updated_at=now,
                    error="cancelled on request",
                )
            )
            if result.rowcount == 0:
                self._job(conn, select(JOBS).where(JOBS.c.id == job_id))  # raises if unknown
                return False
            conn.execute(
                update(CHUNKS)
                .where(CHUNKS.c.job_id == job_id, CHUNKS.c.status == "queued")
                .values(status="cancelled", finished_at=now, error="job cancelled")
            )
            return True

    def reopen_job(self, job_id: str) -> tuple[JobRecord, list[str]]:
        """Resume a finished job (succeeded with latents missing, failed or cancelled): every
        latent without a stored result is computed again. Its recorded failures are cleared
        (a latent that fails for its own reason fails again, with the same reason), the chunks
        that hold such latents go back to queued with fresh ids and no attempts (messages of
        the old ids, revoked at a cancel, stay dead) and the job to queued. Returns the job
        and the chunk ids to dispatch. ConflictError while the job is still queued or running,
        or when every latent has its result already."""
        with self._write() as conn:
            job = self._job(conn, select(JOBS).where(JOBS.c.id == job_id).with_for_update())
            if job.status in ACTIVE_STATUSES:
                raise ConflictError(
                    f"job {job_id} is {job.status}: only a finished job can be resumed (wait "
                    "for it, or cancel it first)"
                )
            results = OPTIMISATION_RESULTS if job.resolved.get("kind") == "optimise" else SPECTRA
            index = (
                results.c.target_index
                if results is OPTIMISATION_RESULTS
                else results.c.latent_index
            )
            stored = set(conn.execute(select(index).where(results.c.job_id == job_id)).scalars())
            chunks = conn.execute(
                select(CHUNKS.c.id, CHUNKS.c.status, CHUNKS.c.latent_indices).where(
                    CHUNKS.c.job_id == job_id
                )
            ).all()
            reopened = [
                chunk.id
                for chunk in chunks
                if chunk.status != "succeeded" or not set(chunk.latent_indices) <= stored
            ]
            if not reopened:
                raise ConflictError(
                    f"every latent of job {job_id} has its result stored: nothing to resume"
                )
            return self._reopen(conn, job_id, reopened), self._fresh_chunk_ids(conn, reopened)

    def _reopen(self, conn: Connection, job_id: str, chunk_ids: list[str]) -> JobRecord:
        now = utcnow()
        cleared = conn.execute(
            delete(LATENT_FAILURES).where(LATENT_FAILURES.c.job_id == job_id)
        ).rowcount
        conn.execute(
            update(CHUNKS)
            .where(CHUNKS.c.id.in_(chunk_ids))
            .values(
                status="queued",
                attempts=0,
                lease_owner=None,
                heartbeat_at=None,
                started_at=None,
                finished_at=None,
                error=None,
                current_latent=None,
                current_latent_deaths=0,
            )
        )
        conn.execute(
            update(JOBS)
            .where(JOBS.c.id == job_id)
            .values(
                status="queued",
                cancel_requested=False,
                finished_at=None,
                error=None,
                updated_at=now,
                n_failed=JOBS.c.n_failed - cleared,
            )
        )
        return self._job(conn, select(JOBS).where(JOBS.c.id == job_id))

    @staticmethod
    def _fresh_chunk_ids(conn: Connection, chunk_ids: list[str]) -> list[str]:
        fresh = []
        for old in chunk_ids:
            new = new_id()
            conn.execute(update(CHUNKS).where(CHUNKS.c.id == old).values(id=new))
            fresh.append(new)
        return fresh

    @retry_read
    def is_cancelled(self, job_id: str) -> bool:
        query = select(JOBS.c.cancel_requested, JOBS.c.status).where(JOBS.c.id == job_id)
        with self._read() as conn:
            row = conn.execute(query).one_or_none()
        if row is None:
            raise NotFoundError(f"job {job_id!r} not found")
        return bool(row.cancel_requested) or row.status == "cancelled"

    def job_progress(self, job_id: str) -> JobProgress:
        """Counts and speed. ``rate`` = (done + failed) / elapsed; ``eta_s`` = remaining / rate
        while the job is queued or running and rate > 0, 0 once succeeded, otherwise None."""
        return self.progress_of(self.get_job(job_id))

    @staticmethod
    def progress_of(job: JobRecord) -> JobProgress:
        """job_progress of a job record already read (no query: a status view reads the job
        once)."""
        finished = job.n_done + job.n_failed
        elapsed = rate = eta = None
        if job.started_at is not None:
            end = job.finished_at or utcnow()
            elapsed = max((end - job.started_at).total_seconds(), 0.0)
            if elapsed > 0 and finished > 0:
                rate = finished / elapsed
        if job.status == "succeeded":
            eta = 0.0
        elif job.status in ACTIVE_STATUSES and rate:
            eta = max(job.n_latents - finished, 0) / rate
        return JobProgress(
            job_id=job.id,
            status=job.status,
            planned=job.n_latents,
            done=job.n_done,
            failed=job.n_failed,
            started_at=job.started_at,
            finished_at=job.finished_at,
            elapsed_s=elapsed,
            rate=rate,
            eta_s=eta,
        )

    def refresh_job_status(self, job_id: str) -> JobRecord:
        """Finish the job once every chunk is terminal (otherwise change nothing).

        - any chunk failed -> job failed, error "chunk <index> failed: <its error>" (lowest index);
        - else any chunk cancelled -> job cancelled;
        - else every planned latent failed (none done) -> job failed, with the first reason;
        - else -> succeeded (latents that failed individually stay listed in latent_failures).
        A job that is already succeeded, failed or cancelled is returned unchanged.
        """
        with self._write() as conn:
            job = self._job(conn, select(JOBS).where(JOBS.c.id == job_id))
            if job.status in TERMINAL_STATUSES:
                return job
            chunks = conn.execute(
                select(CHUNKS.c.index, CHUNKS.c.status, CHUNKS.c.error)
                .where(CHUNKS.c.job_id == job_id)
                .order_by(CHUNKS.c.index)
            ).all()
            if any(chunk.status not in TERMINAL_STATUSES for chunk in chunks):
                return job
            failed = [chunk for chunk in chunks if chunk.status == "failed"]
            cancelled = [chunk for chunk in chunks if chunk.status == "cancelled"]
            error: str | None = None
            if failed:
                reason = failed[0].error or "no reason recorded"
                to_status, error = "failed", f"chunk {failed[0].index} failed: {reason}"
            elif cancelled:
                to_status, error = "cancelled", f"chunk {cancelled[0].index} was cancelled"
            elif job.n_latents > 0 and job.n_done == 0 and job.n_failed >= job.n_latents:
                first = conn.execute(
                    select(LATENT_FAILURES.c.latent_index, LATENT_FAILURES.c.reason)
                    .where(LATENT_FAILURES.c.job_id == job_id)
                    .order_by(LATENT_FAILURES.c.latent_index)
                    .limit(1)
                ).one()
                to_status = "failed"
                error = f"every latent failed; latent {first.latent_index}: {first.reason}"
            else:
                to_status = "succeeded"
            cas_job(conn, job_id, list(ACTIVE_STATUSES), to_status, error)
            return self._job(conn, select(JOBS).where(JOBS.c.id == job_id))

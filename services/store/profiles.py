"""Cost profiles and the plan a worker makes for a job accepted before it was planned.

A profile is what the planner's probe measured of one model for one (weights, space,
distance, route, device kind, thread count), keyed by the sha256 of that key's canonical JSON:
measured once by a worker, read by every plan after. Written once: of two workers measuring
the same key at once, the first row stays and both read it.

A job whose model had no profile is stored with no chunks; the worker that plans it either
attaches its chunks and its estimate (one transaction, only while the job is still queued
and chunkless, so a second planning message does nothing) or marks it refused with the
reason a submission planned at once would have been answered with.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update

from .codecs import json_document, new_id
from .connection import StoreConnection, retry_read
from .jobs import JobStore
from .models import utcnow
from .records import ChunkPlan
from .tables import CHUNKS, COST_PROFILES, JOBS


@dataclass(frozen=True)
class CostProfileRecord:
    id: str
    key_sha256: str
    key: dict[str, Any]
    model: str
    profile: dict[str, Any]
    probe_seconds: float
    measured_at: datetime


class ProfileStore(StoreConnection):
    @retry_read
    def cost_profile(self, key_sha256: str) -> CostProfileRecord | None:
        """The stored profile of this key, or None where none was measured yet."""
        query = select(COST_PROFILES).where(COST_PROFILES.c.key_sha256 == key_sha256)
        with self._read() as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else CostProfileRecord(**row)

    def save_cost_profile(
        self,
        key_sha256: str,
        key: dict[str, Any],
        profile: dict[str, Any],
        probe_seconds: float,
    ) -> CostProfileRecord:
        """Store a measured profile; where one exists for the key already, keep it and
        return it (the first measurement wins, so every plan reads the same figures)."""
        key_doc = json_document(key, "profile key")
        statement = (
            self._insert(COST_PROFILES)
            .values(
                id=new_id(),
                key_sha256=key_sha256,
                key=key_doc,
                model=str(key_doc.get("model", "")),
                profile=json_document(profile, "cost profile"),
                probe_seconds=float(probe_seconds),
                measured_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["key_sha256"])
        )
        with self._write() as conn:
            conn.execute(statement)
        stored = self.cost_profile(key_sha256)
        assert stored is not None  # written above or by a concurrent worker
        return stored

    def attach_plan(self, job_id: str, chunks: list[ChunkPlan], estimate: dict[str, Any]) -> bool:
        """Give a job accepted unplanned its chunks and its estimate, in one transaction.
        True if this call did; False if the job is no longer queued (cancelled meanwhile)
        or already has chunks (another delivery of the planning message planned it)."""
        estimate_doc = json_document(estimate, "estimate")
        with self._write() as conn:
            job = conn.execute(
                select(JOBS.c.n_latents, JOBS.c.status, JOBS.c.cancel_requested)
                .where(JOBS.c.id == job_id)
                .with_for_update()
            ).first()
            if job is None or job.status != "queued" or job.cancel_requested:
                return False
            existing = conn.execute(
                select(func.count()).select_from(CHUNKS).where(CHUNKS.c.job_id == job_id)
            ).scalar_one()
            if existing:
                return False
            rows = JobStore._chunk_rows(chunks, job.n_latents)
            now = utcnow()
            for row in rows:
                row.update(job_id=job_id, created_at=now)
            conn.execute(CHUNKS.insert(), rows)
            conn.execute(
                update(JOBS)
                .where(JOBS.c.id == job_id)
                .values(estimate=estimate_doc, updated_at=now)
            )
            return True

    def refuse_job(self, job_id: str, reason: str) -> bool:
        """queued -> refused with `reason`, for a job with no chunks (planned by a worker that
        found it fits no worker). True if this call moved it."""
        now = utcnow()
        chunkless = ~select(CHUNKS.c.id).where(CHUNKS.c.job_id == job_id).exists()
        with self._write() as conn:
            result = conn.execute(
                update(JOBS)
                .where(JOBS.c.id == job_id, JOBS.c.status == "queued", chunkless)
                .values(status="refused", error=reason, finished_at=now, updated_at=now)
            )
            return bool(result.rowcount == 1)

    @retry_read
    def unplanned_job_ids(self, older_than_s: float, limit: int = 100) -> list[str]:
        """Queued jobs still without chunks (awaiting their planning message) created more
        than `older_than_s` ago: the reaper sends their planning message again."""
        cutoff = utcnow().timestamp() - older_than_s
        chunkless = ~select(CHUNKS.c.id).where(CHUNKS.c.job_id == JOBS.c.id).exists()
        query = (
            select(JOBS.c.id, JOBS.c.created_at, JOBS.c.n_latents)
            .where(JOBS.c.status == "queued", chunkless, JOBS.c.n_latents > 0)
            .order_by(JOBS.c.created_at)
            .limit(limit)
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [row.id for row in rows if _timestamp(row.created_at) <= cutoff]


def _timestamp(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()

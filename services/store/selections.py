"""The rows a comparison's selection is made of: each stored spectrum with its job's status
and resolved spec, its eigenvalues and its code's bytes (for the position's identity), never
its eigenvectors.

Ordered by job creation, then job id and latent index, so the first job that computed a
position is the one a de-duplicated selection keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, select

from .connection import StoreConnection, retry_read
from .models import Base

SPECTRA: Table = Base.metadata.tables["spectra"]
JOBS: Table = Base.metadata.tables["jobs"]


@dataclass(frozen=True)
class SelectionRow:
    spectrum_id: str
    job_id: str
    job_status: str
    job_resolved: dict[str, Any]
    latent_index: int
    model: str
    distance: str
    method: str
    dtype: str
    k: int
    d: int
    code: bytes | None
    eigenvalues: bytes  # (k,) float64 little-endian, descending


class SelectionQueryStore(StoreConnection):
    @retry_read
    def selection_rows(
        self,
        *,
        job_ids: list[str] | None = None,
        model: str | None = None,
        distance: str | None = None,
        method: str | None = None,
        owner: str | None = None,
        limit: int = 100_000,
    ) -> list[SelectionRow]:
        """Spectra of the given jobs, or of one (model, distance, method); each filter given
        narrows the selection, ``owner`` to that owner's jobs. At most ``limit`` rows."""
        query = (
            select(
                SPECTRA.c.id, SPECTRA.c.job_id, JOBS.c.status, JOBS.c.resolved,
                SPECTRA.c.latent_index, SPECTRA.c.model, SPECTRA.c.distance, SPECTRA.c.method,
                SPECTRA.c.dtype, SPECTRA.c.k, SPECTRA.c.d, SPECTRA.c.code, SPECTRA.c.eigenvalues,
            )  # fmt: skip
            .join(JOBS, JOBS.c.id == SPECTRA.c.job_id)
            .order_by(JOBS.c.created_at, SPECTRA.c.job_id, SPECTRA.c.latent_index)
            .limit(limit)
        )
        if job_ids is not None:
            query = query.where(SPECTRA.c.job_id.in_(job_ids))
        for column, value in (("model", model), ("distance", distance), ("method", method)):
            if value is not None:
                query = query.where(SPECTRA.c[column] == value)
        if owner is not None:
            query = query.where(JOBS.c.owner == owner)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [
            SelectionRow(
                spectrum_id=row.id, job_id=row.job_id, job_status=row.status,
                job_resolved=dict(row.resolved or {}), latent_index=row.latent_index,
                model=row.model, distance=row.distance, method=row.method, dtype=row.dtype,
                k=row.k, d=row.d, code=None if row.code is None else bytes(row.code),
                eigenvalues=bytes(row.eigenvalues),
            )  # fmt: skip
            for row in rows
        ]

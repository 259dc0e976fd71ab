"""The rows a comparison's selection is made of: each stored spectrum with its job's status
and resolved spec, its eigenvalues and its code's bytes (for the position's identity), never
its eigenvectors.

Ordered by job creation, then job id and latent index, so the first job that computed a
position is the one a de-duplicated selection keeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Select, Table, func, select

from .connection import StoreConnection, retry_read
from .models import Base

SPECTRA: Table = Base.metadata.tables["spectra"]
# Ids per IN (...) of a read in batches: bounds each statement and what it brings back at once.
IDS_PER_QUERY = 500
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


def _narrowed(
    query: Select[Any],
    job_ids: list[str] | None,
    model: str | None,
    distance: str | None,
    method: str | None,
    owner: str | None,
) -> Select[Any]:
    """``query`` (over SPECTRA joined to JOBS) narrowed by each selection filter given."""
    if job_ids is not None:
        query = query.where(SPECTRA.c.job_id.in_(job_ids))
    for column, value in (("model", model), ("distance", distance), ("method", method)):
        if value is not None:
            query = query.where(SPECTRA.c[column] == value)
    if owner is not None:
        query = query.where(JOBS.c.owner == owner)
    return query


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
                SPECTRA.c.id,
                SPECTRA.c.job_id,
                JOBS.c.status,
                JOBS.c.resolved,
                SPECTRA.c.latent_index,
                SPECTRA.c.model,
                SPECTRA.c.distance,
                SPECTRA.c.method,
                SPECTRA.c.dtype,
                SPECTRA.c.k,
                SPECTRA.c.d,
                SPECTRA.c.code,
                SPECTRA.c.eigenvalues,
            )
            .join(JOBS, JOBS.c.id == SPECTRA.c.job_id)
            .order_by(JOBS.c.created_at, SPECTRA.c.job_id, SPECTRA.c.latent_index)
            .limit(limit)
        )
        query = _narrowed(query, job_ids, model, distance, method, owner)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [
            SelectionRow(
                spectrum_id=row.id,
                job_id=row.job_id,
                job_status=row.status,
                job_resolved=dict(row.resolved or {}),
                latent_index=row.latent_index,
                model=row.model,
                distance=row.distance,
                method=row.method,
                dtype=row.dtype,
                k=row.k,
                d=row.d,
                code=None if row.code is None else bytes(row.code),
                eigenvalues=bytes(row.eigenvalues),
            )
            for row in rows
        ]

    @retry_read
    def selection_census(
        self,
        *,
        job_ids: list[str] | None = None,
        model: str | None = None,
        distance: str | None = None,
        method: str | None = None,
        owner: str | None = None,
    ) -> list[tuple[str, str, int]]:
        """(job id, job status, number of spectra) of what ``selection_rows`` would read, by
        job: a cheap fingerprint of a selection's spectra (stored spectra never change, so the
        same jobs with the same counts hold the same spectra)."""
        query = (
            select(SPECTRA.c.job_id, JOBS.c.status, func.count())
            .join(JOBS, JOBS.c.id == SPECTRA.c.job_id)
            .group_by(SPECTRA.c.job_id, JOBS.c.status)
            .order_by(SPECTRA.c.job_id)
        )
        query = _narrowed(query, job_ids, model, distance, method, owner)
        with self._read() as conn:
            return [(row[0], row[1], int(row[2])) for row in conn.execute(query)]

    @retry_read
    def full_eigenvalues(self, spectrum_ids: Sequence[str], d: int) -> tuple[np.ndarray, list[str]]:
        """(n, d) float64: every eigenvalue (descending) of each spectrum, in the order
        given, for spectra that keep only their top k of d. They come from
        ``diagnostics.eigenvalues_all``, which the full methods record with a top-k spectrum;
        the ids of spectra without them (Lanczos, imports) are returned, their rows zero."""
        ids = list(spectrum_ids)
        matrix = np.zeros((len(ids), d))
        where = {spectrum_id: row for row, spectrum_id in enumerate(ids)}
        found: set[str] = set()
        every_value = SPECTRA.c.diagnostics["eigenvalues_all"]
        with self._read() as conn:
            for start in range(0, len(ids), IDS_PER_QUERY):
                batch = ids[start : start + IDS_PER_QUERY]
                query = select(SPECTRA.c.id, every_value.label("values")).where(
                    SPECTRA.c.id.in_(batch)
                )
                for spectrum_id, values in conn.execute(query):
                    if isinstance(values, list) and len(values) == d:
                        matrix[where[spectrum_id]] = values
                        found.add(spectrum_id)
        return matrix, [spectrum_id for spectrum_id in ids if spectrum_id not in found]

"""Comparisons in the store: a stored, citable resource (request, fingerprint of the spectra it
covers, the exact spectra ids, the result document, its figures) moving through the job
statuses ``queued -> running -> succeeded | failed | cancelled`` by compare-and-set.

The same owner asking the same request over the same spectra (``fingerprint``) gets the stored
comparison back instead of a recomputation; a failed or cancelled one is computed again.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    ColumnElement,
    Float,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Row

from .connection import StoreConnection, retry_read
from .errors import NotFoundError
from .models import ID_LENGTH, SHA256_LENGTH, Base, UTCDateTime, utcnow
from .status import ACTIVE_STATUSES, Status

COMPARISONS = Table(
    "comparisons",
    Base.metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column("owner", String(200), nullable=False),
    Column("fingerprint", String(SHA256_LENGTH), nullable=False),
    Column("request", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("progress", Float(precision=53), nullable=False, default=0.0),
    Column("stage", String(200), nullable=True),
    Column("spectra", JSON, nullable=True),  # per member: the exact spectra ids used
    Column("document", JSON, nullable=True),
    Column("error", Text, nullable=True),
    Column("software_version", String(50), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
    UniqueConstraint("owner", "fingerprint", name="uq_comparisons_owner_fingerprint"),
    Index("ix_comparisons_owner_created_at", "owner", "created_at"),
)
FIGURES = Table(
    "comparison_figures",
    Base.metadata,
    Column(
        "comparison_id",
        String(ID_LENGTH),
        ForeignKey("comparisons.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("name", String(200), primary_key=True),
    Column("media_type", String(50), nullable=False),
    Column("data", LargeBinary, nullable=False),
)


@dataclass(frozen=True)
class ComparisonRecord:
    id: str
    owner: str
    fingerprint: str
    request: dict[str, Any]
    status: str
    progress: float
    stage: str | None
    spectra: list[list[str]] | None
    document: dict[str, Any] | None
    error: str | None
    software_version: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    figures: tuple[str, ...]


@dataclass(frozen=True)
class ComparisonFigure:
    name: str
    media_type: str
    data: bytes


class ComparisonStore(StoreConnection):
    def create_comparison(
        self, owner: str, fingerprint: str, request: dict[str, Any], software_version: str
    ) -> tuple[ComparisonRecord, bool]:
        """A queued comparison, or the stored one with the same (owner, fingerprint):
        (record, created). A failed or cancelled one is queued again (its figures dropped)."""
        with self._write() as conn:
            existing = _find(
                conn, COMPARISONS.c.owner == owner, COMPARISONS.c.fingerprint == fingerprint
            )
            if existing is not None and existing.status not in (Status.FAILED, Status.CANCELLED):
                return existing, False
            if existing is not None:
                conn.execute(delete(FIGURES).where(FIGURES.c.comparison_id == existing.id))
                conn.execute(
                    update(COMPARISONS)
                    .where(COMPARISONS.c.id == existing.id)
                    .values(
                        status=Status.QUEUED.value,
                        progress=0.0,
                        stage=None,
                        error=None,
                        document=None,
                        spectra=None,
                        started_at=None,
                        finished_at=None,
                        request=request,
                        software_version=software_version,
                    )
                )
                record = _find(conn, COMPARISONS.c.id == existing.id)
                assert record is not None
                return record, True
            comparison_id = str(uuid.uuid4())
            conn.execute(
                insert(COMPARISONS).values(
                    id=comparison_id,
                    owner=owner,
                    fingerprint=fingerprint,
                    request=request,
                    status=Status.QUEUED.value,
                    progress=0.0,
                    software_version=software_version,
                    created_at=utcnow(),
                )
            )
            record = _find(conn, COMPARISONS.c.id == comparison_id)
        assert record is not None
        return record, True

    @retry_read
    def get_comparison(self, comparison_id: str, *, owner: str | None = None) -> ComparisonRecord:
        """The comparison; NotFoundError where it does not exist or belongs to another owner
        (``owner`` None: any)."""
        with self._read() as conn:
            record = _find(conn, COMPARISONS.c.id == comparison_id)
        if record is None or (owner is not None and record.owner != owner):
            raise NotFoundError(f"comparison {comparison_id} not found")
        return record

    @retry_read
    def list_comparisons(
        self, *, owner: str | None = None, limit: int = 50
    ) -> list[ComparisonRecord]:
        """Newest first."""
        query = select(COMPARISONS).order_by(COMPARISONS.c.created_at.desc()).limit(limit)
        if owner is not None:
            query = query.where(COMPARISONS.c.owner == owner)
        with self._read() as conn:
            rows = conn.execute(query).all()
            names = _figure_names(conn, [row.id for row in rows])
        return [_record(row, names.get(row.id, ())) for row in rows]

    def start_comparison(self, comparison_id: str) -> bool:
        """queued -> running; False where it was not queued (cancelled, or another worker's)."""
        return self._move(
            comparison_id,
            (Status.QUEUED.value,),
            status=Status.RUNNING.value,
            started_at=utcnow(),
            stage="loading the selections",
        )

    def comparison_progress(self, comparison_id: str, progress: float, stage: str) -> bool:
        """Record progress of a running comparison; False once it is no longer running (a
        cancel: the worker stops)."""
        return self._move(
            comparison_id,
            (Status.RUNNING.value,),
            progress=min(max(progress, 0.0), 1.0),
            stage=stage[:200],
        )

    def finish_comparison(
        self,
        comparison_id: str,
        *,
        document: dict[str, Any],
        spectra: Sequence[Sequence[str]],
        figures: Sequence[ComparisonFigure],
    ) -> bool:
        """running -> succeeded with its document, exact spectra ids and figures, in one
        transaction: nothing half-written. False where it was cancelled meanwhile."""
        with self._write() as conn:
            changed = conn.execute(
                update(COMPARISONS)
                .where(COMPARISONS.c.id == comparison_id)
                .where(COMPARISONS.c.status == Status.RUNNING.value)
                .values(
                    status=Status.SUCCEEDED.value,
                    progress=1.0,
                    stage=None,
                    document=document,
                    spectra=[list(ids) for ids in spectra],
                    finished_at=utcnow(),
                )
            ).rowcount
            if changed and figures:
                conn.execute(
                    insert(FIGURES),
                    [
                        {
                            "comparison_id": comparison_id,
                            "name": f.name,
                            "media_type": f.media_type,
                            "data": f.data,
                        }
                        for f in figures
                    ],
                )
        return bool(changed)

    def fail_comparison(self, comparison_id: str, error: str) -> bool:
        return self._move(
            comparison_id,
            ACTIVE_STATUSES,
            status=Status.FAILED.value,
            error=error[:4000],
            finished_at=utcnow(),
            stage=None,
        )

    def cancel_comparison(self, comparison_id: str) -> bool:
        """queued | running -> cancelled; False where it had already ended."""
        return self._move(
            comparison_id,
            ACTIVE_STATUSES,
            status=Status.CANCELLED.value,
            finished_at=utcnow(),
            stage=None,
        )

    @retry_read
    def comparison_figure(self, comparison_id: str, name: str) -> ComparisonFigure:
        with self._read() as conn:
            row = conn.execute(
                select(FIGURES.c.name, FIGURES.c.media_type, FIGURES.c.data)
                .where(FIGURES.c.comparison_id == comparison_id)
                .where(FIGURES.c.name == name)
            ).first()
        if row is None:
            raise NotFoundError(f"comparison {comparison_id} has no figure {name!r}")
        return ComparisonFigure(row.name, row.media_type, bytes(row.data))

    def _move(self, comparison_id: str, states: tuple[str, ...], **values: Any) -> bool:
        with self._write() as conn:
            changed = conn.execute(
                update(COMPARISONS)
                .where(COMPARISONS.c.id == comparison_id)
                .where(COMPARISONS.c.status.in_(states))
                .values(**values)
            ).rowcount
        return bool(changed)


def _figure_names(conn: Connection, ids: list[str]) -> dict[str, tuple[str, ...]]:
    if not ids:
        return {}
    names: dict[str, list[str]] = {}
    query = (
        select(FIGURES.c.comparison_id, FIGURES.c.name)
        .where(FIGURES.c.comparison_id.in_(ids))
        .order_by(FIGURES.c.name)
    )
    for comparison_id, name in conn.execute(query):
        names.setdefault(comparison_id, []).append(name)
    return {key: tuple(value) for key, value in names.items()}


def _find(conn: Connection, *where: ColumnElement[bool]) -> ComparisonRecord | None:
    """The comparison matching ``where`` (its id, or its owner and fingerprint)."""
    row = conn.execute(select(COMPARISONS).where(*where)).first()
    if row is None:
        return None
    return _record(row, _figure_names(conn, [row.id]).get(row.id, ()))


def _record(row: Row[Any], figures: tuple[str, ...]) -> ComparisonRecord:
    return ComparisonRecord(
        id=row.id,
        owner=row.owner,
        fingerprint=row.fingerprint,
        request=dict(row.request),
        status=row.status,
        progress=float(row.progress),
        stage=row.stage,
        spectra=None if row.spectra is None else [list(ids) for ids in row.spectra],
        document=row.document,
        error=row.error,
        software_version=row.software_version,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        figures=figures,
    )

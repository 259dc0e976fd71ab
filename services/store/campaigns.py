"""Campaigns in the store: a named, tagged set of jobs and the member name of each job.

A campaign's row and its members are written in one transaction, after its jobs exist (each
member is an ordinary job, created by the pipeline). Names are unique per owner: the same
name with the same spec is the same campaign; with another spec it is refused.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Table, insert, select
from sqlalchemy.engine import Connection

from .connection import StoreConnection, retry_read
from .errors import ConflictError, NotFoundError
from .models import Base, utcnow

CAMPAIGNS: Table = Base.metadata.tables["campaigns"]
MEMBERS: Table = Base.metadata.tables["campaign_members"]


@dataclass(frozen=True)
class CampaignMember:
    member: str
    job_id: str


@dataclass(frozen=True)
class CampaignRecord:
    id: str
    owner: str
    name: str
    tags: tuple[str, ...]
    spec: dict[str, Any]
    created_at: datetime
    members: tuple[CampaignMember, ...]


class CampaignStore(StoreConnection):
    def create_campaign(
        self,
        owner: str,
        name: str,
        tags: list[str],
        spec: dict[str, Any],
        members: list[CampaignMember],
    ) -> tuple[CampaignRecord, bool]:
        """Store a campaign over existing jobs; (record, created). The same (owner, name) again
        returns the stored one if its spec is the same, else ConflictError."""
        with self._write() as conn:
            existing = _find(conn, CAMPAIGNS.c.owner == owner, CAMPAIGNS.c.name == name)
            if existing is not None:
                if existing.spec != spec:
                    raise ConflictError(
                        f"campaign {name!r} already exists with another spec; choose another name"
                    )
                return existing, False
            campaign_id = str(uuid.uuid4())
            conn.execute(
                insert(CAMPAIGNS).values(
                    id=campaign_id,
                    owner=owner,
                    name=name,
                    tags=list(tags),
                    spec=spec,
                    created_at=utcnow(),
                )
            )
            if members:
                conn.execute(
                    insert(MEMBERS),
                    [
                        {
                            "campaign_id": campaign_id,
                            "member": m.member,
                            "position": i,
                            "job_id": m.job_id,
                        }
                        for i, m in enumerate(members)
                    ],
                )
            record = _find(conn, CAMPAIGNS.c.id == campaign_id)
        assert record is not None
        return record, True

    @retry_read
    def get_campaign(self, campaign_id: str, owner: str | None = None) -> CampaignRecord:
        """A campaign by id; NotFoundError when absent or another owner's (``owner`` given)."""
        with self._read() as conn:
            record = _find(conn, CAMPAIGNS.c.id == campaign_id)
        if record is None or (owner is not None and record.owner != owner):
            raise NotFoundError(f"campaign {campaign_id} not found")
        return record

    @retry_read
    def list_campaigns(
        self, owner: str | None = None, *, tag: str | None = None, limit: int = 50
    ) -> list[CampaignRecord]:
        query = select(CAMPAIGNS.c.id).order_by(CAMPAIGNS.c.created_at.desc()).limit(limit)
        if owner is not None:
            query = query.where(CAMPAIGNS.c.owner == owner)
        with self._read() as conn:
            ids = [row.id for row in conn.execute(query)]
            records = [r for r in (_find(conn, CAMPAIGNS.c.id == i) for i in ids) if r is not None]
        return [r for r in records if tag is None or tag in r.tags]


def _find(conn: Connection, *where: ColumnElement[bool]) -> CampaignRecord | None:
    """The campaign matching ``where`` (its id, or its owner and name), with its members."""
    row = conn.execute(select(CAMPAIGNS).where(*where)).first()
    if row is None:
        return None
    members = conn.execute(
        select(MEMBERS.c.member, MEMBERS.c.job_id)
        .where(MEMBERS.c.campaign_id == row.id)
        .order_by(MEMBERS.c.position)
    ).all()
    return CampaignRecord(
        id=row.id,
        owner=row.owner,
        name=row.name,
        tags=tuple(row.tags or ()),
        spec=dict(row.spec or {}),
        created_at=row.created_at,
        members=tuple(CampaignMember(m.member, m.job_id) for m in members),
    )

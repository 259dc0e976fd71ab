"""Cost profiles (what the planner's probe measured of a model, stored once per weights,
space, distance, route, device kind and thread count, read by every plan after) and the
`refused` status: a job planned by a worker that then fits no worker ends refused.

Revision ID: 0010
Revises: 0011
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0010"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')"
AFTER = "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'refused')"


def _status_check(table: str, condition: str) -> None:
    with op.batch_alter_table(table) as batch:
        batch.drop_constraint(op.f(f"ck_{table}_status_known"), type_="check")
        batch.create_check_constraint(op.f(f"ck_{table}_status_known"), sa.text(condition))


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "cost_profiles",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("key_sha256", sa.String(length=64), nullable=False),
        sa.Column("key", sa.JSON(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("profile", sa.JSON(), nullable=False),
        sa.Column("probe_seconds", sa.Float(precision=53), nullable=False),
        sa.Column("measured_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cost_profiles")),
        sa.UniqueConstraint("key_sha256", name=op.f("uq_cost_profiles_key_sha256")),
    )
    op.create_index(op.f("ix_cost_profiles_model"), "cost_profiles", ["model"], unique=False)
    for table in ("jobs", "chunks"):
        _status_check(table, AFTER)


def downgrade() -> None:
    """Downgrade schema."""
    for table in ("jobs", "chunks"):
        _status_check(table, BEFORE)
    op.drop_index(op.f("ix_cost_profiles_model"), table_name="cost_profiles")
    op.drop_table("cost_profiles")

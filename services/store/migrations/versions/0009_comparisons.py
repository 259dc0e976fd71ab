"""Comparisons as a stored resource: the request, a fingerprint of the spectra it covers (the
same request over the same spectra is the same comparison), status and progress, the exact
spectra ids, the result document, and its figures.

Revision ID: 0009
Revises: 0010
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0009"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "comparisons",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("progress", sa.Float(precision=53), nullable=False),
        sa.Column("stage", sa.String(200), nullable=True),
        sa.Column("spectra", sa.JSON(), nullable=True),
        sa.Column("document", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("software_version", sa.String(50), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("owner", "fingerprint", name="uq_comparisons_owner_fingerprint"),
    )
    op.create_index("ix_comparisons_owner_created_at", "comparisons", ["owner", "created_at"])
    op.create_table(
        "comparison_figures",
        sa.Column(
            "comparison_id",
            sa.String(36),
            sa.ForeignKey("comparisons.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("media_type", sa.String(50), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("comparison_figures")
    op.drop_index("ix_comparisons_owner_created_at", table_name="comparisons")
    op.drop_table("comparisons")

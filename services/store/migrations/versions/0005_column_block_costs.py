"""What a job's plan estimated with its times (jobs.estimate: not part of the hashed resolved
spec, since timings vary with the moment), and what each column block cost the chunk that
computed it (seconds, peak resident bytes): a finished job shows estimate and measurement
side by side, the block route included.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('estimate', sa.JSON(), nullable=True))
    with op.batch_alter_table('column_blocks') as batch:
        batch.add_column(sa.Column('seconds', sa.Float(precision=53), nullable=True))
        batch.add_column(sa.Column('peak_bytes', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('column_blocks') as batch:
        batch.drop_column('peak_bytes')
        batch.drop_column('seconds')
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('estimate')

"""The latent a chunk is computing, and how many runs of the chunk ended while computing it:
a latent that kills its worker every time is then recorded as that latent's failure and the
rest of the chunk goes on, instead of the whole chunk failing after its attempts.

Revision ID: 0007
Revises: 0002
Create Date: 2026-12-01
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0007'
down_revision: str | Sequence[str] | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('chunks') as batch:
        batch.add_column(sa.Column('current_latent', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('current_latent_deaths', sa.Integer(), nullable=False,
                                   server_default='0'))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('chunks') as batch:
        batch.drop_column('current_latent_deaths')
        batch.drop_column('current_latent')

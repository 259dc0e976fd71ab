"""Campaigns: named, tagged sets of jobs submitted in one request, and their members.

Revision ID: 0003
Revises: 0007
Create Date: 2026-12-01
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision: str = '0003'
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('campaigns',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('owner', sa.String(length=200), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_campaigns')),
    sa.UniqueConstraint('owner', 'name', name=op.f('uq_campaigns_owner_name'))
    )
    op.create_index(op.f('ix_campaigns_owner_created_at'), 'campaigns', ['owner', 'created_at'], unique=False)
    op.create_table('campaign_members',
    sa.Column('campaign_id', sa.String(length=36), nullable=False),
    sa.Column('member', sa.String(length=300), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_campaign_members_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_campaign_members_job_id_jobs'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('campaign_id', 'member', name=op.f('pk_campaign_members'))
    )
    op.create_index(op.f('ix_campaign_members_job_id'), 'campaign_members', ['job_id'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f('ix_campaign_members_job_id'), table_name='campaign_members')
    op.drop_table('campaign_members')
    op.drop_index(op.f('ix_campaigns_owner_created_at'), table_name='campaigns')
    op.drop_table('campaigns')

"""Optimisation jobs: target sets (images to invert) and one result per (job, target).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0004'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('target_sets',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('owner', sa.String(length=200), nullable=False),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=True),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('channels', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('d', sa.Integer(), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('images', sa.LargeBinary(), nullable=False),
    sa.Column('codes', sa.LargeBinary(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("source IN ('uploaded', 'generated')", name=op.f('ck_target_sets_source_known')),
    sa.CheckConstraint('n > 0 AND channels > 0 AND height > 0 AND width > 0', name=op.f('ck_target_sets_shape_positive')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_target_sets')),
    sa.UniqueConstraint('owner', 'sha256', name=op.f('uq_target_sets_owner_sha256'))
    )
    op.create_table('optimisation_results',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('job_id', sa.String(length=36), nullable=False),
    sa.Column('target_index', sa.Integer(), nullable=False),
    sa.Column('optimiser', sa.String(length=50), nullable=False),
    sa.Column('steps', sa.Integer(), nullable=False),
    sa.Column('restarts', sa.Integer(), nullable=False),
    sa.Column('d', sa.Integer(), nullable=False),
    sa.Column('best_restart', sa.Integer(), nullable=False),
    sa.Column('final_loss', sa.Float(precision=53), nullable=False),
    sa.Column('losses', sa.LargeBinary(), nullable=False),
    sa.Column('evaluations', sa.LargeBinary(), nullable=False),
    sa.Column('final_code', sa.LargeBinary(), nullable=False),
    sa.Column('final_image', sa.LargeBinary(), nullable=False),
    sa.Column('image_shape', sa.JSON(), nullable=False),
    sa.Column('diagnostics', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('steps > 0 AND restarts > 0 AND d > 0', name=op.f('ck_optimisation_results_shape_positive')),
    sa.CheckConstraint('target_index >= 0', name=op.f('ck_optimisation_results_target_index_non_negative')),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_optimisation_results_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_optimisation_results')),
    sa.UniqueConstraint('job_id', 'target_index', name=op.f('uq_optimisation_results_job_id_target_index'))
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('optimisation_results')
    op.drop_table('target_sets')

"""Indexes for the dashboard's charts (`paymentapp/admin/charts.py`): payments by when they
were made and their outcome, and by when their money arrived.

Revision ID: 0016_chart_indexes
Revises: 0015_approvals
Create Date: 2026-12-02
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0016_chart_indexes'
down_revision = '0015_approvals'
branch_labels = None
depends_on = None


def upgrade():
    # created_at first: each chart reads a range of time; status and needs_review ride
    # along so PostgreSQL counts outcomes from the index alone (an index-only scan)
    op.create_index(
        'ix_payments_created_at_outcome', 'payments', ['created_at', 'status', 'needs_review'],
        unique=False,
    )
    op.create_index('ix_payments_paid_at', 'payments', ['paid_at'], unique=False)


def downgrade():
    op.drop_index('ix_payments_paid_at', table_name='payments')
    op.drop_index('ix_payments_created_at_outcome', table_name='payments')

"""Where a paid amount came from, and how often a stored callback failed to apply.

`payments.amount_source` is "callback" (M-Pesa reported the amount) or "query" (STK
Query confirmed the prompt, paid with its requested amount). `callback_records.attempts`
lets the reconciler retry a stored callback a few times, then give up on it alone.

Revision ID: 0003_amount_source_attempts
Revises: 0002_admin_session_version
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0003_amount_source_attempts'
down_revision = '0002_admin_session_version'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('payments') as batch_op:
        batch_op.add_column(sa.Column('amount_source', sa.String(length=16), nullable=True))
    with op.batch_alter_table('callback_records') as batch_op:
        batch_op.add_column(
            sa.Column('attempts', sa.Integer(), server_default='0', nullable=False)
        )


def downgrade():
    with op.batch_alter_table('callback_records') as batch_op:
        batch_op.drop_column('attempts')
    with op.batch_alter_table('payments') as batch_op:
        batch_op.drop_column('amount_source')

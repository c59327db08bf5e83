"""Status values the database enforces, and the kind of each stored callback.

CHECK constraints on `orders.status`, `payments.status` and `callback_records.outcome`
(the values of the StrEnums in `paymentapp/models.py`), and `callback_records.kind`
("stk" for every callback so far; Paybill confirmations will be "c2b"); a callback's
`detail` becomes text, so an admin's note on it is kept whole.

Revision ID: 0004_status_checks_callback_kind
Revises: 0003_amount_source_attempts
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0004_status_checks_callback_kind'
down_revision = '0003_amount_source_attempts'
branch_labels = None
depends_on = None

ORDER_STATUSES = ("pending", "paid", "cancelled")
PAYMENT_STATUSES = ("pending", "completed", "failed", "cancelled", "timeout")
CALLBACK_OUTCOMES = (
    "received", "applied", "duplicate", "ignored", "unknown", "unknown_resolved",
    "malformed", "failed",
)


def _in(column, values):
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade():
    with op.batch_alter_table('orders') as batch_op:
        batch_op.create_check_constraint(op.f('ck_orders_status'), _in('status', ORDER_STATUSES))
    with op.batch_alter_table('payments') as batch_op:
        batch_op.create_check_constraint(op.f('ck_payments_status'), _in('status', PAYMENT_STATUSES))
    with op.batch_alter_table('callback_records') as batch_op:
        batch_op.add_column(
            sa.Column('kind', sa.String(length=32), server_default='stk', nullable=False)
        )
        batch_op.create_check_constraint(
            op.f('ck_callback_records_outcome'), _in('outcome', CALLBACK_OUTCOMES)
        )
        # an admin's note (up to 1000 characters) is kept whole, never cut
        batch_op.alter_column(
            'detail', existing_type=sa.String(length=255), type_=sa.Text(), existing_nullable=True
        )


def downgrade():
    with op.batch_alter_table('callback_records') as batch_op:
        batch_op.alter_column(
            'detail', existing_type=sa.Text(), type_=sa.String(length=255), existing_nullable=True
        )
        batch_op.drop_constraint(op.f('ck_callback_records_outcome'), type_='check')
        batch_op.drop_column('kind')
    with op.batch_alter_table('payments') as batch_op:
        batch_op.drop_constraint(op.f('ck_payments_status'), type_='check')
    with op.batch_alter_table('orders') as batch_op:
        batch_op.drop_constraint(op.f('ck_orders_status'), type_='check')

"""Paybill (C2B): payment method, one receipt per payment, order expiry, check digits.

`payments.method` is "stk" or "paybill"; `payments.receipt` becomes unique (one receipt
is one movement of money, whichever message brings it); `account_reference`, `entered_by`
and the refund columns serve Paybill payments and the admin. `orders.expires_at` dates
an order's offer; `orders.number_checked` is True for numbers that end in a check digit
(the existing ones are False and keep working).

Revision ID: 0006_paybill
Revises: 0005_merchant_webhooks
Create Date: 2026-11-26
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006_paybill'
down_revision = '0005_merchant_webhooks'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('number_checked', sa.Boolean(), server_default='0', nullable=False))

    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('method', sa.String(length=16), server_default='stk', nullable=False))
        batch_op.add_column(sa.Column('account_reference', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('entered_by', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('refunded_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('refund_note', sa.Text(), nullable=True))
        batch_op.drop_index(batch_op.f('ix_payments_receipt'))
        batch_op.create_unique_constraint(batch_op.f('uq_payments_receipt'), ['receipt'])
        batch_op.create_check_constraint(
            op.f('ck_payments_method'), "method IN ('stk', 'paybill')"
        )



def downgrade():
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_payments_method'), type_='check')
        batch_op.drop_constraint(batch_op.f('uq_payments_receipt'), type_='unique')
        batch_op.create_index(batch_op.f('ix_payments_receipt'), ['receipt'], unique=False)
        batch_op.drop_column('refund_note')
        batch_op.drop_column('refunded_at')
        batch_op.drop_column('entered_by')
        batch_op.drop_column('account_reference')
        batch_op.drop_column('method')

    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_column('number_checked')
        batch_op.drop_column('expires_at')


"""Partial refunds through B2C, and receipts entered by hand checked with M-Pesa.

`refunds.phone`: where a B2C refund pays the money (the prompted phone, or one an admin
typed for a Paybill payment). `receipt_checks`: a receipt entered by hand, awaiting
M-Pesa's Transaction Status before it counts, with what M-Pesa answered (one it did not
confirm waits in the review queue until an admin closes it: `reviewed_at`).

Revision ID: 0009_b2c_receipt_checks
Revises: 0008_reversal_refunds
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009_b2c_receipt_checks'
down_revision = '0008_reversal_refunds'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.add_column(sa.Column('phone', sa.String(length=12), nullable=True))
    op.create_table(
        'receipt_checks',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('order_id', sa.String(length=32), nullable=False),
        sa.Column('receipt', sa.String(length=32), nullable=False),
        sa.Column('amount', sa.Integer(), nullable=False),
        sa.Column('note', sa.Text(), nullable=True),
        sa.Column('actor', sa.String(length=64), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('conversation_id', sa.String(length=64), nullable=True),
        sa.Column('checked_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('result_code', sa.String(length=16), nullable=True),
        sa.Column('result_desc', sa.String(length=255), nullable=True),
        sa.Column('payment_id', sa.String(length=32), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('review_note', sa.Text(), nullable=True),
        sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint('amount > 0', name=op.f('ck_receipt_checks_amount_positive')),
        sa.CheckConstraint(
            "status IN ('awaiting', 'confirmed', 'mismatch', 'not_found', 'withdrawn')",
            name=op.f('ck_receipt_checks_status'),
        ),
        sa.ForeignKeyConstraint(
            ['order_id'], ['orders.id'], name=op.f('fk_receipt_checks_order_id_orders')
        ),
        sa.ForeignKeyConstraint(
            ['payment_id'], ['payments.id'], name=op.f('fk_receipt_checks_payment_id_payments')
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_receipt_checks')),
        sa.UniqueConstraint('conversation_id', name=op.f('uq_receipt_checks_conversation_id')),
    )
    with op.batch_alter_table('receipt_checks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_receipt_checks_order_id'), ['order_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_receipt_checks_receipt'), ['receipt'], unique=False)


def downgrade():
    with op.batch_alter_table('receipt_checks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_receipt_checks_receipt'))
        batch_op.drop_index(batch_op.f('ix_receipt_checks_order_id'))
    op.drop_table('receipt_checks')
    # a B2C refund keeps its record; only where it paid is forgotten
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.drop_column('phone')

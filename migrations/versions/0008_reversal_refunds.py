"""Refunds through Daraja's Reversal: a refund's life is requested → pending →
succeeded | failed (manual refunds are born succeeded: every `completed` one becomes
`succeeded`), with Daraja's ids and result, and the merchant API's Idempotency-Key.
Reasons: `customer_request` is now `requested_by_customer`, and `fraudulent` is new.
`payments.refunding_amount`: what is on its way back through M-Pesa (refunds in flight).
`callback_records.via`: `callback`, or `pull` for a C2B payment found by Pull Transactions.

Revision ID: 0008_reversal_refunds
Revises: 0007_refunds
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008_reversal_refunds'
down_revision = '0007_refunds'
branch_labels = None
depends_on = None

STATUSES = "status IN ('requested', 'pending', 'succeeded', 'failed')"
REASONS = (
    "reason IN ('overpayment', 'late', 'duplicate', 'requested_by_customer', 'fraudulent', "
    "'other')"
)
OLD_STATUSES = "status IN ('pending', 'completed', 'failed')"
OLD_REASONS = "reason IN ('overpayment', 'late', 'duplicate', 'customer_request', 'other')"


def upgrade():
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_refunds_status'), type_='check')
        batch_op.drop_constraint(batch_op.f('ck_refunds_reason'), type_='check')
        batch_op.add_column(sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('api_key_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('idempotency_key', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('conversation_id', sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column('originator_conversation_id', sa.String(length=64), nullable=True)
        )
        batch_op.add_column(sa.Column('transaction_id', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('result_code', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('result_desc', sa.String(length=255), nullable=True))
        batch_op.add_column(
            sa.Column('check_conversation_id', sa.String(length=64), nullable=True)
        )
        batch_op.add_column(sa.Column('checked_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f('uq_refunds_conversation_id'), ['conversation_id']
        )
        batch_op.create_unique_constraint(
            batch_op.f('uq_refunds_check_conversation_id'), ['check_conversation_id']
        )
        batch_op.create_unique_constraint(
            'uq_refunds_api_key_idempotency', ['api_key_id', 'idempotency_key']
        )
        batch_op.create_foreign_key(
            batch_op.f('fk_refunds_api_key_id_api_keys'), 'api_keys', ['api_key_id'], ['id']
        )
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('refunding_amount', sa.Integer(), server_default='0', nullable=False)
        )
    with op.batch_alter_table('callback_records', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('via', sa.String(length=16), server_default='callback', nullable=False)
        )
    op.execute("UPDATE refunds SET status = 'succeeded' WHERE status = 'completed'")
    op.execute("UPDATE refunds SET reason = 'requested_by_customer' WHERE reason = 'customer_request'")
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.create_check_constraint(batch_op.f('ck_refunds_status'), STATUSES)
        batch_op.create_check_constraint(batch_op.f('ck_refunds_reason'), REASONS)


def downgrade():
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_refunds_status'), type_='check')
        batch_op.drop_constraint(batch_op.f('ck_refunds_reason'), type_='check')
    # a refund still in flight through M-Pesa cannot be said in the old statuses: failed
    op.execute("UPDATE refunds SET status = 'failed' WHERE status IN ('requested', 'pending')")
    op.execute("UPDATE refunds SET status = 'completed' WHERE status = 'succeeded'")
    op.execute("UPDATE refunds SET reason = 'customer_request' WHERE reason = 'requested_by_customer'")
    op.execute("UPDATE refunds SET reason = 'other' WHERE reason = 'fraudulent'")
    with op.batch_alter_table('callback_records', schema=None) as batch_op:
        batch_op.drop_column('via')
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_column('refunding_amount')
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_refunds_api_key_id_api_keys'), type_='foreignkey')
        batch_op.drop_constraint('uq_refunds_api_key_idempotency', type_='unique')
        batch_op.drop_constraint(batch_op.f('uq_refunds_conversation_id'), type_='unique')
        batch_op.drop_constraint(batch_op.f('uq_refunds_check_conversation_id'), type_='unique')
        for column in (
            'checked_at', 'check_conversation_id',
            'result_desc', 'result_code', 'transaction_id', 'originator_conversation_id',
            'conversation_id', 'idempotency_key', 'api_key_id', 'updated_at',
        ):
            batch_op.drop_column(column)
        batch_op.create_check_constraint(batch_op.f('ck_refunds_status'), OLD_STATUSES)
        batch_op.create_check_constraint(batch_op.f('ck_refunds_reason'), OLD_REASONS)

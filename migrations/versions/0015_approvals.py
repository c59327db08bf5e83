"""Approvals: money moved by hand, or sent back, is a proposal until a different owner
approves it (`approvals`); a refund through M-Pesa waits `awaiting_approval` before it is
`requested`, and a refused one is `rejected`.

Revision ID: 0015_approvals
Revises: 0014_audit_log
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0015_approvals'
down_revision = '0014_audit_log'
branch_labels = None
depends_on = None

REFUND_STATUSES = ('requested', 'pending', 'succeeded', 'failed')


def _in(column, values):
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade():
    op.create_table(
        'approvals',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('order_id', sa.String(length=32), nullable=False),
        sa.Column('payment_id', sa.String(length=32), nullable=True),
        sa.Column('refund_id', sa.String(length=32), nullable=True),
        sa.Column('values', sa.Text(), nullable=False),
        sa.Column('summary', sa.String(length=500), nullable=False),
        sa.Column('proposed_by', sa.String(length=64), nullable=False),
        sa.Column('proposed_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('decided_by', sa.String(length=64), nullable=True),
        sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('decision_note', sa.Text(), nullable=True),
        sa.Column('self_approved', sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.CheckConstraint(
            _in('kind', ('hand_entry', 'accept_review', 'manual_refund', 'mpesa_refund')),
            name=op.f('ck_approvals_kind'),
        ),
        sa.CheckConstraint(
            _in('status', ('pending', 'approved', 'rejected', 'withdrawn')),
            name=op.f('ck_approvals_status'),
        ),
        sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_approvals_order_id_orders')),
        sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], name=op.f('fk_approvals_payment_id_payments')),
        sa.ForeignKeyConstraint(['refund_id'], ['refunds.id'], name=op.f('fk_approvals_refund_id_refunds')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_approvals')),
    )
    op.create_index(op.f('ix_approvals_order_id'), 'approvals', ['order_id'], unique=False)
    op.create_index(op.f('ix_approvals_status'), 'approvals', ['status'], unique=False)
    with op.batch_alter_table('refunds') as batch_op:
        batch_op.drop_constraint(op.f('ck_refunds_status'), type_='check')
        # 'awaiting_approval' is 17 characters
        batch_op.alter_column(
            'status', existing_type=sa.String(length=16), type_=sa.String(length=20),
            existing_nullable=False,
        )
        batch_op.create_check_constraint(
            op.f('ck_refunds_status'),
            _in('status', ('awaiting_approval',) + REFUND_STATUSES + ('rejected',)),
        )


def downgrade():
    # a refund never approved gave nothing back: failed, and its money is no longer held
    op.execute(
        "UPDATE payments SET refunding_amount = refunding_amount - (SELECT COALESCE(SUM(amount), 0) "
        "FROM refunds WHERE refunds.payment_id = payments.id AND refunds.status = 'awaiting_approval')"
    )
    op.execute(
        "UPDATE refunds SET status = 'failed', result_desc = 'not approved before a downgrade' "
        "WHERE status IN ('awaiting_approval', 'rejected')"
    )
    with op.batch_alter_table('refunds') as batch_op:
        batch_op.drop_constraint(op.f('ck_refunds_status'), type_='check')
        batch_op.alter_column(
            'status', existing_type=sa.String(length=20), type_=sa.String(length=16),
            existing_nullable=False,
        )
        batch_op.create_check_constraint(op.f('ck_refunds_status'), _in('status', REFUND_STATUSES))
    op.drop_index(op.f('ix_approvals_status'), table_name='approvals')
    op.drop_index(op.f('ix_approvals_order_id'), table_name='approvals')
    op.drop_table('approvals')

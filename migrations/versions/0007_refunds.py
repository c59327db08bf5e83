"""Refunds with amounts: a `refunds` record per refund, net counting, held money.

`refunds` holds every refund (amount, reason, note, who, how: `manual` for money given
back outside the app). `payments.refunded_amount` is the sum of a payment's refunds
(what counts is `paid_amount - refunded_amount`); `payments.held` marks money that arrived
after its order expired or was cancelled, which counts only once an admin accepts it.

Each payment marked refunded before (`refunded_at`, `refund_note`) becomes one completed
manual refund of its whole amount, dated then; the two columns go.

Revision ID: 0007_refunds
Revises: 0006_paybill
Create Date: 2026-12-02
"""
import secrets

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007_refunds'
down_revision = '0006_paybill'
branch_labels = None
depends_on = None

HELD_REASONS = ('paid after the order expired%', 'paid after the order was cancelled%')


def upgrade():
    refunds = op.create_table(
        'refunds',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('payment_id', sa.String(length=32), nullable=False),
        sa.Column('order_id', sa.String(length=32), nullable=False),
        sa.Column('amount', sa.Integer(), nullable=False),
        sa.Column('method', sa.String(length=16), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('reason', sa.String(length=32), nullable=False),
        sa.Column('note', sa.Text(), nullable=True),
        sa.Column('actor', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint('amount > 0', name=op.f('ck_refunds_amount_positive')),
        sa.CheckConstraint(
            "status IN ('pending', 'completed', 'failed')", name=op.f('ck_refunds_status')
        ),
        sa.CheckConstraint(
            "reason IN ('overpayment', 'late', 'duplicate', 'customer_request', 'other')",
            name=op.f('ck_refunds_reason'),
        ),
        sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_refunds_order_id_orders')),
        sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], name=op.f('fk_refunds_payment_id_payments')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_refunds')),
    )
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_refunds_order_id'), ['order_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_refunds_payment_id'), ['payment_id'], unique=False)

    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('refunded_amount', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('held', sa.Boolean(), server_default=sa.false(), nullable=False))

    connection = op.get_bind()
    payments = sa.table(
        'payments',
        sa.column('id', sa.String), sa.column('order_id', sa.String),
        sa.column('amount', sa.Integer), sa.column('paid_amount', sa.Integer),
        sa.column('refunded_at', sa.DateTime(timezone=True)), sa.column('refund_note', sa.Text),
        sa.column('refunded_amount', sa.Integer), sa.column('held', sa.Boolean),
        sa.column('review_reason', sa.String), sa.column('reviewed_at', sa.DateTime(timezone=True)),
    )
    marked = connection.execute(
        sa.select(
            payments.c.id, payments.c.order_id, payments.c.amount, payments.c.paid_amount,
            payments.c.refunded_at, payments.c.refund_note,
        ).where(payments.c.refunded_at.is_not(None))
    ).all()
    for payment_id, order_id, amount, paid_amount, refunded_at, note in marked:
        whole = paid_amount or amount
        connection.execute(
            refunds.insert().values(
                id=f"ref_{secrets.token_urlsafe(16)}", payment_id=payment_id, order_id=order_id,
                amount=whole, method='manual', status='completed', reason='other',
                note=note, actor='marked refunded before refunds had amounts',
                created_at=refunded_at, completed_at=refunded_at,
            )
        )
        connection.execute(
            payments.update().where(payments.c.id == payment_id).values(refunded_amount=whole)
        )
    connection.execute(
        payments.update()
        .where(
            sa.or_(*(payments.c.review_reason.like(reason) for reason in HELD_REASONS)),
            payments.c.reviewed_at.is_(None),
        )
        .values(held=True)
    )

    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_column('refund_note')
        batch_op.drop_column('refunded_at')


def downgrade():
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('refunded_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('refund_note', sa.Text(), nullable=True))
    op.execute(
        "UPDATE payments SET refunded_at = (SELECT max(created_at) FROM refunds"
        " WHERE refunds.payment_id = payments.id) WHERE refunded_amount > 0"
    )
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_column('held')
        batch_op.drop_column('refunded_amount')
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_refunds_payment_id'))
        batch_op.drop_index(batch_op.f('ix_refunds_order_id'))
    op.drop_table('refunds')

"""Callbacks from outside MPESA_CALLBACK_ALLOWED_IPS are stored as `untrusted`, never
applied on their own: the callback outcome gains that value.

Revision ID: 0012_untrusted_callbacks
Revises: 0011_encrypted_webhook_secrets
Create Date: 2026-12-02
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0012_untrusted_callbacks'
down_revision = '0011_encrypted_webhook_secrets'
branch_labels = None
depends_on = None

OUTCOMES = (
    'received', 'applied', 'duplicate', 'ignored', 'unknown', 'unknown_resolved',
    'malformed', 'failed',
)


def _in(values):
    return "outcome IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade():
    with op.batch_alter_table('callback_records') as batch_op:
        batch_op.drop_constraint(op.f('ck_callback_records_outcome'), type_='check')
        batch_op.create_check_constraint(
            op.f('ck_callback_records_outcome'), _in(OUTCOMES + ('untrusted',))
        )


def downgrade():
    # never applied, and must not be by the reconciler: set aside (ignored), and says why
    op.execute(
        "UPDATE callback_records SET outcome = 'ignored', "
        "detail = 'untrusted source, set aside by a downgrade' WHERE outcome = 'untrusted'"
    )
    with op.batch_alter_table('callback_records') as batch_op:
        batch_op.drop_constraint(op.f('ck_callback_records_outcome'), type_='check')
        batch_op.create_check_constraint(op.f('ck_callback_records_outcome'), _in(OUTCOMES))

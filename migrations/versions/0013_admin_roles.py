"""Admin roles: each dashboard user is a `viewer`, an `operator` or an `owner` (every
existing admin becomes an owner, so today's set-up keeps working), and may be disabled.

Revision ID: 0013_admin_roles
Revises: 0012_untrusted_callbacks
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0013_admin_roles'
down_revision = '0012_untrusted_callbacks'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('admin_users') as batch_op:
        batch_op.add_column(
            sa.Column('role', sa.String(length=16), nullable=False, server_default='owner')
        )
        batch_op.add_column(sa.Column('disabled_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_check_constraint(
            op.f('ck_admin_users_role'), "role IN ('viewer', 'operator', 'owner')"
        )


def downgrade():
    with op.batch_alter_table('admin_users') as batch_op:
        batch_op.drop_constraint(op.f('ck_admin_users_role'), type_='check')
        batch_op.drop_column('disabled_at')
        batch_op.drop_column('role')

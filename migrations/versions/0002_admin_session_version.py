"""Admin session version: logging out (or a password reset) revokes old session cookies.

The dashboard uses Flask's signed-cookie session, which a server cannot delete; each
session records the user's `session_version` and is only honoured while it matches.

Revision ID: 0002_admin_session_version
Revises: 0001_initial_schema
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0002_admin_session_version'
down_revision = '0001_initial_schema'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('admin_users') as batch_op:
        batch_op.add_column(
            sa.Column('session_version', sa.Integer(), server_default='0', nullable=False)
        )


def downgrade():
    with op.batch_alter_table('admin_users') as batch_op:
        batch_op.drop_column('session_version')

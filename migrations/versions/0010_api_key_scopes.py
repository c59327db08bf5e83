"""Scoped API keys: `api_keys.scopes` (space-separated; NULL keeps a key's full access,
so every existing key works as before) and `api_keys.own_orders` (the key sees and
changes only the orders it created).

Revision ID: 0010_api_key_scopes
Revises: 0009_b2c_receipt_checks
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010_api_key_scopes'
down_revision = '0009_b2c_receipt_checks'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scopes', sa.String(length=200), nullable=True))
        batch_op.add_column(
            sa.Column('own_orders', sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade():
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_column('own_orders')
        batch_op.drop_column('scopes')

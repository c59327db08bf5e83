"""The audit log: `audit_events`, one row per thing a person, a merchant key or the CLI
did, append-only in the database (a trigger refuses every UPDATE and DELETE).

The trigger SQL is a copy of `paymentapp/models/audit.py`'s APPEND_ONLY, as it stood
when this was written (a migration never imports the app).

Revision ID: 0014_audit_log
Revises: 0013_admin_roles
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0014_audit_log'
down_revision = '0013_admin_roles'
branch_labels = None
depends_on = None

APPEND_ONLY = {
    'postgresql': (
        "CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN "
        "RAISE EXCEPTION 'audit_events is append-only (% refused)', TG_OP; "
        "END $$",
        "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events "
        "FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()",
    ),
    'sqlite': (
        "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events "
        "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only (UPDATE refused)'); END",
        "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events "
        "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only (DELETE refused)'); END",
    ),
}
DROP = {
    'postgresql': (
        'DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events',
        'DROP FUNCTION IF EXISTS audit_events_append_only()',
    ),
    'sqlite': (
        'DROP TRIGGER IF EXISTS audit_events_no_update',
        'DROP TRIGGER IF EXISTS audit_events_no_delete',
    ),
}


def upgrade():
    op.create_table('audit_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=120), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=True),
    sa.Column('address', sa.String(length=64), nullable=True),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('target', sa.String(length=120), nullable=True),
    sa.Column('summary', sa.String(length=500), nullable=False),
    sa.Column('changes', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_events'))
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_events_action'), ['action'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_events_actor'), ['actor'], unique=False)
    for statement in APPEND_ONLY.get(op.get_bind().dialect.name, ()):
        op.execute(statement)


def downgrade():
    for statement in DROP.get(op.get_bind().dialect.name, ()):
        op.execute(statement)
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_events_actor'))
        batch_op.drop_index(batch_op.f('ix_audit_events_action'))
    op.drop_table('audit_events')

"""Webhook secrets at rest: the columns widen for Fernet tokens, and every plaintext secret
is encrypted with the first of ENCRYPTION_KEYS (`paymentapp/crypto.py`). Downgrading
decrypts them again.

Revision ID: 0011_encrypted_webhook_secrets
Revises: 0010_api_key_scopes
Create Date: 2026-12-02
"""

from alembic import op
import sqlalchemy as sa

from paymentapp import crypto


# revision identifiers, used by Alembic.
revision = "0011_encrypted_webhook_secrets"
down_revision = "0010_api_key_scopes"
branch_labels = None
depends_on = None

COLUMNS = ("secret", "previous_secret")


def _recode(change) -> None:
    """Rewrite every stored secret with `change` (run in the app's context: Flask-Migrate
    runs migrations with it, so ENCRYPTION_KEYS is the app's)."""
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, secret, previous_secret FROM webhook_endpoints"))
    for row in rows.mappings().all():
        values = {name: change(row[name]) if row[name] is not None else None for name in COLUMNS}
        bind.execute(
            sa.text(
                "UPDATE webhook_endpoints SET secret = :secret, "
                "previous_secret = :previous_secret WHERE id = :id"
            ),
            {**values, "id": row["id"]},
        )


def upgrade():
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        for name in COLUMNS:
            batch_op.alter_column(
                name, existing_type=sa.String(length=128), type_=sa.String(length=512)
            )
    _recode(crypto.rotated)


def downgrade():
    _recode(crypto.decrypt)
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        for name in COLUMNS:
            batch_op.alter_column(
                name, existing_type=sa.String(length=512), type_=sa.String(length=128)
            )

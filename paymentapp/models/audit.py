"""The audit log: one row per thing a person, a merchant key or the CLI did (sign-ins,
keys, webhooks, money by hand, reviews, settings), written by `paymentapp/audit.py`.

Append-only in the database itself: a trigger refuses every UPDATE and DELETE of a row,
whoever sends it (migration 0014 makes the same triggers; `create_all` gets them from
the listeners below). The orders' own timelines (`OrderEvent`) stay where they are.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DDL, Integer, String, Text, event
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .base import UTCDateTime, utcnow


class AuditEvent(db.Model):
    """Who (`actor`, `role`, `address`) did what (`action`, `summary`, `changes`: JSON
    of what changed, never a secret) to what (`target`), and when."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    # an admin's username, `key:<name>` for a merchant API key, `cli` or `system`
    actor: Mapped[str] = mapped_column(String(120), nullable=False, index=True)
    role: Mapped[str | None] = mapped_column(String(16))  # viewer/operator/owner, api_key
    address: Mapped[str | None] = mapped_column(String(64))  # the client's, after ProxyFix
    action: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    target: Mapped[str | None] = mapped_column(String(120))  # ORD-…, pay_…, pk_…, we_…
    summary: Mapped[str] = mapped_column(String(500), nullable=False)
    changes: Mapped[str | None] = mapped_column(Text)


# The append-only triggers, per dialect (a copy of these lives in migration 0014).
APPEND_ONLY = {
    "postgresql": (
        "CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN "
        "RAISE EXCEPTION 'audit_events is append-only (% refused)', TG_OP; "
        "END $$",
        "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events "
        "FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()",
    ),
    "sqlite": (
        "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events "
        "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only (UPDATE refused)'); END",
        "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events "
        "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only (DELETE refused)'); END",
    ),
}

for _dialect, _statements in APPEND_ONLY.items():
    for _sql in _statements:
        # DDL formats its text with %: the one literal % (PL/pgSQL's placeholder) doubled
        event.listen(
            AuditEvent.__table__,
            "after_create",
            DDL(_sql.replace("%", "%%")).execute_if(dialect=_dialect),
        )
event.listen(
    AuditEvent.__table__,
    "after_drop",
    DDL("DROP FUNCTION IF EXISTS audit_events_append_only()").execute_if(dialect="postgresql"),
)

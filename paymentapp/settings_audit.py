"""Setting changes in the audit log (`settings.changed`).

Settings are environment variables: nobody changes one inside the app, a process starts
with other values. So, once per process, the settings that decide who may do what and
where money goes (`WATCHED`) are compared with what the last `settings.changed` event
left, and a difference is recorded, by `system`, with each changed name's old and new
value. Secrets are not watched (nor shown): a value is never a secret here.

It runs as a step of the reconciler's pass, not at every process start: the reconciler
always runs (a process of its own in production, a greenlet of the web worker under
`make run`), its loop survives a failed pass (a database not reachable yet, a
migration not run: it tries again on the next pass), a web worker's boot never waits on
the database for it, and a test's app (one per test) is left alone: tests call
`record_settings` themselves. Cheap: one indexed query per process once it succeeded.
"""

from __future__ import annotations

import hashlib
import json
import logging

from flask import current_app
from sqlalchemy import inspect, select, text

from . import audit
from .extensions import db
from .models import AuditEvent
from .payments.reconcile import PassReport, after_each_pass

log = logging.getLogger(__name__)
ACTION = "settings.changed"
WATCHED = (
    "MPESA_ENV",
    "MPESA_SHORTCODE",
    "MPESA_PARTY_B",
    "MPESA_TRANSACTION_TYPE",
    "MPESA_C2B_SHORTCODE",
    "MPESA_C2B_VALIDATION",
    "MPESA_B2C_SHORTCODE",
    "MPESA_B2C_COMMAND_ID",
    "MPESA_INITIATOR_NAME",
    "MPESA_RECEIPT_CHECKS",
    "MPESA_CALLBACK_ALLOWED_IPS",
    "APPROVALS",
    "MPESA_QR",
    "PUBLIC_BASE_URL",
    "CORS_ALLOWED_ORIGINS",
    "TRUSTED_PROXY_HOPS",
    "PAYMENT_ADDRESS_RATE_LIMIT",
    "PAYMENT_PROMPTS_PER_ORDER",
    "PAYMENT_PROMPT_WINDOW_S",
    "PAYMENT_PHONE_COOLDOWN_S",
    "ADMIN_LOGIN_RATE_LIMIT",
    "ADMIN_IDLE_TIMEOUT_S",
    "ADMIN_SESSION_MAX_AGE_S",
    "WEBHOOK_ALLOW_PRIVATE",
    "METRICS_ALLOWED_IPS",
    "DEMO_SHOP",
)
# PostgreSQL: processes starting together compare and record one after another
LOCK_KEY = 0x5E77_1265
_recorded_in_this_process = False


def snapshot(config) -> dict:
    """The watched settings as JSON values (a setting this version lacks is left out)."""
    return {name: _plain(config[name]) for name in WATCHED if name in config}


def _plain(value):
    if isinstance(value, list | tuple | set | frozenset):
        return [str(item) for item in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def fingerprint(values: dict) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def record_settings() -> AuditEvent | None:
    """Record `settings.changed` if the watched settings differ from the last recorded
    (the first time: all of them); commits. Returns the event, or None (no change, or no
    audit table yet: before `flask db upgrade`)."""
    if not inspect(db.engine).has_table(AuditEvent.__tablename__):
        return None
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
    now = snapshot(current_app.config)
    mark = fingerprint(now)
    last = db.session.scalar(audit.events(action=ACTION).limit(1))
    if last is not None and last.target == mark:
        db.session.rollback()
        return None
    before = _recorded_values()
    changed = {
        name: [before.get(name), now.get(name)]
        for name in sorted(before.keys() | now.keys())
        if before.get(name) != now.get(name)
    }
    if before and not changed:  # only settings without a value came or went
        db.session.rollback()
        return None
    summary = (
        f"settings changed: {', '.join(changed)}"
        if before
        else f"settings first recorded ({len(now)} watched)"
    )
    audit.record(ACTION, summary, target=mark, changes=changed, actor="system")
    db.session.commit()
    return db.session.scalar(audit.events(action=ACTION).limit(1))


def _recorded_values() -> dict:
    """The watched settings as the earlier `settings.changed` events left them (each
    holds what it changed: old and new)."""
    values: dict = {}
    query = select(AuditEvent.changes).where(AuditEvent.action == ACTION).order_by(AuditEvent.id)
    for changes in db.session.scalars(query):
        for name, (_old, new) in json.loads(changes or "{}").items():
            values[name] = new
    return values


@after_each_pass
def record_settings_once(report: PassReport) -> None:
    """The reconciler's step: `record_settings` once per process (a test app: never); a
    failure is tried again on the next pass, and never stops this one."""
    global _recorded_in_this_process
    if _recorded_in_this_process or current_app.testing:
        return
    try:
        record_settings()
    except Exception:  # noqa: BLE001 - the payments come first; the next pass tries again
        db.session.rollback()
        log.warning(
            "settings not compared yet", exc_info=True, extra={"event": "audit.settings_unchecked"}
        )
        return
    _recorded_in_this_process = True

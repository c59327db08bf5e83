"""The audit log: who did what to money, people, keys, webhooks and settings, and from where.

`record(action, summary, …)` appends one `AuditEvent` to the session. Services call it
just before their commit, so the row commits (or rolls back) with the change it
describes, and its log line (logger `paymentapp.audit`, `event=audit.<action>`) is
written once that commit has happened (`outbox.action_audited`). Who acted, when not
given: in a request, the signed-in admin (found as `admin/auth.py` registered with
`people_found_by`, so this module needs nothing of the dashboard), else the merchant
API key the request authenticated (`g.api_key`, set by `security.authenticate_api_key`),
else `system`; outside a request, `cli` under a `flask` command and `system` in a
background loop.

Nothing secret goes in: a `changes` key named like a secret is dropped, and every text
passes the log's redaction (`logs.redact`: known secrets, callback tokens, `token=`)
with phone numbers masked. The table refuses UPDATE and DELETE (`models/audit.py`).

Read by the dashboard's Audit log page and its CSV (`admin/routes/audit.py`), and by
`flask --app wsgi audit tail [-n 20] [--follow]` (here).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

import click
from flask import g, has_request_context, request
from sqlalchemy import func, select

from .extensions import db
from .logs import redact
from .models import AuditEvent, utcnow
from .outbox import action_audited
from .phones import mask_phone, mask_phones_in

log = logging.getLogger(__name__)

# a `changes` key holding any of these is dropped, at any depth
SECRET_NAMES = ("secret", "password", "token", "key_hash", "credential", "passkey")
FOLLOW_INTERVAL_S = 2.0
# how a request's signed-in person is found: (name, role) or None (`people_found_by`)
_PEOPLE: list[Callable[[], tuple[str, str] | None]] = []


def people_found_by(finder: Callable[[], tuple[str, str] | None]):
    """Register how the person signed in to this request is found (the dashboard's
    `admin/auth.py` does, at import): `finder()` gives their (name, role), or None."""
    _PEOPLE[:] = [finder]
    return finder


def record(
    action: str,
    summary: str,
    *,
    target: str | None = None,
    changes: dict | None = None,
    actor: str | None = None,
    role: str | None = None,
) -> None:
    """Append one event to the session; it commits with the change it describes.
    `changes`: what changed, `{"role": ["operator", "owner"]}` (a two-item list is
    always old and new) or `{"amount": 500}`."""
    if actor is None:
        actor, role = _who()
    address = request.remote_addr if has_request_context() else None
    row = {
        "at": utcnow(),
        "actor": _clean(actor)[:120],
        "role": str(role)[:16] if role else None,
        "address": (address or "")[:64] or None,
        "action": action[:64],
        "target": _clean(target)[:120] if target else None,
        "summary": _clean(summary)[:500],
        "changes": json.dumps(scrub(changes), sort_keys=True, ensure_ascii=False, default=str)
        if changes
        else None,
    }
    extra = {
        "event": f"audit.{action}",
        **{name: row[name] for name in ("actor", "role", "address", "target", "changes")},
    }
    action_audited(db.session, row, lambda: log.info(row["summary"], extra=extra))


def _who() -> tuple[str, str | None]:
    """The actor and role a request (or a command) stands for."""
    if not has_request_context():
        return ("cli" if click.get_current_context(silent=True) else "system"), None
    for finder in _PEOPLE:
        person = finder()
        if person is not None:
            return person
    key = g.get("api_key")
    if key is not None:
        return f"key:{key.name}", "api_key"
    return "system", None


def _clean(text: str) -> str:
    return mask_phones_in(redact(str(text)))


def scrub(value, name: str = ""):
    """`changes` as stored: keys named like a secret dropped, texts redacted, phones (a
    `…phone` key's value, any 2547… number) masked, at any depth."""
    if isinstance(value, dict):
        return {
            str(key): scrub(item, str(key))
            for key, item in value.items()
            if not any(word in str(key).lower() for word in SECRET_NAMES)
        }
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [scrub(item, name) for item in items]
    if isinstance(value, str):
        return mask_phone(value) if name.lower().endswith("phone") else _clean(value)
    return value


def events(action: str = "", actor: str = ""):
    """The events, newest first; `action` a prefix (`webhook.` or `webhook`), `actor`
    exact."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc())
    if action:
        query = query.where(AuditEvent.action.startswith(action, autoescape=True))
    if actor:
        query = query.where(AuditEvent.actor == actor)
    return query


def page(action: str, actor: str, number: int, size: int) -> tuple[list[AuditEvent], int, int]:
    """One page of `events(action, actor)`: `(events, page, page_count)`; a page past
    the last is the last."""
    query = events(action, actor)
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    page_count = max(1, -(-total // size))
    number = min(max(number, 1), page_count)
    return (
        list(db.session.scalars(query.limit(size).offset((number - 1) * size))),
        number,
        page_count,
    )


def actions_seen() -> list[str]:
    """Every action the log holds (the page's filter offers them)."""
    return list(
        db.session.scalars(select(AuditEvent.action).distinct().order_by(AuditEvent.action))
    )


def line(event: AuditEvent) -> str:
    """One event on one line: time (UTC), actor, role, address, action, target, summary."""
    cells = (
        event.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        event.actor,
        event.role,
        event.address,
        event.action,
        event.target,
        event.summary,
    )
    return "  ".join(cell or "-" for cell in cells)


audit_cli = click.Group("audit", help="The audit log (append-only).")


@audit_cli.command("tail")
@click.option("-n", "count", default=20, show_default=True, help="How many of the newest.")
@click.option("--follow", is_flag=True, help="Keep printing new events (every 2 s).")
def tail(count: int, follow: bool) -> None:
    """Print the newest events, oldest first; with --follow, new ones as they come."""
    newest = list(db.session.scalars(events().limit(max(count, 0))))
    for event in reversed(newest):
        click.echo(line(event))
    if follow:
        after = newest[0].id if newest else 0
        try:
            follow_from(after)
        except KeyboardInterrupt:
            pass


def follow_from(
    after: int, interval: float = FOLLOW_INTERVAL_S, stop: Callable[[], bool] = lambda: False
) -> int:
    """Print every event newer than id `after` as it comes, polling every `interval`
    seconds until `stop()`; returns the last id printed."""
    while not stop():
        db.session.rollback()  # a fresh snapshot: see what others committed meanwhile
        query = select(AuditEvent).where(AuditEvent.id > after).order_by(AuditEvent.id)
        for event in db.session.scalars(query):
            click.echo(line(event))
            after = event.id
        time.sleep(interval)
    return after

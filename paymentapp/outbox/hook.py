"""The commit hook: what a transaction changed, written and announced once it commits.

A transition says which order changed (`order_changed`), inside its transaction. Just
before that transaction commits, the effects are prepared from the objects in memory;
once it has committed, they are dispatched; a rollback drops them. So an emit never
announces a state that was not committed, and nothing is read back after the commit.

The effects: the `payment_update` emit (and `order_created` to admins) after the commit,
and the merchant webhooks' outbox rows (`webhooks/events.py`), written in `before_commit`:
still inside the transaction, so a committed change always has its events and a
rolled-back one never.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import event
from sqlalchemy.orm import Session

from ..faults import fault_point
from ..models.records import READ, take_read
from ..realtime.emit import order_created_payload, order_update_payload, send
from .events import outbox_rows, webhook_events
from .updates import take_updates
from .writer import write_appended

CHANGED = "paymentapp.effects.changed"
READY = "paymentapp.effects.ready"
LOGGED = "paymentapp.effects.logged"
FAULT = "paymentapp.effects.fault"


@dataclass
class Pending:
    """What this transaction changed, collected until it commits."""

    orders: dict = field(default_factory=dict)  # order id → Order, to announce
    changed: set = field(default_factory=set)  # order ids whose version was bumped
    created: dict = field(default_factory=dict)  # order id → Order, new this transaction
    # (order, webhook event or None, payment, refund)
    transitions: list = field(default_factory=list)
    audit: list = field(default_factory=list)  # OrderEvent rows (writer.py)
    record: dict | None = None  # a stored callback's outcome (writer.py)
    targeted: list = field(default_factory=list)  # events for named endpoints only
    deliveries: list = field(default_factory=list)  # (event id, endpoint id), explicit
    actions: list = field(default_factory=list)  # AuditEvent rows (`paymentapp/audit.py`)
    logs: list = field(default_factory=list)  # their log lines, written after the commit


def _pending(session: Session) -> Pending:
    info = session.info
    pending = info.get(CHANGED)
    if pending is None:  # not `setdefault`: it would build a Pending on every call
        pending = info[CHANGED] = Pending()
    return pending


def order_changed(session: Session, order) -> bool:
    """Announce `order` after the commit; True the first time in this transaction (the
    caller bumps `version` then: one committed change is one version)."""
    pending = _pending(session)
    pending.orders[order.id] = order
    if order.id in pending.changed:
        return False
    pending.changed.add(order.id)
    return True


def transitioned(session: Session, order, webhook: str | None, payment=None, refund=None) -> None:
    """Record a transition and the webhook event its kind sends (None: none), for the
    outbox."""
    _pending(session).transitions.append((order, webhook, payment, refund))


def audited(session: Session, row: dict) -> None:
    """Write this `OrderEvent` row just before the commit, in one statement with the
    transaction's other appended rows (`writer.py`)."""
    _pending(session).audit.append(row)


def action_audited(session: Session, row: dict, log_line: Callable[[], None]) -> None:
    """Write this `audit_events` row (`paymentapp/audit.py`) just before the commit, and
    call `log_line()` once the transaction has committed."""
    pending = _pending(session)
    pending.actions.append(row)
    pending.logs.append(log_line)


def callback_outcome(session: Session, values: dict) -> None:
    """Write a stored callback record's outcome (`writer.RECORD_COLUMNS` and its id) just
    before the commit, with the transaction's other appended rows."""
    _pending(session).record = values


def event_for(session: Session, row: dict, endpoint_ids) -> None:
    """Append a webhook event row (`events.event_body`) delivered to these endpoints
    only, not to every endpoint that wants its type (the dashboard's "send test")."""
    pending = _pending(session)
    pending.targeted.append(row)
    pending.deliveries.extend((row["id"], endpoint_id) for endpoint_id in endpoint_ids)


def redeliver(session: Session, event_id: str, endpoint_ids) -> None:
    """Append a new delivery of an existing event to each of these endpoints (a resend)."""
    _pending(session).deliveries.extend((event_id, endpoint_id) for endpoint_id in endpoint_ids)


def announce(session: Session, order) -> None:
    """Re-send `order`'s snapshot after the commit, unchanged (a duplicate callback: the
    process that applied the first copy may have died before its emit)."""
    _pending(session).orders[order.id] = order


def order_created(session: Session, order) -> None:
    """Tell admin dashboards about a new order once this transaction commits."""
    _pending(session).created[order.id] = order


@event.listens_for(Session, "before_commit")
def _prepare(session: Session) -> None:
    """Inside the transaction: write the audit and webhook outbox rows, build the emit
    payloads."""
    pending = session.info.pop(CHANGED, None)
    records = take_read(session)  # read under a lock (`models/records.py`)
    if not pending and not records:
        return
    pending = pending or Pending()
    # the changed orders and payments go in the appended statement below (`updates.py`),
    # the flush writes the rest; defaults such as created_at are filled in by the flush
    updates = take_updates(session, records)
    session.flush()
    events = outbox_rows(webhook_events(pending.created.values(), pending.transitions))
    write_appended(
        session,
        events,
        pending.audit,
        pending.record,
        targeted=pending.targeted,
        deliveries=pending.deliveries,
        actions=pending.actions,
        updates=updates,
    )
    session.info[LOGGED] = pending.logs
    session.info[READY] = [
        ("order_created", order_created_payload(order)) for order in pending.created.values()
    ] + [("payment_update", order_update_payload(order)) for order in pending.orders.values()]


def fault_before_effects(session: Session, point: str) -> None:
    """Tests only: reach fault point `point` between this transaction's commit and its
    effects (`faults.py`), to kill a process exactly there."""
    session.info[FAULT] = point


@event.listens_for(Session, "after_commit")
def _dispatch(session: Session) -> None:
    point = session.info.pop(FAULT, None)
    ready = session.info.pop(READY, None)
    for log_line in session.info.pop(LOGGED, ()):
        log_line()
    if not ready:
        return
    if point:
        fault_point(point)
    for name, payload in ready:
        send(name, payload)


@event.listens_for(Session, "after_rollback")
def _drop(session: Session) -> None:
    for key in (CHANGED, READY, LOGGED, FAULT, READ):
        session.info.pop(key, None)

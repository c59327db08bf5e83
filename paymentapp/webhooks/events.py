"""The event catalogue, and the outbox: event rows written in the transaction of the
change that causes them, with a delivery row for every endpoint that wants them.

`effects.py` calls `write_outbox` from SQLAlchemy's `before_commit`, so a committed
payment always has its events and a rolled-back one never does. Events from one commit
carry the same order `version` and the same snapshot.
"""

from __future__ import annotations

import json
from functools import cache

from sqlalchemy import bindparam, func, insert, literal, or_, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from ..models import (
    DeliveryStatus,
    Order,
    OrderEvent,
    UTCDateTime,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    new_id,
    utcnow,
)

# event type → what it means (docs/webhooks.md has examples)
CATALOGUE = {
    "order.created": "an order was created",
    "order.paid": "an order is paid: fulfil it",
    "order.cancelled": "an order was cancelled",
    "payment.failed": "a payment attempt failed, was cancelled or timed out (reason, result code)",
    "payment.needs_review": "a payment was flagged for an admin (wrong amount, late, …)",
}
# audit kinds of `payments/states.py` transitions → event types
FROM_TRANSITION = {
    "order_paid": "order.paid",
    "order_cancelled": "order.cancelled",
    "payment_failed": "payment.failed",
    "payment_cancelled": "payment.failed",
    "payment_timeout": "payment.failed",
    "payment_review": "payment.needs_review",
}


def order_snapshot(order: Order) -> dict:
    """The order as the merchant API returns it (with payments), phone numbers masked."""
    from ..orders.schemas import order_json
    from ..phones import mask_phone

    data = order_json(order, with_payments=True)
    data["customer_phone"] = mask_phone(data["customer_phone"])
    for payment in data["payments"]:
        payment["phone"] = mask_phone(payment["phone"])
        payment["paid_phone"] = mask_phone(payment.get("paid_phone"))
    return data


def wants(endpoint: WebhookEndpoint, event_type: str) -> bool:
    listed = {e.strip() for e in endpoint.events.split(",")}
    return "*" in listed or event_type in listed


def webhook_events(created, transitions) -> list[tuple[Order, str, dict]]:
    """The events of one transaction: new orders, then its transitions in order."""
    events = [(order, "order.created", {}) for order in created]
    for order, kind, payment in transitions:
        event_type = FROM_TRANSITION.get(kind)
        if event_type is None:
            continue
        extra = {}
        if payment is not None:
            extra["payment_id"] = payment.id
            if event_type == "payment.failed":
                extra.update(reason=payment.result_desc, result_code=payment.result_code)
            elif event_type == "payment.needs_review":
                extra["reason"] = payment.review_reason
        events.append((order, event_type, extra))
    return events


def event_body(event_type: str, data: dict, now, order: Order | None = None) -> dict:
    """An event row's values, holding the exact JSON body every delivery of it sends."""
    event_id = new_id("evt")
    body = {
        "id": event_id,
        "type": event_type,
        "created_at": now.isoformat().replace("+00:00", "Z"),
        "data": data,
    }
    return {
        "id": event_id,
        "type": event_type,
        "order_id": order.id if order else None,
        "version": order.version if order else None,
        "payload": json.dumps(body, separators=(",", ":"), sort_keys=True),
        "created_at": now,
    }


def new_event(event_type: str, data: dict, now, order: Order | None = None) -> WebhookEvent:
    """An event row (`event_body`) as an ORM object."""
    return WebhookEvent(**event_body(event_type, data, now, order))


def _deliveries_for(new_events):
    """INSERT a pending delivery of each of `new_events` (id, type) for every live
    endpoint that wants its type (`wants`, in SQL: the endpoint's comma list holds the
    type or `*`), due at `:now`. The statement reads the endpoints itself: no query
    before it."""
    listed = literal(",") + func.replace(WebhookEndpoint.events, " ", "") + literal(",")
    now = bindparam("now", type_=UTCDateTime)
    wanted = select(
        new_events.c.id,
        WebhookEndpoint.id,
        literal(DeliveryStatus.PENDING.value),
        literal(0),
        now,
        now,
    ).where(
        WebhookEndpoint.enabled.is_(True),
        WebhookEndpoint.deleted_at.is_(None),
        or_(listed.like("%,*,%"), listed.like(literal("%,") + new_events.c.type + literal(",%"))),
    )
    return insert(WebhookDelivery.__table__).from_select(
        ["event_id", "endpoint_id", "status", "attempts", "next_attempt_at", "created_at"],
        wanted,
    )


EVENT_COLUMNS = ("id", "type", "order_id", "version", "payload", "created_at")
AUDIT_COLUMNS = ("order_id", "payment_id", "kind", "detail", "actor", "created_at")


def _insert_arrays(model, columns: tuple[str, ...], prefix: str):
    """`INSERT INTO <model> (columns) SELECT * FROM unnest(:prefix_column, …)`: any number
    of rows, passed as one array per column, in one statement that compiles once."""
    table = model.__table__
    arrays = (
        func.unnest(
            *(bindparam(f"{prefix}_{name}", type_=ARRAY(table.c[name].type)) for name in columns)
        )
        .table_valued(*columns)
        .render_derived(name=f"{prefix}_rows")
    )
    return insert(table).from_select(list(columns), select(*arrays.c))


@cache
def _append_statement(with_events: bool, with_audit: bool):
    """PostgreSQL: the transaction's audit rows, its webhook events and their deliveries
    as one statement (data-modifying CTEs), built once per shape."""
    statement = None
    if with_events:
        new_events = (
            _insert_arrays(WebhookEvent, EVENT_COLUMNS, "event")
            .returning(WebhookEvent.__table__.c.id, WebhookEvent.__table__.c.type)
            .cte("new_events")
        )
        statement = _deliveries_for(new_events)
    if with_audit:
        audit = _insert_arrays(OrderEvent, AUDIT_COLUMNS, "audit")
        statement = audit if statement is None else statement.add_cte(audit.cte("new_audit"))
    return statement


def _as_arrays(rows: list[dict], columns: tuple[str, ...], prefix: str) -> dict:
    return {f"{prefix}_{name}": [row[name] for row in rows] for name in columns}


def write_outbox(
    session: Session, events: list[tuple[Order, str, dict]], audit: list[dict] = ()
) -> list[str]:
    """Write one event row per (order, type, extra), the due deliveries, and `audit` (the
    transaction's `OrderEvent` rows); returns the event ids.

    On PostgreSQL this is one statement, whatever the number of rows: one round trip in
    the commit of every payment change. Elsewhere, one per table.
    """
    now = utcnow()
    snapshots: dict[str, dict] = {}
    rows = [
        event_body(
            event_type,
            {"order": snapshots.setdefault(order.id, order_snapshot(order)), **extra},
            now,
            order,
        )
        for order, event_type, extra in events
    ]
    audit = list(audit)
    if not rows and not audit:
        return []
    if session.get_bind().dialect.name == "postgresql":
        params = {
            "now": now,
            **_as_arrays(rows, EVENT_COLUMNS, "event"),
            **_as_arrays(audit, AUDIT_COLUMNS, "audit"),
        }
        session.execute(_append_statement(bool(rows), bool(audit)), params)
        return [row["id"] for row in rows]
    if audit:
        session.execute(insert(OrderEvent.__table__), audit)
    if rows:
        session.execute(insert(WebhookEvent.__table__), rows)
        new_events = (
            select(WebhookEvent.id, WebhookEvent.type)
            .where(WebhookEvent.id.in_([row["id"] for row in rows]))
            .subquery()
        )
        session.execute(_deliveries_for(new_events), {"now": now})
    return [row["id"] for row in rows]


TEST_EVENT = "endpoint.test"


def send_test_event(endpoint: WebhookEndpoint, session: Session) -> WebhookEvent:
    """An `endpoint.test` event for this endpoint alone (the dashboard's "send test")."""
    now = utcnow()
    event = new_event(TEST_EVENT, {"endpoint_id": endpoint.id}, now)
    session.add(event)
    session.add(
        WebhookDelivery(
            event=event,
            endpoint_id=endpoint.id,
            status=DeliveryStatus.PENDING,
            next_attempt_at=now,
        )
    )
    session.commit()
    return event

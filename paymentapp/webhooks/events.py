"""The event catalogue, and the outbox: event rows written in the transaction of the
change that causes them, with a delivery row for every endpoint that wants them.

`effects.py` builds the rows (`outbox_rows`) in SQLAlchemy's `before_commit` and
`appends.py` writes them with their deliveries (`deliveries_for`), so a committed payment
always has its events and a rolled-back one never does. Events from one commit carry the
same order `version` and the same snapshot.
"""

from __future__ import annotations

import json

from sqlalchemy import bindparam, func, insert, literal, or_, select
from sqlalchemy.orm import Session

from ..models import (
    DeliveryStatus,
    Order,
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
    "payment.refunded": "money was given back from a payment (this refund's amount and "
    "reason, and the payment's amount_refunded in all)",
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


def webhook_events(created, transitions) -> list[tuple[Order, str, dict]]:
    """The events of one transaction: new orders, then its transitions in order, each
    with the event type its kind declares (`payments/states.py`, TRANSITIONS)."""
    events = [(order, "order.created", {}) for order in created]
    for order, event_type, payment in transitions:
        if event_type is None:
            continue
        extra = {}
        if payment is not None:
            extra["payment_id"] = payment.id
            if event_type == "payment.failed":
                extra.update(reason=payment.result_desc, result_code=payment.result_code)
            elif event_type == "payment.needs_review":
                extra["reason"] = payment.review_reason
            elif event_type == "payment.refunded":
                refund = payment.refunds[-1]  # the refund this transaction recorded
                extra.update(
                    refund_id=refund.id,
                    amount=refund.amount,
                    reason=refund.reason,
                    amount_refunded=payment.refunded_amount,
                )
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


def deliveries_for(new_events):
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


def outbox_rows(events: list[tuple[Order, str, dict]]) -> list[dict]:
    """The `webhook_events` rows of one transaction's (order, type, extra) events; events
    of one order share its snapshot."""
    now = utcnow()
    snapshots: dict[str, dict] = {}
    return [
        event_body(
            event_type,
            {"order": snapshots.setdefault(order.id, order_snapshot(order)), **extra},
            now,
            order,
        )
        for order, event_type, extra in events
    ]


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

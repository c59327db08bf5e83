"""The event catalogue, and the outbox: event rows written in the transaction of the
change that causes them, with a delivery row for every endpoint that wants them.

`effects.py` calls `write_outbox` from SQLAlchemy's `before_commit`, so a committed
payment always has its events and a rolled-back one never does. Events from one commit
carry the same order `version` and the same snapshot.
"""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import (
    DeliveryStatus,
    Order,
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


def new_event(event_type: str, data: dict, now, order: Order | None = None) -> WebhookEvent:
    """An event row holding the exact JSON body every delivery of it sends."""
    event_id = new_id("evt")
    body = {
        "id": event_id,
        "type": event_type,
        "created_at": now.isoformat().replace("+00:00", "Z"),
        "data": data,
    }
    return WebhookEvent(
        id=event_id,
        type=event_type,
        order_id=order.id if order else None,
        version=order.version if order else None,
        payload=json.dumps(body, separators=(",", ":"), sort_keys=True),
        created_at=now,
    )


def write_outbox(session: Session, events: list[tuple[Order, str, dict]]) -> list[WebhookEvent]:
    """Write one `WebhookEvent` per (order, type, extra) and its due deliveries."""
    endpoints = list(
        session.scalars(
            select(WebhookEndpoint).where(
                WebhookEndpoint.enabled.is_(True), WebhookEndpoint.deleted_at.is_(None)
            )
        )
    )
    now = utcnow()
    written = []
    snapshots: dict[str, dict] = {}
    for order, event_type, extra in events:
        snapshot = snapshots.setdefault(order.id, order_snapshot(order))
        event = new_event(event_type, {"order": snapshot, **extra}, now, order)
        session.add(event)
        for endpoint in endpoints:
            if wants(endpoint, event_type):
                session.add(
                    WebhookDelivery(
                        event=event,
                        endpoint_id=endpoint.id,
                        status=DeliveryStatus.PENDING,
                        next_attempt_at=now,
                    )
                )
        written.append(event)
    return written


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

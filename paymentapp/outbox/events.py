"""The webhook events of one transaction: their rows (each holding the exact JSON body
every delivery sends) and the SQL that gives each a delivery for every live endpoint
that wants its type. Events from one commit carry the same order `version` and the same
snapshot (the committed one: the hook builds them after the flush that bumped it).
"""

from __future__ import annotations

import json

from sqlalchemy import bindparam, func, insert, literal, or_, select

from ..models import (
    DeliveryStatus,
    Order,
    UTCDateTime,
    WebhookDelivery,
    WebhookEndpoint,
    new_id,
    utcnow,
)
from ..orders.schemas import order_json
from ..phones import masked_payload


def order_snapshot(order: Order) -> dict:
    """The order as the merchant API returns it (with payments), phone numbers masked."""
    return masked_payload(order_json(order, with_payments=True))


def webhook_events(created, transitions) -> list[tuple[Order, str, dict]]:
    """The events of one transaction: new orders, then its transitions in order, each
    with the event type its kind declares (`payments/states.py`, TRANSITIONS)."""
    events = [(order, "order.created", {}) for order in created]
    for order, event_type, payment, refund in transitions:
        if event_type is None:
            continue
        extra = {}
        if refund is not None:  # refund.pending, refund.succeeded, refund.failed
            extra.update(
                refund_id=refund.id,
                method=refund.method,
                amount=refund.amount,
                reason=refund.reason,
                status=refund.status,
                result_desc=refund.result_desc,
            )
        if payment is not None:
            extra["payment_id"] = payment.id
            if event_type == "payment.failed":
                extra.update(reason=payment.result_desc, result_code=payment.result_code)
            elif event_type == "payment.needs_review":
                extra["reason"] = payment.review_reason
            elif event_type == "refund.succeeded":
                extra["amount_refunded"] = payment.refunded_amount
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
    rows = []
    for order, event_type, extra in events:
        if order.id not in snapshots:  # built once per order, not once per event
            snapshots[order.id] = order_snapshot(order)
        rows.append(event_body(event_type, {"order": snapshots[order.id], **extra}, now, order))
    return rows

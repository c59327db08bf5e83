"""The event catalogue, and the events sent outside a payment change (the dashboard's
"send test"). The events of a payment change are built and written by the commit hook
(`paymentapp/outbox/`), in the transaction of the change that causes them.

`outbox/hook.py` builds the rows (`outbox_rows`) in SQLAlchemy's `before_commit` and
`outbox/writer.py` writes them with their deliveries (`deliveries_for`), so a committed payment
always has its events and a rolled-back one never does. Events from one commit carry the
same order `version` and the same snapshot.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from .. import audit
from ..models import (
    Order,
    WebhookEndpoint,
    WebhookEvent,
    utcnow,
)
from ..outbox import event_for
from ..outbox.events import event_body

# event type → what it means (docs/webhooks.md has examples)
CATALOGUE = {
    "order.created": "an order was created",
    "order.paid": "an order is paid: fulfil it",
    "order.cancelled": "an order was cancelled",
    "payment.failed": "a payment attempt failed, was cancelled or timed out (reason, result code)",
    "payment.needs_review": "a payment was flagged for an admin (wrong amount, late, …)",
    "payment.refunded": "money was given back from a payment (this refund's amount and "
    "reason, and the payment's amount_refunded in all)",
    "refund.pending": "M-Pesa took a refund request; its result follows",
    "refund.succeeded": "M-Pesa gave the money back (the refund's amount; the payment's "
    "amount_refunded in all)",
    "refund.failed": "M-Pesa did not give the money back (its reason)",
}


def new_event(event_type: str, data: dict, now, order: Order | None = None) -> WebhookEvent:
    """An event row (`event_body`) as an ORM object."""
    return WebhookEvent(**event_body(event_type, data, now, order))


TEST_EVENT = "endpoint.test"


def send_test_event(endpoint: WebhookEndpoint, session: Session) -> WebhookEvent:
    """An `endpoint.test` event for this endpoint alone (the dashboard's "send test"),
    appended through the commit hook like every other event."""
    row = event_body(TEST_EVENT, {"endpoint_id": endpoint.id}, utcnow())
    event_for(session, row, [endpoint.id])
    audit.record(
        "webhook.test_sent",
        f"test event {row['id']} queued for {endpoint.url}",
        target=endpoint.id,
        changes={"event": row["id"]},
    )
    session.commit()
    return session.get(WebhookEvent, row["id"])

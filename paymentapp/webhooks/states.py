"""A webhook delivery's life: pending until a 2xx, given up, or cancelled; the table of
allowed moves and the one function that makes them (as `payments/states.py` does for
payments and orders)."""

from __future__ import annotations

from sqlalchemy import update

from ..errors import IllegalTransition
from ..extensions import db
from ..models import DeliveryStatus, WebhookDelivery

D = DeliveryStatus
DELIVERY_MOVES: dict[DeliveryStatus, frozenset[DeliveryStatus]] = {
    D.PENDING: frozenset({D.SUCCEEDED, D.FAILED, D.CANCELLED}),
    D.SUCCEEDED: frozenset(),
    D.FAILED: frozenset(),
    D.CANCELLED: frozenset(),
}


def move_delivery(delivery: WebhookDelivery, to: DeliveryStatus) -> None:
    """The one place a webhook delivery's status changes (checked against the table)."""
    if to not in DELIVERY_MOVES[DeliveryStatus(delivery.status)]:
        raise IllegalTransition(f"delivery {delivery.id}: {delivery.status} → {to}")
    delivery.status = to


def move_deliveries(to: DeliveryStatus, *where) -> int:
    """Move every delivery matching `where` that the table lets move to `to` (one UPDATE,
    for many rows at once: an endpoint deleted with its backlog); their claims end too.
    Returns how many moved."""
    movable = [status for status, moves in DELIVERY_MOVES.items() if to in moves]
    return db.session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.status.in_(movable), *where)
        .values(status=to, claimed_until=None)
    ).rowcount

"""What the dashboard reads about merchant webhooks: events with their deliveries and
attempts (an order's, or the last test events) and how many deliveries wait for an
endpoint. Nothing here writes; `webhook_presenters.py` shows them."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from ..extensions import db
from ..models import (
    DeliveryStatus,
    Order,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)

RECENT_TEST_EVENTS = 10


@dataclass
class WebhookHistory:
    """Events, their deliveries (each event's oldest first), the endpoints those went to
    (deleted ones included) and every attempt of each delivery (oldest first)."""

    events: list[WebhookEvent]
    deliveries: dict[str, list[WebhookDelivery]]
    endpoints: dict[str, WebhookEndpoint]
    attempts: dict[int, list[WebhookAttempt]]


def _webhook_history(events: list[WebhookEvent]) -> WebhookHistory:
    event_ids = [event.id for event in events]
    deliveries: dict[str, list[WebhookDelivery]] = {event_id: [] for event_id in event_ids}
    attempts: dict[int, list[WebhookAttempt]] = {}
    endpoints: dict[str, WebhookEndpoint] = {}
    if not event_ids:
        return WebhookHistory(events, deliveries, endpoints, attempts)
    rows = list(
        db.session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.event_id.in_(event_ids))
            .order_by(WebhookDelivery.created_at, WebhookDelivery.id)
        )
    )
    for delivery in rows:
        deliveries[delivery.event_id].append(delivery)
        attempts[delivery.id] = []
    if rows:
        endpoint_ids = {delivery.endpoint_id for delivery in rows}
        endpoints = {
            endpoint.id: endpoint
            for endpoint in db.session.scalars(
                select(WebhookEndpoint).where(WebhookEndpoint.id.in_(endpoint_ids))
            )
        }
        for attempt in db.session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(list(attempts)))
            .order_by(WebhookAttempt.at, WebhookAttempt.id)
        ):
            attempts[attempt.delivery_id].append(attempt)
    return WebhookHistory(events, deliveries, endpoints, attempts)


def order_webhooks(order: Order) -> WebhookHistory:
    """The order's webhook events, oldest first, with every delivery and attempt."""
    events = list(
        db.session.scalars(
            select(WebhookEvent)
            .where(WebhookEvent.order_id == order.id)
            .order_by(WebhookEvent.created_at, WebhookEvent.version, WebhookEvent.id)
        )
    )
    return _webhook_history(events)


def recent_test_events(limit: int = RECENT_TEST_EVENTS) -> WebhookHistory:
    """The last `endpoint.test` events sent from the dashboard (or the API), newest first."""
    events = list(
        db.session.scalars(
            select(WebhookEvent)
            .where(WebhookEvent.order_id.is_(None))
            .order_by(WebhookEvent.created_at.desc(), WebhookEvent.id)
            .limit(limit)
        )
    )
    return _webhook_history(events)


def pending_deliveries(endpoint_id: str) -> int:
    """How many deliveries to this endpoint wait to be sent (or retried)."""
    return db.session.scalar(
        select(func.count())
        .select_from(WebhookDelivery)
        .where(
            WebhookDelivery.endpoint_id == endpoint_id,
            WebhookDelivery.status == DeliveryStatus.PENDING,
        )
    )

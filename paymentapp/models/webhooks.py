"""What merchants are sent: webhook endpoints, events, deliveries and attempts; and the
demo shop's own record of what it fulfilled."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..crypto import Encrypted
from ..extensions import db
from .base import DeliveryStatus, UTCDateTime, new_id, one_of, utcnow


class WebhookEndpoint(db.Model):
    """A merchant's URL that receives signed order events (`paymentapp/webhooks/`)."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("we"))
    url: Mapped[str] = mapped_column(String(2048), nullable=False)
    # comma-separated event types, or "*" for all
    events: Mapped[str] = mapped_column(String(512), nullable=False, default="*")
    description: Mapped[str | None] = mapped_column(String(200))
    # HMAC keys: shown once; during a rotation the previous one stays valid a while.
    # Stored encrypted with ENCRYPTION_KEYS (`crypto.py`): they must be read back to sign
    secret: Mapped[str] = mapped_column(Encrypted(), nullable=False)
    previous_secret: Mapped[str | None] = mapped_column(Encrypted())
    previous_secret_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(255))
    # the first failure of the current run of failures (None: the last delivery worked)
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookEvent(db.Model):
    """One order event, written in the transaction of the change that caused it."""

    __tablename__ = "webhook_events"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("evt"))
    type: Mapped[str] = mapped_column(String(40), nullable=False)
    # None for `endpoint.test` (a test event an admin sends to one endpoint)
    order_id: Mapped[str | None] = mapped_column(ForeignKey("orders.id"), index=True)
    version: Mapped[int | None] = mapped_column(Integer)
    payload: Mapped[str] = mapped_column(Text, nullable=False)  # the exact JSON body sent
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class WebhookDelivery(db.Model):
    """One event for one endpoint: retried with back-off until a 2xx or about 3 days."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        one_of("status", DeliveryStatus, "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_events.id"), nullable=False, index=True
    )
    endpoint_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_endpoints.id"), nullable=False, index=True
    )
    status: Mapped[DeliveryStatus] = mapped_column(
        String(16), nullable=False, default=DeliveryStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # a worker holds the delivery until then (a killed worker's claim simply expires)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(255))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)

    event: Mapped[WebhookEvent] = relationship()


class WebhookAttempt(db.Model):
    """One HTTP attempt of a delivery: what the merchant's server answered, and how fast."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_deliveries.id"), nullable=False, index=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)  # the first 1,000 characters
    error: Mapped[str | None] = mapped_column(String(255))


class ShopFulfilment(db.Model):
    """The demo shop's own record: an order it fulfilled on a verified `order.paid`."""

    __tablename__ = "shop_fulfilments"

    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(32), nullable=False)
    fulfilled_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)

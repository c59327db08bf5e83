"""The one row a dashboard URL or form names: a payment, a stored callback, an API key,
a webhook event (each, or a 404), and the payment that carries an M-Pesa receipt."""

from __future__ import annotations

from sqlalchemy import select

from ..errors import NotFound
from ..extensions import db
from ..models import ApiKey, CallbackRecord, Payment, WebhookEvent


def get_payment(payment_id: str) -> Payment:
    """The payment with this id or a 404 (ids are short; a longer one is not looked up)."""
    payment = db.session.get(Payment, payment_id) if len(payment_id) <= 32 else None
    if payment is None:
        raise NotFound("No payment with this id.", code="payment_not_found")
    return payment


def payment_with_receipt(receipt: str) -> Payment | None:
    """The payment that carries this M-Pesa receipt (receipts are unique), if any."""
    receipt = (receipt or "").strip().upper()
    if not receipt or len(receipt) > 32:
        return None
    return db.session.scalar(select(Payment).where(Payment.receipt == receipt))


def get_callback(record_id: int) -> CallbackRecord:
    """The stored callback with this id or a 404."""
    record = db.session.get(CallbackRecord, record_id) if 0 < record_id < 2**31 else None
    if record is None:
        raise NotFound("No callback with this id.", code="review_not_found")
    return record


def get_api_key(key_id: int) -> ApiKey:
    """The API key with this id or a 404."""
    key = db.session.get(ApiKey, key_id)
    if key is None:
        raise NotFound("No API key with this id.", code="api_key_not_found")
    return key


def get_webhook_event(event_id: str) -> WebhookEvent:
    """The webhook event with this id or a 404."""
    event = db.session.get(WebhookEvent, event_id) if len(event_id) <= 32 else None
    if event is None:
        raise NotFound("No webhook event with this id.", code="event_not_found")
    return event

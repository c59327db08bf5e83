"""The one row a dashboard URL or form names: a payment, a stored callback, an API key,
a webhook event (each, or a 404), and the payment that carries an M-Pesa receipt."""

from __future__ import annotations

from sqlalchemy import select

from ..errors import get_or_404
from ..extensions import db
from ..models import ApiKey, CallbackRecord, Payment, WebhookEvent


def get_payment(payment_id: str) -> Payment:
    """The payment with this id or a 404 (ids are short; a longer one is not looked up)."""
    return get_or_404(Payment, payment_id, "No payment with this id.", "payment_not_found")


def payment_with_receipt(receipt: str) -> Payment | None:
    """The payment that carries this M-Pesa receipt (receipts are unique), if any."""
    receipt = (receipt or "").strip().upper()
    if not receipt or len(receipt) > 32:
        return None
    return db.session.scalar(select(Payment).where(Payment.receipt == receipt))


def get_callback(record_id: int) -> CallbackRecord:
    """The stored callback with this id or a 404."""
    return get_or_404(CallbackRecord, record_id, "No callback with this id.", "review_not_found")


def get_api_key(key_id: int) -> ApiKey:
    """The API key with this id or a 404."""
    return get_or_404(ApiKey, key_id, "No API key with this id.", "api_key_not_found")


def get_webhook_event(event_id: str) -> WebhookEvent:
    """The webhook event with this id or a 404."""
    return get_or_404(WebhookEvent, event_id, "No webhook event with this id.", "event_not_found")

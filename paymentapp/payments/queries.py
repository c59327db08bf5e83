"""Plain reads of payments, outside any lock. Decide nothing money-related on them alone:
what a decision reads is read after the order's lock (`locking.py`, e.g.
`lock_order_with_receipt`, which reads the receipt's holder in the same statement as the
order's payments)."""

from __future__ import annotations

from sqlalchemy import select

from ..extensions import db
from ..models import Payment

RECEIPT_COLUMN_WIDTH = 32  # Payment.receipt is String(32)


def payment_by_receipt(receipt: str | None) -> Payment | None:
    """The payment that carries this M-Pesa receipt (receipts are unique), if any."""
    receipt = (receipt or "").strip().upper()
    if not receipt or len(receipt) > RECEIPT_COLUMN_WIDTH:
        return None
    return db.session.scalar(select(Payment).where(Payment.receipt == receipt))

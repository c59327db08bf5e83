"""What the review queue reads: flagged payments, callbacks for unknown checkout ids,
unmatched Paybill payments, callbacks from untrusted addresses, receipts entered by hand
that M-Pesa did not confirm, how
many wait (the navigation bar's count) and what was closed lately. Nothing here writes;
`review_presenters.py` shows unmatched payments."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, func, or_, select

from ..extensions import db
from ..models import CallbackOutcome, CallbackRecord, CheckStatus, Payment, ReceiptCheck, Refund

PAYBILL_KIND = "c2b"  # a Paybill (C2B) confirmation's callback kind


def open_reviews() -> tuple[list[Payment], list[CallbackRecord], list[CallbackRecord]]:
    """Payments flagged for review, callbacks for unknown STK checkout ids, and Paybill
    payments that matched no order (each oldest first)."""
    payments = list(
        db.session.scalars(
            select(Payment).where(Payment.needs_review.is_(True)).order_by(Payment.created_at)
        )
    )

    def unknown(*where):
        return list(
            db.session.scalars(
                select(CallbackRecord)
                .where(CallbackRecord.outcome == CallbackOutcome.UNKNOWN, *where)
                .order_by(CallbackRecord.received_at, CallbackRecord.id)
                .limit(200)
            )
        )

    return (
        payments,
        unknown(CallbackRecord.kind != PAYBILL_KIND),
        unknown(CallbackRecord.kind == PAYBILL_KIND),
    )


# receipts entered by hand that M-Pesa did not confirm, not yet closed by an admin
UNCONFIRMED = (
    ReceiptCheck.status.in_((CheckStatus.MISMATCH, CheckStatus.NOT_FOUND)),
    ReceiptCheck.reviewed_at.is_(None),
)


def untrusted_callbacks() -> list[CallbackRecord]:
    """Callbacks from outside MPESA_CALLBACK_ALLOWED_IPS, stored and not applied, oldest
    first, until an admin applies or dismisses them."""
    return list(
        db.session.scalars(
            select(CallbackRecord)
            .where(CallbackRecord.outcome == CallbackOutcome.UNTRUSTED)
            .order_by(CallbackRecord.received_at, CallbackRecord.id)
            .limit(200)
        )
    )


def unconfirmed_receipts() -> list[ReceiptCheck]:
    """Receipts entered by hand that M-Pesa did not confirm (another amount or shortcode,
    or no such transaction), oldest first, until an admin closes them."""
    return list(
        db.session.scalars(
            select(ReceiptCheck).where(*UNCONFIRMED).order_by(ReceiptCheck.created_at).limit(200)
        )
    )


def open_review_count() -> int:
    """How many things wait in the review queue (the count in the navigation bar)."""
    payments = db.session.scalar(
        select(func.count()).select_from(Payment).where(Payment.needs_review.is_(True))
    )
    unknown = db.session.scalar(
        select(func.count())
        .select_from(CallbackRecord)
        .where(CallbackRecord.outcome.in_((CallbackOutcome.UNKNOWN, CallbackOutcome.UNTRUSTED)))
    )
    receipts = db.session.scalar(select(func.count()).select_from(ReceiptCheck).where(*UNCONFIRMED))
    return payments + unknown + receipts


def recently_resolved(limit: int = 20) -> list[tuple[Payment, datetime]]:
    """The last flagged payments someone closed, newest first, each with when: resolved
    with a note (`reviewed_at`), or refunded until nothing more could go back (a refund
    closes the review without accepting the money, so `reviewed_at` stays empty)."""
    last_refund = (
        select(func.max(Refund.created_at))
        .where(Refund.payment_id == Payment.id)
        .correlate(Payment)
        .scalar_subquery()
    )
    closed_at = func.coalesce(Payment.reviewed_at, last_refund)
    closed = or_(
        Payment.reviewed_at.is_not(None),
        and_(
            Payment.needs_review.is_(False),
            Payment.review_reason.is_not(None),
            Payment.refunded_amount > 0,
        ),
    )
    rows = db.session.execute(
        select(Payment, closed_at.label("closed_at"))
        .where(closed)
        .order_by(closed_at.desc(), Payment.id)
        .limit(limit)
    )
    return [(payment, at) for payment, at in rows]

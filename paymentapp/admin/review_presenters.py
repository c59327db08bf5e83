"""How the review queue shows a Paybill payment that matched no order, and what
assigning one to an order did. Plain functions; nothing here touches the database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..callbacks.c2b import parse_c2b
from ..callbacks.pipeline import MalformedCallback
from ..models import CallbackRecord, Order
from ..phones import mask_phone
from .presenters import pretty_body

UNMATCHED_PREFIX = "unmatched Paybill payment: "


@dataclass
class UnmatchedView:
    """A Paybill payment that matched no order (a `c2b` callback, outcome `unknown`)."""

    id: int
    received_at: datetime
    trans_id: str
    amount: int | None
    amount_problem: str
    account: str  # exactly as the customer typed it
    phone: str  # Daraja's masked MSISDN
    paid_at: datetime | None
    shortcode: str
    why: str
    body: str
    readable: bool


def unmatched_view(record: CallbackRecord) -> UnmatchedView:
    """An unmatched Paybill payment as the review queue shows it, read from its stored body
    (an unreadable one is still listed, with why)."""
    detail = record.detail or ""
    why = detail.removeprefix(UNMATCHED_PREFIX) if detail.startswith(UNMATCHED_PREFIX) else detail
    try:
        parsed = parse_c2b(record.body.encode())
    except MalformedCallback as exc:
        return UnmatchedView(
            id=record.id,
            received_at=record.received_at,
            trans_id=record.checkout_request_id or "",
            amount=None,
            amount_problem=str(exc),
            account="",
            phone="",
            paid_at=None,
            shortcode="",
            why=why or "unreadable",
            body=pretty_body(record.body),
            readable=False,
        )
    return UnmatchedView(
        id=record.id,
        received_at=record.received_at,
        trans_id=parsed.trans_id,
        amount=parsed.amount,
        amount_problem=parsed.amount_problem or "",
        account=parsed.account,
        phone=mask_phone(parsed.msisdn.replace("*", "•")) or "",
        paid_at=parsed.trans_time,
        shortcode=parsed.shortcode or "",
        why=why or "no order matched",
        body=pretty_body(record.body),
        readable=True,
    )


def assignment_message(order: Order, trans_id: str) -> str:
    """What assigning a Paybill payment to an order did, in one sentence."""
    payment = next((p for p in order.payments if p.receipt == trans_id), None)
    head = f"Paybill payment {trans_id}"
    if payment is None:  # its receipt was already on a payment: nothing was added
        return f"{head} was already recorded; nothing was added to {order.number}."
    head += f" (KES {payment.paid_amount or payment.amount:,})"
    if payment.needs_review:
        return f"{head} recorded on {order.number} and flagged for review: {payment.review_reason}."
    if order.status == "paid":
        return f"{head} assigned to {order.number}: the order is paid."
    return (
        f"{head} assigned to {order.number}: KES {order.amount_paid:,} received, "
        f"KES {order.amount_due:,} still due."
    )

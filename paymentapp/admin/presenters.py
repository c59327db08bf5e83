"""How the dashboard shows orders and payments, and the display rules every page shares:
local times, durations, phones (masked), raw callback bodies, an order's timeline, how
each payment came (STK Push, Paybill, by hand), refunds (what may be refunded, the reason
proposed), amounts an admin types, and the CSV export's cells.
Plain functions of what `queries.py` read; nothing here touches the database."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from ..extensions import db
from ..models import (
    Approval,
    CallbackRecord,
    Order,
    OrderEvent,
    Payment,
    ReceiptCheck,
    Refund,
    RefundReason,
)
from ..payments import b2c_refunds, money, refund_outcomes, reversals
from ..phones import mask_phone, mask_phones_in
from .queries import admin_tz


def local_time(value: datetime | None) -> str:
    """A UTC timestamp as the dashboard shows it (ADMIN_TIMEZONE)."""
    if value is None:
        return ""
    return value.astimezone(admin_tz()).strftime("%Y-%m-%d %H:%M:%S")


def duration_text(seconds: float | None) -> str:
    """`42 s`, `3 min 5 s`: how long people take to pay, for the totals card."""
    if seconds is None:
        return "—"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    return f"{whole // 60} min {whole % 60} s"


def order_phone(order: Order) -> str | None:
    """The phone to show for an order: the customer's, else the latest payer's."""
    payment = order.latest_payment
    return order.customer_phone or (payment.phone if payment else None)


def pretty_body(body: str) -> str:
    """A callback body for people: indented JSON, phone numbers masked."""
    try:
        text = json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        text = body
    return mask_phones_in(text)


# How a stored callback is named on an order's timeline, by its kind.
CALLBACK_TITLES = {"c2b": "Paybill confirmation", "c2b_validation": "Paybill validation"}


@dataclass
class TimelineEntry:
    """One line of an order's timeline on its detail page."""

    at: datetime
    kind: str  # "event" or "callback"
    title: str
    detail: str = ""
    actor: str = ""
    body: str = ""
    meta: dict = field(default_factory=dict)


def order_timeline(
    events: list[OrderEvent], callbacks: list[CallbackRecord]
) -> list[TimelineEntry]:
    """Status changes and callbacks (`queries.order_history`) interleaved in time order."""
    entries = [
        TimelineEntry(
            e.created_at, "event", e.kind.replace("_", " "), e.detail or "", e.actor or ""
        )
        for e in events
    ]
    entries += [
        TimelineEntry(
            record.received_at,
            "callback",
            f"{CALLBACK_TITLES.get(record.kind, 'callback')}: {record.outcome.replace('_', ' ')}",
            record.detail or "",
            body=pretty_body(record.body),
            meta={"id": record.id, "from": record.remote_addr or "?"},
        )
        for record in callbacks
    ]
    entries.sort(key=lambda entry: entry.at)
    return entries


def csv_cell(value) -> str:
    """A CSV cell that spreadsheets will not run as a formula (= + - @ tab CR)."""
    text = "" if value is None else str(value)
    if text and text[0] in "=+-@\t\r":
        return "'" + text
    return text


CSV_HEADER = (
    "number",
    "order_id",
    "created_at",
    "amount_kes",
    "status",
    "latest_payment_status",
    "receipt",
    "phone",
    "paid_at",
    "description",
    "reference",
    "payment_method",
    "amount_paid_kes",
    "paybill_account",
    "entered_by",
    "refunded",
    "refunded_kes",
)


def csv_row(order: Order) -> list[str]:
    """One order as a CSV row under CSV_HEADER: local times, phone masked, cells safe.

    `payment_method` names the methods of the payments that count (`stk`, `paybill`,
    `stk+paybill`), else the latest payment's; `amount_paid_kes` is what they brought net
    of refunds (`Order.amount_paid`); `paybill_account` is what the customer typed as the
    account number; `entered_by` who recorded a payment by hand; `refunded` the receipts
    (or payment ids) of the payments with a refund recorded, and `refunded_kes` how much
    went back in all (since refunds have amounts; before, `refunded` was the only column)."""
    payment = order.latest_payment
    shown = described_payments(order)
    values = (
        order.number,
        order.id,
        local_time(order.created_at),
        order.amount,
        order.status,
        payment.status if payment else "",
        next((p.receipt for p in reversed(order.payments) if p.receipt), ""),
        mask_phone(order_phone(order)),
        local_time(order.paid_at),
        order.description,
        order.reference,
        "+".join(dict.fromkeys(str(p.method) for p in shown)),
        order.amount_paid,
        " | ".join(p.account_reference for p in shown if p.account_reference),
        " | ".join(dict.fromkeys(p.entered_by for p in shown if p.entered_by)),
        " ".join(p.receipt or p.id for p in order.payments if p.refunded_amount),
        order.amount_refunded,
    )
    return [csv_cell(value) for value in values]


# -- payment methods, refunds and payments entered by hand ---------------------------------

METHOD_LABELS = {"stk": "STK Push", "paybill": "Paybill"}

# The refund reason a Record refund form proposes, from why the payment was flagged
# (`payments/states.py`, `callbacks/c2b.py`); anything else proposes "other".
REASON_FROM_REVIEW = (
    ("overpaid by", RefundReason.OVERPAYMENT),
    ("paid after the order expired", RefundReason.LATE),
    ("paid after the order was cancelled", RefundReason.LATE),
    ("order already paid", RefundReason.DUPLICATE),
)
REFUND_REASON_LABELS = {
    RefundReason.OVERPAYMENT: "Overpayment",
    RefundReason.LATE: "Paid late (order expired or cancelled)",
    RefundReason.DUPLICATE: "Duplicate (order already paid)",
    RefundReason.REQUESTED_BY_CUSTOMER: "Requested by the customer",
    RefundReason.FRAUDULENT: "Fraudulent",
    RefundReason.OTHER: "Other",
}


def method_label(payment: Payment) -> str:
    return METHOD_LABELS.get(str(payment.method), str(payment.method))


def described_payments(order: Order) -> list[Payment]:
    """The payments that say how an order was paid: those that count, else the latest."""
    counting = [p for p in order.payments if p.counts]
    if counting:
        return counting
    return [order.latest_payment] if order.payments else []


def refundable(payment: Payment) -> int:
    """How much of a payment an admin may still record as refunded (0: no Record refund
    form): the payments' own rule, `payments.money.refundable` (from a paid order only
    the overpaid part)."""
    return money.refundable(payment)


def can_reverse(payment: Payment) -> bool:
    """Show "Refund through M-Pesa" for this payment: refunds through M-Pesa are on, and
    M-Pesa can give it back now, whole by Reversal or part by B2C
    (`payments/reversals.refundable_now`)."""
    return refund_outcomes.refunds_on() and reversals.refundable_now(payment)


def mpesa_refund(payment: Payment) -> dict:
    """What the Refund through M-Pesa form offers: the most that may go back (`left`),
    whether part of it may (`partial`: B2C is on) and whether the admin must type the
    phone (`phone`: a Paybill payment, whose MSISDN Daraja masks)."""
    b2c = b2c_refunds.b2c_on()
    return {
        "left": reversals.left_to_refund(payment),
        "whole": reversals.reversible(payment),
        "partial": b2c,
        "phone": b2c and payment.method != "stk",
    }


REFUND_SAID = {
    "succeeded": "Refunded",
    "failed": "Refund failed:",
    "requested": "Refund asked of M-Pesa:",
    "pending": "Refund on its way:",
    "awaiting_approval": "Refund awaiting a second owner's approval:",
    "rejected": "Refund not approved:",
}


def refund_said(refund: Refund) -> str:
    """How the order page names a refund (before its amount), by what it has come to."""
    return REFUND_SAID.get(refund.status, refund.status)


def reversal_message(refund: Refund) -> str:
    """What the admin is told once a refund through M-Pesa was asked for."""
    if refund.status == "awaiting_approval":
        return (
            f"The refund of KES {refund.amount:,} waits for another owner's approval; it is "
            "sent to M-Pesa once approved."
        )
    if refund.status == "failed":
        return f"M-Pesa refused the refund: {refund.result_desc or 'no reason given'}."
    if refund.status == "requested":
        return (
            f"M-Pesa did not answer; the refund of KES {refund.amount:,} will be sent again "
            "shortly. It shows here once M-Pesa answers."
        )
    if refund.status == "pending" and refund.method == "b2c" and not refund.conversation_id:
        return (
            f"M-Pesa did not answer the B2C payment of KES {refund.amount:,}: it is never "
            "sent twice; M-Pesa is asked what became of it, and the answer shows here."
        )
    if refund.status == "succeeded":
        return f"M-Pesa gave back KES {refund.amount:,}."
    return f"M-Pesa is giving back KES {refund.amount:,}; the result shows here when it comes."


def default_refund_reason(payment: Payment) -> str:
    """The reason a Record refund form proposes: the one its review flag points to."""
    why = payment.review_reason or ""
    for flagged, reason in REASON_FROM_REVIEW:
        if flagged in why:
            return reason
    return RefundReason.LATE if payment.held else RefundReason.OTHER


def refund_reason_choices() -> list[tuple[str, str]]:
    """(reason, label) for the form's select, in `RefundReason`'s order."""
    return [(reason, REFUND_REASON_LABELS[reason]) for reason in RefundReason.ALL]


def refund_reason_label(reason: str) -> str:
    return REFUND_REASON_LABELS.get(reason, reason)


def proposed_message(done) -> str | None:
    """What the admin is told when an action became a proposal (None: it was done)."""
    if not isinstance(done, Approval):
        return None
    return f"Proposed: {done.summary}. It waits for another owner's approval."


def refund_message(refund: Refund | Approval, payment: Payment) -> str:
    """What Record refund did, in one sentence."""
    if isinstance(refund, Approval):
        return proposed_message(refund)
    return (
        f"KES {refund.amount:,} of payment {payment.receipt or payment.id} on "
        f"{payment.order.number} recorded as refunded (outside the app)."
    )


def parse_shillings(text: str) -> int | None:
    """An amount an admin typed: `1450`, `1,450`, `KES 1 450`, `1450.00` → 1450; else None."""
    cleaned = re.sub(r"^(KES|KSH)\s*", "", (text or "").strip().upper()).replace(",", "")
    cleaned = cleaned.replace(" ", "")
    match = re.fullmatch(r"([0-9]{1,9})(?:\.0{1,2})?", cleaned)
    return int(match.group(1)) if match else None


CHECK_SAID = {
    "awaiting": "awaiting M-Pesa",
    "confirmed": "confirmed by M-Pesa",
    "mismatch": "does not match M-Pesa: not counted",
    "not_found": "M-Pesa has no such transaction: not counted",
    "withdrawn": "withdrawn",
}


def check_said(check: ReceiptCheck) -> str:
    """How the order page names a receipt check, by what it has come to."""
    return CHECK_SAID.get(check.status, check.status)


def receipt_checks_of(order: Order) -> list[ReceiptCheck]:
    return db.session.scalars(
        select(ReceiptCheck)
        .where(ReceiptCheck.order_id == order.id)
        .order_by(ReceiptCheck.created_at)
    ).all()


def hand_entry_message(entered: Payment | ReceiptCheck | Approval) -> str:
    """What recording a payment by hand did, in one sentence."""
    if isinstance(entered, Approval):
        return proposed_message(entered)
    if isinstance(entered, ReceiptCheck):
        if entered.status == "awaiting":
            return (
                f"Receipt {entered.receipt} (KES {entered.amount:,}) is awaiting M-Pesa: it "
                "counts once M-Pesa confirms it, and the answer shows here."
            )
        return f"Receipt {entered.receipt}: {check_said(entered)}."
    payment = entered
    order = payment.order
    text = f"Payment {payment.receipt} of KES {payment.paid_amount:,} recorded on {order.number}"
    if order.status == "paid":
        text += "; the order is paid"
    elif order.amount_due:
        text += f"; KES {order.amount_due:,} still due"
    return text + ". It stays marked as entered by hand."

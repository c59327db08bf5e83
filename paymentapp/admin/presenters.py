"""How the dashboard shows things: local times, durations, phones (masked), raw callback
bodies, an order's timeline, how each payment came (STK Push, Paybill, by hand), refunds
(what may be refunded, the reason proposed), unmatched Paybill payments, webhook endpoints
and deliveries, and the CSV export's cells.
Plain functions of what `queries.py` read; nothing here touches the database."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime

from ..callbacks.c2b import parse_c2b
from ..callbacks.pipeline import MalformedCallback
from ..models import (
    CallbackRecord,
    Order,
    OrderEvent,
    Payment,
    Refund,
    RefundReason,
    WebhookAttempt,
    WebhookEndpoint,
    utcnow,
)
from ..payments import states
from ..phones import mask_phone
from ..webhooks.delivery import AUTO_DISABLED, GIVE_UP_AFTER, KEEP_BODY
from ..webhooks.events import CATALOGUE
from .queries import WebhookHistory, admin_tz

PHONE_IN_TEXT = re.compile(r"(?<!\d)254(?:7\d{8}|1[01]\d{7})(?!\d)")


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
    return PHONE_IN_TEXT.sub(lambda match: mask_phone(match.group()), text)


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


# -- payment methods, refunds and unmatched Paybill payments ---------------------------------

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
    RefundReason.CUSTOMER_REQUEST: "Customer request",
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
    form): the payments' own rule, `payments.states.refundable` (from a paid order only
    the overpaid part)."""
    return states.refundable(payment)


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


def refund_message(refund: Refund, payment: Payment) -> str:
    """What Record refund did, in one sentence."""
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


def hand_entry_message(payment: Payment) -> str:
    order = payment.order
    text = f"Payment {payment.receipt} of KES {payment.paid_amount:,} recorded on {order.number}"
    if order.status == "paid":
        text += "; the order is paid"
    elif order.amount_due:
        text += f"; KES {order.amount_due:,} still due"
    return text + ". It stays marked as entered by hand."


# -- webhooks --------------------------------------------------------------------------------


def span_text(seconds: float) -> str:
    """`under 1 min`, `40 min`, `5 h 10 min`, `2 d 3 h`: how long something has lasted."""
    minutes = max(0, int(seconds // 60))
    if minutes < 1:
        return "under 1 min"
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


@dataclass
class EndpointView:
    """One row of the webhooks page."""

    id: str
    url: str
    description: str
    events: list[str]  # the types it receives; empty for all of them
    enabled: bool
    auto_disabled: bool
    reason: str
    failing_since: datetime | None
    failing_for: str  # "5 h 10 min", while it is enabled and failing
    created_at: datetime
    old_secret_until: datetime | None  # during a rotation: the old secret still works

    @property
    def state(self) -> str:
        if self.enabled:
            return "enabled"
        return "auto-disabled" if self.auto_disabled else "disabled"


def endpoint_view(endpoint: WebhookEndpoint, now: datetime | None = None) -> EndpointView:
    now = now or utcnow()
    reason = endpoint.disabled_reason or ""
    until = endpoint.previous_secret_until
    failing_for = ""
    if endpoint.enabled and endpoint.failing_since is not None:
        failing_for = span_text((now - endpoint.failing_since).total_seconds())
    return EndpointView(
        id=endpoint.id,
        url=endpoint.url,
        description=endpoint.description or "",
        events=[] if endpoint.events == "*" else endpoint.events.split(","),
        enabled=endpoint.enabled,
        # `webhooks/delivery.py` gives this reason to an endpoint failing for 3 days
        auto_disabled=not endpoint.enabled and reason == AUTO_DISABLED,
        reason=reason,
        failing_since=endpoint.failing_since,
        failing_for=failing_for,
        created_at=endpoint.created_at,
        old_secret_until=until if endpoint.previous_secret and until and until > now else None,
    )


def event_choices() -> list[tuple[str, str]]:
    """(type, what it means) for the add form's checkboxes, in the catalogue's order."""
    return list(CATALOGUE.items())


@dataclass
class AttemptView:
    """One HTTP attempt: what the merchant's server answered (or why there was no answer)."""

    id: int
    at: datetime
    status_code: int | None
    error: str
    latency: str
    body: str | None
    truncated: bool

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def attempt_view(attempt: WebhookAttempt) -> AttemptView:
    body = attempt.response_body
    return AttemptView(
        id=attempt.id,
        at=attempt.at,
        status_code=attempt.status_code,
        error=attempt.error or "",
        latency="—" if attempt.latency_ms is None else f"{attempt.latency_ms:,} ms",
        body=body,
        truncated=body is not None and len(body) >= KEEP_BODY,
    )


@dataclass
class DeliveryView:
    """One event sent to one endpoint, with every attempt."""

    id: int
    url: str
    endpoint_note: str  # "deleted" / "disabled" when the endpoint no longer receives events
    status: str
    attempt_count: int
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    last_error: str
    attempts: list[AttemptView]


@dataclass
class EventView:
    id: str
    type: str
    version: int | None
    created_at: datetime
    deliveries: list[DeliveryView]
    gives_up_at: datetime  # retries stop 3 days after the event


def webhook_events(history: WebhookHistory) -> list[EventView]:
    """Events, each with its deliveries and their attempts (`queries.order_webhooks`)."""
    views = []
    for event in history.events:
        deliveries = []
        for delivery in history.deliveries.get(event.id, []):
            endpoint = history.endpoints.get(delivery.endpoint_id)
            note = ""
            if endpoint is None or endpoint.deleted_at is not None:
                note = "deleted"
            elif not endpoint.enabled:
                note = "disabled"
            deliveries.append(
                DeliveryView(
                    id=delivery.id,
                    url=endpoint.url if endpoint else delivery.endpoint_id,
                    endpoint_note=note,
                    status=str(delivery.status),
                    attempt_count=delivery.attempts,
                    next_attempt_at=delivery.next_attempt_at
                    if delivery.status == "pending"
                    else None,
                    delivered_at=delivery.delivered_at,
                    last_error=delivery.last_error or "",
                    attempts=[attempt_view(a) for a in history.attempts.get(delivery.id, [])],
                )
            )
        views.append(
            EventView(
                id=event.id,
                type=event.type,
                version=event.version,
                created_at=event.created_at,
                deliveries=deliveries,
                gives_up_at=event.created_at + GIVE_UP_AFTER,
            )
        )
    return views

"""How the dashboard shows things: local times, durations, phones (masked), raw callback
bodies, an order's timeline and the CSV export's cells. Plain functions of what
`queries.py` read; nothing here touches the database."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime

from ..models import CallbackRecord, Order, OrderEvent
from ..phones import mask_phone
from .queries import admin_tz

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
            f"callback: {record.outcome.replace('_', ' ')}",
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
)


def csv_row(order: Order) -> list[str]:
    """One order as a CSV row under CSV_HEADER: local times, phone masked, cells safe."""
    payment = order.latest_payment
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
    )
    return [csv_cell(value) for value in values]

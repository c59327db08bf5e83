"""What every model uses: UTC time, ids, the status enums (each with its CHECK), the
order-number sequence."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from enum import StrEnum, nonmember

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Integer,
    Sequence,
    TypeDecorator,
)
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db


def utcnow() -> datetime:
    """Timezone-aware now in UTC (a callable, never evaluated at import time)."""
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """An opaque, unguessable public id such as `ord_5f3kQ...`."""
    return f"{prefix}_{secrets.token_urlsafe(16)}"


def as_utc(value: datetime) -> datetime:
    """`value` in UTC; a naive datetime is refused (it could be any instant)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(UTC)


class UTCDateTime(TypeDecorator):
    """Stores aware UTC datetimes; SQLite hands back naive values, so re-attach UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class OrderStatus(StrEnum):
    """An order's life; the allowed moves are in `payments/states.py`."""

    PENDING = "pending"
    PAID = "paid"
    CANCELLED = "cancelled"
    ALL = nonmember(("pending", "paid", "cancelled"))


class PaymentStatus(StrEnum):
    """A payment's life; the allowed moves are in `payments/states.py`."""

    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    ALL = nonmember(("pending", "completed", "failed", "cancelled", "timeout"))
    FINAL = nonmember(("completed", "failed", "cancelled", "timeout"))


class PaymentMethod(StrEnum):
    """How the money came: an STK Push prompt, or the customer paying the Paybill by hand."""

    STK = "stk"
    PAYBILL = "paybill"


class CallbackOutcome(StrEnum):
    """What a stored callback did (`callbacks/pipeline.py`)."""

    RECEIVED = "received"  # stored, not applied yet (the reconciler retries these)
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    UNKNOWN = "unknown"  # matched no payment; an admin closes it
    UNKNOWN_RESOLVED = "unknown_resolved"
    MALFORMED = "malformed"
    FAILED = "failed"  # kept failing to apply; given up
    # came from outside MPESA_CALLBACK_ALLOWED_IPS: stored, never applied on its own; an
    # admin applies it (after checking with M-Pesa) or dismisses it (`ignored`)
    UNTRUSTED = "untrusted"


def one_of(column: str, values, name: str) -> CheckConstraint:
    """A CHECK that `column` holds one of an enum's values, named `ck_<table>_<name>`."""
    listed = ", ".join(f"'{value}'" for value in values)
    return CheckConstraint(f"{column} IN ({listed})", name=name)


# PostgreSQL hands out order numbers from a real sequence (no lock, never reused);
# other databases use the `order_number_counter` row (see orders/services.py).
order_number_seq = Sequence("order_number_seq", start=1001, metadata=db.metadata)


class OrderNumberCounter(db.Model):
    """Single-row counter for databases without sequences (SQLite)."""

    __tablename__ = "order_number_counter"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, nullable=False)


class RefundStatus(StrEnum):
    """A refund's life (the allowed moves: `payments/states.py`): a manual one (money
    given back outside the app) is born `succeeded`; one through M-Pesa is `requested`
    until Daraja acknowledges it, `pending` until its result comes. One an admin asked
    for waits `awaiting_approval` (its money held) until a second owner approves it
    (`requested`) or rejects it (`rejected`)."""

    AWAITING_APPROVAL = "awaiting_approval"
    REQUESTED = "requested"
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    ALL = nonmember(
        ("awaiting_approval", "requested", "pending", "succeeded", "failed", "rejected")
    )
    IN_FLIGHT = nonmember(("awaiting_approval", "requested", "pending"))


class RefundReason(StrEnum):
    """Why money goes back (chosen by the admin; the default follows the review flag)."""

    OVERPAYMENT = "overpayment"
    LATE = "late"  # arrived after the order expired or was cancelled
    DUPLICATE = "duplicate"  # the order was already paid
    REQUESTED_BY_CUSTOMER = "requested_by_customer"
    FRAUDULENT = "fraudulent"
    OTHER = "other"
    ALL = nonmember(
        ("overpayment", "late", "duplicate", "requested_by_customer", "fraudulent", "other")
    )


class CheckStatus(StrEnum):
    """A receipt entered by hand, asked about with M-Pesa's Transaction Status (the allowed
    moves: `payments/states.py`): `awaiting` M-Pesa's answer; `confirmed` (it paid the
    order); `mismatch` (M-Pesa's answer differs: amount, shortcode or status; an admin
    reviews it); `not_found` (M-Pesa has no such transaction); `withdrawn` by an admin."""

    AWAITING = "awaiting"
    CONFIRMED = "confirmed"
    MISMATCH = "mismatch"
    NOT_FOUND = "not_found"
    WITHDRAWN = "withdrawn"
    ALL = nonmember(("awaiting", "confirmed", "mismatch", "not_found", "withdrawn"))


class DeliveryStatus(StrEnum):
    """A webhook delivery's life (`webhooks/delivery.py`)."""

    PENDING = "pending"  # due at next_attempt_at
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # retried for about 3 days, then given up
    CANCELLED = "cancelled"  # its endpoint was deleted or disabled

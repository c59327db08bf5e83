"""What happens when an STK callback arrives: store it raw, then apply it once.

The raw body is committed before anything else, so no callback is ever lost, even a
malformed one or one that fails to apply. Applying takes a row lock on the payment, so
ten concurrent copies of the same callback give exactly one transition.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from ..extensions import db
from ..locking import for_update
from ..logs import log_event
from ..models import CallbackRecord, Payment, PaymentStatus, utcnow
from ..mpesa.client import EAT
from ..payments.services import apply_result
from ..phones import mask_phone
from ..realtime.emit import emit_order_update

log = logging.getLogger(__name__)

ORPHAN_MATCH_WINDOW = timedelta(minutes=10)


class MalformedCallback(ValueError):
    """The body is not a Daraja STK callback; the message says what is wrong."""


@dataclass(frozen=True)
class StkResult:
    merchant_request_id: str | None
    checkout_request_id: str
    result_code: int
    result_desc: str
    amount: int | float | None = None
    receipt: str | None = None
    phone: str | None = None
    transaction_date: datetime | None = None


def _as_int(value, name: str) -> int:
    if isinstance(value, bool):
        raise MalformedCallback(f"{name} is not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise MalformedCallback(f"{name} is not a whole number")


def _parse_amount(value) -> int | float | None:
    """Daraja sends `1.00` or `1`; whole values become int, a fraction stays a float
    (it can never equal an order's whole-shilling amount, so it goes to review)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or number < 0:
        return None
    return int(number) if number.is_integer() else number


def _parse_date(value) -> datetime | None:
    """`TransactionDate` 20191219102115 is East Africa Time; stored as UTC."""
    try:
        return (
            datetime.strptime(str(int(value)), "%Y%m%d%H%M%S").replace(tzinfo=EAT).astimezone(UTC)
        )
    except (TypeError, ValueError):
        return None


def parse_callback(body: bytes) -> StkResult:
    """Parse Daraja's STK callback body, tolerating its known variations."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise MalformedCallback("body is not JSON") from None
    callback = data.get("Body", {}).get("stkCallback") if isinstance(data, dict) else None
    if not isinstance(callback, dict) or not isinstance(data.get("Body"), dict):
        raise MalformedCallback("no Body.stkCallback object")
    checkout_id = callback.get("CheckoutRequestID")
    if (
        not isinstance(checkout_id, str)
        or not checkout_id.strip()
        or len(checkout_id) > 64
        or "\x00" in checkout_id
    ):
        raise MalformedCallback("CheckoutRequestID missing or invalid")
    if "ResultCode" not in callback:
        raise MalformedCallback("ResultCode missing")
    result_code = _as_int(callback["ResultCode"], "ResultCode")
    items = {}
    metadata = callback.get("CallbackMetadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("Item"), list):
        for item in metadata["Item"]:
            if isinstance(item, dict) and isinstance(item.get("Name"), str):
                items[item["Name"]] = item.get("Value")
    phone = items.get("PhoneNumber")
    receipt = items.get("MpesaReceiptNumber")
    merchant_id = callback.get("MerchantRequestID")

    def text(value, limit: int) -> str | None:
        """Text for a column: PostgreSQL refuses NUL, so it is dropped."""
        return str(value).replace("\x00", "")[:limit] if value not in (None, "") else None

    return StkResult(
        merchant_request_id=text(merchant_id, 64),
        checkout_request_id=checkout_id.strip(),
        result_code=result_code,
        result_desc=text(callback.get("ResultDesc"), 255) or "",
        amount=_parse_amount(items.get("Amount")),
        receipt=text(receipt, 32),
        phone=text(phone, 12),
        transaction_date=_parse_date(items.get("TransactionDate")),
    )


def store_callback(body: bytes, remote_addr: str | None) -> CallbackRecord:
    """Commit the raw body first: whatever happens next, the callback is on record."""
    record = CallbackRecord(
        # PostgreSQL text cannot hold NUL; keep the rest byte-for-byte readable
        body=body.decode("utf-8", errors="replace").replace("\x00", "\\u0000"),
        remote_addr=remote_addr,
        outcome="received",
    )
    db.session.add(record)
    db.session.commit()
    return record


def _find_orphan(result: StkResult) -> Payment | None:
    """A pending payment whose push got no answer (no checkout id) but matches this success."""
    if result.result_code != 0 or not result.phone or not isinstance(result.amount, int):
        return None
    candidates = list(
        db.session.scalars(
            for_update(
                select(Payment).where(
                    Payment.checkout_request_id.is_(None),
                    Payment.status == PaymentStatus.PENDING,
                    Payment.phone == result.phone,
                    Payment.amount == result.amount,
                    Payment.created_at > utcnow() - ORPHAN_MATCH_WINDOW,
                )
            )
        )
    )
    return candidates[0] if len(candidates) == 1 else None


def apply_callback(record: CallbackRecord, result: StkResult) -> str:
    """Apply a parsed callback under a row lock; commit; emit when state changed."""
    record = db.session.get(CallbackRecord, record.id)
    record.checkout_request_id = result.checkout_request_id
    payment = db.session.scalar(
        for_update(select(Payment).where(Payment.checkout_request_id == result.checkout_request_id))
    )
    if payment is None and (payment := _find_orphan(result)) is not None:
        payment.checkout_request_id = result.checkout_request_id
        payment.merchant_request_id = result.merchant_request_id
    if payment is None:
        record.outcome = "unknown"
        record.detail = "no payment has this CheckoutRequestID"
        db.session.commit()
        log.warning(
            "callback for unknown checkout id %s recorded | event=callback.unknown "
            "record=%s result_code=%s",
            result.checkout_request_id,
            record.id,
            result.result_code,
        )
        return "unknown"
    outcome = apply_result(
        payment,
        result_code=result.result_code,
        result_desc=result.result_desc,
        source="callback",
        receipt=result.receipt,
        paid_amount=result.amount,
        paid_phone=result.phone,
        paid_at=result.transaction_date,
    )
    record.payment_id = payment.id
    record.outcome = outcome
    record.detail = f"payment {payment.status}"
    order = payment.order
    db.session.commit()
    log_event(
        log,
        "callback." + outcome,
        f"callback for order {order.number}: {outcome}, payment {payment.status}",
        order=order.number,
        payment=payment.id,
        record=record.id,
        result_code=result.result_code,
        receipt=result.receipt,
        phone=mask_phone(result.phone),
    )
    if outcome == "applied":
        emit_order_update(order)
    return outcome


def mark_malformed(record: CallbackRecord, reason: str) -> None:
    record = db.session.get(CallbackRecord, record.id)
    record.outcome = "malformed"
    record.detail = reason[:255]
    db.session.commit()
    log.warning(
        "malformed callback %s: %s | event=callback.malformed record=%s",
        record.id,
        reason,
        record.id,
    )

"""STK Push results (`POST /callbacks/stk/<token>`): the first callback kind.

Parsing tolerates Daraja's known variations (docs/payments.md): `ResultCode` as a number
or a string, `Amount` as `1` or `1.00`, metadata items read by `Name`, `Balance` without
a `Value`. A success counts only with `ResultCode` exactly 0 and a usable `Amount`; what
that does to the payment and the order is decided in `payments/states.py`.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache

from sqlalchemy import bindparam, or_, select
from sqlalchemy.orm import contains_eager
from sqlalchemy.orm.attributes import set_committed_value

from ..extensions import db
from ..locking import for_update, lock_order, row_locks
from ..logs import log_event
from ..models import CallbackOutcome, CallbackRecord, Order, Payment, PaymentStatus, utcnow
from ..mpesa.client import EAT
from ..payments.states import AMOUNT_FROM_CALLBACK, apply_result
from .pipeline import CallbackKind, MalformedCallback, clean_text, load_json, register

log = logging.getLogger(__name__)

ORPHAN_MATCH_WINDOW = timedelta(minutes=10)
# Largest value the integer columns hold on every database (PostgreSQL INTEGER).
MAX_DB_INT = 2**31 - 1
# ResultCode as Daraja writes it: an integer, or its canonical decimal string. "-0", "00"
# and fullwidth digits are not zero: only exactly 0 or "0" is a success.
RESULT_CODE_TEXT = re.compile(r"0|-?[1-9][0-9]{0,9}")
AMOUNT_TEXT = re.compile(r"[0-9]{1,12}(\.[0-9]{1,6})?")
CHECKOUT_ID = re.compile(r"[\x21-\x7e]{1,64}")


@dataclass(frozen=True)
class StkResult:
    merchant_request_id: str | None
    checkout_request_id: str
    result_code: int
    result_desc: str
    # A positive whole number of shillings, or None when the callback had none usable
    # (then `amount_problem` says why: a success without one completes nothing).
    amount: int | None = None
    amount_problem: str | None = None
    receipt: str | None = None
    phone: str | None = None
    transaction_date: datetime | None = None


def _result_code(value) -> int:
    if isinstance(value, bool):
        raise MalformedCallback("ResultCode is not a whole number")
    if isinstance(value, str) and RESULT_CODE_TEXT.fullmatch(value):
        value = int(value)
    if not isinstance(value, int):
        raise MalformedCallback("ResultCode is not a whole number")
    if abs(value) > MAX_DB_INT:
        raise MalformedCallback("ResultCode is out of range")
    return value


def _parse_amount(value) -> tuple[int | None, str | None]:
    """Daraja sends `1.00` or `1`: a positive whole number of shillings, or (None, why)."""
    if value is None:
        return None, "no Amount"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None, "Amount is not a number"
    if isinstance(value, str):
        if not AMOUNT_TEXT.fullmatch(value):
            return None, "Amount is not a number"
        number = Decimal(value)
    elif isinstance(value, float) and not math.isfinite(value):
        return None, "Amount is not finite"
    else:
        number = Decimal(value)
    if number <= 0:
        return None, "Amount is not positive"
    if number != number.to_integral_value():
        return None, "Amount is not a whole number of shillings"
    if number > MAX_DB_INT:
        return None, "Amount is out of range"
    return int(number), None


def _parse_date(value) -> datetime | None:
    """`TransactionDate` 20191219102115 is East Africa Time; stored as UTC."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    text = str(value)
    if not (len(text) == 14 and text.isascii() and text.isdigit()):
        return None
    try:
        return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=EAT).astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def parse_callback(body: bytes) -> StkResult:
    """Parse Daraja's STK callback body, tolerating its known variations."""
    data = load_json(body)
    envelope = data.get("Body") if isinstance(data, dict) else None
    callback = envelope.get("stkCallback") if isinstance(envelope, dict) else None
    if not isinstance(callback, dict):
        raise MalformedCallback("no Body.stkCallback object")
    checkout_id = callback.get("CheckoutRequestID")
    if not isinstance(checkout_id, str) or not CHECKOUT_ID.fullmatch(checkout_id.strip()):
        raise MalformedCallback("CheckoutRequestID missing or invalid")
    if "ResultCode" not in callback:
        raise MalformedCallback("ResultCode missing")
    result_code = _result_code(callback["ResultCode"])
    items = {}
    metadata = callback.get("CallbackMetadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("Item"), list):
        for item in metadata["Item"]:
            if isinstance(item, dict) and isinstance(item.get("Name"), str):
                items[item["Name"]] = item.get("Value")
    amount, amount_problem = _parse_amount(items.get("Amount"))
    return StkResult(
        merchant_request_id=clean_text(callback.get("MerchantRequestID"), 64),
        checkout_request_id=checkout_id.strip(),
        result_code=result_code,
        result_desc=clean_text(callback.get("ResultDesc"), 255) or "",
        amount=amount,
        amount_problem=amount_problem,
        receipt=clean_text(items.get("MpesaReceiptNumber"), 32),
        phone=clean_text(items.get("PhoneNumber"), 12),
        transaction_date=_parse_date(items.get("TransactionDate")),
    )


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


@cache
def _lock_statement(with_receipt: bool, lock_rows: bool):
    """`lock_for_result`'s query, built once per shape (a prebuilt statement skips the
    construction and cache-key work of building it per callback)."""
    order_id = (
        select(Payment.order_id)
        .where(Payment.checkout_request_id == bindparam("checkout_id"))
        .scalar_subquery()
    )
    wanted = Payment.order_id == order_id
    if with_receipt:
        wanted = or_(wanted, Payment.receipt == bindparam("receipt"))
    statement = (
        select(Payment)
        .join(Payment.order)
        .options(contains_eager(Payment.order).lazyload(Order.payments))
        .where(wanted)
        .order_by(Payment.created_at, Payment.id)
    )
    # Payment rows only, in created order: every path locks a payment before it writes
    # its order (the reconciler, the admin actions), so locking the order here as well
    # would take the two in the other order and could deadlock with them.
    return statement.with_for_update(of=Payment) if lock_rows else statement


def lock_for_result(result: StkResult) -> tuple[Payment | None, Payment | None]:
    """The payment this result is for, and the payment already holding its receipt (None
    for either when there is none), in one query.

    The order's payments are row-locked (another copy of this callback waits), and the
    order comes back with all of them, which the money rules sum: nothing is lazily
    loaded afterwards. The order row is locked by the flush's UPDATE, after them.
    """
    params = {"checkout_id": result.checkout_request_id}
    if result.receipt:
        params["receipt"] = result.receipt
    statement = _lock_statement(bool(result.receipt), row_locks())
    rows = db.session.scalars(statement, params).all()
    payment = next((p for p in rows if p.checkout_request_id == result.checkout_request_id), None)
    holder = next((p for p in rows if result.receipt and p.receipt == result.receipt), None)
    if payment is not None:
        siblings = [p for p in rows if p.order_id == payment.order_id]
        set_committed_value(payment.order, "payments", siblings)
    return payment, holder


class StkKind(CallbackKind):
    """Daraja's STK Push result, matched to a payment by CheckoutRequestID."""

    name = "stk"
    path = "stk"

    def parse(self, body: bytes) -> StkResult:
        return parse_callback(body)

    def match_key(self, parsed: StkResult) -> str:
        return parsed.checkout_request_id

    def apply(
        self, record: CallbackRecord, result: StkResult
    ) -> tuple[CallbackOutcome, Order | None]:
        payment, holder = lock_for_result(result)
        if payment is None and (payment := _find_orphan(result)) is not None:
            payment.checkout_request_id = result.checkout_request_id
            payment.merchant_request_id = result.merchant_request_id
            lock_order(payment.order_id)
            if result.receipt:
                holder = db.session.scalar(select(Payment).where(Payment.receipt == result.receipt))
        if payment is None:
            record.detail = "no payment has this CheckoutRequestID"
            log_event(
                log,
                "callback.unknown",
                f"callback for unknown checkout id {result.checkout_request_id} recorded",
                level=logging.WARNING,
                record=record.id,
                result_code=result.result_code,
            )
            return CallbackOutcome.UNKNOWN, None
        if holder not in (None, payment):
            # one receipt is one movement of money: already recorded on another payment
            # (e.g. its Paybill confirmation came first, docs/paybill.md)
            record.payment_id = holder.id
            record.detail = f"receipt {result.receipt} already on payment {holder.id}"
            return CallbackOutcome.DUPLICATE, holder.order
        outcome = apply_result(
            payment,
            result_code=result.result_code,
            result_desc=result.result_desc,
            source="callback",
            amount_from=AMOUNT_FROM_CALLBACK,
            receipt=result.receipt,
            paid_amount=result.amount,
            amount_problem=result.amount_problem,
            paid_phone=result.phone,
            paid_at=result.transaction_date,
        )
        record.payment_id = payment.id
        record.detail = f"payment {payment.status}"
        order = payment.order
        log_event(
            log,
            f"callback.{outcome}",
            f"callback for order {order.number}: {outcome}, payment {payment.status}",
            order=order.number,
            payment=payment.id,
            record=record.id,
            result_code=result.result_code,
            receipt=result.receipt,
            phone=result.phone,
        )
        return CallbackOutcome(outcome), order


register(StkKind())

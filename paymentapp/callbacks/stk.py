"""STK Push results (`POST /callbacks/stk/<token>`): the first callback kind.

Parsing tolerates Daraja's known variations (docs/payments.md): `ResultCode` as a number
or a string, `Amount` as `1` or `1.00`, metadata items read by `Name`, `Balance` without
a `Value`. A success counts only with `ResultCode` exactly 0 and a usable `Amount`; what
that does to the payment and the order is decided in `payments/states.py`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from ..extensions import db
from ..locking import lock_order_of_checkout, lock_order_with_receipt
from ..models import CallbackOutcome, Order, Payment, PaymentStatus, utcnow
from ..models.records import StoredCallback
from ..mpesa.formats import MAX_DB_INT, parse_amount, parse_eat_timestamp
from ..payments.money import Money, apply_result
from ..payments.states import AMOUNT_FROM_CALLBACK
from .pipeline import CallbackKind, MalformedCallback, clean_text, load_json, register

log = logging.getLogger(__name__)

ORPHAN_MATCH_WINDOW = timedelta(minutes=10)
# ResultCode as Daraja writes it: an integer, or its canonical decimal string. "-0", "00"
# and fullwidth digits are not zero: only exactly 0 or "0" is a success.
RESULT_CODE_TEXT = re.compile(r"0|-?[1-9][0-9]{0,9}")
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
    amount, amount_problem = parse_amount(items.get("Amount"))
    return StkResult(
        merchant_request_id=clean_text(callback.get("MerchantRequestID"), 64),
        checkout_request_id=checkout_id.strip(),
        result_code=result_code,
        result_desc=clean_text(callback.get("ResultDesc"), 255) or "",
        amount=amount,
        amount_problem=amount_problem,
        receipt=clean_text(items.get("MpesaReceiptNumber"), 32),
        phone=clean_text(items.get("PhoneNumber"), 12),
        transaction_date=parse_eat_timestamp(items.get("TransactionDate")),
    )


def _find_orphan(result: StkResult) -> str | None:
    """The id of a pending payment whose push got no answer (no checkout id) but that
    matches this success by phone and amount: a plain read (the caller locks its order,
    then checks again)."""
    if result.result_code != 0 or not result.phone or not isinstance(result.amount, int):
        return None
    candidates = list(
        db.session.scalars(
            select(Payment.id).where(
                Payment.checkout_request_id.is_(None),
                Payment.status == PaymentStatus.PENDING,
                Payment.phone == result.phone,
                Payment.amount == result.amount,
                Payment.created_at > utcnow() - ORPHAN_MATCH_WINDOW,
            )
        )
    )
    return candidates[0] if len(candidates) == 1 else None


def lock_for_result(result: StkResult) -> tuple[Payment | None, Payment | None]:
    """The payment this result is for and the payment already holding its receipt
    (None for either when there is none), read after locking the prompt's order
    (`locking.py`): the order row first, then its payments, fresh."""
    _, payment, holder = lock_order_of_checkout(result.checkout_request_id, result.receipt)
    if payment is not None or (orphan_id := _find_orphan(result)) is None:
        return payment, holder
    order, holder = lock_order_with_receipt(
        db.session.scalar(select(Payment.order_id).where(Payment.id == orphan_id)),
        result.receipt,
    )
    payment = next((p for p in order.payments if p.id == orphan_id), None)
    if payment is None or payment.status != PaymentStatus.PENDING or payment.checkout_request_id:
        return None, holder  # settled or matched while we waited for the lock
    payment.checkout_request_id = result.checkout_request_id
    payment.merchant_request_id = result.merchant_request_id
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
        self, record: StoredCallback, result: StkResult
    ) -> tuple[CallbackOutcome, Order | None]:
        payment, holder = lock_for_result(result)
        if payment is None:
            record.detail = "no payment has this CheckoutRequestID"
            log.warning(
                f"callback for unknown checkout id {result.checkout_request_id} recorded",
                extra={
                    "event": "callback.unknown",
                    "record": record.id,
                    "result_code": result.result_code,
                },
            )
            return CallbackOutcome.UNKNOWN, None
        if holder not in (None, payment):
            # one receipt is one movement of money: already recorded on another payment
            # (e.g. its Paybill confirmation came first, docs/paybill.md)
            record.payment_id = holder.id
            record.detail = f"receipt {result.receipt} already on payment {holder.id}"
            return CallbackOutcome.DUPLICATE, payment.order  # locked: its committed state
        outcome = apply_result(
            payment,
            result_code=result.result_code,
            result_desc=result.result_desc,
            source="callback",
            amount_from=AMOUNT_FROM_CALLBACK,
            money=Money(result.receipt, result.amount, result.phone, result.transaction_date),
            amount_problem=result.amount_problem,
        )
        order = payment.order
        # the payment its money went to: the prompt, or a second payment of its own
        took = next(
            (p for p in order.payments if result.receipt and p.receipt == result.receipt), None
        )
        record.payment_id = (took or payment).id
        record.detail = f"payment {payment.status}"
        log.info(
            f"callback for order {order.number}: {outcome}, payment {payment.status}",
            extra={
                "event": f"callback.{outcome}",
                "order": order.number,
                "payment": payment.id,
                "record": record.id,
                "result_code": result.result_code,
                "receipt": result.receipt,
                "phone": result.phone,
            },
        )
        return CallbackOutcome(outcome), order


register(StkKind())

"""Paybill (C2B) payments: the customer pays the business number by hand, with the order
number as the account. Two callback kinds: the confirmation (money moved) and, when the
shortcode owner had Safaricom enable it, the validation (may we accept this payment?).

Matching a confirmation (docs/paybill.md):

1. By receipt first. Daraja sends STK Push payments to the confirmation URL too, with
   `TransID` = the STK `MpesaReceiptNumber`, before or after the STK callback: a receipt
   already on a payment is the same money (a duplicate); a confirmation for an order with
   exactly one pending STK prompt of the same amount completes that prompt (its STK
   callback then brings the same receipt and is a duplicate).
2. Then by account number, loosely (`ord 10017`, `ORD-10017`, `10017`), and only an
   account that names an order: a check digit that fails, an unknown number, a cancelled
   order or no account at all (till payments) goes to the admin's review queue, where
   "assign to order" applies the same rules.
3. The rules of `payments/states.py` decide the rest: exact amount pays the order; less
   is recorded and flagged ("KES X received, KES Y still due"); more pays and is flagged;
   money for a paid or expired order is recorded and flagged for a refund.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from sqlalchemy import select, text

from ..extensions import db
from ..locking import lock_order_with_receipt
from ..models import (
    CallbackOutcome,
    Order,
    OrderStatus,
    Payment,
    PaymentMethod,
    utcnow,
)
from ..models.records import StoredCallback
from ..mpesa.formats import (
    luhn_ok,
    normalise_account,
    order_digits,
    parse_amount,
    parse_eat_timestamp,
    parse_receipt,
)
from ..payments.money import Money, flag, hold, receive
from ..payments.states import AMOUNT_FROM_CALLBACK, PARTIAL, Draft, write
from .pipeline import CallbackKind, MalformedCallback, clean_text, load_json, register

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class C2BPayment:
    trans_id: str
    amount: int | None
    amount_problem: str | None
    account: str  # as typed (cleaned of unstorable characters)
    number: str | None  # the order number the account names, normalised (`ORD-10017`)
    typo: bool  # that number has a check digit (5 digits or more) and it fails
    msisdn: str  # Daraja's masked form, compact: 2547*****126
    trans_time: datetime | None
    shortcode: str | None


def parse_c2b(body: bytes) -> C2BPayment:
    """A C2B validation or confirmation body (both have the same fields)."""
    data = load_json(body)
    if not isinstance(data, dict):
        raise MalformedCallback("not a JSON object")
    trans_id = parse_receipt(data.get("TransID"))
    if trans_id is None:
        raise MalformedCallback("TransID missing or invalid")
    amount, problem = parse_amount(data.get("TransAmount"))
    msisdn = (clean_text(data.get("MSISDN"), 40) or "").replace(" ", "")[:12]
    account = clean_text(data.get("BillRefNumber"), 64) or ""
    number = normalise_account(account)
    digits = order_digits(number or "")
    return C2BPayment(
        trans_id=trans_id,
        amount=amount,
        amount_problem=problem,
        account=account,
        number=number,
        typo=len(digits) >= 5 and not luhn_ok(digits),
        msisdn=msisdn,
        trans_time=parse_eat_timestamp(data.get("TransTime")),
        shortcode=clean_text(data.get("BusinessShortCode"), 16),
    )


def find_order(payment_in: C2BPayment) -> tuple[Order | None, str]:
    """The order a payment's account number names, or None and why not."""
    number, account = payment_in.number, payment_in.account
    if number is None:
        return None, f"no order number in the account {account!r}" if account else "no account"
    order = db.session.scalar(select(Order).where(Order.number == number))
    if order is None:
        if payment_in.typo:
            return None, f"{number}: the check digit does not match (a typo?)"
        return None, f"no order {number}"
    if order.number_checked and payment_in.typo:
        return None, f"{number}: the check digit does not match"
    return order, number


def _order_with_receipt(trans_id: str) -> str | None:
    """The id of the order whose payment already holds this receipt (a plain read)."""
    return db.session.scalar(select(Payment.order_id).where(Payment.receipt == trans_id))


def late(order: Order, paid_at: datetime | None) -> bool:
    """Did this money arrive after the order's offer ended? Judged by when M-Pesa took
    it (`TransTime`), else by now."""
    return (
        order.status == OrderStatus.PENDING
        and order.expires_at is not None
        and order.expires_at < (paid_at or utcnow())
    )


def apply_confirmation(
    order: Order, holder: Payment | None, payment_in: C2BPayment, source: str
) -> str:
    """Decide a matched confirmation for a LOCKED order and write it; `holder` is the
    payment already holding its receipt, read after the lock. Returns the outcome."""
    if holder is not None:
        return "duplicate"  # one receipt is one movement of money
    draft = Draft(order)
    expired = late(order, payment_in.trans_time)
    payment, several = receive(
        draft,
        Money(payment_in.trans_id, payment_in.amount, payment_in.msisdn, payment_in.trans_time),
        source=source,
        amount_from=AMOUNT_FROM_CALLBACK,
        result_code=0,
        result_desc="Paybill payment",
        settle=not expired,
        method=PaymentMethod.PAYBILL,
        phone=payment_in.msisdn,
        account_reference=payment_in.account,
    )
    if payment.method == PaymentMethod.STK:
        pass  # the STK prompt's own money, sent to the confirmation URL too (docs/paybill.md)
    elif expired:
        hold(draft, payment, "paid after the order expired: refund due", source=source)
    elif payment.needs_review:
        pass  # the rules flagged it already (amount, a paid order, an overpayment)
    elif several:
        flag(
            draft,
            payment,
            "several prompts of this amount: check it is not their money",
            source=source,
        )
    elif draft.order.status == OrderStatus.PENDING and draft.order.amount_due > 0:
        due, paid = draft.order.amount_due, draft.order.amount_paid
        flag(
            draft,
            payment,
            f"{PARTIAL}: KES {paid:,} received, KES {due:,} still due",
            source=source,
        )
    write(order, draft.changes)
    return "applied"


class C2BConfirmation(CallbackKind):
    """Daraja's C2B confirmation: money moved; match it to an order, or to review."""

    name = "c2b"
    path = "c2b/confirmation"

    def parse(self, body: bytes) -> C2BPayment:
        return parse_c2b(body)

    def match_key(self, parsed: C2BPayment) -> str:
        return parsed.trans_id

    def apply(self, record: StoredCallback, parsed: C2BPayment):
        if (known := _order_with_receipt(parsed.trans_id)) is not None:
            order, twin = lock_order_with_receipt(known, parsed.trans_id)
            record.payment_id = twin.id
            record.detail = f"receipt {parsed.trans_id} already on payment {twin.id}"
            return CallbackOutcome.DUPLICATE, order  # locked: its committed state
        order, why = find_order(parsed)
        if order is not None and order.status == OrderStatus.CANCELLED:
            order, why = None, f"{order.number} is cancelled"
        if order is not None and parsed.amount is None:
            order, why = None, f"amount not usable ({parsed.amount_problem})"
        if order is None:
            record.detail = f"unmatched Paybill payment: {why}"
            log.warning(
                f"Paybill payment {parsed.trans_id} not matched: {why}",
                extra={
                    "event": "c2b.unmatched",
                    "record": record.id,
                    "amount": parsed.amount,
                    "phone": parsed.msisdn,
                },
            )
            return CallbackOutcome.UNKNOWN, None
        order, holder = lock_order_with_receipt(order.id, parsed.trans_id)
        outcome = apply_confirmation(order, holder, parsed, source="paybill")
        payment = holder or next(p for p in order.payments if p.receipt == parsed.trans_id)
        record.payment_id = payment.id
        record.detail = f"{order.number}: {outcome}"
        log.info(
            f"Paybill payment {parsed.trans_id} for {order.number}: {outcome}",
            extra={
                "event": f"c2b.{outcome}",
                "order": order.number,
                "amount": parsed.amount,
                "record": record.id,
                "phone": parsed.msisdn,
            },
        )
        return CallbackOutcome(outcome), order


ACCEPT = {"ResultCode": "0", "ResultDesc": "Accepted"}
REJECT_PREFIX = "rejected "


class C2BValidation(CallbackKind):
    """Daraja asks before completing a Paybill payment (only when validation is enabled
    with Safaricom and MPESA_C2B_VALIDATION is on): reject accounts that name no payable
    order and amounts under MPESA_C2B_MIN_AMOUNT; accept everything else, and accept when
    in doubt (a slow answer would follow the registered ResponseType anyway)."""

    name = "c2b_validation"
    path = "c2b/validation"

    def parse(self, body: bytes) -> C2BPayment:
        return parse_c2b(body)

    def match_key(self, parsed: C2BPayment) -> str:
        return parsed.trans_id

    def apply(self, record: StoredCallback, parsed: C2BPayment):
        config = current_app.config
        if not config["MPESA_C2B_VALIDATION"]:
            record.detail = "accepted (validation is off)"
            return CallbackOutcome.APPLIED, None
        try:
            if db.session.get_bind().dialect.name == "postgresql":
                db.session.execute(text("SET LOCAL statement_timeout = 2000"))
            code, why = self._decide(parsed, config["MPESA_C2B_MIN_AMOUNT"])
        except Exception:  # noqa: BLE001 - in doubt, accept: the money is better matched later
            db.session.rollback()  # `record` keeps its values: nothing reads it back
            log.exception("C2B validation could not decide; accepting")
            code, why = None, "accepted: could not check in time"
        if code is None:
            record.detail = why
            return CallbackOutcome.APPLIED, None
        record.detail = f"{REJECT_PREFIX}{code}: {why}"
        return CallbackOutcome.IGNORED, None

    @staticmethod
    def _decide(parsed: C2BPayment, minimum: int) -> tuple[str | None, str]:
        if parsed.amount is None or parsed.amount < minimum:
            return "C2B00013", f"amount below the minimum of KES {minimum}"
        order, why = find_order(parsed)
        if order is None:
            return "C2B00012", why
        if order.status != OrderStatus.PENDING:
            return "C2B00012", f"{order.number} is {order.status}"
        return None, f"accepted for {order.number}"

    def answer(self, outcome: CallbackOutcome, detail: str | None) -> dict:
        if detail and detail.startswith(REJECT_PREFIX):
            return {
                "ResultCode": detail[len(REJECT_PREFIX) :].split(":", 1)[0],
                "ResultDesc": "Rejected",
            }
        return ACCEPT


register(C2BConfirmation())
register(C2BValidation())

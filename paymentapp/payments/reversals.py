"""Refunds through M-Pesa (docs/refunds.md): Daraja's Reversal gives back the whole of one
payment; B2C pays part of it (or what is left) to the customer's phone (`b2c_refunds.py`).
Three steps, each under the order's lock where it changes anything:

1. `request_refund`: the refund is recorded `requested` (and committed) before Daraja
   is asked, so it is never lost and never asked for twice: one refund in flight per
   payment. The whole of an untouched payment goes back by Reversal; anything else by
   B2C, when configured.
2. `send_reversal`: Daraja is asked with no transaction open. Its acknowledgement makes
   the refund `pending` (with the ConversationID its result is matched by); a refusal
   makes it `failed`; no answer leaves it `requested`, visible, to be sent again (a
   second Reversal of one transaction is refused by M-Pesa, never paid twice). A B2C
   whose answer never came is never sent again (`b2c_refunds.py`).
3. What M-Pesa then says settles it: `refund_outcomes.py`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import func, select

from .. import audit
from ..errors import ApiError, Conflict, NotFound, ValidationError
from ..extensions import db
from ..locking import BY_REFUND, lock_order, lock_refund, retried
from ..models import (
    Approval,
    ApprovalKind,
    PaymentMethod,
    PaymentStatus,
    Refund,
    RefundStatus,
    utcnow,
)
from ..mpesa.client import (
    DarajaBusy,
    DarajaError,
    DarajaUnavailable,
    get_client,
    new_originator_id,
)
from ..phones import InvalidPhone, mask_phone, normalize_phone
from .b2c_refunds import b2c_on, send_b2c
from .reconcile import PassReport, after_each_pass, claim_stale
from .refund_outcomes import acknowledged, refunds_on, refused
from .refunds import add_refund, refund_reason
from .services import review_note
from .states import Kind, transition

log = logging.getLogger(__name__)

RESEND_AFTER_S = 60  # a refund still `requested` this long (no answer) is sent again
RESEND_BATCH = 20


def reversible(payment) -> bool:
    """Can M-Pesa reverse this payment now: completed, with its receipt, nothing given
    back yet, and no refund of it in flight."""
    return (
        payment.status == PaymentStatus.COMPLETED
        and bool(payment.receipt)
        and not payment.refunded_amount
        and not _in_flight(payment)
    )


def left_to_refund(payment) -> int:
    """What M-Pesa could still give back of a completed payment: what it brought, less
    what went back and what is on its way."""
    if payment.status != PaymentStatus.COMPLETED:
        return 0
    paid = payment.paid_amount or payment.amount
    return max(0, paid - (payment.refunded_amount or 0) - (payment.refunding_amount or 0))


def refundable_now(payment) -> bool:
    """Can a refund through M-Pesa start now: reversible, or (with B2C) something left."""
    return reversible(payment) or (
        b2c_on() and left_to_refund(payment) > 0 and not _in_flight(payment)
    )


def _in_flight(payment) -> bool:
    return any(r.status in RefundStatus.IN_FLIGHT for r in payment.refunds)


def request_refund(
    order_id: str,
    *,
    payment_id: str | None,
    amount: int | None,
    reason: str,
    note: str | None,
    actor: str,
    phone: str | None = None,
    api_key_id: int | None = None,
    idempotency_key: str | None = None,
    awaiting_approval: bool = False,
) -> tuple[Refund, bool]:
    """Refund a payment of this order through M-Pesa: the whole of it by Reversal, part
    of it (or what is left) by B2C to the customer's phone. Record it, then ask Daraja.
    Returns the refund and whether it is new (False: the Idempotency-Key's earlier one).
    `awaiting_approval`: recorded (its money held) with its `Approval`, and not sent
    until a second owner approves it (`approvals.py`)."""
    reason = refund_reason(reason)
    note = review_note(note) if note else None
    if not refunds_on():
        raise Conflict(
            "Refunds through M-Pesa are off: set MPESA_INITIATOR_NAME and its credential "
            "(docs/configuration.md). Money given back another way can be recorded by hand.",
            code="refunds_off",
        )
    asked = Asked(payment_id, amount, reason, note, actor, phone, api_key_id, idempotency_key)
    refund, new = _record(order_id, asked, awaiting_approval)
    if new and not awaiting_approval:
        send(refund.id)
    return db.session.get(Refund, refund.id), new


@dataclass(frozen=True)
class Asked:
    """A refund as asked for (the API's or the admin's form)."""

    payment_id: str | None
    amount: int | None
    reason: str
    note: str | None
    actor: str
    phone: str | None
    api_key_id: int | None
    key: str | None


@retried("request_refund", unique_is_race=True)
def _record(order_id: str, asked: Asked, awaiting_approval: bool):
    order = lock_order(order_id)
    if asked.key is not None:
        earlier = db.session.scalar(
            select(Refund).where(
                Refund.api_key_id == asked.api_key_id, Refund.idempotency_key == asked.key
            )
        )
        if earlier is not None:
            if earlier.order_id != order.id or (
                asked.payment_id and earlier.payment_id != asked.payment_id
            ):
                raise Conflict(
                    "This Idempotency-Key was already used with a different request.",
                    code="idempotency_key_reused",
                )
            db.session.rollback()
            return earlier, False
    payment = _payment_to_refund(order, asked.payment_id)
    left = left_to_refund(payment)
    amount = left if asked.amount is None else asked.amount
    if amount > left:
        raise Conflict(
            f"KES {amount:,} is more than is left to refund of this payment (KES {left:,}).",
            code="amount_over_refundable",
        )
    method, phone = "reversal", None
    if not (reversible(payment) and amount == left):
        method, phone = "b2c", _b2c_phone(payment, asked.phone, amount, left)
    refund = add_refund(
        payment,
        amount,
        method,
        RefundStatus.AWAITING_APPROVAL if awaiting_approval else RefundStatus.REQUESTED,
        asked.reason,
        asked.note,
        asked.actor,
        api_key_id=asked.api_key_id,
        idempotency_key=asked.key,
    )
    if method == "b2c":  # ours, made before it is sent: what it is settled by
        refund.phone, refund.originator_conversation_id = phone, new_originator_id()
    payment.refunding_amount = (payment.refunding_amount or 0) + amount
    db.session.flush()
    how = "through M-Pesa" if method == "reversal" else f"by B2C to {mask_phone(phone)}"
    said = f"refund of KES {amount:,} {how} requested ({asked.reason})"
    if awaiting_approval:
        said = f"refund of KES {amount:,} {how} proposed ({asked.reason}), awaiting approval"
        db.session.add(
            Approval(
                kind=ApprovalKind.MPESA_REFUND,
                order_id=order.id,
                payment_id=payment.id,
                refund_id=refund.id,
                values=json.dumps({"amount": amount, "reason": asked.reason, "note": asked.note}),
                summary=said[:500],
                proposed_by=asked.actor,
            )
        )
    transition(
        order,
        Kind.REFUND_REQUESTED,
        f"{asked.actor}: {said}" + (f": {asked.note}" if asked.note else ""),
        payment=payment,
        refund=refund,
        actor=asked.actor,
        amount=amount,
        reason=asked.reason,
        method=method,
    )
    audit.record(
        "refund.proposed" if awaiting_approval else "refund.requested",
        f"{order.number}: refund of KES {amount:,} of payment {payment.id} asked of M-Pesa "
        f"by {'Reversal' if method == 'reversal' else 'B2C'} ({asked.reason})",
        target=order.number,
        changes={"payment": payment.id, "amount": amount, "method": method, "reason": asked.reason},
    )
    db.session.commit()
    return refund, True


def _b2c_phone(payment, typed: str | None, amount: int, left: int) -> str:
    """Where a B2C refund pays: the phone an STK payment was prompted on, or the one an
    admin types for a Paybill payment (Daraja masks its MSISDN); clear 4xx otherwise."""
    if not b2c_on():
        raise Conflict(
            f"Only the whole payment (KES {left:,}) can be refunded through M-Pesa's "
            f"Reversal; a refund of KES {amount:,} needs B2C (MPESA_B2C_SHORTCODE), which "
            "is not configured.",
            code="partial_refund_unavailable",
        )
    known = payment.phone if payment.method == PaymentMethod.STK else None
    try:
        typed = normalize_phone(typed) if typed else None
    except InvalidPhone as exc:
        raise ValidationError(str(exc), code="invalid_phone", fields={"phone": str(exc)}) from None
    if known and typed and typed != known:
        raise ValidationError(
            "A refund of an STK payment goes to the phone that paid.",
            code="invalid_phone",
            fields={"phone": f"Leave it out: the refund goes to {mask_phone(known)}."},
        )
    if not (known or typed):
        raise ValidationError(
            "M-Pesa does not tell us the phone a Paybill payment came from: give the phone "
            "to refund to.",
            code="phone_required",
            fields={"phone": "The customer's phone, e.g. 0712345678."},
        )
    return known or typed


def _payment_to_refund(order, payment_id: str | None):
    """The payment named, or the order's one refundable payment; a clear 4xx otherwise."""
    if payment_id is not None:
        payment = next((p for p in order.payments if p.id == payment_id), None)
        if payment is None:
            raise NotFound("No payment with this id on this order.", code="payment_not_found")
        if _in_flight(payment):
            raise Conflict(
                "A refund of this payment is already under way.", code="refund_in_progress"
            )
        if not refundable_now(payment):
            raise Conflict(
                "This payment cannot be refunded through M-Pesa: it is not completed, has "
                "no M-Pesa receipt, or was already refunded.",
                code="not_refundable",
            )
        return payment
    candidates = [p for p in order.payments if refundable_now(p)]
    if len(candidates) == 1:
        return candidates[0]
    if any(_in_flight(p) for p in order.payments):
        raise Conflict("A refund of this order is already under way.", code="refund_in_progress")
    if not candidates:
        raise Conflict("This order has no payment that can be refunded.", code="not_refundable")
    raise ApiError(
        f"This order has {len(candidates)} payments that can be refunded: name one.",
        code="validation_error",
        status=422,
        fields={"payment_id": "Required when the order has several refundable payments."},
    )


def send(refund_id: str) -> None:
    """Ask Daraja for a `requested` refund, by its method."""
    refund = db.session.get(Refund, refund_id)
    if refund.method == "b2c":
        send_b2c(refund_id)
    else:
        send_reversal(refund_id)


def send_reversal(refund_id: str) -> None:
    """Ask Daraja to reverse a `requested` refund's payment (no transaction open while it
    answers), then record what it said."""
    refund = db.session.get(Refund, refund_id)
    payment = refund.payment
    config = current_app.config
    shortcode = (
        config["MPESA_C2B_SHORTCODE"]
        if payment.method == PaymentMethod.PAYBILL
        else config["MPESA_SHORTCODE"]
    )
    base = f"{config['PUBLIC_BASE_URL']}/callbacks/reversal"
    token = config["MPESA_CALLBACK_TOKEN"]
    request = {
        "receipt": payment.receipt,
        "amount": refund.amount,
        "shortcode": shortcode,
        "reason": f"Refund {payment.order.number}",
        "result_url": f"{base}/result/{token}",
        "timeout_url": f"{base}/timeout/{token}",
        "occasion": payment.order.number,
    }
    db.session.rollback()  # hold no transaction (and no lock) while M-Pesa answers
    try:
        ack = get_client().reverse(**request)
    except (DarajaUnavailable, DarajaBusy) as exc:
        _note_no_answer(refund_id, exc.message)
    except DarajaError as exc:
        refused(refund_id, exc.message or "M-Pesa refused the reversal")
    else:
        acknowledged(refund_id, ack)


@retried("refund_no_answer")
def _note_no_answer(refund_id: str, message: str) -> None:
    refund = lock_refund(BY_REFUND, refund_id)
    if refund.status == RefundStatus.REQUESTED:
        refund.result_desc = f"M-Pesa did not answer ({message}); to be sent again"[:255]
        refund.updated_at = utcnow()
    db.session.commit()
    log.warning(
        f"reversal for refund {refund_id} got no answer: {message}",
        extra={"event": "refund.no_answer", "refund": refund_id},
    )


def resend_requested(older_than_s: float = RESEND_AFTER_S, limit: int = RESEND_BATCH) -> int:
    """Send again the reversals M-Pesa did not answer (still `requested`), each claimed
    first (`claim_stale`). Sending again is safe: a second Reversal of one transaction is
    refused by M-Pesa (`R000001`), never paid. Returns how many were sent."""
    last_touched = func.coalesce(Refund.checked_at, Refund.updated_at, Refund.created_at)
    sent = 0
    reversal = Refund.method == "reversal"
    stale = claim_stale(Refund, RefundStatus.REQUESTED, last_touched, older_than_s, limit, reversal)
    for refund_id in stale:
        send_reversal(refund_id)
        sent += 1
    return sent


@after_each_pass
def resend_refunds(report: PassReport) -> None:
    """Part of every reconcile pass: reversals with no answer are sent again."""
    if refunds_on():
        report.refunds_resent += resend_requested()

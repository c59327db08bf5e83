"""Refunds through M-Pesa: Daraja's Reversal gives back the whole of one payment
(docs/refunds.md). Three steps, each under the order's lock where it changes anything:

1. `request_reversal`: the refund is recorded `requested` (and committed) before Daraja
   is asked, so it is never lost and never asked for twice: one refund in flight per
   payment.
2. `send_reversal`: Daraja is asked with no transaction open. Its acknowledgement makes
   the refund `pending` (with the ConversationID its result is matched by); a refusal
   makes it `failed`; no answer leaves it `requested`, visible, to be sent again (a
   second Reversal of one transaction is refused by M-Pesa, never paid twice).
3. What M-Pesa then says settles it: `refund_outcomes.py`.
"""

from __future__ import annotations

import logging

from flask import current_app
from sqlalchemy import func, select

from ..errors import ApiError, Conflict, NotFound
from ..extensions import db
from ..locking import BY_REFUND, lock_order, lock_refund, retried
from ..models import PaymentMethod, PaymentStatus, Refund, RefundStatus, utcnow
from ..mpesa.client import (
    DarajaBusy,
    DarajaError,
    DarajaUnavailable,
    get_client,
)
from .reconcile import PassReport, after_each_pass
from .refund_outcomes import AFTER_ACKNOWLEDGED, claim_stale, landed, refunds_on
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
        and not any(r.status in RefundStatus.IN_FLIGHT for r in payment.refunds)
    )


def request_reversal(
    order_id: str,
    *,
    payment_id: str | None,
    amount: int | None,
    reason: str,
    note: str | None,
    actor: str,
    api_key_id: int | None = None,
    idempotency_key: str | None = None,
) -> tuple[Refund, bool]:
    """Refund a payment of this order in full through M-Pesa: record it, ask Daraja.
    Returns the refund and whether it is new (False: the Idempotency-Key's earlier one)."""
    reason = refund_reason(reason)
    note = review_note(note) if note else None
    if not refunds_on():
        raise Conflict(
            "Refunds through M-Pesa are off: set MPESA_INITIATOR_NAME and its credential "
            "(docs/configuration.md). Money given back another way can be recorded by hand.",
            code="refunds_off",
        )
    refund, new = _record(
        order_id, payment_id, amount, reason, note, actor, api_key_id, idempotency_key
    )
    if new:
        send_reversal(refund.id)
    return db.session.get(Refund, refund.id), new


@retried("request_refund", unique_is_race=True)
def _record(order_id, payment_id, amount, reason, note, actor, api_key_id, key):
    order = lock_order(order_id)
    if key is not None:
        earlier = db.session.scalar(
            select(Refund).where(Refund.api_key_id == api_key_id, Refund.idempotency_key == key)
        )
        if earlier is not None:
            if earlier.order_id != order.id or (payment_id and earlier.payment_id != payment_id):
                raise Conflict(
                    "This Idempotency-Key was already used with a different request.",
                    code="idempotency_key_reused",
                )
            db.session.rollback()
            return earlier, False
    payment = _payment_to_refund(order, payment_id)
    whole = payment.paid_amount or payment.amount
    if amount is not None and amount != whole:
        raise Conflict(
            f"M-Pesa's Reversal gives back the whole payment (KES {whole:,}); a partial "
            "refund needs B2C, which is not configured.",
            code="partial_refund_unavailable",
        )
    refund = add_refund(
        payment,
        whole,
        "reversal",
        RefundStatus.REQUESTED,
        reason,
        note,
        actor,
        api_key_id=api_key_id,
        idempotency_key=key,
    )
    payment.refunding_amount = (payment.refunding_amount or 0) + whole
    db.session.flush()
    transition(
        order,
        Kind.REFUND_REQUESTED,
        f"{actor}: refund of KES {whole:,} through M-Pesa requested ({reason})"
        + (f": {note}" if note else ""),
        payment=payment,
        refund=refund,
        actor=actor,
        amount=whole,
        reason=reason,
    )
    db.session.commit()
    return refund, True


def _payment_to_refund(order, payment_id: str | None):
    """The payment named, or the order's one reversible payment; a clear 4xx otherwise."""
    if payment_id is not None:
        payment = next((p for p in order.payments if p.id == payment_id), None)
        if payment is None:
            raise NotFound("No payment with this id on this order.", code="payment_not_found")
        if any(r.status in RefundStatus.IN_FLIGHT for r in payment.refunds):
            raise Conflict(
                "A refund of this payment is already under way.", code="refund_in_progress"
            )
        if not reversible(payment):
            raise Conflict(
                "This payment cannot be refunded through M-Pesa: it is not completed, has "
                "no M-Pesa receipt, or was already refunded.",
                code="not_refundable",
            )
        return payment
    candidates = [p for p in order.payments if reversible(p)]
    if len(candidates) == 1:
        return candidates[0]
    if any(r.status in RefundStatus.IN_FLIGHT for p in order.payments for r in p.refunds):
        raise Conflict("A refund of this order is already under way.", code="refund_in_progress")
    if not candidates:
        raise Conflict("This order has no payment that can be refunded.", code="not_refundable")
    raise ApiError(
        f"This order has {len(candidates)} payments that can be refunded: name one.",
        code="validation_error",
        status=422,
        fields={"payment_id": "Required when the order has several refundable payments."},
    )


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
        _refused(refund_id, exc.message or "M-Pesa refused the reversal")
    else:
        _acknowledged(refund_id, ack)
        for step in AFTER_ACKNOWLEDGED:
            step(ack.conversation_id)


@retried("refund_acknowledged")
def _acknowledged(refund_id: str, ack) -> None:
    refund = lock_refund(BY_REFUND, refund_id)
    if refund.status != RefundStatus.REQUESTED:
        db.session.rollback()
        return
    refund.conversation_id = ack.conversation_id
    refund.originator_conversation_id = ack.originator_conversation_id
    refund.checked_at = None  # its news is this acknowledgement (`updated_at`)
    payment = refund.payment
    transition(
        payment.order,
        Kind.REFUND_PENDING,
        f"M-Pesa took the reversal of KES {refund.amount:,} ({ack.conversation_id})",
        payment=payment,
        refund=refund,
        conversation_id=ack.conversation_id,
    )
    db.session.commit()


@retried("refund_refused")
def _refused(refund_id: str, message: str) -> None:
    refund = lock_refund(BY_REFUND, refund_id)
    if refund.status != RefundStatus.REQUESTED:
        db.session.rollback()
        return
    refund.result_desc = message[:255]
    payment = refund.payment
    landed(payment, refund)
    transition(
        payment.order,
        Kind.REFUND_FAILED,
        f"M-Pesa refused the reversal: {message}",
        payment=payment,
        refund=refund,
        level=logging.WARNING,
    )
    db.session.commit()


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
    for refund_id in claim_stale(RefundStatus.REQUESTED, last_touched, older_than_s, limit):
        send_reversal(refund_id)
        sent += 1
    return sent


@after_each_pass
def resend_refunds(report: PassReport) -> None:
    """Part of every reconcile pass: reversals with no answer are sent again."""
    if refunds_on():
        report.refunds_resent += resend_requested()

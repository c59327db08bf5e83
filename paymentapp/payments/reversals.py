"""Refunds through M-Pesa: Daraja's Reversal gives back the whole of one payment
(docs/refunds.md). Three steps, each under the order's lock where it changes anything:

1. `request_reversal`: the refund is recorded `requested` (and committed) before Daraja
   is asked, so it is never lost and never asked for twice: one refund in flight per
   payment.
2. `send_reversal`: Daraja is asked with no transaction open. Its acknowledgement makes
   the refund `pending` (with the ConversationID its result is matched by); a refusal
   makes it `failed`; no answer leaves it `requested`, visible, to be sent again (a
   second Reversal of one transaction is refused by M-Pesa, never paid twice).
3. `settle_refund` (from the result callback, `callbacks/reversal.py`): success with the
   refund's amount → `succeeded`, and only then does the money stop counting
   (`Payment.refunded_amount`); anything else → `failed`, with M-Pesa's reason.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select, update

from ..errors import ApiError, Conflict, NotFound
from ..extensions import db
from ..locking import BY_REFUND, lock_order, lock_refund, retried
from ..models import PaymentMethod, PaymentStatus, Refund, RefundStatus, utcnow
from ..mpesa.client import (
    DarajaBusy,
    DarajaError,
    DarajaUnavailable,
    get_client,
    initiator_configured,
)
from .money import refundable
from .reconcile import PassReport, after_each_pass
from .refunds import add_refund, refund_reason
from .services import review_note
from .states import Kind, transition

log = logging.getLogger(__name__)

ALREADY_REVERSED = "R000001"
# Called with a ConversationID once its acknowledgement is committed: a result that came
# first (and waits, stored) is applied now (callbacks/reversal.py registers it).
AFTER_ACKNOWLEDGED: list = []
RESEND_AFTER_S = 60  # a refund still `requested` this long (no answer) is sent again
CHECK_AFTER_S = 300  # a `pending` refund with no news this long is asked about
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


def refunds_on() -> bool:
    """Are refunds through M-Pesa configured (an initiator and its credential)?"""
    return initiator_configured(current_app.config)


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
    _landed(payment, refund)
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
    first so that two reconcilers never send one twice at once. Sending again is safe: a
    second Reversal of one transaction is refused by M-Pesa (`R000001`), never paid.
    Returns how many were sent."""
    stale = utcnow() - timedelta(seconds=older_than_s)
    last_touched = func.coalesce(Refund.updated_at, Refund.created_at)
    due = db.session.scalars(
        select(Refund.id)
        .where(Refund.status == RefundStatus.REQUESTED, last_touched <= stale)
        .order_by(Refund.created_at)
        .limit(limit)
    ).all()
    db.session.commit()
    sent = 0
    for refund_id in due:
        # a scheduling-only claim, committed on its own: it changes no status and no money
        claimed = db.session.execute(
            update(Refund)
            .where(
                Refund.id == refund_id,
                Refund.status == RefundStatus.REQUESTED,
                last_touched <= stale,
            )
            .values(updated_at=utcnow())
        ).rowcount
        db.session.commit()
        if claimed:
            send_reversal(refund_id)
            sent += 1
    return sent


@after_each_pass
def resend_refunds(report: PassReport) -> None:
    """Part of every reconcile pass: reversals with no answer are sent again."""
    if refunds_on():
        report.refunds_resent += resend_requested()


def _landed(payment, refund: Refund) -> None:
    """The refund is no longer in flight (it succeeded or failed)."""
    payment.refunding_amount = max(0, (payment.refunding_amount or 0) - refund.amount)


def check_pending(older_than_s: float = CHECK_AFTER_S, limit: int = RESEND_BATCH) -> int:
    """Ask Transaction Status about reversals whose result has not come (still `pending`
    this long after their last news), each claimed first so that two reconcilers never
    ask about one at once. Returns how many were asked about."""
    stale = utcnow() - timedelta(seconds=older_than_s)
    last_news = func.coalesce(Refund.checked_at, Refund.updated_at, Refund.created_at)
    due = db.session.scalars(
        select(Refund.id)
        .where(Refund.status == RefundStatus.PENDING, last_news <= stale)
        .order_by(Refund.created_at)
        .limit(limit)
    ).all()
    db.session.commit()
    asked = 0
    for refund_id in due:
        # a scheduling-only claim, committed on its own: it changes no status and no money
        claimed = db.session.execute(
            update(Refund)
            .where(
                Refund.id == refund_id,
                Refund.status == RefundStatus.PENDING,
                last_news <= stale,
            )
            .values(checked_at=utcnow())
        ).rowcount
        db.session.commit()
        if claimed:
            _ask_status(refund_id)
            asked += 1
    return asked


def _ask_status(refund_id: str) -> None:
    """Ask Transaction Status about a reversal, by the OriginatorConversationID of its
    request (or its receipt, when known); the answer comes to `/callbacks/status/…`."""
    refund = db.session.get(Refund, refund_id)
    config = current_app.config
    base = f"{config['PUBLIC_BASE_URL']}/callbacks/status"
    token = config["MPESA_CALLBACK_TOKEN"]
    request = {
        "shortcode": config["MPESA_SHORTCODE"],
        "result_url": f"{base}/result/{token}",
        "timeout_url": f"{base}/timeout/{token}",
        "original_conversation_id": refund.originator_conversation_id,
        "transaction_id": refund.transaction_id,
        "reason": f"Refund {refund.id}",
    }
    db.session.rollback()  # no transaction open while M-Pesa answers
    try:
        ack = get_client().transaction_status(**request)
    except DarajaError as exc:  # asked again on a later pass
        log.warning(
            f"Transaction Status for refund {refund_id} not asked: {exc.message}",
            extra={"event": "refund.status_unasked", "refund": refund_id},
        )
        return
    _status_asked(refund_id, ack.conversation_id)
    for step in AFTER_ACKNOWLEDGED:
        step(ack.conversation_id)


@retried("refund_status_asked")
def _status_asked(refund_id: str, conversation_id: str) -> None:
    refund = lock_refund(BY_REFUND, refund_id)
    refund.check_conversation_id = conversation_id
    db.session.commit()


@after_each_pass
def check_refunds(report: PassReport) -> None:
    """Part of every reconcile pass: reversals whose result has not come are asked about."""
    if refunds_on():
        report.refunds_checked += check_pending()


def settle_refund(refund: Refund, result) -> str:
    """Apply a Reversal's result to its LOCKED refund; returns the callback outcome
    (`applied`, `duplicate`). The pipeline commits."""
    if refund.status != RefundStatus.PENDING:
        return "duplicate"
    refund.result_code = result.result_code
    refund.result_desc = (result.result_desc or "")[:255]
    amount = result.parameters.get("Amount")
    original = result.parameters.get("OriginalTransactionID")
    matches = (amount is None or _whole(amount) == refund.amount) and (
        original is None or original == refund.payment.receipt
    )
    if result.succeeded and matches:
        _succeed(refund, result.transaction_id, "reversal")
    elif result.succeeded:  # success for another amount or transaction: believe neither
        _fail(refund, result, f"reversal result does not match: {amount} KES for {original}")
    elif result.result_code == ALREADY_REVERSED:
        _fail(refund, result, "M-Pesa says this payment was already reversed: check first")
    else:
        _fail(refund, result)
    return "applied"


def settle_by_status(refund: Refund, result) -> str:
    """Apply what Transaction Status says of a pending refund's reversal (its result
    never came, or its queue timed out): completed for the refund's amount → succeeded;
    no such transaction → failed; anything else changes nothing yet."""
    if refund.status != RefundStatus.PENDING:
        return "duplicate"
    said = str(result.parameters.get("TransactionStatus") or "").strip().lower()
    if result.succeeded and said == "completed":
        if _whole(result.parameters.get("Amount")) != refund.amount:
            _fail(refund, result, "Transaction Status reports another amount for the reversal")
            return "applied"
        receipt = result.parameters.get("ReceiptNo") or result.transaction_id
        refund.result_code, refund.result_desc = "0", "completed (Transaction Status)"
        _succeed(refund, receipt, "Transaction Status")
        return "applied"
    if result.succeeded:
        refund.result_desc = f"Transaction Status: {said or 'no status'}; asked again later"
        refund.updated_at = utcnow()
        return "ignored"
    refund.result_code = result.result_code
    refund.result_desc = f"no such reversal at M-Pesa ({result.result_desc})"[:255]
    _fail(refund, result)
    return "applied"


def _succeed(refund: Refund, receipt: str | None, source: str) -> None:
    """The money went back: it stops counting, and a review that asked for it closes."""
    payment = refund.payment
    _landed(payment, refund)
    now = utcnow()
    refund.transaction_id = receipt
    refund.completed_at = now
    payment.refunded_amount = (payment.refunded_amount or 0) + refund.amount
    if payment.needs_review and refundable(payment) == 0:
        payment.needs_review = False
        payment.review_note = f"refunded KES {refund.amount:,} through M-Pesa"
        payment.reviewed_at = now
    transition(
        payment.order,
        Kind.REFUND_SUCCEEDED,
        f"M-Pesa gave back KES {refund.amount:,} (reversal {receipt}, via {source})",
        payment=payment,
        refund=refund,
        amount=refund.amount,
        receipt=receipt,
    )


def _fail(refund: Refund, result, review: str | None = None) -> None:
    """The money did not go back (it still counts); `review` flags the payment too."""
    payment = refund.payment
    _landed(payment, refund)
    order = payment.order
    transition(
        order,
        Kind.REFUND_FAILED,
        f"reversal failed: {result.result_code} {result.result_desc}",
        payment=payment,
        refund=refund,
        level=logging.WARNING,
        result_code=result.result_code,
    )
    if review:
        payment.needs_review = True
        payment.review_reason = review[:255]
        transition(
            order,
            Kind.PAYMENT_REVIEW,
            f"{review} (via reversal result)",
            payment=payment,
            level=logging.WARNING,
        )


def timed_out(refund: Refund, result) -> str:
    """Safaricom's queue timed out on the request: the refund stays pending (not a
    failure) and says so; M-Pesa's Transaction Status settles it."""
    if refund.status != RefundStatus.PENDING:
        return "duplicate"
    refund.result_desc = f"Safaricom's queue timed out: {result.result_desc}"[:255]
    refund.updated_at = utcnow()
    return "applied"


def _whole(value) -> int | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number == int(number) else None

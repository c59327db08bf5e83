"""What M-Pesa says of a refund through it, and asking when it says nothing (docs/refunds.md):

- `settle_refund`: a Reversal's result (`callbacks/initiator.py`). Success with the
  refund's amount and the payment's receipt → `succeeded`, and only then does the money
  stop counting (`Payment.refunded_amount`); anything else → `failed`, with M-Pesa's
  reason (a payment said to be reversed already is flagged for an admin).
- `timed_out`: Safaricom's queue timed out on the request: not a failure; it says so.
- `check_pending` (a reconcile step): a `pending` refund with no news for a while is
  asked about with Transaction Status; `settle_by_status` applies the answer.

Each change runs holding the order's lock (`locking.lock_refund`); the caller commits.
"""

from __future__ import annotations

import logging

from flask import current_app
from sqlalchemy import func

from ..extensions import db
from ..locking import BY_REFUND, lock_refund, retried
from ..models import Refund, RefundStatus, utcnow
from ..mpesa.client import DarajaError, get_client, initiator_configured
from ..mpesa.formats import parse_amount
from .money import refundable
from .reconcile import PassReport, after_each_pass, claim_stale
from .states import Kind, transition

log = logging.getLogger(__name__)

ALREADY_REVERSED = "R000001"
# Called with a ConversationID once its acknowledgement is committed: a result that came
# first (and waits, stored) is applied now (callbacks/initiator.py registers it).
AFTER_ACKNOWLEDGED: list = []
CHECK_AFTER_S = 300  # a `pending` refund with no news this long is asked about
CHECK_BATCH = 20


def refunds_on() -> bool:
    """Are refunds through M-Pesa configured (an initiator and its credential)?"""
    return initiator_configured(current_app.config)


def landed(payment, refund: Refund) -> None:
    """The refund is no longer in flight (it succeeded or failed)."""
    payment.refunding_amount = max(0, (payment.refunding_amount or 0) - refund.amount)


def what(refund: Refund) -> str:
    """The refund's way back, in words."""
    return "B2C payment" if refund.method == "b2c" else "reversal"


def check_pending(older_than_s: float = CHECK_AFTER_S, limit: int = CHECK_BATCH) -> int:
    """Ask Transaction Status about reversals whose result has not come (still `pending`
    this long after their last news). Returns how many were asked about."""
    last_news = func.coalesce(Refund.checked_at, Refund.updated_at, Refund.created_at)
    asked = 0
    for refund_id in claim_stale(Refund, RefundStatus.PENDING, last_news, older_than_s, limit):
        _ask_status(refund_id)
        asked += 1
    return asked


def _ask_status(refund_id: str) -> None:
    """Ask Transaction Status about a reversal or a B2C payment, by the
    OriginatorConversationID of its request (or its receipt, when known), on the shortcode
    that sent it; the answer comes to `/callbacks/status/…`."""
    refund = db.session.get(Refund, refund_id)
    config = current_app.config
    base = f"{config['PUBLIC_BASE_URL']}/callbacks/status"
    token = config["MPESA_CALLBACK_TOKEN"]
    b2c = refund.method == "b2c"
    request = {
        "shortcode": config["MPESA_B2C_SHORTCODE"] if b2c else config["MPESA_SHORTCODE"],
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


def acknowledged(refund_id: str, ack) -> None:
    """Daraja took the request: the refund is `pending`, matched by the acknowledgement's
    ConversationID; a result that came first (and waits, stored) is applied now."""
    _acknowledged(refund_id, ack)
    for step in AFTER_ACKNOWLEDGED:
        step(ack.conversation_id)


def lock_requested(refund_id: str) -> Refund | None:
    """The refund, its order locked, while it is still `requested`; None (and nothing
    held) once something else has answered for it."""
    refund = lock_refund(BY_REFUND, refund_id)
    if refund.status != RefundStatus.REQUESTED:
        db.session.rollback()
        return None
    return refund


@retried("refund_acknowledged")
def _acknowledged(refund_id: str, ack) -> None:
    refund = lock_requested(refund_id)
    if refund is None:
        return
    refund.conversation_id = ack.conversation_id
    refund.originator_conversation_id = ack.originator_conversation_id
    refund.checked_at = None  # its news is this acknowledgement (`updated_at`)
    payment = refund.payment
    transition(
        payment.order,
        Kind.REFUND_PENDING,
        f"M-Pesa took the {what(refund)} of KES {refund.amount:,} ({ack.conversation_id})",
        payment=payment,
        refund=refund,
        conversation_id=ack.conversation_id,
    )
    db.session.commit()


@retried("refund_refused")
def refused(refund_id: str, message: str) -> None:
    """Daraja refused the request (or it never reached M-Pesa): the refund failed, and
    the money still counts."""
    refund = lock_requested(refund_id)
    if refund is None:
        return
    refund.result_desc = message[:255]
    payment = refund.payment
    landed(payment, refund)
    transition(
        payment.order,
        Kind.REFUND_FAILED,
        f"M-Pesa refused the {what(refund)}: {message}",
        payment=payment,
        refund=refund,
        level=logging.WARNING,
    )
    db.session.commit()


def settle_refund(refund: Refund, result) -> str:
    """Apply a Reversal's or a B2C payment's result to its LOCKED refund; returns the
    callback outcome (`applied`, `duplicate`). The pipeline commits."""
    if refund.status == RefundStatus.FAILED and result.succeeded:
        return _paid_after_failing(refund, result)
    if refund.status != RefundStatus.PENDING:
        return "duplicate"
    refund.result_code = result.result_code
    refund.result_desc = (result.result_desc or "")[:255]
    if refund.method == "b2c":
        amount = result.parameters.get("TransactionAmount")
        original = None
        receipt = result.parameters.get("TransactionReceipt") or result.transaction_id
    else:
        amount = result.parameters.get("Amount")
        original = result.parameters.get("OriginalTransactionID")
        receipt = result.transaction_id
    matches = (amount is None or parse_amount(amount)[0] == refund.amount) and (
        original is None or original == refund.payment.receipt
    )
    if result.succeeded and matches:
        _succeed(refund, receipt, "its result")
    elif result.succeeded:  # success for another amount or transaction: believe neither
        _fail(refund, result, f"{what(refund)} result does not match: {amount} KES for {original}")
    elif result.result_code == ALREADY_REVERSED:
        _fail(refund, result, "M-Pesa says this payment was already reversed: check first")
    else:
        _fail(refund, result)
    return "applied"


def _paid_after_failing(refund: Refund, result) -> str:
    """M-Pesa says a refund went through after all, once it had been failed (Transaction
    Status found nothing while M-Pesa was still at work): the money went back although
    it still counts, so an admin is asked to look (once: a duplicate says so)."""
    payment = refund.payment
    reason = (
        f"M-Pesa says the {what(refund)} of KES {refund.amount:,} (refund {refund.id}) went "
        "through after it was marked failed: check the statement before refunding again"
    )[:255]
    if payment.needs_review and payment.review_reason == reason:
        return "duplicate"
    payment.needs_review, payment.review_reason = True, reason
    transition(
        payment.order,
        Kind.PAYMENT_REVIEW,
        reason,
        payment=payment,
        level=logging.WARNING,
        refund_id=refund.id,
    )
    return "applied"


def settle_by_status(refund: Refund, result) -> str:
    """Apply what Transaction Status says of a pending refund's reversal (its result
    never came, or its queue timed out): completed for the refund's amount → succeeded;
    no such transaction → failed; anything else changes nothing yet."""
    if refund.status != RefundStatus.PENDING:
        return "duplicate"
    said = str(result.parameters.get("TransactionStatus") or "").strip().lower()
    if result.succeeded and said == "completed":
        if parse_amount(result.parameters.get("Amount"))[0] != refund.amount:
            _fail(
                refund, result, f"Transaction Status reports another amount for the {what(refund)}"
            )
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
    refund.result_desc = f"no such {what(refund)} at M-Pesa ({result.result_desc})"[:255]
    _fail(refund, result)
    return "applied"


def _succeed(refund: Refund, receipt: str | None, source: str) -> None:
    """The money went back: it stops counting, and a review that asked for it closes."""
    payment = refund.payment
    landed(payment, refund)
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
        f"M-Pesa gave back KES {refund.amount:,} ({what(refund)} {receipt}, via {source})",
        payment=payment,
        refund=refund,
        amount=refund.amount,
        receipt=receipt,
    )


def _fail(refund: Refund, result, review: str | None = None) -> None:
    """The money did not go back (it still counts); `review` flags the payment too."""
    payment = refund.payment
    landed(payment, refund)
    order = payment.order
    transition(
        order,
        Kind.REFUND_FAILED,
        f"{what(refund)} failed: {result.result_code} {result.result_desc}",
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
            f"{review} (via {what(refund)} result)",
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

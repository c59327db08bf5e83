"""Payment rules: starting an STK Push, applying results, admin actions.

Every state change happens in one transaction holding a row lock, commits, and only
then emits `payment_update` (with the order's new `version`).
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select

from ..errors import ApiError, Conflict, NotFound, TooManyRequests, UpstreamError
from ..extensions import db
from ..locking import for_update
from ..logs import log_event
from ..models import Order, OrderEvent, OrderStatus, Payment, PaymentStatus, utcnow
from ..mpesa.client import (
    DarajaAuthError,
    DarajaBusy,
    DarajaError,
    DarajaUnavailable,
    SubscriberLocked,
    get_client,
)
from ..orders.schemas import payment_json
from ..phones import mask_phone
from ..realtime.emit import emit_order_update

log = logging.getLogger(__name__)

# Daraja ResultCode → payment status (DARAJA.md); anything else is `failed`.
RESULT_STATUS = {
    0: PaymentStatus.COMPLETED,
    1032: PaymentStatus.CANCELLED,
    1037: PaymentStatus.TIMEOUT,
    1019: PaymentStatus.TIMEOUT,
}


# Where a completed payment's `paid_amount` came from.
AMOUNT_FROM_CALLBACK = "callback"
AMOUNT_FROM_QUERY = "query"


def status_for_result(result_code: int) -> str:
    return RESULT_STATUS.get(result_code, PaymentStatus.FAILED)


def _event(
    order: Order, kind: str, detail: str, payment: Payment | None = None, actor: str | None = None
) -> None:
    db.session.add(
        OrderEvent(
            order_id=order.id,
            payment_id=payment.id if payment else None,
            kind=kind,
            detail=detail[:255],
            actor=actor,
        )
    )


def _finish(payment: Payment, status: str, desc: str, result_code: int | None = None) -> None:
    """Move a payment to a final status and record the change on its order."""
    payment.status = status
    payment.result_code = result_code
    payment.result_desc = (desc or "")[:255]
    payment.next_query_at = None
    payment.updated_at = utcnow()
    payment.order.touch()


def _lock_order(order_id: str) -> Order:
    order = db.session.scalar(for_update(select(Order).where(Order.id == order_id)))
    if order is None:
        raise NotFound("No order with this id.", code="order_not_found")
    return order


def _lock_payment(payment_id: str) -> Payment:
    payment = db.session.scalar(for_update(select(Payment).where(Payment.id == payment_id)))
    if payment is None:
        raise NotFound("No payment with this id.", code="payment_not_found")
    return payment


# -- starting a payment -------------------------------------------------------------------


def _check_phone_cooldown(phone: str, now: datetime) -> None:
    """Daraja locks a subscriber while a prompt is open: don't send a second one."""
    cooldown = current_app.config.get("PAYMENT_PHONE_COOLDOWN_S", 10)
    recent = db.session.scalar(
        select(Payment)
        .where(Payment.phone == phone)
        .where(
            (Payment.status == PaymentStatus.PENDING)
            | (
                Payment.checkout_request_id.is_not(None)  # a prompt really reached the phone
                & (Payment.created_at > now - timedelta(seconds=cooldown))
            )
        )
        .order_by(Payment.created_at.desc())
        .limit(1)
    )
    if recent is None:
        return
    if recent.status == PaymentStatus.PENDING:
        message = (
            "A payment prompt is already open on this phone. Answer or cancel it, then try again."
        )
        wait = 60
    else:
        message = f"Please wait {cooldown} seconds before sending another prompt to this phone."
        wait = cooldown
    raise TooManyRequests(message, code="phone_busy", headers={"Retry-After": str(wait)})


def start_payment(order_id: str, phone: str) -> Payment:
    """Create a pending payment and send the STK Push; one prompt per order at a time.

    The payment row is committed before Daraja is called, so a double click finds it
    and gets 409 instead of a second prompt; Daraja's answer fills in the ids.
    """
    now = utcnow()
    client = get_client()
    if wait := math.ceil(client.busy_for()):
        raise TooManyRequests(
            f"M-Pesa is busy right now. Please try again in {wait} seconds.",
            code="mpesa_busy",
            headers={"Retry-After": str(wait)},
        )
    order = _lock_order(order_id)
    if order.status == OrderStatus.PAID:
        raise Conflict("This order is already paid.", code="order_paid")
    if order.status == OrderStatus.CANCELLED:
        raise Conflict("This order was cancelled.", code="order_cancelled")
    pending = next((p for p in order.payments if p.status == PaymentStatus.PENDING), None)
    if pending is not None:
        raise Conflict(
            "A payment for this order is already waiting for the customer.",
            code="payment_pending",
            extra={"payment": payment_json(pending)},
        )
    _check_phone_cooldown(phone, now)
    query_after = current_app.config["PAYMENT_QUERY_AFTER_S"]
    payment = Payment(
        order_id=order.id,
        phone=phone,
        amount=order.amount,
        status=PaymentStatus.PENDING,
        next_query_at=now + timedelta(seconds=query_after),
    )
    db.session.add(payment)
    db.session.flush()
    order.touch()
    _event(order, "payment_started", f"STK push to {mask_phone(phone)}", payment)
    db.session.commit()
    log_event(
        log,
        "payment.started",
        f"order {order.number} payment started",
        order=order.number,
        payment=payment.id,
        phone=mask_phone(phone),
        amount=payment.amount,
    )
    emit_order_update(order)

    try:
        accepted = client.stk_push(
            amount=order.amount,
            phone=phone,
            reference=order.number,
            description=f"Pay {order.number}",
        )
    except DarajaUnavailable as exc:
        if exc.maybe_sent:
            # Daraja may have sent the prompt; keep it pending so a late callback (matched
            # by phone and amount) or the expiry sweep settles it.
            _note_unknown_push(payment.id, exc.message)
            return db.session.get(Payment, payment.id)
        _fail_push(payment.id, exc)
        raise _upstream(exc) from None
    except DarajaError as exc:
        _fail_push(payment.id, exc)
        raise _upstream(exc) from None

    payment = _lock_payment(payment.id)
    payment.checkout_request_id = accepted.checkout_request_id
    payment.merchant_request_id = accepted.merchant_request_id
    payment.updated_at = utcnow()
    db.session.commit()
    return payment


def _upstream(exc: DarajaError) -> ApiError:
    codes = {
        DarajaBusy: ("mpesa_busy", "M-Pesa is busy right now. Please try again in a minute."),
        SubscriberLocked: (
            "phone_busy",
            "Another M-Pesa prompt is open on this phone. Wait about a minute and try again.",
        ),
        DarajaAuthError: ("mpesa_unavailable", "M-Pesa payments are not available right now."),
        DarajaUnavailable: ("mpesa_unavailable", "M-Pesa could not be reached. Please try again."),
    }
    code, message = codes.get(type(exc), ("mpesa_refused", exc.message))
    return UpstreamError(message, code=code)


def _fail_push(payment_id: str, exc: DarajaError) -> None:
    payment = _lock_payment(payment_id)
    if payment.status != PaymentStatus.PENDING:
        db.session.rollback()
        return
    _finish(payment, PaymentStatus.FAILED, exc.message or "M-Pesa refused the request")
    order = payment.order
    _event(order, "payment_failed", f"STK push refused: {payment.result_desc}", payment)
    db.session.commit()
    log_event(
        log,
        "payment.push_failed",
        f"order {order.number} STK push failed",
        order=order.number,
        payment=payment.id,
        code=exc.code,
        reason=exc.message,
    )
    emit_order_update(order)


def _note_unknown_push(payment_id: str, message: str) -> None:
    payment = _lock_payment(payment_id)
    _event(payment.order, "push_unknown", f"Daraja gave no answer: {message}", payment)
    db.session.commit()
    log_event(
        log,
        "payment.push_unknown",
        f"order {payment.order.number} push outcome unknown",
        order=payment.order.number,
        payment=payment.id,
    )


# -- applying a result ----------------------------------------------------------------------


def apply_result(
    payment: Payment,
    *,
    result_code: int,
    result_desc: str,
    source: str,
    amount_from: str,
    receipt: str | None = None,
    paid_amount: int | None = None,
    amount_problem: str | None = None,
    paid_phone: str | None = None,
    paid_at: datetime | None = None,
) -> str:
    """Apply a final Daraja result to a LOCKED payment; returns what happened.

    Rules (CONTRACT.md): `completed` is never downgraded; a later success overrides
    failed/cancelled/timeout (the money moved); a success for the wrong amount, for a
    cancelled order or for an already-paid order is flagged for review instead of
    paying the order. A success callback must carry the amount paid: without a usable
    one it completes nothing, is flagged, and the reconciler asks STK Query, whose
    success completes the payment with the requested amount (a prompt cannot be paid
    with another). The caller commits and, when the result is `applied`, emits.
    """
    new_status = status_for_result(result_code)
    order = payment.order
    now = utcnow()

    if payment.status == PaymentStatus.COMPLETED:
        if new_status == PaymentStatus.COMPLETED and receipt and not payment.receipt:
            payment.receipt = receipt  # e.g. the query settled it first, without a receipt
            payment.updated_at = now
            order.touch()
            return "applied"
        return "duplicate" if new_status == PaymentStatus.COMPLETED else "ignored"
    if payment.status != PaymentStatus.PENDING and new_status != PaymentStatus.COMPLETED:
        return "duplicate" if payment.result_code == result_code else "ignored"
    if (
        new_status == PaymentStatus.COMPLETED
        and amount_from == AMOUNT_FROM_CALLBACK
        and paid_amount is None
    ):
        return _flag_success_without_amount(payment, amount_problem, receipt, source)

    previous = payment.status
    _finish(payment, new_status, result_desc, result_code)

    if new_status != PaymentStatus.COMPLETED:
        _event(
            order,
            f"payment_{new_status}",
            f"{result_code}: {payment.result_desc} (via {source})",
            payment,
        )
        log_event(
            log,
            f"payment.{new_status}",
            f"order {order.number} payment {new_status}: {payment.result_desc}",
            order=order.number,
            payment=payment.id,
            result_code=result_code,
            source=source,
            phone=mask_phone(payment.phone),
        )
        return "applied"

    payment.receipt = receipt or payment.receipt
    # Never invent an amount: a callback says what was paid; a query confirms the prompt,
    # and a prompt can only be paid with the amount it asked for.
    payment.paid_amount = paid_amount if amount_from == AMOUNT_FROM_CALLBACK else payment.amount
    payment.amount_source = amount_from
    payment.paid_phone = paid_phone
    payment.paid_at = paid_at or now
    if amount_from == AMOUNT_FROM_QUERY and payment.needs_review:
        # flagged while pending: a success callback without a usable amount, now confirmed
        payment.needs_review = False
        payment.review_note = f"confirmed by STK Query ({source})"
        payment.reviewed_at = now
    review = None
    if payment.paid_amount != payment.amount:
        review = f"amount mismatch: paid {paid_amount} KES, expected {payment.amount} KES"
    elif order.status == OrderStatus.CANCELLED:
        review = "paid after the order was cancelled"
    elif order.status == OrderStatus.PAID:
        review = f"order already paid; second payment {payment.receipt or ''}".strip()
    if review:
        payment.needs_review = True
        payment.review_reason = review
        _event(order, "payment_review", f"{review} (via {source})", payment)
        log.warning(
            "order %s payment %s flagged for review: %s | event=payment.review "
            "order=%s payment=%s receipt=%s",
            order.number,
            payment.id,
            review,
            order.number,
            payment.id,
            payment.receipt,
        )
        return "applied"

    order.status = OrderStatus.PAID
    order.paid_at = payment.paid_at
    late = f" (late success after {previous})" if previous != PaymentStatus.PENDING else ""
    via = "confirmed by query" if amount_from == AMOUNT_FROM_QUERY else f"via {source}"
    _event(order, "order_paid", f"receipt {payment.receipt or 'n/a'} {via}{late}", payment)
    log_event(
        log,
        "order.paid",
        f"order {order.number} marked paid, receipt {payment.receipt or 'n/a'}{late}",
        order=order.number,
        payment=payment.id,
        receipt=payment.receipt,
        amount=payment.paid_amount,
        amount_from=amount_from,
        source=source,
        phone=mask_phone(payment.phone),
    )
    return "applied"


def _flag_success_without_amount(
    payment: Payment, problem: str | None, receipt: str | None, source: str
) -> str:
    """A success callback with no usable Amount: record and flag it, pay nothing.

    A pending payment is queued for STK Query right away (by the reconciler, never
    inside the callback request); a query success then completes it.
    """
    reason = f"success callback without a usable amount ({problem or 'no Amount'})"
    if payment.status == PaymentStatus.PENDING:
        reason += "; checking with STK Query"
        payment.next_query_at = utcnow()
    reason = reason[:255]
    if payment.needs_review and payment.review_reason == reason:
        return "duplicate"
    payment.needs_review = True
    payment.review_reason = reason
    payment.updated_at = utcnow()
    order = payment.order
    order.touch()
    _event(order, "payment_review", f"{reason}, receipt {receipt or 'n/a'} (via {source})", payment)
    log_event(
        log,
        "payment.review",
        f"order {order.number} payment flagged for review: {reason}",
        order=order.number,
        payment=payment.id,
        receipt=receipt,
        source=source,
    )
    return "applied"


def expire_payment(payment: Payment, reason: str) -> str:
    """A LOCKED pending payment nobody answered becomes `timeout`."""
    if payment.status != PaymentStatus.PENDING:
        return "ignored"
    _finish(payment, PaymentStatus.TIMEOUT, reason)
    _event(payment.order, "payment_timeout", reason, payment)
    log_event(
        log,
        "payment.timeout",
        f"order {payment.order.number} payment timed out",
        order=payment.order.number,
        payment=payment.id,
        reason=reason,
    )
    return "applied"


def settle_from_query(payment_id: str, result, source: str) -> tuple[Payment, str]:
    """Apply an STK Query's final answer under a row lock; commit, then emit if it changed."""
    payment = _lock_payment(payment_id)
    outcome = apply_result(
        payment,
        result_code=result.result_code,
        result_desc=result.result_desc or "",
        source=source,
        amount_from=AMOUNT_FROM_QUERY,
    )
    db.session.commit()
    if outcome == "applied":
        emit_order_update(payment.order)
    return payment, outcome


def expire_pending(payment_id: str, reason: str) -> tuple[Payment, str]:
    """Time out a payment nobody answered, under a row lock; commit, then emit if changed."""
    payment = _lock_payment(payment_id)
    outcome = expire_payment(payment, reason)
    db.session.commit()
    if outcome == "applied":
        emit_order_update(payment.order)
    return payment, outcome


# -- admin actions ----------------------------------------------------------------------------


def check_payment_now(payment_id: str, actor: str) -> str:
    """Run an STK Query for a pending payment now; returns a sentence for the admin."""
    payment = db.session.get(Payment, payment_id)
    if payment is None:
        raise NotFound("No payment with this id.", code="payment_not_found")
    if payment.status != PaymentStatus.PENDING:
        return f"Payment is already {payment.status}."
    if not payment.checkout_request_id:
        return "M-Pesa never confirmed this prompt, so it cannot be queried."
    try:
        result = get_client().stk_query(payment.checkout_request_id)
    except DarajaError as exc:
        return f"M-Pesa did not answer the query: {exc.message}"
    if result.pending:
        return "M-Pesa says the customer has not answered yet."
    payment, _ = settle_from_query(payment_id, result, source=f"query by {actor}")
    return f"M-Pesa says: {result.result_code} {result.result_desc} → payment {payment.status}."


def cancel_order(order_id: str, actor: str) -> Order:
    """Cancel an unpaid order with no prompt in flight."""
    order = _lock_order(order_id)
    if order.status == OrderStatus.PAID:
        raise Conflict("A paid order cannot be cancelled.", code="order_paid")
    if order.status == OrderStatus.CANCELLED:
        db.session.rollback()
        return order
    if any(p.status == PaymentStatus.PENDING for p in order.payments):
        raise Conflict(
            "A payment prompt is still open; check its status first.", code="payment_pending"
        )
    order.status = OrderStatus.CANCELLED
    order.touch()
    _event(order, "order_cancelled", f"cancelled by {actor}", actor=actor)
    db.session.commit()
    log_event(
        log,
        "order.cancelled",
        f"order {order.number} cancelled by {actor}",
        order=order.number,
        actor=actor,
    )
    emit_order_update(order)
    return order


def resolve_review(payment_id: str, note: str, actor: str) -> Payment:
    """Mark a flagged payment as handled, with the admin's note."""
    note = (note or "").strip()
    if not note:
        raise ApiError(
            "Write a note saying how this was resolved.",
            code="note_required",
            status=422,
            fields={"note": "Required."},
        )
    payment = _lock_payment(payment_id)
    if not payment.needs_review:
        raise Conflict("This payment is not waiting for review.", code="not_in_review")
    payment.needs_review = False
    payment.review_note = note[:2000]
    payment.reviewed_at = utcnow()
    payment.order.touch()
    _event(payment.order, "review_resolved", f"{actor}: {note}", payment, actor=actor)
    db.session.commit()
    emit_order_update(payment.order)
    return payment

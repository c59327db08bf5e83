"""Payment rules: starting an STK Push, applying results, admin actions.

Every state change happens in one transaction holding a row lock, commits, and only
then emits `payment_update` (with the order's new `version`).
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta

from flask import current_app

from .. import audit
from ..errors import ApiError, Conflict, TooManyRequests, UpstreamError, get_or_404
from ..extensions import db
from ..locking import lock_order, lock_order_with_receipt, lock_payment, retried
from ..models import (
    Order,
    OrderStatus,
    Payment,
    PaymentMethod,
    PaymentStatus,
    utcnow,
)
from ..mpesa.client import (
    DarajaAuthError,
    DarajaBusy,
    DarajaError,
    DarajaUnavailable,
    SubscriberLocked,
    get_client,
)
from ..mpesa.formats import RECEIPT
from ..orders.schemas import payment_json
from ..phones import mask_phone
from .money import Money, apply_result, flag, pay_if_covered, receive
from .prompt_limits import check_order_prompts, check_phone_cooldown
from .states import AMOUNT_FROM_HAND, AMOUNT_FROM_QUERY, Draft, Kind, transition, write

log = logging.getLogger(__name__)

MAX_NOTE = 1000  # an admin's note on a review; longer is refused, never cut


def review_note(note: str | None) -> str:
    """An admin's note closing a review: required, at most MAX_NOTE characters."""
    note = (note or "").strip()
    if not note:
        raise ApiError(
            "Write a note saying how this was resolved.",
            code="note_required",
            status=422,
            fields={"note": "Required."},
        )
    if len(note) > MAX_NOTE:
        raise ApiError(
            f"Keep the note under {MAX_NOTE} characters.",
            code="note_too_long",
            status=422,
            fields={"note": f"At most {MAX_NOTE} characters."},
        )
    return note


# -- starting a payment -------------------------------------------------------------------


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
    payment = _create_pending(order_id, phone, now)
    order = payment.order

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
        raise upstream_error(exc) from None
    except DarajaError as exc:
        _fail_push(payment.id, exc)
        raise upstream_error(exc) from None

    return _accepted(payment.id, accepted)


@retried("start_payment")
def _accepted(payment_id: str, accepted) -> Payment:
    """Daraja took the push: give the payment its ids (under the order's lock)."""
    payment = lock_payment(payment_id)
    payment.checkout_request_id = accepted.checkout_request_id
    payment.merchant_request_id = accepted.merchant_request_id
    payment.updated_at = utcnow()
    db.session.commit()
    return payment


@retried("start_payment")
def _create_pending(order_id: str, phone: str, now: datetime) -> Payment:
    """The pending payment, committed under the order's lock before Daraja is called."""
    order = lock_order(order_id)
    if order.status == OrderStatus.PAID:
        raise Conflict("This order is already paid.", code="order_paid")
    if order.status == OrderStatus.CANCELLED:
        raise Conflict("This order was cancelled.", code="order_cancelled")
    if order.expires_at is not None and order.expires_at <= now:
        raise Conflict("This order has expired; ask the shop for a new one.", code="order_expired")
    pending = next((p for p in order.payments if p.status == PaymentStatus.PENDING), None)
    if pending is not None:
        raise Conflict(
            "A payment for this order is already waiting for the customer.",
            code="payment_pending",
            extra={"payment": payment_json(pending)},
        )
    check_order_prompts(order, now)
    check_phone_cooldown(phone, now)
    query_after = current_app.config["PAYMENT_QUERY_AFTER_S"]
    payment = Payment(
        phone=phone,
        amount=order.amount,
        status=PaymentStatus.PENDING,
        next_query_at=now + timedelta(seconds=query_after),
    )
    order.payments.append(payment)  # the snapshot sent after commit shows it
    db.session.flush()
    transition(
        order,
        Kind.PAYMENT_STARTED,
        f"STK push to {mask_phone(phone)}",
        payment=payment,
        message=f"order {order.number} payment started",
        phone=phone,
        amount=payment.amount,
    )
    db.session.commit()
    return payment


def upstream_error(exc: DarajaError) -> ApiError:
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


@retried("fail_push")
def _fail_push(payment_id: str, exc: DarajaError) -> None:
    payment = lock_payment(payment_id)
    if payment.status != PaymentStatus.PENDING:
        db.session.rollback()
        return
    payment.result_desc = (exc.message or "M-Pesa refused the request")[:255]
    transition(
        payment.order,
        Kind.PAYMENT_FAILED,
        f"STK push refused: {payment.result_desc}",
        payment=payment,
        message=f"order {payment.order.number} STK push failed",
        code=exc.code,
        reason=exc.message,
    )
    db.session.commit()


@retried("note_unknown_push")
def _note_unknown_push(payment_id: str, message: str) -> None:
    payment = lock_payment(payment_id)
    transition(
        payment.order,
        Kind.PUSH_UNKNOWN,
        f"Daraja gave no answer: {message}",
        payment=payment,
        message=f"order {payment.order.number} push outcome unknown",
    )
    db.session.commit()


# -- settling a payment -----------------------------------------------------------------


@retried("settle_from_query")
def settle_from_query(payment_id: str, result, source: str) -> tuple[Payment, str]:
    """Apply an STK Query's final answer under a row lock and commit."""
    payment = lock_payment(payment_id)
    outcome = apply_result(
        payment,
        result_code=result.result_code,
        result_desc=result.result_desc or "",
        source=source,
        amount_from=AMOUNT_FROM_QUERY,
    )
    db.session.commit()
    return payment, outcome


@retried("expire_pending")
def expire_pending(payment_id: str, reason: str) -> tuple[Payment, str]:
    """Time out a payment nobody answered, under a row lock, and commit."""
    payment = lock_payment(payment_id)
    if payment.status != PaymentStatus.PENDING:
        db.session.rollback()
        return payment, "ignored"
    payment.result_code = None
    payment.result_desc = reason[:255]
    transition(
        payment.order,
        Kind.PAYMENT_TIMEOUT,
        reason,
        payment=payment,
        message=f"order {payment.order.number} payment timed out",
        reason=reason,
    )
    db.session.commit()
    return payment, "applied"


# -- admin actions ----------------------------------------------------------------------------


def check_payment_now(payment_id: str, actor: str) -> tuple[str, str]:
    """Run an STK Query for a pending payment now, for an admin.

    Returns `(found, sentence)`: what the query found (`paid`, `review` (paid, but flagged),
    `waiting`, `failed` (failed, cancelled or timed out), `no_answer` (M-Pesa did not
    answer), or `not_checked` (nothing was asked)) and a sentence for the admin. Every
    query sent leaves a `status_checked` event on the order's timeline, written in the
    same transaction as whatever the answer changed.
    """
    # a plain read: nothing changes yet
    payment = get_or_404(Payment, payment_id, "No payment with this id.", "payment_not_found")
    if payment.status != PaymentStatus.PENDING:
        return "not_checked", f"Payment is already {payment.status}; nothing to check."
    checkout_id = payment.checkout_request_id
    if not checkout_id:
        return "not_checked", "M-Pesa never confirmed this prompt, so it cannot be queried."
    db.session.rollback()  # hold no transaction while waiting for M-Pesa; reload after
    try:
        result, problem = get_client().stk_query(checkout_id), None
    except DarajaError as exc:
        result, problem = None, exc.message or "no reason given"
    return _apply_check(payment_id, result, problem, actor)


@retried("check_payment")
def _apply_check(payment_id: str, result, problem: str | None, actor: str) -> tuple[str, str]:
    """Record what an admin's STK Query found, under the order's lock (read fresh: a
    callback may have settled the payment while M-Pesa was asked)."""
    payment = lock_payment(payment_id)
    order = payment.order
    level = logging.INFO
    if result is None:
        found = "no_answer"
        detail = f"M-Pesa did not answer the query: {problem}"
        sentence = f"M-Pesa did not answer the query: {problem} Nothing changed; try again."
        level = logging.WARNING
    elif result.pending:
        found = "waiting"
        detail = "M-Pesa says the customer has not answered yet"
        sentence = "M-Pesa says the customer has not answered yet."
    else:
        apply_result(
            payment,
            result_code=result.result_code,
            result_desc=result.result_desc or "",
            source=f"query by {actor}",
            amount_from=AMOUNT_FROM_QUERY,
        )
        answer = f"{result.result_code}: {result.result_desc or 'no description'}"
        detail = f"M-Pesa says {answer} (payment {payment.status})"
        if payment.status != PaymentStatus.COMPLETED:
            found = "failed"
            sentence = (
                f"M-Pesa says the payment did not go through ({answer}); "
                f"the payment is {payment.status}."
            )
        elif order.status == OrderStatus.PAID and not payment.needs_review:
            found = "paid"
            sentence = f"M-Pesa says the customer paid ({answer}); order {order.number} is paid."
        else:
            found = "review"
            sentence = (
                f"M-Pesa says the customer paid ({answer}), but the payment needs review: "
                f"{payment.review_reason or 'see the review queue'}."
            )
    transition(
        order,
        Kind.STATUS_CHECKED,
        detail,
        payment=payment,
        actor=actor,
        message=f"order {order.number} status checked by {actor}: {detail}",
        level=level,
        found=found,
    )
    db.session.commit()
    return found, sentence


@retried("resolve_review")
def resolve_review(payment_id: str, note: str, actor: str) -> Payment:
    """Mark a flagged payment as handled, with the admin's note; once resolved, its money
    counts toward the order (which may then be paid)."""
    note = review_note(note)
    payment = lock_payment(payment_id)
    if not payment.needs_review:
        raise Conflict("This payment is not waiting for review.", code="not_in_review")
    order = payment.order
    draft = Draft(order)
    view = draft.payment(payment)
    draft.set(view, needs_review=False, review_note=note, reviewed_at=utcnow())
    draft.move(
        Kind.REVIEW_RESOLVED,
        f"{actor}: {note}",
        payment=view,
        actor=actor,
        message=f"order {order.number} review resolved by {actor}",
    )
    pay_if_covered(draft, view, source=f"review by {actor}", via=f"resolved by {actor}")
    write(order, draft.changes)
    audit.record(
        "review.resolved",
        f"{order.number}: review of payment {payment.id} resolved",
        target=order.number,
        changes={"payment": payment.id, "order_status": order.status},
    )
    db.session.commit()
    return payment


def parse_hand_entry(receipt, amount) -> str:
    """A receipt and amount typed by an admin: the receipt, normalised; a 422 naming each
    field that is not valid."""
    receipt = (receipt or "").strip().upper()
    fields = {}
    if not RECEIPT.fullmatch(receipt):
        fields["receipt"] = "An M-Pesa receipt, e.g. NLJ7RT61SV."
    if isinstance(amount, bool) or not isinstance(amount, int) or not 1 <= amount <= 10_000_000:
        fields["amount"] = "Whole shillings, e.g. 1450."
    if fields:
        raise ApiError(
            "The payment is not valid.", code="validation_error", status=422, fields=fields
        )
    return receipt


@retried("record_by_hand", unique_is_race=True)
def record_payment_by_hand(
    order_id: str, receipt: str, amount: int, note: str | None, actor: str
) -> Payment:
    """A payment whose confirmation never arrived, entered from its M-Pesa receipt on one
    admin's word (M-Pesa's Transaction Status off: `receipt_checks.py` otherwise): it
    counts like any other, and stays flagged as entered by hand, with who entered it."""
    note = review_note(note)
    receipt = parse_hand_entry(receipt, amount)
    order, holder = lock_order_with_receipt(order_id, receipt)
    if holder is not None:
        raise Conflict("This receipt is already recorded.", code="receipt_known")
    payment = enter_by_hand(order, Money(receipt, amount), note, actor)
    audit.record(
        "payment.recorded_by_hand",
        f"{order.number}: receipt {receipt} (KES {amount:,}) recorded by hand",
        target=order.number,
        changes={"receipt": receipt, "amount": amount, "payment": payment.id},
    )
    db.session.commit()
    return payment


def enter_by_hand(
    order: Order, money: Money, note: str, actor: str, *, confirmed: bool = False
) -> Payment:
    """Write a receipt entered by hand to the LOCKED order (the caller commits). If the
    money is an STK prompt's own (`prompt_for`: one pending prompt of that amount, or one
    completed by STK Query without a receipt), the receipt goes on that prompt, so its
    STK callback or query later finds it paid: the same money never counts twice. Flagged
    for review unless M-Pesa `confirmed` it (Transaction Status)."""
    draft = Draft(order)
    said = f"entered by hand by {actor}: {note}"
    view, several = receive(
        draft,
        money,
        source=f"hand entry by {actor}" + (", confirmed by M-Pesa" if confirmed else ""),
        amount_from=AMOUNT_FROM_HAND,
        result_code=None,
        result_desc=(said + "; confirmed by M-Pesa" if confirmed else said)[:255],
        method=PaymentMethod.PAYBILL,
        phone="",
        entered_by=actor,
    )
    if several and not view.needs_review:
        flag(
            draft,
            view,
            "several prompts of this amount: check it is not their money",
            source="admin",
        )
    elif not (view.needs_review or confirmed):
        flag(draft, view, f"entered by hand by {actor}", source="admin")
    write(order, draft.changes)
    return next(p for p in order.payments if p.id == view.id)

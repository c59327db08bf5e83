"""The money rules: what a result, a query's answer, a Paybill payment or a receipt
entered by hand does to a payment and its order (docs/payments.md, "The money rules").
Every change they decide goes through `states.transition`; call them holding the
order's lock (`locking.py`).

- A payment counts toward its order when it is `completed` and its amount is trusted: the
  amount paid equals the amount asked for (a callback's Amount, or a prompt confirmed by
  STK Query, which cannot be paid with another amount) and it is not held, or an admin
  resolved its review; it counts net of refunds (`Payment.counts`, `net_amount`).
- An order is paid, exactly once, when the payments that count sum to at least its
  amount. A success for a different amount is recorded and flagged, and does not count
  until resolved; an overpayment pays and is flagged; a payment arriving on a paid or
  cancelled order is recorded and flagged, and changes nothing else.
- `completed` is never downgraded; a later success overrides failed, cancelled or
  timeout (the money moved). A success with no usable amount completes nothing: it is
  flagged and STK Query decides.
- The same money counts once: money that comes by another message goes to the one
  prompt it belongs to (`prompt_for`, `attach_to_prompt`).
"""

from __future__ import annotations

from datetime import datetime

from ..extensions import db
from ..models import Order, OrderStatus, Payment, PaymentMethod, PaymentStatus, utcnow
from .states import (
    AMOUNT_FROM_CALLBACK,
    AMOUNT_FROM_QUERY,
    NO_AMOUNT,
    PARTIAL,
    Kind,
    flag,
    hold,
    status_for_result,
    transition,
)

P = PaymentStatus
K = Kind


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
    """Apply a final Daraja result to a LOCKED payment; returns `applied`, `duplicate`
    or `ignored`. The caller commits; the effects follow the commit."""
    new_status = status_for_result(result_code)
    order = payment.order

    if payment.status == P.COMPLETED:
        if new_status == P.COMPLETED and receipt and payment.receipt and receipt != payment.receipt:
            # another movement of money for the same prompt (e.g. the prompt was settled
            # by its Paybill twin, then paid again): record it, never drop it
            return _second_payment(payment, receipt, paid_amount, paid_phone, paid_at, source)
        if new_status == P.COMPLETED and receipt and not payment.receipt:
            payment.receipt = receipt  # e.g. the query settled it first, without a receipt
            transition(order, K.RECEIPT_ADDED, f"receipt {receipt} via {source}", payment=payment)
            return "applied"
        return "duplicate" if new_status == P.COMPLETED else "ignored"
    if new_status != P.COMPLETED:
        if payment.status != P.PENDING:
            return "duplicate" if payment.result_code == result_code else "ignored"
        payment.result_code = result_code
        payment.result_desc = (result_desc or "")[:255]
        transition(
            order,
            Kind(f"payment_{new_status}"),
            f"{result_code}: {payment.result_desc} (via {source})",
            payment=payment,
            message=f"order {order.number} payment {new_status}: {payment.result_desc}",
            result_code=result_code,
            source=source,
            phone=payment.phone,
        )
        return "applied"
    if amount_from == AMOUNT_FROM_CALLBACK and paid_amount is None:
        return _success_without_amount(payment, amount_problem, receipt, source)
    complete_payment(
        payment,
        result_code=result_code,
        result_desc=result_desc,
        source=source,
        amount_from=amount_from,
        paid_amount=paid_amount if amount_from == AMOUNT_FROM_CALLBACK else payment.amount,
        receipt=receipt,
        paid_phone=paid_phone,
        paid_at=paid_at,
    )
    return "applied"


def _second_payment(
    payment: Payment, receipt: str, paid_amount, paid_phone, paid_at, source: str
) -> str:
    """A success with another receipt for a prompt that is already completed: another
    movement of money (one receipt is one movement), so its own payment, completed and
    flagged by the money rules. Without a usable amount nothing is invented: ignored, on
    record. The caller checked that no payment holds `receipt` yet."""
    if paid_amount is None:
        return "ignored"
    order = payment.order
    # asked for what the prompt asked: another amount is flagged and does not count until
    # an admin resolves it, as for a first success (money moves on an amount that matches)
    second = Payment(
        method=payment.method, phone=payment.phone, amount=payment.amount, status=P.PENDING
    )
    order.payments.append(second)
    db.session.flush()
    complete_payment(
        second,
        result_code=0,
        result_desc=f"a second payment for prompt {payment.id}",
        source=source,
        amount_from=AMOUNT_FROM_CALLBACK,
        paid_amount=paid_amount,
        receipt=receipt,
        paid_phone=paid_phone,
        paid_at=paid_at,
    )
    return "applied"


def prompt_for(order: Order, amount: int | None) -> tuple[Payment | None, bool]:
    """The STK prompt that money of `amount` arriving by another message (a Paybill
    confirmation, a receipt entered by hand) is most likely the same money as: a prompt of
    that amount still pending, or completed by STK Query without a receipt. Returns it when
    exactly one prompt fits, and whether several did (then none is chosen: the money is
    its own payment, flagged). Call it holding the order's lock."""
    fits = [
        p
        for p in order.payments
        if p.method == PaymentMethod.STK
        and p.amount == amount
        and (
            p.status == P.PENDING
            or (
                p.status == P.COMPLETED
                and p.receipt is None
                and p.amount_source == AMOUNT_FROM_QUERY
            )
        )
    ]
    return (fits[0] if len(fits) == 1 else None), len(fits) > 1


def attach_to_prompt(
    prompt: Payment,
    *,
    receipt: str,
    amount: int,
    source: str,
    amount_from: str = AMOUNT_FROM_CALLBACK,
    paid_phone: str | None = None,
    paid_at: datetime | None = None,
) -> None:
    """The money of `receipt` is `prompt`'s own (`prompt_for`): complete the pending
    prompt with it, or give the query-settled prompt its receipt; never a second payment."""
    if prompt.status == P.COMPLETED:
        prompt.receipt = receipt
        transition(prompt.order, K.RECEIPT_ADDED, f"receipt {receipt} via {source}", payment=prompt)
        return
    complete_payment(
        prompt,
        result_code=0,
        result_desc=f"confirmed by {source}",
        source=source,
        amount_from=amount_from,
        paid_amount=amount,
        receipt=receipt,
        paid_phone=paid_phone,
        paid_at=paid_at,
    )


def _success_without_amount(
    payment: Payment, problem: str | None, receipt: str | None, source: str
) -> str:
    """A success callback with no usable Amount: flag it, pay nothing, let STK Query decide
    (the reconciler queries it next; never inside the callback request)."""
    reason = f"{NO_AMOUNT} ({problem or 'no Amount'})"
    if payment.status == P.PENDING:
        reason += "; checking with STK Query"
        payment.next_query_at = utcnow()
    if payment.needs_review and payment.review_reason == reason[:255]:
        return "duplicate"
    flag(payment.order, payment, reason, source=f"{source}, receipt {receipt or 'n/a'}")
    return "applied"


def complete_payment(
    payment: Payment,
    *,
    result_code: int | None,
    result_desc: str,
    source: str,
    amount_from: str,
    paid_amount: int,
    receipt: str | None = None,
    paid_phone: str | None = None,
    paid_at: datetime | None = None,
    settle: bool = True,
) -> None:
    """Record a success with the amount it brought, then (unless told not to) settle the
    order."""
    order = payment.order
    previous = payment.status
    now = utcnow()
    payment.result_code = result_code
    payment.result_desc = (result_desc or "")[:255]
    payment.receipt = receipt or payment.receipt
    payment.paid_amount = paid_amount
    payment.amount_source = amount_from
    payment.paid_phone = paid_phone
    payment.paid_at = paid_at or now
    # the money lands now: a review closed before (e.g. of a success without an amount)
    # accepted nothing, so it cannot make this amount count
    payment.reviewed_at = None
    late = f" (late success after {previous})" if previous != P.PENDING else ""
    via = f"via {source}"
    if amount_from == AMOUNT_FROM_QUERY:  # "confirmed by query", or "… by query by admin:x"
        via = "confirmed by " + ("query" if source == "query" else source)
    trusted = amount_from == AMOUNT_FROM_QUERY or paid_amount == payment.amount
    if trusted and payment.needs_review and (payment.review_reason or "").startswith(NO_AMOUNT):
        # flagged for a success without a usable amount; this one says how much (or the
        # query confirmed the prompt): the question is answered
        payment.needs_review = False
        payment.review_note = (
            f"confirmed by STK Query ({source})"
            if amount_from == AMOUNT_FROM_QUERY
            else f"a later success callback said {paid_amount} KES"
        )
        payment.reviewed_at = now
    transition(
        order,
        K.PAYMENT_COMPLETED,
        f"paid {paid_amount} KES, receipt {payment.receipt or 'n/a'} {via}{late}",
        payment=payment,
        receipt=payment.receipt,
        amount=paid_amount,
        amount_from=amount_from,
        source=source,
        phone=payment.phone,
    )
    if settle:
        settle_order(order, payment, source=source, via=via, late=late)


def refundable(payment: Payment) -> int:
    """How much of `payment` may still be given back (0: nothing). Call it holding the
    order's lock. From a paid order's counting money only the part above the order's
    amount (a paid order stays covered); otherwise what the payment brought and kept."""
    if payment.status != P.COMPLETED:
        return 0
    left = payment.net_amount
    order = payment.order
    if order.status == OrderStatus.PAID and payment.counts:
        left = min(left, order.amount_paid - order.amount)
    return max(0, left)


def settle_order(order: Order, payment: Payment, *, source: str, via: str, late: str = "") -> None:
    """After a payment completed: pay the order if what counts covers it, else flag why."""
    if payment.paid_amount != payment.amount and not payment.counts:
        flag(
            order,
            payment,
            f"amount mismatch: paid {payment.paid_amount} KES, expected {payment.amount} KES",
            source=source,
            receipt=payment.receipt,
        )
        return
    if order.status == OrderStatus.CANCELLED:
        hold(order, payment, "paid after the order was cancelled", source=source)
        return
    if order.status == OrderStatus.PAID:
        reason = f"order already paid; second payment {payment.receipt or ''}".strip()
        flag(order, payment, reason, source=source, receipt=payment.receipt)
        return
    pay_if_covered(order, payment, source=source, via=via, late=late)


def pay_if_covered(
    order: Order, payment: Payment, *, source: str, via: str, late: str = ""
) -> None:
    """Pay a pending order whose counting payments now cover it (exactly once); an
    overpayment pays and is flagged."""
    paid = order.amount_paid
    if order.status != OrderStatus.PENDING or paid < order.amount:
        return
    order.paid_at = payment.paid_at
    for earlier in order.payments:
        if earlier.needs_review and (earlier.review_reason or "").startswith(PARTIAL):
            # the question a partial payment raised is answered: the order is covered now
            earlier.needs_review = False
            earlier.review_note = f"the order was paid in full by payment {payment.id}"
            earlier.reviewed_at = utcnow()
    transition(
        order,
        K.ORDER_PAID,
        f"receipt {payment.receipt or 'n/a'} {via}{late}",
        payment=payment,
        message=f"order {order.number} marked paid, receipt {payment.receipt or 'n/a'}{late}",
        receipt=payment.receipt,
        amount=payment.paid_amount,
        source=source,
        phone=payment.phone,
    )
    if paid > order.amount:
        flag(order, payment, f"overpaid by {paid - order.amount} KES", source=source)

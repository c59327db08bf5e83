"""The money rules: what a result, a query's answer, a Paybill payment or a receipt
entered by hand does to a payment and its order (docs/payments.md, "The money rules").

Each rule decides on a `Draft` (the order and its payments as read after the lock, with
the changes decided so far on top) and records its changes there as values; `write`
(`states.py`) applies them. `apply_result` is both, for a final Daraja result: call it
holding the order's lock (`locking.py`).

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
  prompt it belongs to (`prompt_for`, `receive`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from ..models import Order, OrderStatus, Payment, PaymentMethod, PaymentStatus, utcnow
from .states import (
    AMOUNT_FROM_CALLBACK,
    AMOUNT_FROM_QUERY,
    NO_AMOUNT,
    PARTIAL,
    Draft,
    Kind,
    PaymentView,
    status_for_result,
    write,
)

P = PaymentStatus
K = Kind


@dataclass(frozen=True)
class Money:
    """A movement of money as M-Pesa reported it: its receipt, the amount it brought, who
    paid and when (None: not said)."""

    receipt: str | None
    amount: int | None
    phone: str | None = None
    at: datetime | None = None


def apply_result(
    payment: Payment,
    *,
    result_code: int,
    result_desc: str,
    source: str,
    amount_from: str,
    money: Money = Money(None, None),
    amount_problem: str | None = None,
) -> str:
    """Decide a final Daraja result for a LOCKED payment and write it; returns `applied`,
    `duplicate` or `ignored`. The caller commits; the effects follow the commit."""
    draft = Draft(payment.order)
    outcome = decide_result(
        draft,
        draft.payment(payment),
        result_code=result_code,
        result_desc=result_desc,
        source=source,
        amount_from=amount_from,
        money=money,
        amount_problem=amount_problem,
    )
    write(payment.order, draft.changes)
    return outcome


def decide_result(
    draft: Draft,
    payment: PaymentView,
    *,
    result_code: int,
    result_desc: str,
    source: str,
    amount_from: str,
    money: Money,
    amount_problem: str | None = None,
) -> str:
    """What a final result does (the rules above), recorded on `draft`."""
    new_status = status_for_result(result_code)
    receipt = money.receipt
    if payment.status == P.COMPLETED:
        if new_status == P.COMPLETED and receipt and payment.receipt and receipt != payment.receipt:
            # another movement of money for the same prompt (e.g. the prompt was settled
            # by its Paybill twin, then paid again): record it, never drop it
            return _second_payment(draft, payment, money, source)
        if new_status == P.COMPLETED and receipt and not payment.receipt:
            # e.g. the query settled it first, without a receipt
            draft.set(payment, receipt=receipt)
            draft.move(K.RECEIPT_ADDED, f"receipt {receipt} via {source}", payment=payment)
            return "applied"
        return "duplicate" if new_status == P.COMPLETED else "ignored"
    if new_status != P.COMPLETED:
        if payment.status != P.PENDING:
            return "duplicate" if payment.result_code == result_code else "ignored"
        desc = (result_desc or "")[:255]
        draft.set(payment, result_code=result_code, result_desc=desc)
        draft.move(
            Kind(f"payment_{new_status}"),
            f"{result_code}: {desc} (via {source})",
            payment=payment,
            message=f"order {draft.order.number} payment {new_status}: {desc}",
            result_code=result_code,
            source=source,
            phone=payment.phone,
        )
        return "applied"
    if amount_from == AMOUNT_FROM_CALLBACK and money.amount is None:
        return _success_without_amount(draft, payment, amount_problem, receipt, source)
    amount = money.amount if amount_from == AMOUNT_FROM_CALLBACK else payment.amount
    complete(
        draft,
        payment,
        Money(receipt, amount, money.phone, money.at),
        result_code=result_code,
        result_desc=result_desc,
        source=source,
        amount_from=amount_from,
    )
    return "applied"


def _second_payment(draft: Draft, payment: PaymentView, money: Money, source: str) -> str:
    """A success with another receipt for a prompt that is already completed: another
    movement of money (one receipt is one movement), so its own payment, completed and
    flagged by the money rules. Without a usable amount nothing is invented: ignored, on
    record. The caller checked that no payment holds the receipt yet."""
    if money.amount is None:
        return "ignored"
    # asked for what the prompt asked: another amount is flagged and does not count until
    # an admin resolves it, as for a first success (money moves on an amount that matches)
    second = draft.add_payment(method=payment.method, phone=payment.phone, amount=payment.amount)
    complete(
        draft,
        second,
        money,
        result_code=0,
        result_desc=f"a second payment for prompt {payment.id}",
        source=source,
        amount_from=AMOUNT_FROM_CALLBACK,
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


def receive(
    draft: Draft,
    money: Money,
    *,
    source: str,
    amount_from: str,
    result_code: int | None,
    result_desc: str,
    settle: bool = True,
    **columns,
) -> tuple[PaymentView, bool]:
    """Money that came by another message than its prompt's callback (a Paybill
    confirmation, a receipt entered by hand): the prompt's own when it is one prompt's
    (`prompt_for`: the pending prompt completes with it, the query-settled one gets its
    receipt), else a payment of its own (`columns`: method, phone, account, …), completed
    and settled by the rules (unless `settle` is False: then the caller decides). Returns
    the payment and whether several prompts fitted."""
    prompt, several = prompt_for(draft.order, money.amount)
    if prompt is not None:
        draft.set(prompt, **{k: v for k, v in columns.items() if k not in ("method", "phone")})
        if prompt.status == P.COMPLETED:
            draft.set(prompt, receipt=money.receipt)
            draft.move(K.RECEIPT_ADDED, f"receipt {money.receipt} via {source}", payment=prompt)
        else:
            complete(
                draft,
                prompt,
                money,
                result_code=0,
                result_desc=f"confirmed by {source}",
                source=source,
                amount_from=amount_from,
            )
        return prompt, several
    payment = draft.add_payment(amount=money.amount, **columns)
    complete(
        draft,
        payment,
        money,
        result_code=result_code,
        result_desc=result_desc,
        source=source,
        amount_from=amount_from,
        settle=settle,
    )
    return payment, several


def _success_without_amount(
    draft: Draft, payment: PaymentView, problem: str | None, receipt: str | None, source: str
) -> str:
    """A success callback with no usable Amount: flag it, pay nothing, let STK Query decide
    (the reconciler queries it next; never inside the callback request)."""
    reason = f"{NO_AMOUNT} ({problem or 'no Amount'})"
    if payment.status == P.PENDING:
        reason += "; checking with STK Query"
        draft.set(payment, next_query_at=utcnow())
    if payment.needs_review and payment.review_reason == reason[:255]:
        return "duplicate"
    flag(draft, payment, reason, source=f"{source}, receipt {receipt or 'n/a'}")
    return "applied"


def complete(
    draft: Draft,
    payment: PaymentView,
    money: Money,
    *,
    result_code: int | None,
    result_desc: str,
    source: str,
    amount_from: str,
    settle: bool = True,
) -> None:
    """Record a success with the amount it brought (`money.amount`), then (unless told
    not to) settle the order."""
    previous = payment.status
    now = utcnow()
    draft.set(
        payment,
        result_code=result_code,
        result_desc=(result_desc or "")[:255],
        receipt=money.receipt or payment.receipt,
        paid_amount=money.amount,
        amount_source=amount_from,
        paid_phone=money.phone,
        paid_at=money.at or now,
        # the money lands now: a review closed before (e.g. of a success without an
        # amount) accepted nothing, so it cannot make this amount count
        reviewed_at=None,
    )
    late = f" (late success after {previous})" if previous != P.PENDING else ""
    via = f"via {source}"
    if amount_from == AMOUNT_FROM_QUERY:  # "confirmed by query", or "… by query by admin:x"
        via = "confirmed by " + ("query" if source == "query" else source)
    trusted = amount_from == AMOUNT_FROM_QUERY or money.amount == payment.amount
    if trusted and payment.needs_review and (payment.review_reason or "").startswith(NO_AMOUNT):
        # flagged for a success without a usable amount; this one says how much (or the
        # query confirmed the prompt): the question is answered
        draft.set(
            payment,
            needs_review=False,
            review_note=(
                f"confirmed by STK Query ({source})"
                if amount_from == AMOUNT_FROM_QUERY
                else f"a later success callback said {money.amount} KES"
            ),
            reviewed_at=now,
        )
    draft.move(
        K.PAYMENT_COMPLETED,
        f"paid {money.amount} KES, receipt {payment.receipt or 'n/a'} {via}{late}",
        payment=payment,
        receipt=payment.receipt,
        amount=money.amount,
        amount_from=amount_from,
        source=source,
        phone=payment.phone,
    )
    if settle:
        settle_order(draft, payment, source=source, via=via, late=late)


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


def settle_order(
    draft: Draft, payment: PaymentView, *, source: str, via: str, late: str = ""
) -> None:
    """After a payment completed: pay the order if what counts covers it, else flag why."""
    order = draft.order
    if payment.paid_amount != payment.amount and not payment.counts:
        flag(
            draft,
            payment,
            f"amount mismatch: paid {payment.paid_amount} KES, expected {payment.amount} KES",
            source=source,
            receipt=payment.receipt,
        )
        return
    if order.status == OrderStatus.CANCELLED:
        hold(draft, payment, "paid after the order was cancelled", source=source)
        return
    if order.status == OrderStatus.PAID:
        reason = f"order already paid; second payment {payment.receipt or ''}".strip()
        flag(draft, payment, reason, source=source, receipt=payment.receipt)
        return
    pay_if_covered(draft, payment, source=source, via=via, late=late)


def pay_if_covered(
    draft: Draft, payment: PaymentView, *, source: str, via: str, late: str = ""
) -> None:
    """Pay a pending order whose counting payments now cover it (exactly once); an
    overpayment pays and is flagged."""
    order = draft.order
    paid = order.amount_paid
    if order.status != OrderStatus.PENDING or paid < order.amount:
        return
    draft.set(order, paid_at=payment.paid_at)
    for earlier in draft.payments:
        if earlier.needs_review and (earlier.review_reason or "").startswith(PARTIAL):
            # the question a partial payment raised is answered: the order is covered now
            draft.set(
                earlier,
                needs_review=False,
                review_note=f"the order was paid in full by payment {payment.id}",
                reviewed_at=utcnow(),
            )
    draft.move(
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
        flag(draft, payment, f"overpaid by {paid - order.amount} KES", source=source)


def hold(draft: Draft, payment: PaymentView, reason: str, *, source: str) -> None:
    """Money that arrived when the order could not take it (expired, cancelled): it does
    not count until an admin accepts it (resolves the review), and it may be refunded."""
    # not accepted, whatever closed an earlier question
    draft.set(payment, held=True, reviewed_at=None)
    flag(draft, payment, reason, source=source)


def flag(draft: Draft, payment: PaymentView, reason: str, *, source: str, **log) -> None:
    """Mark a payment for an admin's review, with the reason; changes no status."""
    draft.set(payment, needs_review=True, review_reason=reason[:255])
    draft.move(
        K.PAYMENT_REVIEW,
        f"{reason} (via {source})",
        payment=payment,
        message=f"order {draft.order.number} payment flagged for review: {reason}",
        level=logging.WARNING,
        **log,
    )

"""Refunds: money given back from a payment, with its amount (docs/admin.md, "Record
refund"). Recorded under the order's lock; what was refunded is taken off what the
payment counts (`Payment.net_amount`). A manual refund (money given back outside the
app) is the first method; refunds through M-Pesa's Reversal are others of the same
record.
"""

from __future__ import annotations

from .. import audit
from ..errors import ApiError, Conflict
from ..extensions import db
from ..locking import lock_payment, retried
from ..models import Refund, RefundReason, RefundStatus, utcnow
from .money import refundable
from .services import review_note
from .states import Kind, transition

MAX_REFUND = 10_000_000


def refund_amount(amount) -> int | None:
    """The typed amount (None: the default); 422 for anything but whole shillings."""
    if amount is None:
        return None
    if isinstance(amount, bool) or not isinstance(amount, int) or not 1 <= amount <= MAX_REFUND:
        raise ApiError(
            "The refund is not valid.",
            code="validation_error",
            status=422,
            fields={"amount": "Whole shillings, e.g. 500."},
        )
    return amount


# the reason's name before it was `requested_by_customer`, still taken
REASON_ALIASES = {"customer_request": RefundReason.REQUESTED_BY_CUSTOMER}


def refund_reason(reason) -> str:
    """A refund's reason as stored; 422 for anything not in `RefundReason`."""
    reason = REASON_ALIASES.get(reason, reason)
    if reason not in RefundReason.ALL:
        raise ApiError(
            "The refund is not valid.",
            code="validation_error",
            status=422,
            fields={"reason": f"One of {', '.join(RefundReason.ALL)}."},
        )
    return reason


def add_refund(
    payment, amount: int, method: str, status: str, reason: str, note, actor: str, **more
) -> Refund:
    """A new refund of `payment` (holding its order's lock), on its list: the webhook
    event of the change reads it there. `completed=True`: done as it is recorded."""
    now = utcnow()
    completed_at = now if more.pop("completed", False) else None
    refund = Refund(
        payment_id=payment.id,
        order_id=payment.order_id,
        amount=amount,
        method=method,
        status=status,
        reason=reason,
        note=note,
        actor=actor,
        created_at=now,
        completed_at=completed_at,
        **more,
    )
    payment.refunds.append(refund)
    return refund


def amount_to_refund(payment, amount: int | None) -> int:
    """What a manual refund of `payment` gives back: `amount`, or by default all that may
    be (`money.refundable`); 409 `not_refundable` (with how much may) for more."""
    most = refundable(payment)
    if most == 0 or (amount is not None and amount > most):
        raise Conflict(
            f"At most KES {most:,} of this payment may be refunded."
            if most
            else "Nothing of this payment may be refunded.",
            code="not_refundable",
            extra={"refundable": most},
        )
    return most if amount is None else amount


@retried("record_refund")
def record_refund(
    payment_id: str, amount: int | None, reason: str, note: str | None, actor: str
) -> Refund:
    """Record money given back from a payment outside the app (`method = manual`).

    `amount` None is the default: what may be refunded (`money.refundable`: the overpaid
    part of an overpayment, else what is left of the payment). More than that, or a
    payment that brought nothing, is refused (409 `not_refundable`, nothing changes). The
    refund is taken off what the payment counts; the order's status never changes (paid
    once; what may be refunded from a paid order never takes it below its amount). A
    review that asked for the refund is closed once nothing more may be refunded."""
    note = review_note(note)
    amount = refund_amount(amount)
    reason = refund_reason(reason)
    payment = lock_payment(payment_id)
    order = payment.order
    amount = amount_to_refund(payment, amount)
    refund = add_refund(
        payment, amount, "manual", RefundStatus.SUCCEEDED, reason, note, actor, completed=True
    )
    payment.refunded_amount = (payment.refunded_amount or 0) + amount
    if payment.needs_review and refundable(payment) == 0:
        payment.needs_review = False
        payment.review_note = f"refunded KES {amount:,} by {actor}: {note}"
    transition(
        order,
        Kind.PAYMENT_REFUNDED,
        f"{actor}: refunded KES {amount:,} outside the app ({reason}): {note}",
        payment=payment,
        actor=actor,
        message=f"order {order.number} payment {payment.id}: KES {amount} refunded by {actor}",
        amount=amount,
        reason=reason,
    )
    audit.record(
        "refund.recorded",
        f"{order.number}: KES {amount:,} of payment {payment.id} refunded outside the app "
        f"({reason})",
        target=order.number,
        changes={"payment": payment.id, "amount": amount, "reason": reason},
    )
    db.session.commit()
    return refund

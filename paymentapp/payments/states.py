"""Every payment and order transition: the tables of allowed moves, the kinds of change,
and the one function that makes them (the money rules that decide them: `money.py`).

The tables below are the only statement of which status may follow which;
`transition()` is the only code that changes a status. It runs inside the caller's
transaction, holding the order's lock: it checks the move against the table, sets the
new status, bumps the order's `version` (once per transaction), writes the audit
`OrderEvent` and the structured log line together, and queues the order for the
after-commit effects (`outbox/hook.py`), so the caller only commits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from ..errors import IllegalTransition
from ..extensions import db
from ..models import (
    Order,
    OrderStatus,
    Payment,
    PaymentStatus,
    utcnow,
)
from ..outbox import audited, order_changed, transitioned

log = logging.getLogger(__name__)

P = PaymentStatus
PAYMENT_MOVES: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    P.PENDING: frozenset({P.COMPLETED, P.FAILED, P.CANCELLED, P.TIMEOUT}),
    # a later authoritative success: the money moved after all
    P.FAILED: frozenset({P.COMPLETED}),
    P.CANCELLED: frozenset({P.COMPLETED}),
    P.TIMEOUT: frozenset({P.COMPLETED}),
    P.COMPLETED: frozenset(),  # never downgraded
}
ORDER_MOVES: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING: frozenset({OrderStatus.PAID, OrderStatus.CANCELLED}),
    OrderStatus.PAID: frozenset(),  # paid once
    OrderStatus.CANCELLED: frozenset(),  # a later payment is flagged, never un-cancels
}

# Daraja ResultCode → payment status (docs/payments.md); anything else is `failed`.
RESULT_STATUS = {
    0: P.COMPLETED,
    1032: P.CANCELLED,
    1037: P.TIMEOUT,
    1019: P.TIMEOUT,
}

NO_AMOUNT = "success callback without a usable amount"
PARTIAL = "partial payment"

# Where a completed payment's `paid_amount` came from.
AMOUNT_FROM_CALLBACK = "callback"
AMOUNT_FROM_QUERY = "query"
AMOUNT_FROM_HAND = "hand"


class Kind(StrEnum):
    """Every kind of change `transition` makes; the value is its audit kind (its log
    event is the same with a dot: `order.paid`). What each one moves and which webhook
    event it sends is data, in TRANSITIONS."""

    PAYMENT_STARTED = "payment_started"
    PUSH_UNKNOWN = "push_unknown"
    PAYMENT_COMPLETED = "payment_completed"
    PAYMENT_FAILED = "payment_failed"
    PAYMENT_CANCELLED = "payment_cancelled"
    PAYMENT_TIMEOUT = "payment_timeout"
    RECEIPT_ADDED = "receipt_added"
    PAYMENT_REVIEW = "payment_review"
    REVIEW_RESOLVED = "review_resolved"
    STATUS_CHECKED = "status_checked"
    PAYMENT_REFUNDED = "payment_refunded"
    ORDER_PAID = "order_paid"
    ORDER_CANCELLED = "order_cancelled"


@dataclass(frozen=True)
class Transition:
    """What a kind of change does: the payment's new status, the order's new status (None:
    unchanged) and the merchant webhook event it sends (None: none)."""

    payment_to: PaymentStatus | None = None
    order_to: OrderStatus | None = None
    webhook: str | None = None


K = Kind
TRANSITIONS: dict[Kind, Transition] = {
    K.PAYMENT_STARTED: Transition(),
    K.PUSH_UNKNOWN: Transition(),
    K.PAYMENT_COMPLETED: Transition(payment_to=P.COMPLETED),
    K.PAYMENT_FAILED: Transition(payment_to=P.FAILED, webhook="payment.failed"),
    K.PAYMENT_CANCELLED: Transition(payment_to=P.CANCELLED, webhook="payment.failed"),
    K.PAYMENT_TIMEOUT: Transition(payment_to=P.TIMEOUT, webhook="payment.failed"),
    K.RECEIPT_ADDED: Transition(),
    K.PAYMENT_REVIEW: Transition(webhook="payment.needs_review"),
    K.REVIEW_RESOLVED: Transition(),
    K.STATUS_CHECKED: Transition(),
    K.PAYMENT_REFUNDED: Transition(webhook="payment.refunded"),
    K.ORDER_PAID: Transition(order_to=OrderStatus.PAID, webhook="order.paid"),
    K.ORDER_CANCELLED: Transition(order_to=OrderStatus.CANCELLED, webhook="order.cancelled"),
}


def status_for_result(result_code: int) -> PaymentStatus:
    return RESULT_STATUS.get(result_code, P.FAILED)


def can_move(payment: Payment, to: PaymentStatus) -> bool:
    return to in PAYMENT_MOVES[PaymentStatus(payment.status)]


def transition(
    order: Order,
    kind: Kind,
    detail: str,
    *,
    payment: Payment | None = None,
    message: str | None = None,
    actor: str | None = None,
    level: int = logging.INFO,
    **log_fields,
) -> None:
    """The one way to change a payment or an order (call it holding the row lock).

    `kind` says what moves (TRANSITIONS) and names the audit event (`order_paid`, …; its
    log event is `order.paid`, …); `detail` is the timeline text; `message`, when given,
    is the log line's human part (default: `order ORD-… <detail>`).
    """
    now = utcnow()
    change = TRANSITIONS[kind]
    payment_to, order_to = change.payment_to, change.order_to
    if payment_to is not None:
        if not can_move(payment, payment_to):
            raise IllegalTransition(f"payment {payment.id}: {payment.status} → {payment_to}")
        payment.status = payment_to
        if payment_to in PaymentStatus.FINAL:
            payment.next_query_at = None
    if order_to is not None:
        if order_to not in ORDER_MOVES[OrderStatus(order.status)]:
            raise IllegalTransition(f"order {order.number}: {order.status} → {order_to}")
        order.status = order_to
    if payment is not None:
        payment.updated_at = now
    if order_changed(db.session, order):
        order.bump_version()  # once per transaction: one committed change is one version
    transitioned(db.session, order, change.webhook, payment)
    audited(
        db.session,
        {
            "order_id": order.id,
            "payment_id": payment.id if payment else None,
            "kind": kind.value,
            "detail": detail[:255],
            "actor": actor,
            "created_at": now,
        },
    )
    log.log(
        level,
        message or f"order {order.number} {detail}",
        extra={
            "event": kind.value.replace("_", ".", 1),
            "order": order.number,
            "payment": payment.id if payment else None,
            **log_fields,
        },
    )


def hold(order: Order, payment: Payment, reason: str, *, source: str) -> None:
    """Money that arrived when the order could not take it (expired, cancelled): it does
    not count until an admin accepts it (resolves the review), and it may be refunded."""
    payment.held = True
    payment.reviewed_at = None  # not accepted, whatever closed an earlier question
    flag(order, payment, reason, source=source)


def flag(order: Order, payment: Payment, reason: str, *, source: str, **log_fields) -> None:
    """Mark a payment for an admin's review, with the reason; changes no status."""
    payment.needs_review = True
    payment.review_reason = reason[:255]
    transition(
        order,
        K.PAYMENT_REVIEW,
        f"{reason} (via {source})",
        payment=payment,
        message=f"order {order.number} payment flagged for review: {reason}",
        level=logging.WARNING,
        **log_fields,
    )

"""Every status transition of the app (payments, orders, refunds, receipt checks, webhook
deliveries): the tables of allowed moves, the kinds of change, a change as a value, and
the one writer that applies changes (the money rules that decide them: `money.py`).

The tables are the only statement of which status may follow which; `_move` is the only
code that sets a status. A decision works on a `Draft` (the order and its payments as
read after the lock, with the decision's changes on top, recorded as `Change` and
`NewPayment` values); `write` applies them inside the caller's transaction, holding the
order's lock: it checks each move, sets the values, bumps the order's `version` (once per
transaction), writes the `OrderEvent` and the log line, and queues the after-commit
effects (`outbox/hook.py`), so the caller only commits. `transition` is one change, written.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from sqlalchemy import update

from ..errors import IllegalTransition
from ..extensions import db
from ..models import (
    ApprovalStatus,
    CheckStatus,
    DeliveryStatus,
    Order,
    OrderRules,
    OrderStatus,
    Payment,
    PaymentRules,
    PaymentStatus,
    Refund,
    RefundStatus,
    WebhookDelivery,
    new_id,
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

R = RefundStatus
REFUND_MOVES: dict[RefundStatus, frozenset[RefundStatus]] = {
    R.AWAITING_APPROVAL: frozenset({R.REQUESTED, R.REJECTED}),  # a second owner decided
    R.REQUESTED: frozenset({R.PENDING, R.FAILED}),  # Daraja acknowledged it, or refused it
    R.PENDING: frozenset({R.SUCCEEDED, R.FAILED}),  # its result came
    R.SUCCEEDED: frozenset(),  # the money went back: final
    R.FAILED: frozenset(),  # a new refund may be asked for
    R.REJECTED: frozenset(),  # never sent; its money is free again
}

C = CheckStatus
# a receipt entered by hand, until M-Pesa's Transaction Status answers (or it is withdrawn)
CHECK_MOVES: dict[CheckStatus, frozenset[CheckStatus]] = {
    C.AWAITING: frozenset({C.CONFIRMED, C.MISMATCH, C.NOT_FOUND, C.WITHDRAWN}),
    **{final: frozenset() for final in (C.CONFIRMED, C.MISMATCH, C.NOT_FOUND, C.WITHDRAWN)},
}

D = DeliveryStatus
# a merchant webhook delivery: pending until a 2xx, given up, or cancelled
DELIVERY_MOVES: dict[DeliveryStatus, frozenset[DeliveryStatus]] = {
    D.PENDING: frozenset({D.SUCCEEDED, D.FAILED, D.CANCELLED}),
    **{final: frozenset() for final in (D.SUCCEEDED, D.FAILED, D.CANCELLED)},
}

AP = ApprovalStatus
# money moved by hand, or sent back, until a second owner decides (`approvals.py`)
APPROVAL_MOVES: dict[ApprovalStatus, frozenset[ApprovalStatus]] = {
    AP.PENDING: frozenset({AP.APPROVED, AP.REJECTED, AP.WITHDRAWN}),
    **{final: frozenset() for final in (AP.APPROVED, AP.REJECTED, AP.WITHDRAWN)},
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
    REFUND_REQUESTED = "refund_requested"
    REFUND_APPROVED = "refund_approved"
    REFUND_REJECTED = "refund_rejected"
    APPROVAL = "approval"  # money by hand proposed, approved, rejected or withdrawn
    REFUND_PENDING = "refund_pending"
    REFUND_SUCCEEDED = "refund_succeeded"
    REFUND_FAILED = "refund_failed"
    RECEIPT_CHECK = "receipt_check"
    ORDER_PAID = "order_paid"
    ORDER_CANCELLED = "order_cancelled"


@dataclass(frozen=True)
class Transition:
    """What a kind of change does: the payment's, the order's and the refund's new status
    (None: unchanged) and the merchant webhook event it sends (None: none)."""

    payment_to: PaymentStatus | None = None
    order_to: OrderStatus | None = None
    webhook: str | None = None
    refund_to: RefundStatus | None = None


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
    K.REFUND_REQUESTED: Transition(),  # born requested (or awaiting approval)
    K.REFUND_APPROVED: Transition(refund_to=R.REQUESTED),
    K.REFUND_REJECTED: Transition(refund_to=R.REJECTED),
    K.APPROVAL: Transition(),
    K.REFUND_PENDING: Transition(refund_to=R.PENDING, webhook="refund.pending"),
    K.REFUND_SUCCEEDED: Transition(refund_to=R.SUCCEEDED, webhook="refund.succeeded"),
    K.REFUND_FAILED: Transition(refund_to=R.FAILED, webhook="refund.failed"),
    K.RECEIPT_CHECK: Transition(),  # a receipt entered by hand, asked about or answered
    K.ORDER_PAID: Transition(order_to=OrderStatus.PAID, webhook="order.paid"),
    K.ORDER_CANCELLED: Transition(order_to=OrderStatus.CANCELLED, webhook="order.cancelled"),
}


def status_for_result(result_code: int) -> PaymentStatus:
    return RESULT_STATUS.get(result_code, P.FAILED)


def _move(row, table: dict, status_type, to) -> None:
    """Set `row.status` to `to` if `table` allows it from where it is: the one place a
    status is set."""
    if to not in table[status_type(row.status)]:
        raise IllegalTransition(f"{type(row).__name__} {row.id}: {row.status} → {to}")
    row.status = to


def move_delivery(delivery: WebhookDelivery, to: DeliveryStatus) -> None:
    """A webhook delivery's move (`webhooks/delivery.py`), checked against its table."""
    _move(delivery, DELIVERY_MOVES, DeliveryStatus, to)


def move_approval(approval, to: ApprovalStatus) -> None:
    _move(approval, APPROVAL_MOVES, ApprovalStatus, to)  # a proposal decided (`approvals.py`)


def move_check(check, to: CheckStatus) -> None:
    """A receipt check's move (`receipt_checks.py`), checked against its table."""
    _move(check, CHECK_MOVES, CheckStatus, to)
    check.updated_at = utcnow()


def move_deliveries(to: DeliveryStatus, *where) -> int:
    """Move every delivery matching `where` that the table lets move to `to` (one UPDATE,
    for many rows at once: an endpoint deleted with its backlog); their claims end too.
    Returns how many moved."""
    movable = [status for status, moves in DELIVERY_MOVES.items() if to in moves]
    return db.session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.status.in_(movable), *where)
        .values(status=to, claimed_until=None)
    ).rowcount


# -- a change as a value ------------------------------------------------------------------

_NOTHING: Mapping = MappingProxyType({})


@dataclass(frozen=True)
class Change:
    """One change a decision made: its kind (what moves, its audit and webhook event),
    the payment it is about (None: the order alone), the column values set with it
    (`writes`: row id → column → value, payments and the order), the timeline text, and
    the log line's human part, level and fields."""

    kind: Kind
    detail: str
    payment_id: str | None = None
    writes: Mapping[str, Mapping[str, object]] = field(default_factory=lambda: _NOTHING)
    message: str | None = None
    actor: str | None = None
    level: int = logging.INFO
    log: Mapping[str, object] = field(default_factory=lambda: _NOTHING)


@dataclass(frozen=True)
class NewPayment:
    """A payment row a decision adds to the order (another movement of money)."""

    id: str
    values: Mapping[str, object]


# A new payment's columns before anything is said of it, as the model's defaults.
_NEW_PAYMENT = dict.fromkeys(
    (
        "checkout_request_id merchant_request_id result_code result_desc receipt "
        "account_reference entered_by paid_amount amount_source paid_phone paid_at "
        "review_reason review_note reviewed_at next_query_at"
    ).split()
) | {"refunded_amount": 0, "held": False, "needs_review": False}


class _View:
    """A row as a decision sees it: the values read after the lock, with the decision's
    changes so far on top. Reading only; the row is not touched. A view lives as long as
    its draft."""

    __slots__ = ("_row", "_new", "_draft")

    def __init__(self, row, new: dict, draft: Draft):
        # a weak way back: the draft holds its views, and a cycle would leave every
        # callback's draft for the garbage collector instead of freeing it on return
        self._row, self._new, self._draft = row, new, weakref.proxy(draft)

    def __getattr__(self, name):
        if name in self._new:
            return self._new[name]
        if self._row is None:
            raise AttributeError(name)
        return getattr(self._row, name)


class PaymentView(_View, PaymentRules):  # the model's own rules, read from the view's values
    __slots__ = ()

    @property
    def order(self) -> OrderView:
        return self._draft.order


class OrderView(_View, OrderRules):
    __slots__ = ()

    @property
    def payments(self) -> list[PaymentView]:
        return self._draft.payments


class Draft:
    """What a decision sees and what it decided: `order` and `payments` (views), and the
    `changes` it recorded with `set`, `add_payment` and `move`, in order."""

    def __init__(self, order: Order):
        self.order = OrderView(order, {}, self)
        self.payments = [PaymentView(p, {}, self) for p in order.payments]
        self._changes: list[Change | NewPayment] = []
        self._writes: dict[str, dict[str, object]] = {}

    def payment(self, payment: Payment | PaymentView) -> PaymentView:
        """The view of one of the order's payments."""
        return next(p for p in self.payments if p.id == payment.id)

    def set(self, view: _View, **values) -> None:
        """Set columns of a payment or the order; they are written with the next move."""
        view._new.update(values)
        self._writes.setdefault(view.id, {}).update(values)

    def add_payment(self, **values) -> PaymentView:
        """A new payment of the order (pending until a move says otherwise)."""
        payment_id = new_id("pay")
        values = {"status": P.PENDING, **values}
        self._changes.append(NewPayment(payment_id, MappingProxyType(dict(values))))
        view = PaymentView(
            None, {**_NEW_PAYMENT, **values, "id": payment_id, "order_id": self.order.id}, self
        )
        self.payments.append(view)
        return view

    def move(
        self,
        kind: Kind,
        detail: str,
        *,
        payment: PaymentView | None = None,
        message: str | None = None,
        actor: str | None = None,
        level: int = logging.INFO,
        **log,
    ) -> None:
        """Record a change of `kind`, with the columns set since the last one."""
        change = TRANSITIONS[kind]
        if change.payment_to is not None:
            payment._new["status"] = change.payment_to
        if change.order_to is not None:
            self.order._new["status"] = change.order_to
        self._changes.append(
            Change(
                kind,
                detail,
                payment.id if payment is not None else None,
                MappingProxyType(self._writes),
                message,
                actor,
                level,
                MappingProxyType(log),
            )
        )
        self._writes = {}

    @property
    def changes(self) -> list[Change | NewPayment]:
        """The changes decided, in order; a column set with no move after it would be lost,
        so it is refused."""
        if self._writes:
            raise RuntimeError(f"columns set without a change: {self._writes}")
        return list(self._changes)


# -- the one writer -------------------------------------------------------------------------


def write(order: Order, changes: Iterable[Change | NewPayment]) -> None:
    """Apply a decision's changes to the LOCKED order and its payments, in order (the one
    way a status changes): each move is checked against the tables; the caller commits."""
    rows = {order.id: order, **{p.id: p for p in order.payments}}
    for change in changes:
        if isinstance(change, NewPayment):
            # added to the session by hand: the order may be a record (`models/records.py`)
            payment = Payment(id=change.id, order_id=order.id, **change.values)
            db.session.add(payment)
            order.payments.append(payment)
            rows[payment.id] = payment
            continue
        for row_id, values in change.writes.items():
            row = rows[row_id]
            for column, value in values.items():
                setattr(row, column, value)
        _apply(order, change, rows.get(change.payment_id))


def _apply(
    order: Order, change: Change, payment: Payment | None, refund: Refund | None = None
) -> None:
    now = utcnow()
    kind = change.kind
    moves = TRANSITIONS[kind]
    if moves.refund_to is not None:
        _move(refund, REFUND_MOVES, RefundStatus, moves.refund_to)
        refund.updated_at = now
    if moves.payment_to is not None:
        _move(payment, PAYMENT_MOVES, PaymentStatus, moves.payment_to)
        if moves.payment_to in PaymentStatus.FINAL:
            payment.next_query_at = None
    if moves.order_to is not None:
        _move(order, ORDER_MOVES, OrderStatus, moves.order_to)
    if payment is not None:
        payment.updated_at = now
    if order_changed(db.session, order):
        order.bump_version()  # once per transaction: one committed change is one version
    transitioned(db.session, order, moves.webhook, payment, refund)
    audited(
        db.session,
        {
            "order_id": order.id,
            "payment_id": payment.id if payment else None,
            "kind": kind.value,
            "detail": change.detail[:255],
            "actor": change.actor,
            "created_at": now,
        },
    )
    log.log(
        change.level,
        change.message or f"order {order.number} {change.detail}",
        extra={
            "event": kind.value.replace("_", ".", 1),
            "order": order.number,
            "payment": payment.id if payment else None,
            **change.log,
        },
    )


def transition(
    order: Order,
    kind: Kind,
    detail: str,
    *,
    payment: Payment | None = None,
    refund: Refund | None = None,
    message: str | None = None,
    actor: str | None = None,
    level: int = logging.INFO,
    **log_fields,
) -> None:
    """One change, written now (call it holding the row lock): for an action that decides
    nothing else. `kind` says what moves (TRANSITIONS) and names the audit event
    (`order_paid`, …; its log event is `order.paid`, …); `detail` is the timeline text;
    `message`, when given, is the log line's human part (default: `order ORD-… <detail>`).
    """
    log = MappingProxyType(log_fields)
    change = Change(kind, detail, message=message, actor=actor, level=level, log=log)
    _apply(order, change, payment, refund)

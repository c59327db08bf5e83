"""The lock rule: the order row is the lock (docs/payments.md, "Locking and versions").

Payments are never locked on their own. A lookup by checkout id, receipt, phone or
account is a plain read; then the order row is locked (`SELECT … FROM orders … FOR
UPDATE`), refreshed from the row, and its payments are read again *after* the lock, in a
statement of their own; the caller re-checks what it looked up. Every path that changes
an order or its payments does this first, so two changes to one order run one after the
other, each deciding on what the other committed.

Why a second statement: under READ COMMITTED a statement sees the database as it was when
the statement started. A `SELECT … FOR UPDATE` that waited for the lock returns the locked
row re-read, but anything else it read (a joined row, a CTE) is as it was before the wait.

Exempt: scheduling-only updates committed on their own, which change no status and no
money (the reconciler's claim and reschedule of a payment's next query,
`payments/reconcile.py`).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from functools import cache, wraps
from typing import ParamSpec, TypeVar

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import lazyload
from sqlalchemy.orm.attributes import set_committed_value

from . import metrics
from .errors import found
from .extensions import db
from .faults import fault_point
from .models import Approval, Order, OrderNumberCounter, Payment, ReceiptCheck, Refund
from .models.records import OrderRecord, PaymentRecord, read_under_lock

log = logging.getLogger(__name__)
T = TypeVar("T")
A = ParamSpec("A")

# PostgreSQL's SQLSTATEs for "try the transaction again": deadlock_detected and
# serialization_failure; unique_violation only where the caller says it is a race (two
# messages inserting the same receipt), since elsewhere it is a real conflict.
RETRYABLE = {"40P01": "deadlock", "40001": "serialization"}
UNIQUE_VIOLATION = "23505"
MAX_ATTEMPTS = 3
BACKOFF_S = (0.05, 0.2)  # before the 2nd and 3rd attempts, each ±50 %: < 1 s in all


def row_locks() -> bool:
    """Make ready to lock rows until commit: True when the database locks rows itself
    (PostgreSQL: add `FOR UPDATE`); False on SQLite, whose one database-wide write lock
    this takes now, with a no-op write."""
    if db.session.get_bind().dialect.name == "sqlite":
        db.session.execute(
            update(OrderNumberCounter)
            .where(OrderNumberCounter.id == 1)
            .values(value=OrderNumberCounter.value)
        )
        return False
    return True


BY_ID = "id"
BY_CHECKOUT_ID = "checkout_id"
BY_PAYMENT = "payment"
BY_REFUND = "refund"
BY_CONVERSATION = "conversation"
BY_STATUS_CHECK = "status_check"
BY_ORIGINATOR = "originator"
BY_CHECK = "check"
BY_CHECK_CONVERSATION = "check_conversation"
BY_APPROVAL = "approval"
# the row and column each way of naming a refund or a receipt check reads
ROW_KEYS = {
    BY_REFUND: (Refund, "id"),
    BY_CONVERSATION: (Refund, "conversation_id"),
    BY_STATUS_CHECK: (Refund, "check_conversation_id"),
    BY_ORIGINATOR: (Refund, "originator_conversation_id"),
    BY_CHECK: (ReceiptCheck, "id"),
    BY_CHECK_CONVERSATION: (ReceiptCheck, "conversation_id"),
    BY_APPROVAL: (Approval, "id"),
}


def _wanted(by: str):
    """Which order `by` names (bound parameter `key`), as a WHERE clause on orders."""
    key = bindparam("key")
    if by == BY_ID:
        return Order.id == key
    if by in ROW_KEYS:
        model, name = ROW_KEYS[by]
        column = getattr(model, name)
        return Order.id == select(model.order_id).where(column == key).scalar_subquery()
    column = Payment.checkout_request_id if by == BY_CHECKOUT_ID else Payment.id
    return Order.id == select(Payment.order_id).where(column == key).scalar_subquery()


def _payments_wanted(with_receipt: bool):
    """The order's payments (bound parameter `order_id`) and, with a receipt
    (`receipt`), the payment holding it, wherever it is."""
    wanted = Payment.order_id == bindparam("order_id")
    return or_(wanted, Payment.receipt == bindparam("receipt")) if with_receipt else wanted


def _payments_params(order_id: str, receipt: str | None) -> dict:
    """The bound values of the payments read (`_payments_wanted`)."""
    return {"order_id": order_id, "receipt": receipt} if receipt else {"order_id": order_id}


@cache
def _order_statement(by: str, lock_rows: bool):
    """The order-lock query, built once per shape (bound parameter `key`)."""
    statement = (
        select(Order)
        .where(_wanted(by))
        .options(lazyload(Order.payments))  # read after the lock, below
        .execution_options(populate_existing=True)
    )
    # orders is the statement's only FROM table: FOR UPDATE locks the order row alone
    # (the sub-select on payments in WHERE is never locked), and nothing else is read here
    return statement.with_for_update() if lock_rows else statement


@cache
def _payments_statement(with_receipt: bool):
    return (
        select(Payment)
        .where(_payments_wanted(with_receipt))
        .order_by(Payment.created_at, Payment.id)
        .execution_options(populate_existing=True)
    )


@cache
def _record_statements(by: str, lock_rows: bool, with_receipt: bool):
    """`_order_statement` and `_payments_statement` as Core, every column of the rows in
    the table's order: what records are read from (`models/records.py`)."""
    orders, payments = Order.__table__, Payment.__table__
    order = select(*orders.c).where(_wanted(by))
    return (
        order.with_for_update() if lock_rows else order,
        select(*payments.c)
        .where(_payments_wanted(with_receipt))
        .order_by(payments.c.created_at, payments.c.id),
    )


def _lock(by: str, key: str, receipt: str | None = None) -> tuple[Order | None, Payment | None]:
    """Lock the order `by` names, then read its payments (and the payment holding
    `receipt`, wherever it is) fresh. Returns the order (None: no such order) and the
    receipt's holder (None: no payment has it)."""
    order = db.session.scalars(_order_statement(by, row_locks()), {"key": key}).first()
    if order is None:
        return None, None
    fault_point("order.locked")
    params = _payments_params(order.id, receipt)
    rows = db.session.scalars(_payments_statement(bool(receipt)), params).all()
    payments = [p for p in rows if p.order_id == order.id]
    set_committed_value(order, "payments", payments)
    for payment in payments:
        # rows loaded with populate_existing would lazy-load `order` the same way (a
        # SELECT that reloads it and forgets `payments`): it is right here
        set_committed_value(payment, "order", order)
    holder = next((p for p in rows if receipt and p.receipt == receipt), None)
    return order, holder


def _lock_records(
    by: str, key: str, receipt: str | None = None
) -> tuple[OrderRecord | None, PaymentRecord | None]:
    """`_lock`, read into records instead of ORM objects (`models/records.py`): the same
    two statements, the same rule. The order's record is handed to the commit hook, which
    writes whatever was set on it or on its payments (`records.read_under_lock`)."""
    order_statement, payments_statement = _record_statements(by, row_locks(), bool(receipt))
    connection = db.session.connection()
    row = connection.execute(order_statement, {"key": key}).first()
    if row is None:
        return None, None
    fault_point("order.locked")
    order = OrderRecord(row)
    read_under_lock(db.session, order)
    params = _payments_params(order.id, receipt)
    holder = None
    for row in connection.execute(payments_statement, params):
        mine = row.order_id == order.id
        payment = PaymentRecord(row, order if mine else None)
        if mine:
            order.payments.append(payment)
        if receipt and payment.receipt == receipt:
            holder = payment
    return order, holder


def lock_order(order_id: str) -> Order:
    """The order with this id, row-locked until commit and read fresh with its
    payments, or a 404."""
    order, _ = _lock(BY_ID, order_id)
    return found(order, "No order with this id.", "order_not_found")


def lock_order_with_receipt(order_id: str, receipt: str | None) -> tuple[Order, Payment | None]:
    """`lock_order`, and the payment (of any order) already holding `receipt`, read after
    the lock in the same statement as the order's payments."""
    order, holder = _lock(BY_ID, order_id, receipt)
    return found(order, "No order with this id.", "order_not_found"), holder


def lock_order_of_checkout(
    checkout_id: str, receipt: str | None
) -> tuple[OrderRecord | None, PaymentRecord | None, PaymentRecord | None]:
    """The order of the prompt with this CheckoutRequestID, locked (one statement: the
    id → order lookup never changes, so it may be read in the locking statement), then
    the prompt and the receipt's holder read after the lock; as records: the hot path of
    a paid STK callback (`models/records.py`). Nones when no prompt has this checkout id."""
    order, holder = _lock_records(BY_CHECKOUT_ID, checkout_id, receipt)
    if order is None:
        return None, None, holder
    payment = next((p for p in order.payments if p.checkout_request_id == checkout_id), None)
    return order, payment, holder


def lock_payment(payment_id: str) -> Payment:
    """The payment with this id, read after locking its ORDER's row (payments are never
    locked on their own), or a 404."""
    order, _ = _lock(BY_PAYMENT, payment_id)
    payment = next((p for p in order.payments if p.id == payment_id), None) if order else None
    return found(payment, "No payment with this id.", "payment_not_found")


def lock_refund(by: str, key: str) -> Refund | None:
    """The refund with this id (`BY_REFUND`), Daraja ConversationID (`BY_CONVERSATION`),
    our B2C OriginatorConversationID (`BY_ORIGINATOR`) or Transaction Status
    ConversationID (`BY_STATUS_CHECK`), read after locking its ORDER's
    row (refunds change payments, so they take the same lock) in a statement of its own;
    None when there is none."""
    return _lock_row(by, key)


def lock_receipt_check(by: str, key: str) -> ReceiptCheck | None:
    """The receipt check with this id (`BY_CHECK`) or Transaction Status ConversationID
    (`BY_CHECK_CONVERSATION`), read after locking its ORDER's row; None when none."""
    return _lock_row(by, key)


def lock_approval(approval_id: str) -> Approval | None:
    """The approval with this id, read after locking its ORDER's row; None when none."""
    return _lock_row(BY_APPROVAL, approval_id)


def _lock_row(by: str, key: str):
    order, _ = _lock(by, key)
    if order is None:
        return None
    model, name = ROW_KEYS[by]
    return db.session.scalars(
        select(model).where(getattr(model, name) == key).execution_options(populate_existing=True)
    ).first()


def _conflict(exc: DBAPIError, unique_is_race: bool) -> str | None:
    """Why `exc` is worth a retry (deadlock, serialization, unique), or None."""
    code = getattr(getattr(exc, "orig", None), "sqlstate", None)
    if code in RETRYABLE:
        return RETRYABLE[code]
    if unique_is_race and code == UNIQUE_VIOLATION:
        return "unique"
    if "database is locked" in str(getattr(exc, "orig", "")):  # SQLite's busy timeout ran out
        return "locked"
    return None


def retry_conflicts(
    what: str, work: Callable[[], T], *, unique_is_race: bool = False, rng=random
) -> T:
    """Run `work` (one whole transaction, from its locks to its commit); if the database
    aborts it for a deadlock or a serialization failure, roll back and run it again, at
    most MAX_ATTEMPTS times with jittered pauses (under a second in all). Counted in
    /metrics (`paymentapp_db_retries_total`) and logged; the last failure is raised."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return work()
        except DBAPIError as exc:
            db.session.rollback()
            reason = _conflict(exc, unique_is_race)
            if reason is None:
                raise
            last = attempt == MAX_ATTEMPTS
            metrics.count_db_retry(what, reason, "gave_up" if last else "retried")
            log.log(
                logging.ERROR if last else logging.WARNING,
                f"{what}: {reason}, {'giving up' if last else 'retrying'} (attempt {attempt})",
                extra={"event": "db.retry", "what": what, "reason": reason, "attempt": attempt},
            )
            if last:
                raise
            pause = BACKOFF_S[attempt - 1]
            time.sleep(pause * rng.uniform(0.5, 1.5))
    raise AssertionError("unreachable")  # pragma: no cover


def retried(what: str, *, unique_is_race: bool = False):
    """Decorate a function that is one whole transaction (locks to commit) so that it is
    retried in place after a deadlock or serialization failure (`retry_conflicts`)."""

    def decorate(function: Callable[A, T]) -> Callable[A, T]:
        @wraps(function)
        def run(*args: A.args, **kwargs: A.kwargs) -> T:
            return retry_conflicts(
                what, lambda: function(*args, **kwargs), unique_is_race=unique_is_race
            )

        return run

    return decorate

"""Row locks that work on PostgreSQL and SQLite alike."""

from sqlalchemy import Select, select, update

from .errors import NotFound
from .extensions import db
from .models import Order, OrderNumberCounter, Payment


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


def for_update(stmt: Select, *, skip_locked: bool = False, of=None) -> Select:
    """Lock the rows `stmt` selects until commit.

    PostgreSQL: `SELECT ... FOR UPDATE`. SQLite ignores FOR UPDATE and has one
    database-wide write lock, so take that lock now (`row_locks`); otherwise two
    transactions could both read "pending" and both apply the same transition. `of`
    names the tables whose rows are locked when `stmt` joins several (PostgreSQL's
    `FOR UPDATE OF`; default: all of them).
    """
    if not row_locks():
        return stmt
    return stmt.with_for_update(skip_locked=skip_locked, of=of)


def lock_order(order_id: str) -> Order:
    """The order with this id, row-locked until commit, or a 404."""
    order = db.session.scalar(for_update(select(Order).where(Order.id == order_id)))
    if order is None:
        raise NotFound("No order with this id.", code="order_not_found")
    return order


def lock_payment(payment_id: str) -> Payment:
    """The payment with this id, row-locked until commit, or a 404."""
    payment = db.session.scalar(for_update(select(Payment).where(Payment.id == payment_id)))
    if payment is None:
        raise NotFound("No payment with this id.", code="payment_not_found")
    return payment

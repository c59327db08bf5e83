"""Orders' status snapshots (`schemas.status_snapshot`) read in ONE Core statement: the
orders' rows joined to their payments' rows, no ORM objects built, no identity map.

Every dialog's `subscribe` answers with a snapshot (`realtime/events.py`), and so does
the polling endpoint `GET /api/orders/<id>/status`: thousands of reads when dialogs
(re)connect, each only read. The money rules (`amount_paid`, `counts`, ...) are the
models' own properties, read from the rows, so a snapshot built here is the one
`status_snapshot(order)` builds from the ORM objects (`tests/test_snapshots.py`).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import bindparam, select

from ..database import autocommitted
from ..extensions import db
from ..models import Order, OrderRules, Payment, PaymentRules
from .schemas import status_snapshot

ORDERS, PAYMENTS = Order.__table__, Payment.__table__
# the order's columns a snapshot reads, labelled apart from the payments' own
ORDER_COLUMNS = ("id", "number", "status", "amount", "version", "updated_at", "expires_at")
LABEL = "order_row_"

_SNAPSHOTS = (
    select(*(ORDERS.c[name].label(LABEL + name) for name in ORDER_COLUMNS), PAYMENTS)
    .outerjoin(PAYMENTS, PAYMENTS.c.order_id == ORDERS.c.id)
    .where(ORDERS.c.id.in_(bindparam("ids", expanding=True)))
    # the order of `Order.payments` (and of the locked read, `locking.py`)
    .order_by(ORDERS.c.id, PAYMENTS.c.created_at, PAYMENTS.c.id)
)


class PaymentRow(PaymentRules):
    """A payment's row, read as `status_snapshot` reads a `Payment`."""

    __slots__ = ("_row",)

    def __init__(self, row):
        self._row = row

    def __getattr__(self, name):
        return getattr(self._row, name)


class OrderRow(OrderRules):
    """An order's columns (ORDER_COLUMNS) and its payments, read as `status_snapshot`
    reads an `Order`."""

    __slots__ = (*ORDER_COLUMNS, "payments")

    def __init__(self, row):
        for name in ORDER_COLUMNS:
            setattr(self, name, getattr(row, LABEL + name))
        self.payments: list[PaymentRow] = []


def read_snapshots(order_ids: Iterable[str]) -> dict[str, dict]:
    """The status snapshot of each of these orders that exists, by id: one statement."""
    with autocommitted(db.engine) as connection:  # the latest commit, no session around it
        rows = connection.execute(_SNAPSHOTS, {"ids": list(set(order_ids))}).all()
    orders: dict[str, OrderRow] = {}
    for row in rows:
        order_id = getattr(row, LABEL + "id")
        order = orders.get(order_id)
        if order is None:
            order = orders[order_id] = OrderRow(row)
        if row.id is not None:  # the outer join's row of an order with no payment
            order.payments.append(PaymentRow(row))
    return {order_id: status_snapshot(order) for order_id, order in orders.items()}


def read_snapshot(order_id: str) -> dict | None:
    """One order's status snapshot, or None when there is no such order."""
    return read_snapshots([order_id]).get(order_id)

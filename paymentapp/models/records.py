"""An order and its payments as plain objects over their rows, for the hot path.

A paid STK callback locks its order and reads the order's payments (`locking.py`),
decides (`payments/money.py`, on a `Draft` over whatever holds the columns) and writes
(`payments/states.write`). Read as ORM objects, those two rows cost the callback about
a tenth of its CPU in the ORM's loading, its instrumented attributes and the session's
bookkeeping, for rows that live one transaction and are written by the commit's one
appended statement anyway (`outbox/updates.py`), never by the ORM's flush.

So the STK callback's lock reads Core rows into these records. A record holds its
row's columns as attributes, with the model's money rules (`OrderRules`,
`PaymentRules`), `order.payments` and `payment.order`; a column set on it is
remembered (`changed`). The lock hands the order's record to its session
(`read_under_lock`); just before the commit the hook takes them (`take_read`) and
`outbox/updates.take_updates` turns their changes into the same row updates it takes
from ORM objects: one writer, whichever a path reads. The order's version is
still the database's: `bump_version` asks for `version = version + 1`, and the update
returns the number the events and the emit announce.
"""

from __future__ import annotations

from .base import utcnow
from .money import CallbackRecord, Order, OrderRules, Payment, PaymentRules

READ = "paymentapp.records.read"  # session.info: the OrderRecords read under a lock
ORDER_COLUMNS = tuple(Order.__table__.c.keys())
PAYMENT_COLUMNS = tuple(Payment.__table__.c.keys())
STORED_COLUMNS = tuple(CallbackRecord.__table__.c.keys())


class _Record:
    """A row's columns as attributes (`COLUMNS`, in the row's order); a column set after
    the read is remembered with the value it had, and anything else is refused."""

    __slots__ = ("_loaded",)
    COLUMNS: tuple[str, ...] = ()
    _NAMES: frozenset[str] = frozenset()

    def __init__(self, row) -> None:
        for name, value in zip(self.COLUMNS, row, strict=True):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_loaded", {})

    def __setattr__(self, name: str, value) -> None:
        loaded = self._loaded
        if name not in loaded:
            if name not in self._NAMES:
                raise AttributeError(f"{type(self).__name__} has no column {name!r}")
            loaded[name] = getattr(self, name)
        object.__setattr__(self, name, value)

    def changed(self) -> dict[str, object]:
        """The columns set since the read (or since `mark_written`) to a new value."""
        return {
            name: value
            for name, was in self._loaded.items()
            if (value := getattr(self, name)) != was
        }

    def mark_written(self) -> None:
        """The changes are on their way to the database: nothing is pending now."""
        self._loaded.clear()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id}>"


class OrderRecord(_Record, OrderRules):
    """An order's row, its `payments` (PaymentRecords, in `Order.payments`' order) and
    whether its version is to be bumped."""

    COLUMNS, _NAMES = ORDER_COLUMNS, frozenset(ORDER_COLUMNS)
    __slots__ = (*ORDER_COLUMNS, "payments", "bumped")

    def __init__(self, row) -> None:
        super().__init__(row)
        object.__setattr__(self, "payments", [])
        object.__setattr__(self, "bumped", False)

    def __setattr__(self, name: str, value) -> None:
        if name == "version":
            raise AttributeError("an order's version moves only by bump_version()")
        super().__setattr__(name, value)

    def bump_version(self) -> None:
        """`Order.bump_version` for a record: the update sets `version = version + 1`
        and reads it back (`outbox/updates.py`)."""
        object.__setattr__(self, "bumped", True)
        self.updated_at = utcnow()

    def version_written(self, version: int) -> None:
        """The version the bump's update returns (announced before it runs)."""
        object.__setattr__(self, "version", version)
        object.__setattr__(self, "bumped", False)


class PaymentRecord(_Record, PaymentRules):
    """A payment's row and its `order` (an OrderRecord; None for a payment of another
    order, read only as a receipt's holder)."""

    COLUMNS, _NAMES = PAYMENT_COLUMNS, frozenset(PAYMENT_COLUMNS)
    __slots__ = (*PAYMENT_COLUMNS, "order")

    def __init__(self, row, order: OrderRecord | None = None) -> None:
        super().__init__(row)
        object.__setattr__(self, "order", order)


class StoredCallback(_Record):
    """A callback record's row as `callbacks/pipeline.store` inserted it: what applying
    it reads and sets (its outcome is written with the commit's appended rows)."""

    COLUMNS, _NAMES = STORED_COLUMNS, frozenset(STORED_COLUMNS)
    __slots__ = STORED_COLUMNS

    @classmethod
    def of(cls, values: dict) -> StoredCallback:
        return cls(tuple(values[name] for name in STORED_COLUMNS))


def read_under_lock(session, order: OrderRecord) -> None:
    """`order` was read under its lock in this session's transaction: whatever is set on
    it or on its payments is written just before the commit (`outbox/hook.py`), as the
    ORM's flush writes an object's change, so nothing set on a record is lost."""
    session.info.setdefault(READ, []).append(order)


def take_read(session) -> list[OrderRecord]:
    """The records read under a lock in this transaction, taken (once: the commit hook
    writes them, a rollback drops them)."""
    return session.info.pop(READ, [])

"""The order and payment rows a transaction changed, written by the commit's one
appended statement (`writer.py`), never by the ORM's flush.

Every change to an order is made holding the order's row lock, on the rows the lock
read (`payments/states.write` sets their columns): ORM objects on most paths, records
on the hot path, a paid STK callback (`models/records.py`). The ORM's flush would
write the order and each changed payment with a statement of its own: two round trips
of the eight a paid callback made. Instead, just before the flush (`hook._prepare`),
`take_updates` collects each changed order and payment (its changed columns and their
new values): from the session's ORM objects (PostgreSQL; telling the session those
values are committed, so the flush writes only what is left: new rows, other tables)
and from the records read under a lock (every database: nothing else would write
them). The appended statement writes them as data-modifying CTEs, in the same round
trip as the audit rows, the webhook events and the callback's outcome (on SQLite, one
UPDATE per record's row).

The order's version stays the database's: its UPDATE sets `version = version + 1` and
reads it back (RETURNING). The events and the emit, built before that statement runs,
carry the version read under the lock plus one; the statement checks the database
agrees and the commit fails if it does not (`writer.check_versions`), so a change
made without the lock can never be announced with a wrong version.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import inspect
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import NO_VALUE, set_committed_value
from sqlalchemy.sql import ClauseElement

from ..models import Order, Payment
from ..models.money import VERSION_BUMP
from ..models.records import PaymentRecord

MODELS = (Order, Payment)  # written in this order, each kind in id order (as the flush)
TABLE_ORDER = {model.__tablename__: index for index, model in enumerate(MODELS)}
_COLUMNS = {model: frozenset(inspect(model).columns.keys()) - {"id"} for model in MODELS}


@dataclass(frozen=True)
class RowUpdate:
    """One row's UPDATE: its table, id, changed columns' new values, and for an order
    whose version was bumped, the version it must have after the UPDATE."""

    table: str
    row_id: str
    values: dict
    version: int | None = None

    @property
    def shape(self) -> tuple[str, tuple[str, ...], bool]:
        """What the statement looks like (it is built once per shape)."""
        return self.table, tuple(sorted(self.values)), self.version is not None


def _changes(state) -> dict[str, object] | None:
    """The changed columns of one object and their new values (an order's bumped
    `version`: the loaded one plus one); None when the flush must write it (a computed
    value other than the bump, or a version never loaded)."""
    columns = _COLUMNS[state.class_]
    changed = {}
    for name, loaded in state.committed_state.items():
        if name not in columns:
            continue  # a relationship: the flush keeps it
        value = state.dict.get(name)
        if isinstance(value, ClauseElement):
            if name != "version" or not isinstance(loaded, int):
                return None
            if value is not VERSION_BUMP and not value.compare(VERSION_BUMP):
                return None  # `is`: the usual case, without walking the expression
            changed[name] = loaded + 1
        elif name == "version":
            return None  # set by hand, not bumped: the flush writes what it was given
        elif loaded is NO_VALUE or value != loaded:
            changed[name] = value
    return changed


def take_updates(session: Session, records=()) -> list[RowUpdate]:
    """The changed orders and payments of this transaction, taken for the appended
    statement, each kind in id order: ORM objects of `session` (their new values are
    then committed in the session, so the flush leaves them alone; PostgreSQL only: on
    SQLite the flush writes them) and the OrderRecords read under a lock, with their
    payments (`models/records.py`, every database: nothing else would write them). A
    bumped order's version is set to the one its UPDATE must return."""
    if records:
        _refuse_both(session, records)
    updates = _orm_updates(session) if session.get_bind().dialect.name == "postgresql" else []
    if records:
        updates += _record_updates(records)
        updates.sort(key=lambda row: (TABLE_ORDER[row.table], row.row_id))
    return updates


def _refuse_both(session: Session, records) -> None:
    """A row changed both as an ORM object and as a record in one transaction would be
    written twice, each from what it alone saw (and its version bumped twice): refused,
    so the transaction rolls back instead. A path reads one order one way."""
    read = {order.id for order in records}
    read.update(p.id for order in records for p in order.payments if isinstance(p, PaymentRecord))
    changed = {inspect(obj).identity[0] for obj in session.dirty if isinstance(obj, MODELS)}
    if both := read & changed:
        raise RuntimeError(f"changed both as ORM objects and as records: {sorted(both)}")


def _record_updates(orders) -> list[RowUpdate]:
    updates = []
    for order in orders:
        changed = order.changed()
        if changed or order.bumped:
            version = order.version + 1 if order.bumped else None
            updates.append(RowUpdate(Order.__tablename__, order.id, changed, version))
            order.mark_written()
            if version is not None:
                order.version_written(version)
        for payment in order.payments:
            if not isinstance(payment, PaymentRecord):
                continue  # a payment added in this transaction: the flush inserts it
            if changed := payment.changed():
                updates.append(RowUpdate(Payment.__tablename__, payment.id, changed))
                payment.mark_written()
    return updates


def _orm_updates(session: Session) -> list[RowUpdate]:
    dirty = [inspect(obj) for obj in session.dirty if isinstance(obj, MODELS)]
    updates = []
    for model in MODELS:
        for state in sorted((s for s in dirty if s.class_ is model), key=lambda s: s.identity):
            changed = _changes(state)
            if changed is None:
                continue
            obj = state.obj()
            if changed:
                version = changed.pop("version", None) if model is Order else None
                row = RowUpdate(model.__tablename__, state.identity[0], changed, version)
                updates.append(row)
                for name, value in changed.items():
                    set_committed_value(obj, name, value)
                if version is not None:
                    set_committed_value(obj, "version", version)
            if _COLUMNS[model].issuperset(state.committed_state):
                # what is left are columns set to the value they had (a payment's
                # `next_query_at = None` when it completes): nothing for the flush, so
                # clean, not merely unchanged (else the flush still visits it); what
                # SQLAlchemy itself does after a flush
                state._commit_all(state.dict, session.identity_map)
    return updates

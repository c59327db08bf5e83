"""Row locks that work on PostgreSQL and SQLite alike."""

from sqlalchemy import Select, update

from .extensions import db
from .models import OrderNumberCounter


def for_update(stmt: Select, *, skip_locked: bool = False) -> Select:
    """Lock the rows `stmt` selects until commit.

    PostgreSQL: `SELECT ... FOR UPDATE`. SQLite ignores FOR UPDATE and has one
    database-wide write lock, so take that lock now with a no-op write; otherwise two
    transactions could both read "pending" and both apply the same transition.
    """
    if db.session.get_bind().dialect.name == "sqlite":
        db.session.execute(
            update(OrderNumberCounter)
            .where(OrderNumberCounter.id == 1)
            .values(value=OrderNumberCounter.value)
        )
        return stmt
    return stmt.with_for_update(skip_locked=skip_locked)

"""Database connections: checked for liveness only when they have been idle a while.

SQLAlchemy's `pool_pre_ping` sends a `SELECT 1` on every checkout, and a callback
checks a connection out twice (the raw body's transaction, then the apply's): two extra
round trips on the hot path for a failure (a PostgreSQL restart, an idle connection cut
by a firewall) that can only have happened while the connection sat in the pool. So a
connection idle for less than `IDLE_PING_AFTER_S` is used as it is; an older one is
pinged first and replaced if dead. A connection that dies in use is still detected by
SQLAlchemy (the statement fails and the pool drops every older connection).
"""

from __future__ import annotations

import time

from sqlalchemy import event, exc
from sqlalchemy.engine import Engine

IDLE_PING_AFTER_S = 10.0
_CHECKED_IN = "paymentapp.checked_in_at"


def ping_idle_connections(engine: Engine, idle_after_s: float = IDLE_PING_AFTER_S) -> None:
    """Ping a pooled connection on checkout only when it has been idle `idle_after_s`."""
    if getattr(engine, "_paymentapp_ping", False):
        return
    engine._paymentapp_ping = True

    @event.listens_for(engine, "checkin")
    def _checked_in(dbapi_connection, record) -> None:
        record.info[_CHECKED_IN] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection, record, proxy) -> None:
        since = record.info.get(_CHECKED_IN)
        if since is None or time.monotonic() - since < idle_after_s:
            return  # new, or back in the pool moments ago
        try:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("SELECT 1")
            finally:
                cursor.close()
            dbapi_connection.rollback()
        except Exception as error:  # noqa: BLE001 - any failure: this connection is gone
            # the pool discards it and checks out another (SQLAlchemy's documented
            # pessimistic-disconnect recipe)
            raise exc.DisconnectionError() from error

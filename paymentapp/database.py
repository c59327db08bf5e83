"""Database connections: a pool sized for gevent, checked for liveness only when a
connection has been idle a while.

**Pool size.** A gevent worker runs thousands of greenlets on one thread, and each holds
a connection only while it waits on PostgreSQL. SQLAlchemy's default pool (5 kept, 10
more opened on demand and *closed* when returned) made a busy worker open and close
connections all the time (a burst of dialogs connecting at once, a burst of callbacks):
a new PostgreSQL connection costs a process fork and an authentication on the server,
and milliseconds on the hot path. So a worker keeps `DB_POOL_SIZE` (20) connections,
may open `DB_MAX_OVERFLOW` (10) more in a burst, and a greenlet waits at most
`DB_POOL_TIMEOUT_S` (10) for one; docs/deployment.md says how they multiply across
workers and hosts. The pool hands out the connection returned last (LIFO): under steady
load the same few connections serve every request, with their prepared statements and
PostgreSQL's caches warm, and the rest sit idle. (First in, first out walked through all
20, each preparing a statement only at psycopg's fifth execution on it: a worker's first
hundred-odd callbacks ran unprepared, the slowest of a run.)

SQLAlchemy's `pool_pre_ping` sends a `SELECT 1` on every checkout, and a callback
checks a connection out twice (the raw body's transaction, then the apply's): two extra
round trips on the hot path for a failure (a PostgreSQL restart, an idle connection cut
by a firewall) that can only have happened while the connection sat in the pool. So a
connection idle for less than `IDLE_PING_AFTER_S` is used as it is; an older one is
pinged first and replaced if dead. A connection that dies in use is still detected by
SQLAlchemy (the statement fails and the pool drops every older connection).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import psycopg
from psycopg import Column, pq
from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, Engine

from .environment import whole_number

log = logging.getLogger(__name__)

IDLE_PING_AFTER_S = 10.0
_CHECKED_IN = "paymentapp.checked_in_at"
POOL_SIZE, MAX_OVERFLOW, POOL_TIMEOUT_S = 20, 10, 10


def engine_options(env, database_url: str) -> dict:
    """SQLALCHEMY_ENGINE_OPTIONS: the pool's size, overflow and wait (PostgreSQL; SQLite
    keeps SQLAlchemy's own pool, which these do not apply to)."""
    if not database_url.startswith("postgresql"):
        return {}
    return {
        "pool_size": whole_number(env, "DB_POOL_SIZE", POOL_SIZE, minimum=1),
        "max_overflow": whole_number(env, "DB_MAX_OVERFLOW", MAX_OVERFLOW),
        "pool_timeout": whole_number(env, "DB_POOL_TIMEOUT_S", POOL_TIMEOUT_S, minimum=1),
        "pool_use_lifo": True,
    }


@contextmanager
def autocommitted(engine: Engine) -> Iterator[Connection]:
    """A pooled connection of its own, outside the session, each statement committed on
    its own (AUTOCOMMIT): one round trip for a lone INSERT or SELECT, with no BEGIN
    before it and no COMMIT or ROLLBACK after it, and no session bookkeeping around it.
    The connection goes back to the pool as soon as the block ends. Storing a
    callback's raw body (`callbacks/pipeline.store`) and reading status snapshots
    (`orders/snapshots.py`) use it."""
    with engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        yield connection


def open_pool(engine: Engine) -> int:
    """Open the pool's `DB_POOL_SIZE` connections now (a web worker as it starts, before
    it serves: `gunicorn.conf.py`), and return how many are open.

    Otherwise the pool opens them on demand, and a worker opens most of them at its
    busiest moment: after a restart every open dialog reconnects and subscribes at once,
    and each new PostgreSQL connection (a process forked and authenticated on the server)
    took about a tenth of the CPU of those subscribes, on both sides. A database that
    cannot be reached is no reason not to start: the pool then opens connections on
    demand, as before, and the warning says why."""
    if engine.dialect.name != "postgresql":
        return 0
    connections = []
    try:
        for _ in range(engine.pool.size()):
            connections.append(engine.connect())
    except Exception as error:  # noqa: BLE001 - the pool connects on demand instead
        log.warning(
            "could not open the database pool at start (%s); connections open on demand",
            error.__class__.__name__,
            extra={"event": "db.pool_open_failed"},
        )
    finally:
        for connection in connections:
            connection.close()  # back to the pool, open
    return len(connections)


def tune_connections(engine: Engine) -> None:
    """A psycopg setting on every connection the engine opens (PostgreSQL): a cursor
    whose `description` is built when read (`DescribedCursor`)."""
    if engine.dialect.name != "postgresql" or getattr(engine, "_paymentapp_tuned", False):
        return
    engine._paymentapp_tuned = True

    @event.listens_for(engine, "connect")
    def _connected(dbapi_connection, record) -> None:
        dbapi_connection.cursor_factory = DescribedCursor


_ROWS = (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.SINGLE_TUPLE, pq.ExecStatus.TUPLES_CHUNK)


class DescribedCursor(psycopg.Cursor):
    """psycopg's cursor, with a `description` that makes its `Column` objects only when
    one is read.

    SQLAlchemy reads `description` after every statement, but for a statement it has run
    before it only looks at whether rows came back: it keeps the columns it learnt the
    first time. psycopg makes a `Column` per result column on every read (the name
    decoded, the type looked up): for the orders and payments rows of a paid callback
    about 5 % of its profile samples (3.5 % of its CPU in process), for nothing. The
    columns are the same, made from the same result, whenever they are read."""

    @property
    def description(self) -> Description | None:
        result = self.pgresult
        if result and (result.nfields or result.status in _ROWS):
            return Description(self, result)
        return None


class Description(Sequence):
    """A result's `psycopg.Column`s, made on first use (`DescribedCursor`)."""

    __slots__ = ("_source", "_count", "_columns")

    def __init__(self, cursor: psycopg.Cursor, result) -> None:
        self._source = _ResultOf(cursor, result)
        self._count = result.nfields
        self._columns: list[Column] | None = None

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index):
        if self._columns is None:
            self._columns = [Column(self._source, i) for i in range(self._count)]
        return self._columns[index]

    def __repr__(self) -> str:
        return repr(list(self))


class _ResultOf:
    """What `psycopg.Column` reads from a cursor, pinned to the result it described: the
    cursor may have run another statement by the time a column is read."""

    __slots__ = ("_cursor", "pgresult")

    def __init__(self, cursor: psycopg.Cursor, result) -> None:
        self._cursor = cursor
        self.pgresult = result

    @property
    def _encoding(self) -> str:
        return self._cursor._encoding

    @property
    def adapters(self):
        return self._cursor.adapters


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

"""The database pool (paymentapp/database.py): sized for gevent workers, and a request
that finds every connection busy for DB_POOL_TIMEOUT_S gets a 503 to retry, not a 500."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import select

from paymentapp import create_app
from paymentapp.database import DescribedCursor, open_pool
from paymentapp.extensions import db
from paymentapp.models import Order
from tests import services
from tests.helpers import assert_error, base_env


@pytest.fixture
def pg_url():
    url = services.create_pg_database()
    yield url
    services.drop_pg_database(url)


def test_a_request_that_finds_every_connection_busy_gets_a_503_to_retry(pg_url):
    app = create_app(
        {"TESTING": True, "SOCKETIO_ASYNC_MODE": "threading"},
        env={
            **base_env(pg_url),
            "DB_POOL_SIZE": "1",
            "DB_MAX_OVERFLOW": "0",
            "DB_POOL_TIMEOUT_S": "1",
        },
    )
    with app.app_context():
        db.create_all()
        held = db.engine.connect()  # the pool's only connection
        try:
            response = app.test_client().get(
                "/api/orders", headers={"Authorization": "Bearer pk_nope_0123456789"}
            )
        finally:
            held.close()
        assert_error(response, 503, "unavailable")
        assert response.headers["Retry-After"] == "1"
        # and with the connection back, the same request is answered as usual (no such key)
        again = app.test_client().get(
            "/api/orders", headers={"Authorization": "Bearer pk_nope_0123456789"}
        )
        assert_error(again, 401)
        db.session.remove()
        db.engine.dispose()


def test_the_pool_hands_out_the_connection_returned_last(pg_url):
    """LIFO: under steady load the same few connections are used again and again, so their
    prepared statements and PostgreSQL's caches are warm. A FIFO pool walks through every
    connection it holds (20 per worker), each preparing a statement only after psycopg's
    5 executions: a worker's first hundred-odd callbacks ran unprepared (docs/performance.md)."""
    app = create_app({"TESTING": True, "SOCKETIO_ASYNC_MODE": "threading"}, env=base_env(pg_url))
    with app.app_context():
        connections = [db.engine.connect() for _ in range(3)]
        pids = [c.exec_driver_sql("SELECT pg_backend_pid()").scalar() for c in connections]
        for connection in connections:  # returned oldest first
            connection.close()
        with db.engine.connect() as again:
            assert again.exec_driver_sql("SELECT pg_backend_pid()").scalar() == pids[-1]
        db.engine.dispose()


def test_every_mapper_is_configured_when_the_app_is_made(tmp_path):
    """Not on a worker's first paid callback (the first ORM object it makes), where
    configuring them cost about 70 ms while the next callbacks queued."""
    import subprocess
    import sys

    check = (
        "from paymentapp import create_app\n"
        "from paymentapp.models import CallbackRecord, Order, Payment\n"
        "from sqlalchemy import inspect\n"
        "before = [inspect(m).configured for m in (CallbackRecord, Order, Payment)]\n"
        "create_app({'SOCKETIO_ASYNC_MODE': 'threading'})\n"
        "print(before, [inspect(m).configured for m in (CallbackRecord, Order, Payment)])\n"
    )
    env = base_env(f"sqlite:///{tmp_path}/app.db", PAYMENTAPP_INSTANCE_PATH=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-c", check],
        env=services.process_env(env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[False, False, False] [True, True, True]"


def test_a_result_description_is_psycopgs_own_made_when_read(pg_url, monkeypatch):
    """`DescribedCursor`: the same columns as psycopg's own cursor gives, for the result
    they were read from (even after the cursor ran another statement), None where no rows
    came back; and a statement SQLAlchemy has run before makes no `Column` at all (it only
    checks that rows came back), where psycopg made one per column on every statement."""
    app = create_app({"TESTING": True, "SOCKETIO_ASYNC_MODE": "threading"}, env=base_env(pg_url))
    query = "SELECT 1 AS n, 'é'::text AS word, now() AS at, NULL::numeric(10, 2) AS money"
    with app.app_context():
        db.create_all()
        with db.engine.connect() as connection:
            raw = connection.connection.dbapi_connection
            cursor = raw.cursor()
            assert isinstance(cursor, DescribedCursor)
            plain = psycopg.Cursor(raw)
            plain.execute(query)
            cursor.execute(query)
            described = cursor.description
            cursor.execute("SELECT 2 AS other")  # the first description still holds
            assert [tuple(c) for c in described] == [tuple(c) for c in plain.description]
            assert [c.name for c in described] == ["n", "word", "at", "money"]
            assert len(described) == 4 and described[-1].precision == 10
            assert [c.name for c in cursor.description] == ["other"]
            cursor.execute("SELECT")  # rows of no columns: a description, empty
            assert cursor.description is not None and len(cursor.description) == 0
            cursor.execute("CREATE TEMPORARY TABLE t (a int)")
            assert cursor.description is None
            cursor.execute("INSERT INTO t VALUES (1)")
            assert cursor.description is None

            made = []
            original = psycopg.Column.__init__
            monkeypatch.setattr(
                psycopg.Column,
                "__init__",
                lambda self, *args: made.append(1) or original(self, *args),
            )
            statement = select(Order).where(Order.id == "nope")
            connection.execute(statement).all()  # first run: SQLAlchemy learns the columns
            first = len(made)
            connection.execute(statement).all()
            assert first >= len(Order.__table__.columns) and len(made) == first
        db.engine.dispose()


def test_a_pool_that_cannot_open_at_start_is_no_reason_not_to_start(caplog):
    """`open_pool` with PostgreSQL unreachable: a warning naming the error, nothing
    raised, and the pool connects on demand later (as it did before the warm-up)."""
    closed_port = services.free_port()
    app = create_app(
        {"TESTING": True, "SOCKETIO_ASYNC_MODE": "threading"},
        env=base_env(f"postgresql+psycopg://postgres@127.0.0.1:{closed_port}/nowhere"),
    )
    with app.app_context(), caplog.at_level("WARNING", logger="paymentapp.database"):
        assert open_pool(db.engine) == 0
        db.engine.dispose()
    (record,) = [r for r in caplog.records if getattr(r, "event", "") == "db.pool_open_failed"]
    assert "OperationalError" in record.getMessage()


def test_open_pool_opens_the_pool_size_and_leaves_them_in_the_pool(pg_url):
    app = create_app(
        {"TESTING": True, "SOCKETIO_ASYNC_MODE": "threading"},
        env={**base_env(pg_url), "DB_POOL_SIZE": "4"},
    )
    with app.app_context():
        assert open_pool(db.engine) == 4
        assert db.engine.pool.checkedin() == 4 and db.engine.pool.checkedout() == 0
        db.engine.dispose()

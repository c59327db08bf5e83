"""The database pool (paymentapp/database.py): sized for gevent workers, and a request
that finds every connection busy for DB_POOL_TIMEOUT_S gets a 503 to retry, not a 500."""

from __future__ import annotations

import pytest

from paymentapp import create_app
from paymentapp.extensions import db
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

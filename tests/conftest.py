"""Fixtures: `app`, `client`, `db`, `api_key`, factories.

The suite runs on a fresh SQLite file by default and on a fresh PostgreSQL database
when TEST_DATABASE_URL names a server (a new database is created next to it per run).
Each test starts with empty tables.
"""

from __future__ import annotations

import os

import pytest
from sqlalchemy import delete

from paymentapp import create_app
from paymentapp.extensions import db as _db
from paymentapp.models import OrderNumberCounter
from tests import services

TEST_SECRET = "test-secret-key"
TEST_CALLBACK_TOKEN = "cbtoken-test-0123456789"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    server = os.environ.get("TEST_DATABASE_URL")
    if server:
        url = services.create_pg_database(server)
        yield url
        services.drop_pg_database(url)
    else:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"


def base_env(database_url: str, **extra) -> dict:
    """The environment a test app is configured from (never the developer's .env)."""
    return {
        "SECRET_KEY": TEST_SECRET,
        "MPESA_CALLBACK_TOKEN": TEST_CALLBACK_TOKEN,
        "DATABASE_URL": database_url,
        "MPESA_ENV": "simulator",
        **extra,
    }


@pytest.fixture(scope="session")
def _schema(database_url):
    app = create_app(
        {"TESTING": True, "SOCKETIO_ASYNC_MODE": "threading"}, env=base_env(database_url)
    )
    with app.app_context():
        _db.drop_all()
        _db.create_all()
        _db.engine.dispose()
    return True


@pytest.fixture
def app_env(database_url):
    """Extra environment for the app under test; tests may add keys before `app`."""
    return base_env(database_url)


@pytest.fixture
def app_config():
    """Config overrides for the app under test."""
    return {}


@pytest.fixture
def app(_schema, app_env, app_config):
    app = create_app(
        {"TESTING": True, "SOCKETIO_ASYNC_MODE": "threading", **app_config}, env=app_env
    )
    with app.app_context():
        yield app
        _db.session.remove()
        for table in reversed(_db.metadata.sorted_tables):
            if table.name != OrderNumberCounter.__tablename__:
                _db.session.execute(delete(table))
        _db.session.commit()
        _db.session.remove()
        _db.engine.dispose()


@pytest.fixture
def db(app):
    return _db


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def api_key(app):
    from paymentapp.security import create_api_key

    _, plain = create_api_key("test-shop")
    return plain


@pytest.fixture
def auth(api_key):
    return {"Authorization": f"Bearer {api_key}"}


@pytest.fixture
def make_order(client, auth):
    """Create an order through the API; returns its JSON (with client_token)."""

    def make(amount: int = 100, **fields):
        response = client.post("/api/orders", json={"amount": amount, **fields}, headers=auth)
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    return make


@pytest.fixture
def socket_client(app):
    """Factory for in-process Socket.IO clients of the default namespace (disconnected after)."""
    from paymentapp.extensions import socketio

    clients = []

    def connect(**kwargs):
        socket = socketio.test_client(app, **kwargs)
        clients.append(socket)
        return socket

    yield connect
    for socket in clients:
        if socket.is_connected():
            socket.disconnect()

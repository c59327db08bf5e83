"""Fixtures: `app`, `client`, `db`, `api_key`, factories.

The suite runs on a fresh SQLite file by default and on a fresh PostgreSQL database
when TEST_DATABASE_URL names a server (a new database is created next to it per run).
Each test starts with empty tables.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import delete, exists, select, text

from paymentapp import create_app
from paymentapp.extensions import db as _db
from paymentapp.models import AuditEvent, OrderNumberCounter, WebhookEvent
from tests import services
from tests.helpers import Simulator, base_env
from tests.openapi_check import CheckedClient, check_events

# This process and every process a test starts read no `.env`: a developer's own settings
# never reach a test (tests/services.py NO_DOTENV; paymentapp/environment.py).
os.environ.update(services.NO_DOTENV)

# Hypothesis profiles: `ci` (the default) is reproducible and quick; `long` explores far more
# cases for local runs: `pytest tests/test_properties*.py --hypothesis-profile=long --timeout=0`.
settings.register_profile(
    "ci",
    derandomize=True,  # the same cases on every run: a red CI run is reproducible
    database=None,
    deadline=None,  # request timings vary on shared CI machines
    max_examples=60,
    # `app` is function-scoped: examples share one app and one database, by design
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "long",
    parent=settings.get_profile("ci"),
    derandomize=False,
    database=settings.default.database,  # failures found locally replay first next time
    max_examples=2000,
)
# hypothesis' pytest plugin loads `--hypothesis-profile=NAME` after this runs
settings.load_profile("ci")

# The summary's last line: the commands that would run what was skipped.
_SKIP_FIX = pytest.StashKey[str | None]()


def pytest_collection_modifyitems(config, items):
    """With pytest-xdist's `--dist loadgroup` (`make test`), the end-to-end and browser
    tests run in one group, one after another on one worker (they start servers and
    browsers of their own per module), while the unit tests spread over the others."""
    for item in items:
        if item.get_closest_marker("e2e") or item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.xdist_group("services"))


def pytest_terminal_summary(terminalreporter, config):
    """What was skipped and why, in one block, grouped by reason (services.skip_summary)."""
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: the controller reports
        return
    lines, config.stash[_SKIP_FIX] = services.skip_summary(
        terminalreporter.stats.get("skipped", [])
    )
    if lines:
        terminalreporter.write_sep("=", "skipped, and why", yellow=True)
        for line in lines:
            terminalreporter.write_line(line, yellow=True)


def pytest_unconfigure(config):
    """After pytest's own last line (the counts), name the commands that would run what
    was skipped: `make test` ends with them."""
    last = config.stash.get(_SKIP_FIX, None)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if last and reporter is not None:
        reporter.write_line(last, yellow=True, bold=True)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    server = os.environ.get("TEST_DATABASE_URL")
    if server:
        url = services.create_pg_database(server)
        yield url
        services.drop_pg_database(url)
    else:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"


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
def app_config():
    """Config overrides for the app under test."""
    return {}


@pytest.fixture
def app(_schema, app_env, app_config):
    app = create_app(
        {"TESTING": True, "SOCKETIO_ASYNC_MODE": "threading", **app_config}, env=app_env
    )
    # every /api/ answer a test gets is checked against the OpenAPI document
    app.test_client_class = CheckedClient
    with app.app_context():
        yield app
        _db.session.remove()
        # and so is every webhook event the test's changes wrote (checked once cleaned up)
        events = list(_db.session.scalars(select(WebhookEvent.payload)))
        for table in reversed(_db.metadata.sorted_tables):
            if table is AuditEvent.__table__:
                clear_audit_log()
            elif table.name != OrderNumberCounter.__tablename__:
                _db.session.execute(delete(table))
        _db.session.commit()
        _db.session.remove()
        _db.engine.dispose()
    check_events(events)


def clear_audit_log() -> None:
    """Empty the append-only audit log between tests: its triggers refuse DELETE, so
    PostgreSQL truncates it (TRUNCATE fires no row trigger) and SQLite makes it anew
    (the model's listeners add the triggers again)."""
    table = AuditEvent.__table__
    if not _db.session.scalar(select(exists().select_from(table))):
        return
    if _db.session.get_bind().dialect.name == "postgresql":
        _db.session.execute(text("TRUNCATE audit_events"))
    else:
        connection = _db.session.connection()
        table.drop(connection)
        table.create(connection)


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


class LiveServer(Simulator):
    """The app under test served over real HTTP (its simulator is the fake Daraja)."""

    def __init__(self, url: str, app):
        super().__init__(url)
        self.app = app


@pytest.fixture
def live_port():
    return services.free_port()


@pytest.fixture
def app_env(database_url, live_port):
    """Environment of the app under test; tests may add keys before `app` is built.

    PUBLIC_BASE_URL is a free loopback port, where `live_server` serves the app when a
    test needs real HTTP (the simulator posts callbacks there).
    """
    return base_env(database_url, PUBLIC_BASE_URL=f"http://127.0.0.1:{live_port}")


@pytest.fixture
def live_server(app, live_port):
    """Serve `app` on a real loopback port in threads, with a clean simulator."""
    import threading

    from werkzeug.serving import make_server

    from paymentapp.mpesa.client import TokenCache
    from paymentapp.simulator import reset_state

    reset_state()
    # a port can be reused by a later test: its simulator has never seen an old token
    TokenCache.forget_local()
    server = make_server("127.0.0.1", live_port, app, threaded=True)
    # Request threads finish their app-context teardown (returning the DB connection)
    # after the client has its answer; server_close() must wait for them, or the `app`
    # fixture disposes the engine first and a connection is left open.
    server.daemon_threads = False
    server.block_on_close = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield LiveServer(f"http://127.0.0.1:{live_port}", app)
    server.shutdown()
    thread.join(5)
    server.server_close()
    # The simulator's background tasks (callback posts, auto-answers) touch the DB too.
    for task in threading.enumerate():
        if task.name.endswith(
            ("(post_callback)", "(answer_later)", "(post_result)", "(post_status)")
        ):
            task.join(15)


@pytest.fixture(scope="module")
def browser():
    """Real Chromium (headless), driven by Playwright; one per test module."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        services.unavailable("playwright is not installed", "make install")
    services.require_chromium()
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=services.CHROMIUM, args=services.CHROMIUM_ARGS
            )
        except Error as exc:
            services.unavailable(f"Chromium did not start: {exc}")
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def context(browser, request):
    """A browser context (desktop, or the viewport an indirect parameter gives); the test
    fails on any JavaScript error in its pages."""
    from tests.browser_app import DESKTOP, new_context

    context = new_context(browser, getattr(request, "param", None) or DESKTOP)
    yield context
    context.close()
    assert context.page_errors == [], f"JavaScript errors in the page: {context.page_errors}"


@pytest.fixture
def page(context):
    return context.new_page()


@pytest.fixture
def make_payment(app):
    """Factory: a pending payment with a checkout id, as if Daraja accepted the push."""
    import secrets

    from paymentapp.models import Order, Payment

    def make(order: dict, phone: str = "254712345678", checkout_id: str | None = None):
        stored = _db.session.get(Order, order["id"])
        payment = Payment(
            order_id=stored.id,
            phone=phone,
            amount=stored.amount,
            checkout_request_id=checkout_id or f"ws_CO_{secrets.token_hex(8)}",
            merchant_request_id="29115-34620561-1",
        )
        _db.session.add(payment)
        stored.bump_version()
        _db.session.commit()
        return payment

    return make


@pytest.fixture
def log_output(app):
    """What the app's own log handler writes (the real, redacting one), as a StringIO whose
    `getvalue` first waits for the log thread to write what is queued."""
    import io
    import logging

    from paymentapp.logs import RedactSecrets
    from paymentapp.logwriter import WRITER, ThreadedStreamHandler

    class Written(io.StringIO):
        def getvalue(self):
            WRITER.flush()
            return super().getvalue()

    buffer = Written()
    handlers = [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, ThreadedStreamHandler)
        and any(isinstance(f, RedactSecrets) for f in h.filters)
    ]
    assert handlers, "configure_logging installed no redacting handler"
    previous = [h.setStream(buffer) for h in handlers]
    yield buffer
    for handler, stream in zip(handlers, previous, strict=True):
        handler.setStream(stream)


@pytest.fixture
def make_app(_schema, database_url):
    """Factory: another app on the test database with env overrides (its pool closed after)."""
    from tests.helpers import base_env

    made = []

    def make(env: dict):
        other = create_app(
            {"TESTING": True, "SOCKETIO_ASYNC_MODE": "threading"},
            env={**base_env(database_url), **env},
        )
        other.test_client_class = CheckedClient
        made.append(other)
        return other

    yield make
    for other in made:
        with other.app_context():
            _db.session.remove()
            _db.engine.dispose()

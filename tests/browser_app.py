"""The app as the payment dialog's browser tests see it: real gunicorn (simulator mode) on
a fresh PostgreSQL database, and helpers to buy, pay and look at the dialog.

A non-test module, so any browser test file may use it:

    @pytest.fixture(scope="module")
    def app_server(tmp_path_factory):
        with dialog_app(tmp_path_factory.mktemp("instance")) as app:
            yield app
"""

from __future__ import annotations

import contextlib
import uuid

import requests

from tests import services
from tests.helpers import Simulator, base_env, csrf_in

ARTIFACTS = services.ROOT / "test-artifacts"
WAIT_MS = 30_000  # the longest any state change may take
PHONE = (360, 740)
DESKTOP = (1280, 800)


class DialogApp:
    """gunicorn serving the app (one worker), with its simulator's test API."""

    def __init__(self, env: dict):
        self.env = env
        self.server = services.Gunicorn(env, workers=1)
        self.url = self.server.url
        self.simulator = Simulator(self.url)

    def log(self) -> str:
        return self.server.log()


@contextlib.contextmanager
def dialog_app(instance_path, **extra_env):
    """A running `DialogApp` on a fresh, migrated database; its log has no traceback."""
    database_url = services.create_pg_database()
    env = {
        **base_env(database_url),
        "PAYMENTAPP_INSTANCE_PATH": str(instance_path),
        "RECONCILER_IN_PROCESS": "1",
        "RECONCILE_INTERVAL_S": "1",
        "PAYMENT_QUERY_AFTER_S": "30",
        # a connection left open (a page's socket, the deliverer's keep-alive) would hold
        # a gevent worker for its whole graceful timeout; nothing here needs a graceful stop
        "GUNICORN_CMD_ARGS": "--graceful-timeout 2",
        **extra_env,
    }
    if services.redis_available():
        env["REDIS_URL"] = services.REDIS_URL
        env["SOCKETIO_CHANNEL"] = f"paymentapp-test-{uuid.uuid4().hex[:8]}"
    try:
        services.flask_cli(env, "db", "upgrade")
        app = DialogApp(env)
        app.server.start()
        try:
            yield app
        finally:
            app.server.stop()
        assert "Traceback" not in app.log(), app.log()[-4000:]
    finally:
        services.drop_pg_database(database_url)


def new_context(browser, viewport=DESKTOP):
    """A browser context whose page errors are collected in `context.page_errors`."""
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    context.set_default_timeout(WAIT_MS)
    context.page_errors = []
    context.on("weberror", lambda error: context.page_errors.append(str(error.error)))
    return context


def shot(page, name: str) -> None:
    """A screenshot in test-artifacts/ (reduced motion: no fade caught half-way)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.emulate_media(reduced_motion="reduce")
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), animations="disabled")


# -- driving the app from outside --------------------------------------------------------------


def buy(app: DialogApp, product: str = "coffee") -> dict:
    """Buy through the demo shop like a browser would (session cookie + CSRF token)."""
    with requests.Session() as session:
        csrf = csrf_in(session.get(app.url + "/", timeout=10).text)
        response = session.post(
            app.url + "/shop/buy",
            data={"csrf_token": csrf, "product": product},
            headers={"Accept": "application/json"},
            timeout=10,
        )
    assert response.status_code == 201, response.text
    return response.json()


def status(app: DialogApp, order: dict) -> dict:
    response = requests.get(
        f"{app.url}/api/orders/{order['order_id']}/status",
        headers={"X-Order-Token": order["token"]},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


def start_payment(app: DialogApp, order: dict, phone: str) -> dict:
    """`POST /api/orders/<id>/payments` as the customer's browser would; the 202 body."""
    response = requests.post(
        f"{app.url}/api/orders/{order['order_id']}/payments",
        json={"phone": phone},
        headers={"X-Order-Token": order["token"]},
        timeout=15,
    )
    assert response.status_code == 202, response.text
    return response.json()


def new_phone(prefix: str = "071") -> str:
    """A fresh number per payment, so one test's per-phone cooldown never hits another."""
    return f"{prefix}{uuid.uuid4().int % 10 ** (10 - len(prefix)):0{10 - len(prefix)}d}"


# -- the dialog, seen from the test ----------------------------------------------------------


def dialog(page):
    return page.locator(".paymentapp-host")


def expect_view(page, view: str, timeout: int = WAIT_MS) -> None:
    from playwright.sync_api import expect

    expect(dialog(page)).to_have_attribute("data-view", view, timeout=timeout)
    expect(page.locator(f'.pa-view[data-view="{view}"]')).to_be_visible(timeout=timeout)


def open_hosted(page, app: DialogApp, order: dict) -> None:
    page.goto(f"{app.url}/pay/{order['order_id']}?token={order['token']}")
    expect_view(page, "form")


def pay(page, phone: str) -> None:
    page.locator("#pa-phone").fill(phone)
    page.locator(".pa-pay").click()
    expect_view(page, "pending")

"""The React example (clients/js/examples/react-checkout) in real Chromium.

The example is built with Vite and served by `vite preview` (with its tiny backend, which
creates orders with an API key), on its own origin; it talks to a real stack: gunicorn
with 2 gevent workers, PostgreSQL and Redis (tests/e2e.py), paid through the simulator.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from dataclasses import dataclass

import pytest

from tests import services
from tests.browser_app import WAIT_MS, expect_view, new_phone
from tests.e2e import Stack, callback_body, running_stack, start_payment

pytestmark = pytest.mark.browser

EXAMPLE = services.ROOT / "clients" / "js" / "examples" / "react-checkout"
VITE = services.ROOT / "node_modules" / ".bin" / "vite"

# Counts the page's WebSockets (before any script of the page runs).
COUNT_SOCKETS = """
window.__sockets = [];
const NativeWebSocket = window.WebSocket;
window.WebSocket = class extends NativeWebSocket {
  constructor(...args) { super(...args); window.__sockets.push(this.url); }
};
"""


@dataclass
class Shop:
    url: str
    stack: Stack


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    if not VITE.exists():
        services.unavailable("node_modules/.bin/vite (run `make install`)")
    services.require_chromium()
    port = services.free_port()
    origin = f"http://127.0.0.1:{port}"
    out = tmp_path_factory.mktemp("react-checkout-dist")
    log = services.ROOT / "test-artifacts" / f"vite-preview-{port}.log"
    log.parent.mkdir(exist_ok=True)
    with running_stack(tmp_path_factory.mktemp("instance"), CORS_ALLOWED_ORIGINS=origin) as stack:
        env = {
            **os.environ,
            "VITE_PAYMENTAPP_URL": stack.url,
            "PAYMENTAPP_URL": stack.url,
            "PAYMENTAPP_API_KEY": stack.api_key,
        }
        build = subprocess.run(
            [VITE, "build", "--outDir", out, "--emptyOutDir", "--logLevel", "warn"],
            cwd=EXAMPLE,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert build.returncode == 0, build.stdout + build.stderr
        with log.open("wb") as output:
            preview = subprocess.Popen(
                [VITE, "preview", "--outDir", out, "--host", "127.0.0.1"]
                + ["--port", str(port), "--strictPort"],
                cwd=EXAMPLE,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            services.wait_http(origin)
            yield Shop(origin, stack)
        finally:
            preview.terminate()
            preview.wait(10)
        assert "Traceback" not in stack.server.log()


@pytest.fixture
def page(context):
    page = context.new_page()
    page.add_init_script(COUNT_SOCKETS)
    return page


def order_status(page):
    return page.get_by_test_id("order-status")


def buy(page, shop: Shop) -> dict:
    from playwright.sync_api import expect

    page.goto(shop.url + "/")
    with page.expect_response("**/api/checkout") as bought:
        page.get_by_role("button", name="Buy with M-Pesa").click()
    order = bought.value.json()
    expect_view(page, "form")
    expect(order_status(page)).to_have_attribute("data-connection", "live")
    return order


def checkout_id(stack: Stack, order_id: str) -> str:
    def found():
        details = stack.http.get(f"{stack.url}/api/orders/{order_id}", headers=stack.auth)
        payments = details.json()["payments"]
        return payments and payments[-1]["checkout_request_id"]

    return services.wait_for(found, "the payment to be recorded")


def test_paying_in_the_simulator_flips_the_react_dialog_to_paid(shop, page):
    from playwright.sync_api import expect

    order = buy(page, shop)
    expect(page.locator(".pa-description")).to_have_text("Kikoy beach towel")
    page.locator("#pa-phone").fill(new_phone())
    page.locator(".pa-pay").click()
    expect_view(page, "pending")
    expect(order_status(page)).to_have_attribute("data-status", "pending")

    shop.stack.simulator.answer(order["orderNumber"], "accept")
    expect_view(page, "success")
    expect(order_status(page)).to_have_attribute("data-status", "paid")
    expect(order_status(page)).to_contain_text(re.compile(r"receipt \w+"))
    # onPaid asked the shop's server, which asked paymentapp: fulfilled server-side.
    expect(page.get_by_test_id("confirmed")).to_contain_text(order["orderNumber"])
    # The dialog closes by itself after success (autoCloseMs 5 s); the page stays.
    expect(page.locator(".paymentapp-host")).to_have_count(0, timeout=WAIT_MS)
    assert page.evaluate("window.__sockets.length") == 2  # the hook's and the dialog's


def test_a_server_restart_mid_payment_reconnects_and_shows_paid(shop, page):
    from playwright.sync_api import expect

    stack = shop.stack
    order = buy(page, shop)
    page.locator("#pa-phone").fill(new_phone())
    page.locator(".pa-pay").click()
    expect_view(page, "pending")
    checkout = checkout_id(stack, order["orderId"])

    stack.server.stop()
    expect(order_status(page)).to_have_attribute("data-connection", "reconnecting")
    # While every worker is down, M-Pesa's callback reaches another instance of the app
    # (here: one in the test process, same database): no live event can carry it.
    with other_instance(stack) as other:
        token = other.config["MPESA_CALLBACK_TOKEN"]
        body = callback_body(checkout, 0, 1450)
        response = other.test_client().post(f"/callbacks/stk/{token}", json=body)
        assert response.status_code == 200, response.get_data(as_text=True)
    expect(order_status(page)).to_have_attribute("data-status", "pending")

    stack.server.start()  # the same port: the page reconnects there
    expect(order_status(page)).to_have_attribute("data-status", "paid")
    expect(order_status(page)).to_have_attribute("data-connection", "live")
    expect_view(page, "success")


def test_the_status_board_gets_all_20_orders_over_one_websocket(shop, page):
    from playwright.sync_api import expect

    stack = shop.stack
    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: frames.append(payload)))
    with page.expect_response("**/api/board") as created:
        page.goto(shop.url + "/board")
    orders = created.value.json()
    assert len(orders) == 20
    rows = page.locator("tr[data-order]")
    expect(rows).to_have_count(20)
    expect(page.locator('tr[data-connection="live"][data-status="pending"]')).to_have_count(20)
    expect(page.get_by_test_id("socket")).to_have_attribute("data-state", "live")

    for order in orders:
        checkout = start_payment(stack, {"id": order["orderId"], "client_token": order["token"]})
        stack.simulator.press(checkout, "accept")
    expect(page.locator('tr[data-status="paid"]')).to_have_count(20)
    for order in orders:
        row = page.locator(f'tr[data-order="{order["orderId"]}"]')
        expect(row).to_contain_text(order["orderNumber"])
        expect(row.locator("td").nth(3)).to_have_text(re.compile(r"^[A-Z0-9]{10}$"))

    assert page.evaluate("window.__sockets.length") == 1
    assert "/socket.io/" in page.evaluate("window.__sockets[0]")
    subscribes = [f for f in frames if re.match(r'^\d+\["subscribe', f)]
    assert len(subscribes) == 1 and subscribes[0].count('"order_id"') == 20, subscribes


@contextlib.contextmanager
def other_instance(stack: Stack):
    """The app in the test process on the stack's database (its emits reach no browser)."""
    from paymentapp import create_app
    from paymentapp.extensions import db

    env = {k: v for k, v in stack.env.items() if k != "REDIS_URL"}
    app = create_app({"TESTING": True, "SOCKETIO_ASYNC_MODE": "threading"}, env=env)
    with app.app_context():
        try:
            yield app
        finally:
            db.session.remove()
            db.engine.dispose()

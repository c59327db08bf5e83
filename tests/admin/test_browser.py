"""The dashboard in real Chromium against real gunicorn, PostgreSQL and Redis: orders
appear and turn paid live, and the order page shows the callback that paid it."""

from __future__ import annotations

import os
import re
import shutil
import uuid

import pytest
import requests

from tests import services
from tests.helpers import PASSWORD, USERNAME, Simulator, base_env

ARTIFACTS = services.ROOT / "test-artifacts"
# The README's picture is refreshed only on request, so test runs leave the tree clean:
#   UPDATE_SCREENSHOTS=1 make test PYTEST_ARGS=tests/admin/test_browser.py
README_SCREENSHOT = services.ROOT / "docs" / "admin.png"
WAIT_MS = 15_000

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture
def server(tmp_path):
    """gunicorn with two workers sharing Redis, on a fresh migrated PostgreSQL."""
    services.require_chromium()
    redis_url = services.require_redis()
    url = services.create_pg_database()
    env = {
        **base_env(url),
        "REDIS_URL": redis_url,
        "SOCKETIO_CHANNEL": f"paymentapp-test-{uuid.uuid4().hex[:8]}",
        "PAYMENTAPP_INSTANCE_PATH": str(tmp_path),
        "PAYMENT_PHONE_COOLDOWN_S": "0",
        # the page's socket stays open until the module's browser closes: no graceful wait
        "GUNICORN_CMD_ARGS": "--graceful-timeout 2",
    }
    try:
        services.flask_cli(env, "db", "upgrade")
        services.flask_cli(env, "admin", "create", USERNAME, input=f"{PASSWORD}\n{PASSWORD}\n")
        key = services.flask_cli(env, "apikey", "create", "demo shop").strip().splitlines()[-1]
        with services.Gunicorn(env, workers=2) as gunicorn:
            gunicorn.api_key = key
            yield gunicorn
            assert "Traceback" not in gunicorn.log(), gunicorn.log()
    finally:
        services.drop_pg_database(url)


class Shop:
    """The merchant and the customer, over the real HTTP API and the simulator."""

    def __init__(self, server):
        self.url = server.url
        self.auth = {"Authorization": f"Bearer {server.api_key}"}
        self.simulator = Simulator(server.url)

    def order(self, amount: int, description: str) -> dict:
        response = requests.post(
            f"{self.url}/api/orders",
            json={"amount": amount, "description": description},
            headers=self.auth,
            timeout=10,
        )
        assert response.status_code == 201, response.text
        return response.json()

    def pay(self, order: dict, phone: str, action: str | None = "accept") -> None:
        """Start an STK Push for the order, then answer it on the simulated phone."""
        response = requests.post(
            f"{self.url}/api/orders/{order['id']}/payments",
            json={"phone": phone},
            headers={"X-Order-Token": order["client_token"]},
            timeout=15,
        )
        assert response.status_code == 202, response.text
        if action is not None:
            self.simulator.answer(order["number"], action)


def row(order: dict) -> str:
    return f'tr[data-order-id="{order["id"]}"]'


def test_dashboard_shows_orders_appear_and_turn_paid_live(server, browser):
    from playwright.sync_api import expect

    shop = Shop(server)
    page = browser.new_page(viewport={"width": 1280, "height": 640})
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto(f"{server.url}/admin")
    expect(page).to_have_url(re.compile(r"/admin/login"))  # anonymous: sent to the login page
    page.fill('input[name="username"]', USERNAME)
    page.fill('input[name="password"]', "wrong password")
    page.click('button[type="submit"]')
    expect(page.get_by_text("Invalid username or password.")).to_be_visible()
    page.fill('input[name="password"]', PASSWORD)
    page.click('button[type="submit"]')
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    page.evaluate("window.__samePage = true")  # proves later updates came without a reload

    # a new order appears live, created by the merchant API (another worker, via Redis)
    sugar = shop.order(1500, "2 kg sugar")
    expect(page.locator(f"{row(sugar)} td:nth-child(3)")).to_have_text("pending", timeout=WAIT_MS)

    # the customer pays on the simulated phone: the row turns paid in place
    shop.pay(sugar, "0712345678")
    expect(page.locator(f"{row(sugar)} .badge-paid")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator(f"{row(sugar)} td:nth-child(4)")).to_have_text("completed")
    expect(page.locator(f"{row(sugar)} td:nth-child(5)")).to_have_text("2547•••••678")

    # a few more, so the page (and the screenshot) shows every kind of row
    for amount, description, phone, action in [
        (250, "Airtime", "0722000111", "cancel"),
        (3200, "Cooking gas refill", "0733000222", "accept"),
        (80, "Bread", "0110000333", None),
        (990, "School shoes", None, None),
        (45, "Milk", "0744000444", "accept"),
    ]:
        order = shop.order(amount, description)
        expect(page.locator(row(order))).to_be_visible(timeout=WAIT_MS)
        if phone:
            shop.pay(order, phone, action)
            expected = {"accept": ".badge-paid", "cancel": "td:nth-child(4) .badge-cancelled"}
            wanted = expected.get(action, "td:nth-child(4) .badge-pending")
            expect(page.locator(f"{row(order)} {wanted}")).to_be_visible(timeout=WAIT_MS)

    assert page.evaluate("window.__samePage") is True
    totals = page.locator(".totals")
    expect(totals).to_contain_text("KES 4,745", timeout=WAIT_MS)
    expect(totals).to_contain_text("60.0%")  # 3 paid of the 5 orders with a payment attempt
    ARTIFACTS.mkdir(exist_ok=True)
    # animations="disabled" runs the "changed" highlight to its end: no yellow rows
    page.screenshot(path=str(ARTIFACTS / "admin.png"), full_page=True, animations="disabled")
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(ARTIFACTS / "admin.png", README_SCREENSHOT)

    # the order page shows the payment and the callback that paid it, raw body included
    page.click(f"{row(sugar)} a")
    expect(page.locator(".timeline")).to_contain_text("callback: applied", timeout=WAIT_MS)
    page.click("details summary")
    body = page.inner_text("details pre")
    assert '"MpesaReceiptNumber"' in body and '"ResultCode": 0' in body
    assert "254712345678" not in page.content()
    expect(page.locator(".timeline")).to_contain_text("order paid")
    page.screenshot(path=str(ARTIFACTS / "admin-order.png"), full_page=True)

    # "check status now" asks M-Pesa (the simulator) about a prompt still open
    bread = page.goto(f"{server.url}/admin?q=Bread")
    assert bread.ok
    page.click("table.orders tbody a")
    page.click("text=Check status now")
    expect(page.get_by_text("M-Pesa says the customer has not answered yet.")).to_be_visible(
        timeout=WAIT_MS
    )
    assert not errors, errors

"""The payment dialog and demo shop in real Chromium, against real gunicorn + PostgreSQL.

The app runs in simulator mode; tests answer STK prompts through the simulated phone
(its page in a second tab, or its JSON API), so the real payments endpoint, callbacks,
Socket.IO rooms and reconciler are all exercised. Screenshots land in test-artifacts/.
"""

from __future__ import annotations

import re
import time
import uuid

import pytest
import requests

from tests import services
from tests.conftest import base_env

pytestmark = pytest.mark.browser

ARTIFACTS = services.ROOT / "test-artifacts"
WAIT = 30_000  # ms: the longest any state change may take (a reconcile pass, a restart)
PHONE = (360, 740)


# -- the server ---------------------------------------------------------------------------


class App:
    """gunicorn serving the app on a fixed port, restartable on that same port."""

    def __init__(self, env: dict):
        self.env = env
        self.server = services.Gunicorn(env, workers=1)
        self.port = self.server.port
        self.url = self.server.url

    def start(self) -> None:
        self.server = services.Gunicorn(self.env, workers=1, port=self.port).start()

    def stop(self) -> None:
        self.server.stop()

    def log(self) -> str:
        return self.server.log()


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    database_url = services.create_pg_database()
    env = {
        **base_env(database_url),
        "PAYMENTAPP_INSTANCE_PATH": str(tmp_path_factory.mktemp("instance")),
        # The in-process reconciler checks unanswered payments quickly in tests.
        "RECONCILER_IN_PROCESS": "1",
        "RECONCILE_INTERVAL_S": "1",
        "PAYMENT_QUERY_AFTER_S": "2",
        "PAYMENT_EXPIRE_AFTER_S": "150",
        "MPESA_SIMULATOR_PROMPT_TTL_S": "120",
    }
    if services.redis_available():
        env["REDIS_URL"] = services.REDIS_URL
        env["SOCKETIO_CHANNEL"] = f"paymentapp-test-{uuid.uuid4().hex[:8]}"
    try:
        services.flask_cli(env, "db", "upgrade")
        app = App(env)
        app.start()
        try:
            yield app
        finally:
            app.stop()
            assert "Traceback" not in app.log(), app.log()[-4000:]
    finally:
        services.drop_pg_database(database_url)


# -- the browser ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        services.unavailable("playwright is not installed")
    services.require_chromium()
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=services.CHROMIUM, args=services.CHROMIUM_ARGS
            )
        except Error as exc:
            services.unavailable(f"Chromium did not start: {exc}")
        yield browser
        browser.close()


@pytest.fixture
def context(browser, request):
    viewport = getattr(request, "param", None) or (1280, 800)
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    context.set_default_timeout(WAIT)
    errors: list[str] = []
    context.on("weberror", lambda error: errors.append(str(error.error)))
    yield context
    context.close()
    assert errors == [], f"JavaScript errors in the page: {errors}"


@pytest.fixture
def page(context):
    return context.new_page()


def shot(page, name: str) -> None:
    """Save a picture of the page; reduced motion, so no fade is caught half-way."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.emulate_media(reduced_motion="reduce")
    page.screenshot(path=str(ARTIFACTS / f"dialog-{name}.png"), animations="disabled")


# -- driving the app from outside --------------------------------------------------------------


def buy(app: App, product: str = "coffee") -> dict:
    """Buy through the demo shop like a browser would (session cookie + CSRF token)."""
    session = requests.Session()
    html = session.get(app.url + "/", timeout=10).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    response = session.post(
        app.url + "/shop/buy",
        data={"csrf_token": csrf, "product": product},
        headers={"Accept": "application/json"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return response.json()


def status(app: App, order: dict) -> dict:
    response = requests.get(
        f"{app.url}/api/orders/{order['order_id']}/status",
        headers={"X-Order-Token": order["token"]},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


def wait_for(check, what: str, timeout: float = WAIT / 1000):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def open_prompt(app: App, order_number: str) -> dict:
    """The simulated phone's open prompt for this order."""

    def find():
        prompts = requests.get(
            f"{app.url}/_simulator/api/prompts",
            params={"account_reference": order_number},
            timeout=10,
        ).json()["prompts"]
        return next((p for p in prompts if p["state"] == "open"), None)

    return wait_for(find, f"an STK prompt for {order_number}")


def press(app: App, order_number: str, action: str) -> dict:
    """Press a button on the simulated phone for this order's open prompt."""
    prompt = open_prompt(app, order_number)
    response = requests.post(
        f"{app.url}/_simulator/api/prompts/{prompt['checkout_request_id']}/{action}", timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()


def other_instance(app: App):
    """Another instance of the app on the same database, inside the test process.

    Plays "another worker" (its emits reach no browser: no Redis here), for changes
    the browser must learn from a snapshot rather than from a live event.
    """
    from paymentapp import create_app

    env = {k: v for k, v in app.env.items() if k != "REDIS_URL"}
    return create_app({"TESTING": True, "SOCKETIO_ASYNC_MODE": "threading"}, env=env)


def post_callback(app: App, prompt: dict, amount: int, receipt: str) -> None:
    """A success callback for this prompt, as Daraja would post it, with any amount."""
    body = {
        "Body": {
            "stkCallback": {
                "MerchantRequestID": "29115-34620561-1",
                "CheckoutRequestID": prompt["checkout_request_id"],
                "ResultCode": 0,
                "ResultDesc": "The service request is processed successfully.",
                "CallbackMetadata": {
                    "Item": [
                        {"Name": "Amount", "Value": float(amount)},
                        {"Name": "MpesaReceiptNumber", "Value": receipt},
                        {"Name": "Balance"},
                        {"Name": "TransactionDate", "Value": 20261126101500},
                        {"Name": "PhoneNumber", "Value": 254708374149},
                    ]
                },
            }
        }
    }
    token = app.env["MPESA_CALLBACK_TOKEN"]
    response = requests.post(f"{app.url}/callbacks/stk/{token}", json=body, timeout=10)
    assert response.status_code == 200, response.text


def new_phone() -> str:
    """A fresh number per test, so the per-phone cooldown of one test never hits another."""
    return f"07{uuid.uuid4().int % 10**8:08d}"


# -- the dialog, seen from the test ----------------------------------------------------------


def dialog(page):
    return page.locator(".paymentapp-host")


def expect_view(page, view: str, timeout: int = WAIT) -> None:
    from playwright.sync_api import expect

    expect(dialog(page)).to_have_attribute("data-view", view, timeout=timeout)
    expect(page.locator(f'.pa-view[data-view="{view}"]')).to_be_visible(timeout=timeout)


def expect_connection(page, state: str, timeout: int = WAIT) -> None:
    from playwright.sync_api import expect

    expect(page.locator(".pa-conn")).to_have_attribute("data-connection", state, timeout=timeout)


def pay(page, phone: str) -> None:
    page.locator("#pa-phone").fill(phone)
    page.locator(".pa-pay").click()
    expect_view(page, "pending")


def open_hosted(page, app: App, order: dict) -> None:
    page.goto(f"{app.url}/pay/{order['order_id']}?token={order['token']}")
    expect_view(page, "form")


# -- the tests ----------------------------------------------------------------------------------


def test_full_flow_from_shop_to_paid_on_the_simulated_phone(app_server, context, page):
    from playwright.sync_api import expect

    page.goto(app_server.url + "/")
    page.evaluate(
        "window.paidEvents = []; document.addEventListener('paymentapp:paid',"
        " (e) => window.paidEvents.push(e.detail))"
    )
    with page.expect_response("**/shop/buy") as bought:
        page.locator("button[data-product=tea]").click()
    order = bought.value.json()
    expect_view(page, "form")
    expect(page.locator(".pa-amount")).to_have_text("KES 350")
    number = page.locator(".pa-order-number").inner_text()
    assert re.fullmatch(r"ORD-\d+", number)
    expect(page.locator("#pa-phone")).to_be_focused()
    expect_connection(page, "live")

    # Inline validation before anything is sent.
    page.locator("#pa-phone").fill("0812 345 678")
    page.locator(".pa-pay").click()
    expect(page.locator(".pa-field-error")).to_contain_text("07…")
    expect(page.locator("#pa-phone")).to_have_attribute("aria-invalid", "true")
    expect_view(page, "form")

    pay(page, "+254 " + new_phone()[1:])
    expect(page.locator('.pa-view[data-view="pending"] .pa-prompt')).to_contain_text(number)
    expect(page.locator('.pa-view[data-view="pending"] [data-field="phone"]')).to_have_text(
        re.compile(r"^2547•••••\d{3}$")
    )
    expect(page.locator(".pa-countdown-text")).to_contain_text("Prompt expires in")

    # Approve on the simulated phone, in a second tab, like a person would.
    phone_page = context.new_page()
    phone_page.goto(app_server.url + "/_simulator/phone")
    prompt = phone_page.locator(".prompt", has_text=number)
    prompt.get_by_role("button", name="Enter PIN (pay)").click()

    expect_view(page, "success")
    receipt = status(app_server, order)["payment"]["receipt"]
    assert receipt
    expect(page.locator(".pa-receipt-code")).to_have_text(receipt)
    expect(page.locator(".pa-toasts")).to_contain_text("Payment received")
    assert page.evaluate("window.paidEvents.length") == 1
    assert page.evaluate("window.paidEvents[0].receipt") == receipt
    # The modal closes by itself and the shop says the order is paid.
    page.bring_to_front()
    expect(dialog(page)).to_have_count(0, timeout=15_000)
    expect(page.locator(".shop-notice")).to_contain_text(f"Order {number} is paid")
    expect(page.locator("button[data-product=tea]")).to_be_focused()


def test_cancel_shows_the_reason_and_try_again_works(app_server, page):
    from playwright.sync_api import expect

    order = buy(app_server, "kikoy")
    open_hosted(page, app_server, order)
    phone = new_phone()
    # Keyboard only: type the number, Enter sends the prompt.
    page.locator("#pa-phone").focus()
    page.keyboard.type(phone)
    page.keyboard.press("Enter")
    expect_view(page, "pending")
    expect(page.locator('.pa-view[data-view="pending"] .pa-title')).to_be_focused()

    press(app_server, order["order_number"], "cancel")
    expect_view(page, "failed")
    expect(page.locator(".pa-title", has_text="Payment cancelled")).to_be_visible()
    expect(page.locator('[data-field="failure-text"]')).to_contain_text("Nothing was charged")
    expect(page.locator(".pa-toasts")).to_contain_text("Payment cancelled")

    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Try again")).to_be_focused()
    page.keyboard.press("Enter")
    expect_view(page, "form")
    expect(page.locator("#pa-phone")).to_have_value(phone)
    expect(page.locator("#pa-phone")).to_be_focused()
    # The same phone may still be in the server's short cooldown: the dialog counts it
    # down and re-enables Pay by itself.
    page.locator(".pa-pay").click()
    if dialog(page).get_attribute("data-view") != "pending":
        expect(page.locator(".pa-pay")).to_be_enabled(timeout=WAIT)
        if dialog(page).get_attribute("data-view") == "form":
            page.locator(".pa-pay").click()
    expect_view(page, "pending")

    press(app_server, order["order_number"], "accept")
    expect_view(page, "success")
    final = status(app_server, order)
    assert final["order_status"] == "paid"
    expect(page.locator(".pa-receipt-code")).to_have_text(final["payment"]["receipt"])


def test_callback_before_subscribe_still_shows_success(app_server, page):
    """The socket is held back until after the callback; the subscribe snapshot is it."""
    held = {"block": True}

    def gate(ws):
        if held["block"]:
            ws.close()
        else:
            ws.connect_to_server()

    page.route_web_socket(re.compile(r".*/socket\.io/.*"), gate)
    # No polling fallback here: only the subscribe snapshot may bring the news.
    page.add_init_script("window.PaymentAppConfig = {fallbackAfterMs: 600000}")
    order = buy(app_server, "coffee")
    open_hosted(page, app_server, order)
    pay(page, new_phone())
    expect_connection(page, "reconnecting")

    press(app_server, order["order_number"], "accept")
    wait_for(lambda: status(app_server, order)["order_status"] == "paid", "the order to be paid")
    assert dialog(page).get_attribute("data-view") == "pending"

    held["block"] = False
    expect_view(page, "success")
    expect_connection(page, "live")
    assert dialog(page).get_attribute("data-status-source") == "subscribe"


def test_a_lost_update_on_a_live_socket_is_caught_by_the_periodic_re_check(app_server, page):
    """Issue 9 item 4: the socket stays up but the `payment_update` never arrives (a worker
    died between commit and emit); the pending dialog re-checks over HTTP and turns paid."""
    dropped = []

    def drop_updates(ws):
        server = ws.connect_to_server()

        def forward(message):
            if isinstance(message, str) and "payment_update" in message:
                dropped.append(message)
                return
            ws.send(message)

        server.on_message(forward)

    page.route_web_socket(re.compile(r".*/socket\.io/.*"), drop_updates)
    page.add_init_script("window.PaymentAppConfig = {liveRecheckMs: 2000}")
    order = buy(app_server, "coffee")
    open_hosted(page, app_server, order)
    expect_connection(page, "live")
    pay(page, new_phone())
    press(app_server, order["order_number"], "accept")
    wait_for(lambda: status(app_server, order)["order_status"] == "paid", "the order to be paid")
    expect_view(page, "success")
    expect_connection(page, "live")
    assert dialog(page).get_attribute("data-status-source") == "poll"
    assert dropped, "the paid update should have been dropped on the way"


@pytest.mark.parametrize("context", [PHONE], indirect=True)
def test_server_restart_while_waiting_reconnects_and_shows_the_payment(app_server, page):
    from paymentapp.extensions import db
    from paymentapp.models import Payment

    order = buy(app_server, "tea")
    open_hosted(page, app_server, order)
    expect_connection(page, "live")
    pay(page, new_phone())
    prompt = open_prompt(app_server, order["order_number"])

    app_server.stop()
    expect_connection(page, "reconnecting")
    shot(page, "8-reconnecting")
    # While this server is down the customer approves and M-Pesa's callback reaches
    # another instance of the app (here: one in the test process, same database).
    other = other_instance(app_server)
    with other.app_context():
        from paymentapp.simulator import answer_prompt, callback_body, get_prompt

        assert answer_prompt(prompt["checkout_request_id"], "lose_callback") is not None
        body = callback_body(get_prompt(prompt["checkout_request_id"]))
        token = other.config["MPESA_CALLBACK_TOKEN"]
        response = other.test_client().post(f"/callbacks/stk/{token}", json=body)
        assert response.status_code == 200, response.get_data(as_text=True)
        receipt = db.session.scalar(
            db.select(Payment.receipt).where(
                Payment.checkout_request_id == prompt["checkout_request_id"]
            )
        )
        db.session.remove()
        db.engine.dispose()
    assert dialog(page).get_attribute("data-view") == "pending"

    app_server.start()
    expect_view(page, "success")
    expect_connection(page, "live")
    from playwright.sync_api import expect

    expect(page.locator(".pa-receipt-code")).to_have_text(receipt)


def test_websocket_blocked_falls_back_to_polling(app_server, page):
    from playwright.sync_api import expect

    page.route_web_socket(re.compile(r".*"), lambda ws: ws.close())
    order = buy(app_server, "kikoy")
    open_hosted(page, app_server, order)
    pay(page, new_phone())
    expect(page.locator(".pa-conn")).not_to_have_attribute("data-connection", "live")

    press(app_server, order["order_number"], "accept")
    expect_view(page, "success")
    assert dialog(page).get_attribute("data-status-source") == "poll"
    assert dialog(page).get_attribute("data-connection") != "live"


def test_lost_callback_is_settled_by_reconciliation(app_server, context, page):
    from playwright.sync_api import expect

    order = buy(app_server, "coffee")
    open_hosted(page, app_server, order)
    pay(page, new_phone())

    phone_page = context.new_page()
    phone_page.goto(app_server.url + "/_simulator/phone")
    prompt = phone_page.locator(".prompt", has_text=order["order_number"])
    prompt.get_by_role("button", name="Pay, lose callback").click()

    # No callback will come; the reconciler's STK Query finds the payment went through.
    expect_view(page, "success")
    final = status(app_server, order)
    assert final["order_status"] == "paid"
    assert final["payment"]["receipt"] is None  # STK Query answers carry no receipt
    expect(page.locator(".pa-receipt-code")).to_have_text("In your M\u2011Pesa SMS")


@pytest.mark.parametrize("context", [PHONE], indirect=True)
def test_phone_screenshots_of_every_state(app_server, context, page):
    """360×740: every state fits, nothing scrolls sideways, the card never changes height."""
    from playwright.sync_api import expect

    page.goto(app_server.url + "/")
    shot(page, "0-shop")
    with page.expect_response("**/shop/buy") as bought:
        page.locator("button[data-product=coffee]").click()
    order = bought.value.json()
    expect_view(page, "form")
    expect_connection(page, "live")
    card = page.locator(".pa-card")
    heights = {"form": card.bounding_box()["height"]}
    shot(page, "1-form")

    page.locator("#pa-phone").fill("0712 34")
    page.locator(".pa-pay").click()
    expect(page.locator(".pa-field-error")).not_to_be_empty()
    shot(page, "2-invalid-phone")

    phone = new_phone()
    pay(page, phone)
    number = page.locator(".pa-order-number").inner_text()
    heights["pending"] = card.bounding_box()["height"]
    shot(page, "3-pending")

    press(app_server, number, "insufficient")
    expect_view(page, "failed")
    expect(page.locator(".pa-title", has_text="Not enough money")).to_be_visible()
    heights["failed"] = card.bounding_box()["height"]
    shot(page, "4-failed-insufficient-funds")

    page.get_by_role("button", name="Try again").click()
    expect_view(page, "form")
    expect(page.locator(".pa-pay")).to_be_enabled(timeout=WAIT)
    page.locator(".pa-pay").click()
    expect(page.locator(".pa-pay")).to_be_enabled(timeout=WAIT)
    if dialog(page).get_attribute("data-view") == "form":
        page.locator(".pa-pay").click()
    expect_view(page, "pending")
    press(app_server, number, "accept")
    expect_view(page, "success")
    heights["success"] = card.bounding_box()["height"]
    shot(page, "5-success")

    for name in ("form", "pending", "failed", "success"):
        assert abs(heights[name] - heights["form"]) < 1, heights
    box = card.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE[0] + 0.5, box
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE[0]

    # The hosted page of a paid order opens straight to success.
    page.goto(f"{app_server.url}/pay/{order['order_id']}?token={order['token']}")
    expect_view(page, "success")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE[0]
    shot(page, "6-hosted-paid")

    response = page.goto(f"{app_server.url}/pay/{order['order_id']}?token=not-a-token")
    assert response.status == 403
    expect(page.get_by_role("heading", name="This payment link is not valid")).to_be_visible()
    shot(page, "7-invalid-link")

    # M-Pesa reports a different amount: the order is not paid, the customer is told
    # not to pay again.
    review = buy(app_server, "tea")
    open_hosted(page, app_server, review)
    pay(page, new_phone())
    post_callback(app_server, open_prompt(app_server, review["order_number"]), 1, "SREVIEW001")
    expect_view(page, "review")
    assert status(app_server, review)["order_status"] == "pending"
    shot(page, "9-review")

    # A cancelled order cannot be paid.
    cancelled = buy(app_server, "kikoy")
    with other_instance(app_server).app_context():
        from paymentapp.extensions import db
        from paymentapp.payments.services import cancel_order

        cancel_order(cancelled["order_id"], "test")
        db.session.remove()
        db.engine.dispose()
    page.goto(f"{app_server.url}/pay/{cancelled['order_id']}?token={cancelled['token']}")
    expect_view(page, "closed")
    shot(page, "10-cancelled")


def test_phone_rules_in_the_browser_match_the_server(app_server, page):
    """The dialog's inline validation and paymentapp/phones.py accept the same numbers."""
    from paymentapp.phones import InvalidPhone, normalize_phone

    samples = [
        "0712 345 678",
        "0112345678",
        "0101234567",
        "+254 712 345 678",
        "254712345678",
        "712345678",
        "112345678",
        "(0712) 345-678",
        "0812 345 678",
        "0122345678",
        "07123456789",
        "071234567",
        "+2547123456789",
        "0712a45678",
        "255712345678",
        "",
        "  ",
        "++254712345678",
    ]
    page.goto(app_server.url + "/")
    in_browser = page.evaluate(
        """async (samples) => {
            const m = await import("/static/js/paymentapp-client.js");
            return samples.map((s) => m.normalizePhone(s));
        }""",
        samples,
    )
    for sample, got in zip(samples, in_browser, strict=True):
        try:
            expected = normalize_phone(sample)
        except InvalidPhone:
            expected = None
        assert got == expected, sample

"""The payment dialog and demo shop in real Chromium, against real gunicorn + PostgreSQL.

The app runs in simulator mode; tests answer STK prompts through the simulated phone
(its page in a second tab, or its JSON API), so the real payments endpoint, callbacks,
Socket.IO rooms and reconciler are all exercised. Screenshots land in test-artifacts/.
"""

from __future__ import annotations

import re

import pytest
import requests

from tests import services
from tests.browser_app import (
    PHONE,
    WAIT_MS,
    DialogApp,
    buy,
    dialog,
    dialog_app,
    expect_view,
    new_phone,
    open_hosted,
    pay,
    shot,
    status,
)
from tests.helpers import stk_callback

pytestmark = pytest.mark.browser


# -- the server ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    with dialog_app(
        tmp_path_factory.mktemp("instance"),
        # The in-process reconciler checks unanswered payments quickly in tests.
        PAYMENT_QUERY_AFTER_S="2",
        PAYMENT_EXPIRE_AFTER_S="150",
        MPESA_SIMULATOR_PROMPT_TTL_S="120",
    ) as app:
        yield app


def start_again(app: DialogApp) -> None:
    """Start the stopped server again, on the same port (the page reconnects there)."""
    app.server = services.Gunicorn(app.env, workers=1, port=app.server.port).start()


# -- driving the app from outside --------------------------------------------------------------


def wait_until_paid(app: DialogApp, order: dict) -> None:
    """Wait for the server (not the page) to record the order as paid."""
    services.wait_for(
        lambda: status(app, order)["order_status"] == "paid",
        "the order to be paid",
        WAIT_MS / 1000,
        interval=0.2,
    )


def other_instance(app: DialogApp):
    """Another instance of the app on the same database, inside the test process.

    Plays "another worker" (its emits reach no browser: no Redis here), for changes
    the browser must learn from a snapshot rather than from a live event.
    """
    from paymentapp import create_app

    env = {k: v for k, v in app.env.items() if k != "REDIS_URL"}
    return create_app({"TESTING": True, "SOCKETIO_ASYNC_MODE": "threading"}, env=env)


def post_callback(app: DialogApp, prompt: dict, amount: int, receipt: str) -> None:
    """A success callback for this prompt, as Daraja would post it, with any amount."""
    body = stk_callback(
        prompt["checkout_request_id"], amount=float(amount), receipt=receipt, phone=254708374149
    )
    token = app.env["MPESA_CALLBACK_TOKEN"]
    response = requests.post(f"{app.url}/callbacks/stk/{token}", json=body, timeout=10)
    assert response.status_code == 200, response.text


# -- the dialog, seen from the test ----------------------------------------------------------


def expect_connection(page, state: str, timeout: int = WAIT_MS) -> None:
    from playwright.sync_api import expect

    expect(page.locator(".pa-conn")).to_have_attribute("data-connection", state, timeout=timeout)


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
    # Paid once, with what was known then: the callback's receipt, or none when the
    # reconciler's STK Query (2 s here) confirmed the payment before the simulator's
    # callback was applied (a loaded machine; STK Query answers carry no receipt). The
    # receipt shown above came with the callback either way.
    assert page.evaluate("window.paidEvents[0].receipt") in (receipt, None)
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

    app_server.simulator.answer(order["order_number"], "cancel")
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
        expect(page.locator(".pa-pay")).to_be_enabled(timeout=WAIT_MS)
        if dialog(page).get_attribute("data-view") == "form":
            page.locator(".pa-pay").click()
    expect_view(page, "pending")

    app_server.simulator.answer(order["order_number"], "accept")
    expect_view(page, "success")
    final = status(app_server, order)
    assert final["order_status"] == "paid"
    expect(page.locator(".pa-receipt-code")).to_have_text(final["payment"]["receipt"])


def test_callback_before_subscribe_still_shows_success(app_server, page):
    """The socket is held back until after the callback; the subscribe snapshot is it."""
    from playwright.sync_api import expect

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

    app_server.simulator.answer(order["order_number"], "accept")
    wait_until_paid(app_server, order)
    expect(dialog(page)).to_have_attribute("data-view", "pending")

    held["block"] = False
    expect_view(page, "success")
    expect_connection(page, "live")
    expect(dialog(page)).to_have_attribute("data-status-source", "subscribe")


def test_a_refund_through_mpesa_shows_on_the_open_dialog(app_server, page):
    """The merchant refunds the payment (Reversal) while the paid dialog is open: the live
    update turns it to "Payment refunded" with the amount; the order stays paid."""
    from playwright.sync_api import expect

    order = buy(app_server, "coffee")
    open_hosted(page, app_server, order)
    pay(page, new_phone())
    app_server.simulator.answer(order["order_number"], "accept")
    expect_view(page, "success")
    expect(page.locator(".pa-refund")).to_be_hidden()
    key = services.flask_cli(app_server.env, "apikey", "create", f"refunds-{order['order_id']}")
    answer = requests.post(
        f"{app_server.url}/api/orders/{order['order_id']}/refunds",
        json={"reason": "requested_by_customer"},
        headers={"Authorization": f"Bearer {key.strip().splitlines()[-1]}"},
        timeout=10,
    )
    assert answer.status_code == 202, answer.text
    expect(page.get_by_role("heading", name="Payment refunded")).to_be_visible(timeout=WAIT_MS)
    amount = status(app_server, order)["amount"]
    expect(page.locator(".pa-refund")).to_have_text(
        re.compile(rf"KES {amount:,} went back to your M.Pesa\.")
    )
    assert status(app_server, order)["order_status"] == "paid"
    # the simulated phone shows the money it got back
    page.goto(f"{app_server.url}/_simulator/phone")
    expect(page.locator(".prompt.refund").first).to_contain_text(
        re.compile(rf"KES {amount:,} back to your M-PESA")
    )


def test_a_lost_update_on_a_live_socket_is_caught_by_the_periodic_re_check(app_server, page):
    """The socket stays up but the `payment_update` never arrives (a worker
    died between commit and emit); the pending dialog re-checks over HTTP and turns paid."""
    from playwright.sync_api import expect

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
    app_server.simulator.answer(order["order_number"], "accept")
    wait_until_paid(app_server, order)
    expect_view(page, "success")
    expect_connection(page, "live")
    expect(dialog(page)).to_have_attribute("data-status-source", "poll")
    assert dropped, "the paid update should have been dropped on the way"


@pytest.mark.parametrize("context", [PHONE], indirect=True)
def test_server_restart_while_waiting_reconnects_and_shows_the_payment(app_server, page):
    from playwright.sync_api import expect

    from paymentapp.extensions import db
    from paymentapp.models import Payment

    order = buy(app_server, "tea")
    open_hosted(page, app_server, order)
    expect_connection(page, "live")
    pay(page, new_phone())
    prompt = app_server.simulator.open_prompt(order["order_number"])

    app_server.server.stop()
    expect_connection(page, "reconnecting")
    shot(page, "dialog-8-reconnecting")
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
    expect(dialog(page)).to_have_attribute("data-view", "pending")

    start_again(app_server)
    expect_view(page, "success")
    expect_connection(page, "live")
    expect(page.locator(".pa-receipt-code")).to_have_text(receipt)


def test_websocket_blocked_falls_back_to_polling(app_server, page):
    from playwright.sync_api import expect

    page.route_web_socket(re.compile(r".*"), lambda ws: ws.close())
    order = buy(app_server, "kikoy")
    open_hosted(page, app_server, order)
    pay(page, new_phone())
    expect(page.locator(".pa-conn")).not_to_have_attribute("data-connection", "live")

    app_server.simulator.answer(order["order_number"], "accept")
    expect_view(page, "success")
    expect(dialog(page)).to_have_attribute("data-status-source", "poll")
    expect(dialog(page)).not_to_have_attribute("data-connection", "live")


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
    shot(page, "dialog-0-shop")
    with page.expect_response("**/shop/buy") as bought:
        page.locator("button[data-product=coffee]").click()
    order = bought.value.json()
    expect_view(page, "form")
    expect_connection(page, "live")
    card = page.locator(".pa-card")
    heights = {"form": card.bounding_box()["height"]}
    shot(page, "dialog-1-form")

    page.locator("#pa-phone").fill("0712 34")
    page.locator(".pa-pay").click()
    expect(page.locator(".pa-field-error")).not_to_be_empty()
    shot(page, "dialog-2-invalid-phone")

    phone = new_phone()
    pay(page, phone)
    number = page.locator(".pa-order-number").inner_text()
    heights["pending"] = card.bounding_box()["height"]
    shot(page, "dialog-3-pending")

    app_server.simulator.answer(number, "insufficient")
    expect_view(page, "failed")
    expect(page.locator(".pa-title", has_text="Not enough money")).to_be_visible()
    heights["failed"] = card.bounding_box()["height"]
    shot(page, "dialog-4-failed-insufficient-funds")

    page.get_by_role("button", name="Try again").click()
    expect_view(page, "form")
    expect(page.locator(".pa-pay")).to_be_enabled(timeout=WAIT_MS)
    page.locator(".pa-pay").click()
    expect(page.locator(".pa-pay")).to_be_enabled(timeout=WAIT_MS)
    if dialog(page).get_attribute("data-view") == "form":
        page.locator(".pa-pay").click()
    expect_view(page, "pending")
    app_server.simulator.answer(number, "accept")
    expect_view(page, "success")
    heights["success"] = card.bounding_box()["height"]
    shot(page, "dialog-5-success")

    for name in ("form", "pending", "failed", "success"):
        assert abs(heights[name] - heights["form"]) < 1, heights
    box = card.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE[0] + 0.5, box
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE[0]

    # The hosted page of a paid order opens straight to success.
    page.goto(f"{app_server.url}/pay/{order['order_id']}?token={order['token']}")
    expect_view(page, "success")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE[0]
    shot(page, "dialog-6-hosted-paid")

    response = page.goto(f"{app_server.url}/pay/{order['order_id']}?token=not-a-token")
    assert response.status == 403
    expect(page.get_by_role("heading", name="This payment link is not valid")).to_be_visible()
    shot(page, "dialog-7-invalid-link")

    # M-Pesa reports a different amount: the order is not paid, the customer is told
    # not to pay again.
    review = buy(app_server, "tea")
    open_hosted(page, app_server, review)
    pay(page, new_phone())
    post_callback(
        app_server, app_server.simulator.open_prompt(review["order_number"]), 1, "SREVIEW001"
    )
    expect_view(page, "review")
    assert status(app_server, review)["order_status"] == "pending"
    shot(page, "dialog-9-review")

    # A cancelled order cannot be paid.
    cancelled = buy(app_server, "kikoy")
    with other_instance(app_server).app_context():
        from paymentapp.extensions import db
        from paymentapp.orders.services import cancel_order

        cancel_order(cancelled["order_id"], "test")
        db.session.remove()
        db.engine.dispose()
    page.goto(f"{app_server.url}/pay/{cancelled['order_id']}?token={cancelled['token']}")
    expect_view(page, "closed")
    shot(page, "dialog-10-cancelled")


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

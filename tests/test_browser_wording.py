"""The dialog's words and toasts in real Chromium: only M-Pesa's own
ResultDesc is quoted as "M-Pesa said", with no doubled punctuation; a wait shows one
countdown, on the button; *Try again* right after a cancel never runs into the per-phone
cooldown's 429; toasts never cover the card's footer."""

from __future__ import annotations

import re

import pytest
import requests

from tests.browser_app import (
    DESKTOP,
    PHONE,
    dialog,
    dialog_app,
    expect_view,
    new_context,
    new_phone,
    open_hosted,
    pay,
    shot,
)
from tests.browser_app import buy as buy_order
from tests.helpers import stk_callback

pytestmark = pytest.mark.browser

COOLDOWN_S = 10
CLOCK = re.compile(r"\b\d+:\d\d\b")
NB = "\u2011"  # the dialog never splits "M-Pesa": a non-breaking hyphen


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    with dialog_app(
        tmp_path_factory.mktemp("instance"), PAYMENT_PHONE_COOLDOWN_S=str(COOLDOWN_S)
    ) as app:
        yield app


@pytest.fixture
def context(browser, request):
    context = new_context(browser, getattr(request, "param", None) or DESKTOP)
    yield context
    context.close()
    assert context.page_errors == [], f"JavaScript errors in the page: {context.page_errors}"


@pytest.fixture
def page(context):
    return context.new_page()


def expect_live(page):
    from playwright.sync_api import expect

    expect(page.locator(".pa-conn")).to_have_attribute("data-connection", "live")


def visible_dialog_text(page) -> str:
    """What the customer can read in the dialog now: the active view, toasts and footer."""
    return page.evaluate(
        """() => {
            const root = document.querySelector(".paymentapp-host").shadowRoot;
            return [".pa-summary", ".pa-view.is-active", ".pa-footer", ".pa-toasts"]
                .map((sel) => root.querySelector(sel).innerText).join("\\n");
        }"""
    )


def assert_tidy(text: str) -> None:
    """No doubled punctuation and no sentence-ending mark after a closing quote."""
    assert not re.search(r"[.!?][.!?]|”\.|\.\s*\.", text.replace("…", "")), text


def answer_with_callback(app, order: dict, result_code: int, desc: str) -> None:
    """Daraja posts a failure callback with a result code the dialog has no words for."""
    prompt = app.simulator.open_prompt(order["order_number"])
    body = stk_callback(prompt["checkout_request_id"], result_code, desc=desc)
    token = app.env["MPESA_CALLBACK_TOKEN"]
    response = requests.post(f"{app.url}/callbacks/stk/{token}", json=body, timeout=10)
    assert response.status_code == 200, response.text


# -- "M-Pesa said" ------------------------------------------------------------------------------


def test_an_unknown_result_code_quotes_m_pesa_once_without_doubled_punctuation(app_server, page):
    from playwright.sync_api import expect

    order = buy_order(app_server, "tea")
    open_hosted(page, app_server, order)
    expect_live(page)
    pay(page, new_phone())
    desc = "The initiator information is invalid."
    answer_with_callback(app_server, order, 2028, desc)
    expect_view(page, "failed")
    text = page.locator('[data-field="failure-text"]')
    expect(text).to_have_text(f"The payment did not go through. M{NB}Pesa said: “{desc}”")
    assert_tidy(visible_dialog_text(page))
    shot(page, "wording-1-mpesa-said")


def test_our_own_message_is_never_quoted_as_m_pesas(app_server, page):
    """The push itself fails (M-Pesa gave an unreadable answer): the payment's result_desc
    is our server's note, so the dialog says it in its own words and quotes nothing."""
    from playwright.sync_api import expect

    order = buy_order(app_server, "coffee")
    open_hosted(page, app_server, order)
    expect_live(page)
    app_server.simulator.fault("stkpush", status=503, body="<html>Service Unavailable</html>")
    page.locator("#pa-phone").fill(new_phone())
    with page.expect_response("**/payments") as answered:
        page.locator(".pa-pay").click()
    assert answered.value.status == 502
    expect_view(page, "failed")
    expect(page.locator('[data-field="failure-title"]')).to_have_text("The prompt was not sent")
    readable = visible_dialog_text(page)
    assert "said" not in readable and "“" not in readable, readable
    assert_tidy(readable)
    shot(page, "wording-2-push-failed")


# -- one countdown, on the button ------------------------------------------------------------


def test_try_again_right_after_cancel_counts_down_on_pay_instead_of_a_429(app_server, page):
    from playwright.sync_api import expect

    statuses: list[int] = []
    page.on(
        "response",
        lambda r: statuses.append(r.status) if r.url.endswith("/payments") else None,
    )
    order = buy_order(app_server, "kikoy")
    open_hosted(page, app_server, order)
    expect_live(page)
    phone = new_phone()
    pay(page, phone)
    app_server.simulator.answer(order["order_number"], "cancel")
    expect_view(page, "failed")
    expect(page.locator(".pa-toasts")).to_contain_text("Payment cancelled")
    # Try again stays usable (keyboard and mouse); the wait moves to the Pay button.
    expect(page.get_by_role("button", name="Try again", exact=True)).to_be_enabled()
    page.get_by_role("button", name="Try again").click()
    expect_view(page, "form")
    expect(page.locator(".pa-toast")).to_have_count(0)  # the failure's toast is gone
    pay_button = page.locator(".pa-pay")
    pay_label = page.locator(".pa-pay-label")
    expect(pay_button).to_be_disabled()
    expect(pay_label).to_have_text(re.compile(r"^Pay in 0:(0\d|10)$"))
    note = page.locator(".pa-form-error")
    expect(note).to_have_text(f"M{NB}Pesa needs a few seconds between prompts to the same phone.")
    readable = visible_dialog_text(page)
    assert len(CLOCK.findall(readable)) == 1, readable  # one countdown
    assert not re.search(r"\d+ seconds", readable), readable
    shot(page, "wording-3-try-again-countdown")

    # Another number need not wait; the same number waits again.
    page.locator("#pa-phone").fill(new_phone())
    expect(pay_button).to_be_enabled()
    expect(pay_label).to_have_text(f"Pay KES {order['amount']:,}")
    expect(note).to_be_empty()
    page.locator("#pa-phone").fill(phone)
    expect(pay_button).to_be_disabled()

    # When the wait is over Pay comes back by itself, and the prompt goes out.
    expect(pay_button).to_be_enabled(timeout=(COOLDOWN_S + 5) * 1000)
    expect(pay_label).to_have_text(f"Pay KES {order['amount']:,}")
    expect(note).to_be_empty()
    with page.expect_response("**/payments") as answered:
        pay_button.click()
    assert answered.value.status == 202
    expect_view(page, "pending")
    assert statuses == [202, 202], statuses  # never a 429


def prompt_from_outside(app, order: dict, phone: str) -> None:
    """Send a prompt for `order` to `phone` from outside the page under test."""
    response = requests.post(
        f"{app.url}/api/orders/{order['order_id']}/payments",
        json={"phone": phone},
        headers={"X-Order-Token": order["token"]},
        timeout=15,
    )
    assert response.status_code == 202, response.text


def test_the_servers_cooldown_shows_one_countdown_on_the_pay_button(app_server, page):
    """Another order's prompt went to this phone seconds ago: the server says 429 "Please
    wait 10 seconds…"; the dialog keeps the reason, drops the number, counts on Pay."""
    from playwright.sync_api import expect

    phone = new_phone()
    first = buy_order(app_server, "tea")
    prompt_from_outside(app_server, first, phone)
    app_server.simulator.answer(first["order_number"], "cancel")

    order = buy_order(app_server, "coffee")
    open_hosted(page, app_server, order)
    page.locator("#pa-phone").fill(phone)
    with page.expect_response("**/payments") as answered:
        page.locator(".pa-pay").click()
    assert answered.value.status == 429
    assert re.search(r"\d+ seconds", answered.value.json()["error"]["message"])
    expect(page.locator(".pa-pay")).to_be_disabled()
    expect(page.locator(".pa-pay-label")).to_have_text(re.compile(r"^Pay in 0:(0\d|10)$"))
    expect(page.locator(".pa-form-error")).to_have_text("A prompt was just sent to this phone.")
    readable = visible_dialog_text(page)
    assert len(CLOCK.findall(readable)) == 1, readable
    assert not re.search(r"\d+ seconds", readable), readable
    assert_tidy(readable)
    shot(page, "wording-4-server-cooldown")
    expect(page.locator(".pa-pay")).to_be_enabled(timeout=(COOLDOWN_S + 5) * 1000)
    expect(page.locator(".pa-form-error")).to_be_empty()


def test_a_prompt_open_on_the_phone_says_why_and_cancelling_it_frees_pay(app_server, page):
    """Another order's prompt is open on this phone (someone else's payment link, say): the
    dialog says why it waits and counts a few seconds on Pay, not minutes; once the
    customer cancels that prompt on the phone, their own payment goes through."""
    from playwright.sync_api import expect

    phone = new_phone()
    other = buy_order(app_server, "tea")  # someone else's order
    prompt_from_outside(app_server, other, phone)

    order = buy_order(app_server, "coffee")
    open_hosted(page, app_server, order)
    page.locator("#pa-phone").fill(phone)
    with page.expect_response("**/payments") as answered:
        page.locator(".pa-pay").click()
    assert answered.value.status == 429
    assert answered.value.json()["error"]["code"] == "prompt_open"
    expect(page.locator(".pa-form-error")).to_have_text(
        "A payment prompt is already open on this phone. Answer or cancel it on the phone, "
        "then pay."
    )
    expect(page.locator(".pa-pay-label")).to_have_text(re.compile(r"^Pay in 0:0[1-5]$"))
    assert_tidy(visible_dialog_text(page))
    shot(page, "wording-5-prompt-open")

    app_server.simulator.answer(other["order_number"], "cancel")  # "I did not ask for this"
    # Pay comes back within seconds; right after the cancel M-Pesa may still need the rest
    # of the phone's short cooldown, which the dialog counts down too
    statuses = []
    while not statuses or statuses[-1] == 429:
        assert len(statuses) < 4, statuses
        expect(page.locator(".pa-pay")).to_be_enabled(timeout=(COOLDOWN_S + 5) * 1000)
        with page.expect_response("**/payments") as answered:
            page.locator(".pa-pay").click()
        statuses.append(answered.value.status)
    assert statuses[-1] == 202, statuses
    expect_view(page, "pending")


# -- toasts ---------------------------------------------------------------------------------------


def overlap(a: dict, b: dict) -> bool:
    return not (
        a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
    )


def assert_toast_clear_of_the_card(page, name: str) -> None:
    from playwright.sync_api import expect

    toast = page.locator(".pa-toast").last
    expect(toast).to_be_visible()
    page.emulate_media(reduced_motion="reduce")
    box = toast.bounding_box()
    footer = page.locator(".pa-footer").bounding_box()
    card = page.locator(".pa-card").bounding_box()
    assert not overlap(box, footer), (box, footer)
    assert not overlap(box, card), (box, card)  # nothing of the card is hidden
    viewport = page.viewport_size
    assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], box
    assert box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"], box
    shot(page, f"wording-toast-{name}")


@pytest.mark.parametrize("context", [PHONE, DESKTOP], indirect=True, ids=["phone", "desktop"])
def test_toasts_never_cover_the_footer(app_server, context, page):
    from playwright.sync_api import expect

    name = "phone" if page.viewport_size["width"] == PHONE[0] else "desktop"
    # The modal on the shop page (a bottom sheet on a phone).
    page.goto(app_server.url + "/")
    with page.expect_response("**/shop/buy") as bought:
        page.locator("button[data-product=coffee]").click()
    order = bought.value.json()
    expect_view(page, "form")
    expect_live(page)
    pay(page, new_phone())
    expect(page.locator(".pa-toasts")).to_contain_text("Prompt sent to")
    assert_toast_clear_of_the_card(page, f"{name}-modal")
    app_server.simulator.answer(order["order_number"], "cancel")
    expect_view(page, "failed")
    expect(page.locator(".pa-toasts")).to_contain_text("Payment cancelled")
    assert_toast_clear_of_the_card(page, f"{name}-modal-failed")

    # Inline on the hosted page.
    hosted = buy_order(app_server, "tea")
    open_hosted(page, app_server, hosted)
    expect_live(page)
    pay(page, new_phone())
    expect(page.locator(".pa-toasts")).to_contain_text("Prompt sent to")
    assert_toast_clear_of_the_card(page, f"{name}-inline")
    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]
    expect(dialog(page)).to_have_attribute("data-view", "pending")

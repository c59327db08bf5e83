"""The dialog's "Pay with Paybill instead" in real Chromium, against
real gunicorn + PostgreSQL: the Paybill details with copy buttons, live to "Payment
received" when the C2B confirmation lands, part payments, axe and the keyboard.

Confirmations come from the simulator's Pay Bill API when it has one, else they are
posted in Daraja's format straight to the app's confirmation URL.
"""

from __future__ import annotations

import re
import uuid

import pytest
import requests

from tests.a11y import axe_run, describe, in_shadow
from tests.browser_app import (
    DESKTOP,
    PHONE,
    dialog_app,
    expect_view,
    new_phone,
    open_hosted,
    pay,
    shot,
    status,
)
from tests.browser_app import buy as buy_order
from tests.helpers import c2b_confirmation

pytestmark = pytest.mark.browser

PAYBILL = '.pa-view[data-view="paybill"]'
NB = "\u2011"  # the dialog never splits "M-Pesa": a non-breaking hyphen
PAYBILL_ROWS = f"{PAYBILL} .pa-pb-row"


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    with dialog_app(tmp_path_factory.mktemp("instance")) as app:
        yield app


def confirm(app, account: str, amount: int) -> str:
    """A Daraja C2B confirmation for `account`, posted to the app; returns its TransID."""
    trans_id = "PB" + uuid.uuid4().hex[:8].upper()
    body = c2b_confirmation(account, f"{amount}.00", trans_id, BusinessShortCode="174379")
    token = app.env["MPESA_CALLBACK_TOKEN"]
    url = f"{app.url}/callbacks/c2b/confirmation/{token}"
    response = requests.post(url, json=body, timeout=10)
    assert response.status_code == 200 and response.json()["ResultCode"] == 0, response.text
    return trans_id


def pay_bill_on_phone(app, account: str, amount: int) -> None:
    """The customer pays from the simulated phone's Pay Bill screen (its test API)."""
    response = requests.post(
        f"{app.url}/_simulator/api/c2b/pay",
        json={"account": account, "amount": amount},
        timeout=10,
    )
    if response.status_code == 404:  # a simulator without Pay Bill: post it ourselves
        confirm(app, account, amount)
        return
    assert response.status_code == 202, response.text


def loosely(order_number: str) -> str:
    """`ORD-10017` as a customer might type it: `ord 10017`."""
    return "ord " + order_number.removeprefix("ORD-")


def shadow_focus(page) -> str:
    """The focused element inside the dialog: its class and text."""
    return page.evaluate(
        """() => {
            const el = document.querySelector(".paymentapp-host").shadowRoot.activeElement;
            return el ? `${el.className}: ${el.textContent.trim()}` : "";
        }"""
    )


def expect_announced(page, text: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator(".pa-announce")).to_have_text(text)


def assert_fits(page, width: int) -> None:
    """Nothing scrolls sideways; no Paybill row is wider than the card."""
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    card = page.locator(".pa-card").bounding_box()
    for row in page.locator(PAYBILL_ROWS).all():
        box = row.bounding_box()
        assert box["x"] >= card["x"] - 0.5, box
        assert box["x"] + box["width"] <= card["x"] + card["width"] + 0.5, (box, card)


# -- the tests ----------------------------------------------------------------------------------


def test_cancelled_prompt_then_paybill_with_a_loosely_typed_account_flips_to_paid(
    app_server, context, page
):
    from playwright.sync_api import expect

    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=app_server.url)
    order = buy_order(app_server, "coffee")  # KES 1,450
    number = order["order_number"]
    open_hosted(page, app_server, order)
    page.evaluate("window.notReloaded = true")
    expect(page.locator(".pa-conn")).to_have_attribute("data-connection", "live")
    pay(page, new_phone())
    app_server.simulator.answer(number, "cancel")
    expect_view(page, "failed")
    expect(page.locator(".pa-title", has_text="Payment cancelled")).to_be_visible()
    choice = page.locator('.pa-view[data-view="failed"] .pa-to-paybill')
    expect(choice).to_be_visible()
    shot(page, "paybill-1-failed-offers-paybill")

    choice.click()
    expect_view(page, "paybill")
    expect(page.locator(f"{PAYBILL} .pa-title")).to_be_focused()
    snapshot = status(app_server, order)
    assert snapshot["paybill"]["account"] == number
    values = page.locator(f"{PAYBILL} .pa-pb-value")
    expect(values).to_have_text([snapshot["paybill"]["business_number"], number, "KES 1,450"])

    page.get_by_role("button", name="Copy account number").click()
    # The button says so where it was pressed (its name is "Copied account number" now).
    expect(page.locator(f'{PAYBILL} .pa-copy[data-copy="account"]')).to_contain_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == number
    expect_announced(page, "Account number copied")
    page.get_by_role("button", name="Copy amount").click()
    assert page.evaluate("navigator.clipboard.readText()") == "1450"
    shot(page, "paybill-2-details-copied")

    pay_bill_on_phone(app_server, loosely(number), 1450)
    expect_view(page, "success")
    assert page.evaluate("window.notReloaded") is True
    final = status(app_server, order)
    assert final["order_status"] == "paid"
    paybill = [p for p in final["payments"] if p["method"] == "paybill"]
    assert len(paybill) == 1 and paybill[0]["status"] == "completed"
    expect(page.locator(".pa-receipt-code")).to_have_text(final["payment"]["receipt"])
    expect(page.locator(".pa-toasts")).to_contain_text("Payment received")
    expect_announced(page, "KES 1,450 received")
    shot(page, "paybill-3-paid")


@pytest.mark.parametrize("context", [PHONE], indirect=True)
def test_paid_at_the_paybill_while_a_prompt_is_open_stops_the_prompts_countdown(app_server, page):
    """The customer gave up waiting on the prompt and paid at the Paybill: the order is
    paid, so "check your phone" and the prompt's countdown go at once (the prompt itself
    is still open on the phone)."""
    from playwright.sync_api import expect

    order = buy_order(app_server, "tea")
    open_hosted(page, app_server, order)
    pay(page, new_phone())
    expect_view(page, "pending")
    countdown = page.locator('[data-field="countdown"]')
    expect(countdown).to_contain_text("Prompt expires in")

    confirm(app_server, order["order_number"], status(app_server, order)["amount"])
    expect_view(page, "success")
    expect(page.locator('.pa-view[data-view="pending"]')).to_be_hidden()
    said = countdown.text_content()
    page.wait_for_timeout(2200)  # two ticks of the countdown, had it kept running
    assert countdown.text_content() == said
    assert status(app_server, order)["order_status"] == "paid"


@pytest.mark.parametrize("context", [PHONE], indirect=True)
def test_a_part_payment_shows_what_is_still_due_and_a_second_completes_it(
    app_server, context, page
):
    """On the shop's bottom sheet at 360 px, chosen from the start (no prompt sent)."""
    from playwright.sync_api import expect

    page.goto(app_server.url + "/")
    with page.expect_response("**/shop/buy") as bought:
        page.locator("button[data-product=kikoy]").click()  # KES 2,800
    order = bought.value.json()
    expect_view(page, "form")
    choice = page.locator('.pa-view[data-view="form"] .pa-to-paybill')
    expect(choice).to_have_text("Pay with Paybill instead")
    shot(page, "paybill-4-form-360")
    choice.click()
    expect_view(page, "paybill")
    heights = {"paybill": page.locator(".pa-card").bounding_box()["height"]}
    assert_fits(page, PHONE[0])
    shot(page, "paybill-5-details-360")

    confirm(app_server, order["order_number"], 1000)
    progress = page.locator(f"{PAYBILL} .pa-pb-progress")
    expect(progress).to_have_text("KES 1,000 received, KES 1,800 still due")
    expect_view(page, "paybill")
    expect(page.locator(f"{PAYBILL} .pa-pb-value").nth(2)).to_have_text("KES 1,800")
    # A prompt would ask for the whole amount again: the rest goes by Paybill too.
    expect(page.locator(f"{PAYBILL} .pa-back")).to_be_hidden()
    expect_announced(page, "KES 1,000 received, KES 1,800 still due")
    heights["partial"] = page.locator(".pa-card").bounding_box()["height"]
    assert abs(heights["partial"] - heights["paybill"]) < 1, heights
    assert status(app_server, order)["order_status"] == "pending"
    assert_fits(page, PHONE[0])
    shot(page, "paybill-6-partial-360")

    # The page is reloaded mid-way: the part payment is still shown.
    open_hosted_partial = f"{app_server.url}/pay/{order['order_id']}?token={order['token']}"
    page.goto(open_hosted_partial)
    expect_view(page, "paybill")
    expect(progress).to_have_text("KES 1,000 received, KES 1,800 still due")

    confirm(app_server, order["order_number"], 1800)
    expect_view(page, "success")
    expect_announced(page, "KES 2,800 received")
    assert status(app_server, order)["amount_due"] == 0
    shot(page, "paybill-7-completed-360")


@pytest.mark.parametrize("context", [PHONE, DESKTOP], indirect=True)
def test_the_paybill_view_has_no_serious_axe_violations(app_server, context, page):
    from playwright.sync_api import expect

    width = page.viewport_size["width"]
    page.emulate_media(reduced_motion="reduce")  # no fade caught half-way by axe
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=app_server.url)
    order = buy_order(app_server, "tea")
    open_hosted(page, app_server, order)
    page.locator('.pa-view[data-view="form"] .pa-to-paybill').click()
    expect_view(page, "paybill")
    found = {}

    def scan(name):
        results = axe_run(page)
        assert any(in_shadow(n) for rule in results["passes"] for n in rule["nodes"]), name
        found[name] = [v for v in results["violations"] if v["impact"] in ("serious", "critical")]
        shot(page, f"paybill-a11y-{width}-{name}")

    scan("details")
    page.get_by_role("button", name="Copy business number").click()
    expect(page.get_by_role("button", name="Copied business number")).to_be_visible()
    scan("copied")
    confirm(app_server, order["order_number"], 100)
    expect(page.locator(f"{PAYBILL} .pa-pb-progress")).to_be_visible()
    scan("partial")
    assert_fits(page, width)
    assert not any(found.values()), "\n".join(f"{k}:\n{describe(v)}" for k, v in found.items())


def test_keyboard_only_reaches_paybill_its_copy_buttons_and_the_way_back(app_server, page):
    from playwright.sync_api import expect

    order = buy_order(app_server, "coffee")
    open_hosted(page, app_server, order)
    expect(page.locator(".pa-conn")).to_have_attribute("data-connection", "live")
    # Tab from the top of the page to the choice under the phone form.
    for _ in range(20):
        page.keyboard.press("Tab")
        if "pa-to-paybill" in shadow_focus(page):
            break
    assert shadow_focus(page).endswith("Pay with Paybill instead"), shadow_focus(page)
    page.keyboard.press("Enter")
    expect_view(page, "paybill")
    expect(page.locator(f"{PAYBILL} .pa-title")).to_be_focused()

    for name in ("Copy business number", "Copy account number", "Copy amount"):
        page.keyboard.press("Tab")
        expect(page.get_by_role("button", name=name)).to_be_focused()
    page.keyboard.press("Enter")  # on "Copy amount": copied, or selected for a manual copy
    copied = re.compile("Copied|Selected")
    expect(page.locator(f"{PAYBILL} .pa-copy").nth(2)).to_contain_text(copied)
    page.keyboard.press("Tab")
    back = page.get_by_role("button", name=f"Back to the M{NB}Pesa prompt")
    expect(back).to_be_focused()
    shot(page, "paybill-8-keyboard-back-focused")
    page.keyboard.press("Enter")
    expect_view(page, "form")
    expect(page.locator("#pa-phone")).to_be_focused()

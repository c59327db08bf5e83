"""Pay by QR in real Chromium against real gunicorn, PostgreSQL and Redis: on a computer's
screen the dialog shows the order's Dynamic QR beside the phone form (its picture read back
as a phone's camera would, and checked against the order); scanning it on the simulated
phone pays the order and the open dialog turns to "Payment received" without a reload. On a
phone's screen the form stays alone, as before. axe finds nothing serious either way."""

from __future__ import annotations

import pytest
import requests

from tests.a11y import axe_violations, describe
from tests.browser_app import (
    DESKTOP,
    PHONE,
    dialog_app,
    expect_view,
    new_context,
    open_hosted,
    shot,
    status,
)
from tests.browser_app import buy as buy_order
from tests.helpers import decode_qr

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    with dialog_app(tmp_path_factory.mktemp("instance")) as app:
        yield app


def test_on_a_computer_the_qr_is_beside_the_form_and_scanning_it_pays(app_server, browser):
    from playwright.sync_api import expect

    from paymentapp.simulator.qr import parse_payload

    context = new_context(browser, DESKTOP)
    page = context.new_page()
    order = buy_order(app_server, "coffee")  # KES 1,450
    open_hosted(page, app_server, order)
    image = page.locator(".pa-qr-image")
    expect(image).to_be_visible()
    expect(image).to_have_attribute(
        "alt", f"QR code: pay KES 1,450 to Paybill 174379, account {order['order_number']}"
    )
    expect(page.locator("#pa-phone")).to_be_visible()  # the phone form stays, beside it
    # the picture the customer sees, read as their phone's camera would
    src = image.get_attribute("src")
    png = requests.get(src if src.startswith("http") else f"{app_server.url}{src}", timeout=10)
    said = parse_payload(decode_qr(png.content))
    assert (said["ref_no"], said["amount"], said["cpi"], said["trx_code"]) == (
        order["order_number"],
        1450,
        "174379",
        "PB",
    )
    problems = axe_violations(page)
    assert problems == [], describe(problems)
    shot(page, "dialog-1280-qr")

    scanned = requests.post(
        f"{app_server.url}/_simulator/api/qr/scan",
        json={"payload": decode_qr(png.content)},
        timeout=10,
    )
    assert scanned.status_code == 202, scanned.text
    expect_view(page, "success")  # live, without a reload
    expect(image).to_be_hidden()
    assert status(app_server, order)["order_status"] == "paid"
    assert context.page_errors == []
    context.close()


def test_on_a_phone_the_form_comes_alone(app_server, browser):
    from playwright.sync_api import expect

    context = new_context(browser, PHONE)
    page = context.new_page()
    order = buy_order(app_server, "tea")
    open_hosted(page, app_server, order)
    expect(page.locator("#pa-phone")).to_be_visible()
    expect(page.locator(".pa-qr-image")).to_be_hidden()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE[0]
    problems = axe_violations(page)
    assert problems == [], describe(problems)
    assert context.page_errors == []
    context.close()

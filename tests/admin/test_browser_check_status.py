"""The "Check status now" button in real Chromium against real gunicorn: the message says
what M-Pesa answered (not green unless money arrived), each check is on the timeline, and
the message goes away when the order changes live (it never contradicts the page)."""

from __future__ import annotations

import pytest

from tests.admin.stack import WAIT_MS, create_order, dashboard_stack, sign_in, start_payment

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with dashboard_stack(tmp_path_factory.mktemp("check")) as stack:
        yield stack


@pytest.fixture
def page(browser, stack):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, stack.url)
    yield page
    context.close()
    assert not errors, errors


def open_order(page, stack, order) -> None:
    from playwright.sync_api import expect

    page.goto(f"{stack.url}/admin/orders/{order['id']}")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live", timeout=WAIT_MS)


def test_waiting_then_paid_live_clears_the_message(stack, page):
    from playwright.sync_api import expect

    order = create_order(stack, 1200, "Maize flour, 2 kg")
    start_payment(stack, order)
    open_order(page, stack, order)
    timeline = page.locator(".timeline")

    # M-Pesa does not answer the query: an error, and nothing but the timeline changes
    stack.simulator.fault("query", 500, {"errorCode": "500.001.1001", "errorMessage": "down"})
    page.click("text=Check status now")
    failed = page.locator("main > .flash")
    expect(failed).to_have_class("flash flash-error")
    expect(failed).to_contain_text("M-Pesa did not answer the query")
    expect(timeline.locator("li", has_text="status checked")).to_have_count(1)

    # asked again: the customer has not answered yet; news, not success
    page.click("text=Check status now")
    waiting = page.locator("main > .flash")
    expect(waiting).to_have_text("M-Pesa says the customer has not answered yet.")
    expect(waiting).to_have_class("flash flash-info")
    expect(page.locator(".flash-ok")).to_have_count(0)
    checked = timeline.locator("li", has_text="status checked")
    expect(checked).to_have_count(2)
    expect(checked.last).to_contain_text("by admin:alice")
    expect(checked.last).to_contain_text("M-Pesa says the customer has not answered yet")
    page.evaluate("window.__samePage = true")

    # the customer pays on the phone: the page turns paid live and the message goes
    stack.simulator.answer(order["number"], "accept")
    expect(page.locator(".head .badge-paid")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("main > .flash")).to_have_count(0)
    expect(page.get_by_role("button", name="Check status now")).to_have_count(0)
    assert page.evaluate("window.__samePage") is True


def test_paid_found_by_the_query_is_green(stack, page):
    from playwright.sync_api import expect

    order = create_order(stack, 700, "Cooking oil")
    start_payment(stack, order)
    stack.simulator.answer(order["number"], "lose_callback")  # paid; the callback is lost
    open_order(page, stack, order)
    page.click("text=Check status now")
    paid = page.locator("main > .flash")
    expect(paid).to_have_class("flash flash-ok")
    expect(paid).to_contain_text("M-Pesa says the customer paid (0: ")
    expect(paid).to_contain_text(f"order {order['number']} is paid.")
    expect(page.locator(".head .badge-paid")).to_be_visible()
    expect(page.locator(".timeline li", has_text="status checked")).to_contain_text(
        "(payment completed)"
    )

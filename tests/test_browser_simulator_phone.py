"""The simulated phone page (`/_simulator/phone`) in real Chromium:
amounts read like the dialog's ("KES 1,450"), it polls quietly (backing off while
nothing changes, at once again when something does), and no page of the shop, the
dialog or the phone logs a 404 (the favicon)."""

from __future__ import annotations

import re
import time

import pytest

from tests.browser_app import buy as buy_order
from tests.browser_app import dialog_app, new_context, new_phone, shot, start_payment

pytestmark = pytest.mark.browser

POLL = "/_simulator/api/prompts"


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    with dialog_app(tmp_path_factory.mktemp("instance")) as app:
        yield app


@pytest.fixture
def context(browser):
    context = new_context(browser, (400, 800))
    yield context
    context.close()
    assert context.page_errors == [], f"JavaScript errors in the page: {context.page_errors}"


@pytest.fixture
def page(context):
    return context.new_page()


def test_amounts_on_the_phone_read_like_the_dialogs(app_server, page):
    from playwright.sync_api import expect

    waiting = buy_order(app_server, "coffee")  # KES 1,450, left open on the phone
    start_payment(app_server, waiting, new_phone())
    answered = buy_order(app_server, "kikoy")  # KES 2,800, in the "recent" list
    start_payment(app_server, answered, new_phone())
    app_server.simulator.answer(answered["order_number"], "cancel")
    page.goto(app_server.url + "/_simulator/phone")
    prompt = page.locator(".prompt", has_text=waiting["order_number"]).first
    expect(prompt).to_contain_text("Do you want to pay KES 1,450 to account")
    recent = page.locator(".prompt.done", has_text=answered["order_number"]).first
    expect(recent).to_contain_text("KES 2,800")
    assert not re.search(r"KES \d{4}", page.locator("#prompts").inner_text())
    shot(page, "simulator-phone")


def test_the_phone_polls_less_while_nothing_changes_and_shows_a_new_prompt_soon(app_server, page):
    from playwright.sync_api import expect

    polls: list[float] = []
    page.on("request", lambda r: polls.append(time.monotonic()) if POLL in r.url else None)
    page.goto(app_server.url + "/_simulator/phone")
    start = time.monotonic()
    page.wait_for_timeout(10_000)
    quiet = [t for t in polls if t >= start]
    # Every second would be 10; backing off (1, 1.5, 2.3, 3.4, 5 s…) is about 5.
    assert len(quiet) <= 7, len(quiet)
    gaps = [b - a for a, b in zip(quiet, quiet[1:], strict=False)]
    assert gaps and max(gaps) > 2.5, gaps

    # Something new still shows within the slowest poll interval.
    order = buy_order(app_server, "tea")
    start_payment(app_server, order, new_phone())
    expect(page.locator(".prompt", has_text=order["order_number"])).to_be_visible(timeout=7_000)


def test_no_page_answers_404_in_the_browser(app_server, page):
    """The favicon (asked for by every page) and everything else each page loads."""
    from playwright.sync_api import expect

    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    order = buy_order(app_server, "tea")
    for path in ("/", f"/pay/{order['order_id']}?token={order['token']}", "/_simulator/phone"):
        page.goto(app_server.url + path)
        page.wait_for_load_state("networkidle")
    icon = page.evaluate(
        """async () => {
            const link = document.querySelector('link[rel="icon"][type="image/svg+xml"]');
            const response = await fetch(link.href);
            return [response.status, response.headers.get("content-type")];
        }"""
    )
    assert icon[0] == 200 and icon[1].startswith("image/svg+xml"), icon
    favicon = page.request.get(app_server.url + "/favicon.ico")
    assert favicon.status == 200 and favicon.headers["content-type"].startswith("image/")
    expect(page.locator("h1")).to_have_text("Simulated phone")
    assert missing == [], missing

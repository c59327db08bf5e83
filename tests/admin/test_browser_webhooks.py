"""The webhooks pages in real Chromium against real gunicorn, PostgreSQL and Redis, at
1280 and 375 px: the endpoints page (an auto-disabled endpoint flagged, a form error, a new
secret, a rotated secret, the delete step) and an order's webhook events with every
attempt's body open. No page scrolls sideways and axe finds no serious or critical
violation. Screenshots: `test-artifacts/admin-{1280,375}-webhooks-*.png`."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from tests import services
from tests.a11y import axe_violations, describe, on_screen, page_is_sound
from tests.admin.stack import (
    WAIT_MS,
    create_order,
    dashboard_stack,
    sign_in,
    start_payment,
    wait_payment,
)
from tests.receiver import Receiver

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

AUTO_DISABLED = "failing for 3 days: disabled automatically"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A paid order whose events went to three endpoints (200, 503 with a long body, a
    refused connection), a test event, and an endpoint disabled after 3 days of failures."""
    with (
        Receiver() as ok,
        Receiver() as failing,
        dashboard_stack(tmp_path_factory.mktemp("webhooks")) as stack,
    ):
        failing.status, failing.body = 503, b"<html>" + b"unavailable-" * 400 + b"</html>"

        def register(url: str, events: list[str]) -> dict:
            response = stack.http.post(
                f"{stack.url}/api/webhook-endpoints",
                json={"url": url, "events": events, "description": "shop fulfilment"},
                headers=stack.auth,
                timeout=10,
            )
            assert response.status_code == 201, response.text
            return response.json()

        long_url = f"{ok.url}?branch=nairobi-westlands-0042&signature-version=v1&" + "x" * 120
        good = register(long_url, ["order.created", "order.paid"])
        register(failing.url, ["order.paid"])
        refused = f"http://127.0.0.1:{services.free_port()}/paymentapp/webhooks"
        register(refused, ["*"])
        gone = register(f"{failing.url}/old", ["order.paid"])

        order = create_order(stack, 1500, "2 kg sugar")
        start_payment(stack, order)
        stack.simulator.answer(order["number"], "accept")
        wait_payment(stack, order, "completed")
        test_event = stack.http.post(
            f"{stack.url}/api/webhook-endpoints/{good['id']}/test", headers=stack.auth, timeout=10
        )
        assert test_event.status_code == 202, test_event.text
        services.flask_cli(stack.env, "webhooks", "deliver")
        assert len(ok.received) >= 3 and failing.received  # created, paid and the test

        engine = create_engine(stack.env["DATABASE_URL"])
        with engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE webhook_endpoints SET enabled = false, disabled_reason = :reason, "
                    "failing_since = now() - interval '3 days 2 hours' WHERE id = :id"
                ),
                {"reason": AUTO_DISABLED, "id": gone["id"]},
            )
        engine.dispose()
        stack.order = order
        yield stack


def check(page, name: str) -> None:
    """No sideways scroll and no serious/critical axe violation; saves a screenshot."""
    page_is_sound(page, name, f"admin-{page.width}-webhooks-{name}")
    empty = [
        v
        for v in axe_violations(page, impact=None, tags=("best-practice",))
        if v["id"] == "empty-table-header"
    ]
    assert empty == [], describe(empty)


def test_webhooks_page(stack, sized_page):
    page = sized_page
    from playwright.sync_api import expect

    sign_in(page, stack.url)
    page.locator(".topbar nav").get_by_role("link", name="Webhooks").click()
    expect(page.locator("h1")).to_have_text("Webhooks")
    banner = page.locator(".flash.flagged")
    expect(banner).to_contain_text("1 endpoint disabled automatically")
    flagged = page.locator("tr.endpoint-auto-disabled")
    expect(flagged.locator(".badge")).to_have_text("auto-disabled")
    on_screen(page, flagged.get_by_role("button", name="Enable"), "Enable")
    page.locator(".wh-events details summary").first.click()
    check(page, "list")

    # a bad URL: the field error, and the form keeps what was typed
    page.fill("#wh-url", "ftp://shop.example/hooks")
    page.get_by_role("button", name="Add endpoint").click()
    expect(page.locator("#wh-url-error")).to_contain_text("Use an http(s) URL")
    expect(page.locator("#wh-url")).to_have_attribute("aria-invalid", "true")
    check(page, "add-error")

    page.fill("#wh-url", "http://127.0.0.1:9/new-endpoint")
    page.get_by_role("button", name="Add endpoint").click()
    secret = page.locator("#new-secret")
    expect(secret).to_contain_text("whsec_")
    on_screen(page, secret, "the new secret")
    check(page, "added")

    row = page.locator("tr", has_text="http://127.0.0.1:9/new-endpoint")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Rotate secret").click()
    expect(page.locator(".new-key")).to_contain_text("The old secret stays valid until")
    check(page, "rotated")

    page.locator("tr", has_text="http://127.0.0.1:9/new-endpoint").get_by_role(
        "link", name="Delete"
    ).click()
    expect(page.get_by_role("button", name="Delete endpoint")).to_be_visible(timeout=WAIT_MS)
    check(page, "delete-confirm")
    page.get_by_role("button", name="Delete endpoint").click()
    expect(page.locator(".flash-ok")).to_contain_text("is deleted")
    expect(page.locator("tr", has_text="http://127.0.0.1:9/new-endpoint")).to_have_count(0)


def test_order_page_with_webhook_events(stack, sized_page):
    page = sized_page
    from playwright.sync_api import expect

    sign_in(page, stack.url)
    page.goto(f"{stack.url}/admin/orders/{stack.order['id']}")
    events = page.locator(".wh-event")
    expect(events).to_have_count(2)  # order.created, order.paid
    expect(page.locator(".wh-event", has_text="order.paid")).to_contain_text("HTTP 503")
    expect(page.locator(".wh-event", has_text="order.paid")).to_contain_text("Connection refused")
    for summary in page.locator(".wh-events details summary").all():
        summary.click()
    expect(page.locator(".wh-events details[open] pre").first).to_be_visible()
    on_screen(page, page.locator(".wh-events pre").last, "a response body")
    check(page, "order")

    paid = page.locator(".wh-event", has_text="order.paid")
    on_screen(page, paid.get_by_role("button", name="Resend"), "Resend")
    paid.get_by_role("button", name="Resend").click()
    flash = page.locator(".flash-ok")
    # the disabled endpoint gets no new copy: only the 3 live ones
    expect(flash).to_contain_text("Queued for 3 endpoints: order.paid")
    expect(page.locator(".wh-event", has_text="order.paid")).to_contain_text("Not attempted yet.")
    check(page, "order-resent")

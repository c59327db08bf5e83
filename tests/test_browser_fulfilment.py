"""The demo shop, end to end: buy, pay on the simulated phone, and the shop's page says
"Fulfilled" only once the signed `order.paid` webhook reached the shop's server."""

from __future__ import annotations

import pytest

from tests import services
from tests.browser_app import buy, dialog_app, expect_view, new_context, open_hosted, pay

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    with dialog_app(tmp_path_factory.mktemp("instance"), WEBHOOKS_IN_PROCESS="1") as app:
        yield app


def test_the_shop_fulfils_on_the_signed_webhook_live(app_server):
    services.require_chromium()
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=services.CHROMIUM, args=services.CHROMIUM_ARGS
        )
        try:
            context = new_context(browser)
            page = context.new_page()
            order = buy(app_server, "tea")
            open_hosted(page, app_server, order)
            line = page.locator("#shop-fulfilment")
            expect(line).to_have_attribute("data-state", "waiting")
            pay(page, "0712 345 678")
            prompt = app_server.simulator.open_prompt(order["order_number"])
            app_server.simulator.press(prompt["checkout_request_id"], "accept")
            expect_view(page, "success")
            expect(line).to_have_attribute("data-state", "fulfilled", timeout=20_000)
            expect(line).to_contain_text("signed")
        finally:
            browser.close()
    app_server.server.wait_log("event=shop.fulfilled")

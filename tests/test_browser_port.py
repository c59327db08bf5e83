"""`PORT=5077 make run`: another port works in the browser with no other setting."""

from __future__ import annotations

import pytest

from tests import services
from tests.helpers import base_env

pytestmark = pytest.mark.browser


def test_another_port_needs_no_other_setting(tmp_path, browser):
    """Issue 11: PUBLIC_BASE_URL stayed :5000, the socket got 403, the badge stuck."""
    from playwright.sync_api import expect

    database = services.create_pg_database()
    port = services.free_port()
    env = {
        **base_env(database),
        "PAYMENTAPP_INSTANCE_PATH": str(tmp_path),
        "PORT": str(port),
        "PUBLIC_BASE_URL": "",  # unset, as for a new user: it must follow PORT
        "MPESA_SIMULATOR_AUTO": "accept",
        "MPESA_SIMULATOR_AUTO_DELAY_S": "1",
    }
    try:
        services.flask_cli(env, "db", "upgrade")
        with services.Gunicorn(env, port=port) as server:
            page = browser.new_page()
            try:
                page.goto(server.url + "/")
                page.locator("button.buy-button").first.click()
                expect(page.locator(".pa-conn")).to_have_attribute(
                    "data-connection", "live", timeout=20_000
                )
                page.locator("#pa-phone").fill("0712 345 678")
                page.locator(".pa-pay").click()
                expect(page.locator(".paymentapp-host")).to_have_attribute(
                    "data-view", "success", timeout=30_000
                )
            finally:
                page.close()
            assert "websocket refused" not in server.log()
    finally:
        services.drop_pg_database(database)

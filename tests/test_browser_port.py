"""`PORT=5077 make run`: another port works in the browser with no other setting."""

from __future__ import annotations

import pytest

from tests import services
from tests.helpers import base_env

pytestmark = pytest.mark.browser


def test_another_port_needs_no_other_setting(tmp_path, browser):
    """PUBLIC_BASE_URL once stayed :5000: the socket got 403, the badge stuck."""
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


def test_localhost_goes_live_too_and_a_refused_origin_says_why(tmp_path, browser):
    """A new user opens http://localhost:PORT as often as 127.0.0.1: both get the live
    socket. A page at an address the server does not allow falls back to polling, and
    the console says which origin was refused and which setting to change."""
    from playwright.sync_api import expect

    database = services.create_pg_database()
    port = services.free_port()
    env = {
        **base_env(database),
        "PAYMENTAPP_INSTANCE_PATH": str(tmp_path),
        "PORT": str(port),
        "PUBLIC_BASE_URL": "",
    }

    def warned(message) -> bool:
        return message.type == "warning" and "refused the live connection" in message.text

    try:
        services.flask_cli(env, "db", "upgrade")
        with services.Gunicorn(env, port=port) as server:
            for host in ("localhost", "127.0.0.1"):
                page = browser.new_page()
                warnings = []
                page.on("console", lambda m, found=warnings: warned(m) and found.append(m.text))
                try:
                    page.goto(f"http://{host}:{port}/")
                    page.locator("button.buy-button").first.click()
                    expect(page.locator(".pa-conn")).to_have_attribute(
                        "data-connection", "live", timeout=20_000
                    )
                finally:
                    page.close()
                assert warnings == []
            assert "websocket refused" not in server.log()

            # Chromium resolves every *.localhost name to this machine
            origin = f"http://shop.localhost:{port}"
            page = browser.new_page()
            try:
                page.goto(origin + "/")
                with page.expect_console_message(warned, timeout=20_000) as message:
                    page.locator("button.buy-button").first.click()
                assert f"origin {origin}: add it to CORS_ALLOWED_ORIGINS" in message.value.text
                expect(page.locator(".pa-conn")).not_to_have_attribute("data-connection", "live")
            finally:
                page.close()
            server.wait_log(f"websocket refused for origin {origin}")
    finally:
        services.drop_pg_database(database)

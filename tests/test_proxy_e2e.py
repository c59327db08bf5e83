"""Behind a real reverse-proxy hop: every address-based decision sees the real client.

The proxy (tests/proxy.py) appends the connecting address to X-Forwarded-For; the test's
"clients" connect from different loopback addresses (127.0.0.2, 127.0.0.3, …), which is
what many customers behind one nginx look like to the app.
"""

from __future__ import annotations

import json
import uuid

import pytest

from tests import services
from tests.helpers import base_env, csrf_in
from tests.proxy import ReverseProxy, request_from

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def behind_proxy(tmp_path_factory):
    database = services.create_pg_database()
    redis_url = services.require_redis()
    env = {
        **base_env(database),
        "PAYMENTAPP_INSTANCE_PATH": str(tmp_path_factory.mktemp("instance")),
        "TRUSTED_PROXY_HOPS": "1",
        "MPESA_CALLBACK_ALLOWED_IPS": "127.0.0.7",
        "REDIS_URL": redis_url,
        "SOCKETIO_CHANNEL": f"proxy-{uuid.uuid4().hex}",
    }
    try:
        services.flask_cli(env, "db", "upgrade")
        with services.Gunicorn(env, workers=2) as server, ReverseProxy(server.port) as proxy:
            yield proxy, server
    finally:
        services.drop_pg_database(database)


def login_attempt(proxy, address: str, extra_headers: dict | None = None) -> int:
    """A wrong password, posted the way a browser does (session cookie + CSRF token)."""
    status, page, cookie = request_from(address, proxy.port, "GET", "/admin/login")
    if status == 429:
        return status
    token = csrf_in(page)
    status, _, _ = request_from(
        address,
        proxy.port,
        "POST",
        "/admin/login",
        f"csrf_token={token}&username=alice&password=wrong-password".encode(),
        {
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": cookie,
            **(extra_headers or {}),
        },
    )
    return status


def test_login_limit_counts_each_client_not_the_proxy(behind_proxy):
    """12 clients behind one proxy once all got 429 after the 10th attempt."""
    proxy, _ = behind_proxy
    many = [login_attempt(proxy, f"127.0.0.{n}") for n in range(20, 32)]
    assert 429 not in many, many
    one = [login_attempt(proxy, "127.0.0.40") for _ in range(12)]
    assert one[:10].count(429) == 0 and one[10:] == [429, 429], one


def test_a_client_cannot_spoof_its_address_through_the_proxy(behind_proxy):
    proxy, _ = behind_proxy
    spoofed = [
        login_attempt(proxy, "127.0.0.50", {"X-Forwarded-For": f"10.0.0.{n}"}) for n in range(12)
    ]
    assert spoofed[10:] == [429, 429], spoofed  # all counted against 127.0.0.50


def test_callback_allowlist_checks_the_real_client(behind_proxy):
    proxy, server = behind_proxy
    path = f"/callbacks/stk/{base_env('x')['MPESA_CALLBACK_TOKEN']}"
    body = json.dumps({"Body": {"stkCallback": {"CheckoutRequestID": "ws_CO_x", "ResultCode": 1}}})
    headers = {"Content-Type": "application/json"}
    allowed, _, _ = request_from("127.0.0.7", proxy.port, "POST", path, body.encode(), headers)
    refused, text, _ = request_from("127.0.0.8", proxy.port, "POST", path, body.encode(), headers)
    assert allowed == 200
    assert refused == 200  # stored as untrusted, never applied on its own
    server.wait_log("callback from 127.0.0.8 (not in MPESA_CALLBACK_ALLOWED_IPS) stored")

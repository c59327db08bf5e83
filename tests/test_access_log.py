"""gunicorn's access log under `make run`: one line per request in gunicorn's own format
(one timestamp, through RedactingLogger), except the simulated phone's successful polls
of `GET /_simulator/api/prompts`, which would otherwise fill the terminal."""

from __future__ import annotations

import re

import pytest
import requests

from tests import services
from tests.helpers import base_env

pytestmark = pytest.mark.e2e

POLL = "/_simulator/api/prompts"
ACCESS_LINE = re.compile(
    r'^\S+ - - \[[^\]]+\] "(?P<request>[A-Z]+ \S+) HTTP/1\.1" (?P<status>\d+) '
)


def access_lines(log: str) -> list[tuple[str, str]]:
    return [
        (m["request"], m["status"]) for line in log.splitlines() if (m := ACCESS_LINE.match(line))
    ]


def test_the_phone_pages_polling_is_not_logged_but_everything_else_is(tmp_path):
    database_url = services.create_pg_database()
    try:
        env = {**base_env(database_url), "PAYMENTAPP_INSTANCE_PATH": str(tmp_path)}
        services.flask_cli(env, "db", "upgrade")
        server = services.Gunicorn(env, workers=1)
        before = len(server.log())  # the log file is per port and appended to
        with server:
            for _ in range(5):
                assert requests.get(server.url + POLL, timeout=10).status_code == 200
            assert requests.get(f"{server.url}{POLL}?account_reference=ORD-1", timeout=10).ok
            assert requests.get(server.url + "/_simulator/phone", timeout=10).ok
            assert requests.get(server.url + "/favicon.ico", timeout=10).ok
            refused = requests.post(f"{server.url}{POLL}/ws_CO_nope/accept", timeout=10)
            assert refused.status_code == 404
            token = "secret-client-token-123"
            requests.get(f"{server.url}/api/orders/ord_x/status?token={token}", timeout=10)
        log = server.log()[before:]
    finally:
        services.drop_pg_database(database_url)

    lines = access_lines(log)
    requests_logged = [request for request, _ in lines]
    assert not [r for r in requests_logged if r.startswith(f"GET {POLL}")], log
    assert ("GET /_simulator/phone", "200") in lines, log
    assert ("GET /favicon.ico", "200") in lines, log
    assert (f"POST {POLL}/ws_CO_nope/accept", "404") in lines, log  # errors still show
    assert "GET /api/orders/ord_x/status?token=<token>" in requests_logged, log
    assert token not in log
    # gunicorn's format, one timestamp: not gevent-websocket's line inside a log record
    assert "geventwebsocket.handler" not in log, log

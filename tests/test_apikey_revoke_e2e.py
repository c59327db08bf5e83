"""Revoking an API key takes effect at once on every worker: real gunicorn with 2 workers,
the key revoked by the CLI (another process), then every request refused, by both
workers (their pids are in the access log)."""

from __future__ import annotations

import re

import pytest
import requests

from tests import services
from tests.e2e import running_stack

pytestmark = pytest.mark.e2e

# the worker's pid at the start of each access-log line
ACCESS_FORMAT = "--access-logformat 'worker=%(p)s %(r)s %(s)s'"
ACCESS_LINE = re.compile(r"worker=<(\d+)> GET /api/orders\?n=(\d+) HTTP/1\.1 (\d{3})")


def orders_status(url: str, key: str, n: int) -> tuple[int, str]:
    """`GET /api/orders` on a fresh connection each time, so the requests spread over the
    workers (a kept-alive connection would stay with one); `n` tells them apart in the log."""
    response = requests.get(
        f"{url}/api/orders",
        params={"n": n},
        headers={"Authorization": f"Bearer {key}", "Connection": "close"},
        timeout=10,
    )
    code = response.json().get("error", {}).get("code", "") if response.status_code != 200 else ""
    return response.status_code, code


def test_a_revoked_key_gets_401_at_once_on_every_worker(tmp_path):
    with running_stack(
        tmp_path, GUNICORN_CMD_ARGS=f"--graceful-timeout 2 {ACCESS_FORMAT}"
    ) as stack:
        other = services.flask_cli(stack.env, "apikey", "create", "till").strip().splitlines()[-1]
        assert [orders_status(stack.url, stack.api_key, n) for n in range(10)] == [(200, "")] * 10

        out = services.flask_cli(stack.env, "apikey", "revoke", "e2e")
        assert "Revoked 1 API key named 'e2e'" in out

        answers = [orders_status(stack.url, stack.api_key, n) for n in range(100, 110)]
        assert answers == [(401, "invalid_api_key")] * 10

        def both_workers_refused() -> bool:
            lines = ACCESS_LINE.findall(stack.server.log())
            return len({pid for pid, n, status in lines if int(n) >= 100 and status == "401"}) == 2

        # until each of the two workers has refused the key at least once (bounded)
        for n in range(110, 200):
            if both_workers_refused():
                break
            assert orders_status(stack.url, stack.api_key, n) == (401, "invalid_api_key")
        services.wait_for(both_workers_refused, "both workers' refusals in the access log")

        assert orders_status(stack.url, other, 0) == (200, "")  # other keys are untouched
        listing = services.flask_cli(stack.env, "apikey", "list")
        assert re.search(r"^till .* active +all scopes$", listing, re.M), listing
        assert re.search(r"^e2e .* \d{4}-\d\d-\d\d \d\d:\d\d:\d\d +all scopes$", listing, re.M), (
            listing
        )

"""The fuzz harness in CI: a short fuzz of the real stack gives no 5xx, no bypass and no leak.

`bench/fuzz.py` does the work (gunicorn with 2 workers, a fresh PostgreSQL database,
Redis, the simulator as Daraja); this runs it small with a fixed seed. For the full
10,000-request run: `.venv/bin/python bench/fuzz.py --requests 10000 --seed 1`.
"""

from __future__ import annotations

import json

import pytest

from bench import fuzz
from tests import services

pytestmark = pytest.mark.e2e

REQUESTS = 600
SEED = 9


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    """One fuzz run shared by the assertions below (it is the slow part)."""
    services.require_redis()
    if not services.postgres_available():
        services.unavailable(
            f"PostgreSQL not reachable at {services.PG_SERVER_URL}", "make services"
        )
    out = tmp_path_factory.mktemp("fuzz")
    lines: list[str] = []
    result = fuzz.run(
        requests_count=REQUESTS,
        seed=SEED,
        concurrency=8,
        max_seconds=40,
        log_path=out / "gunicorn.log",
        json_path=out / "summary.json",
        out=lines.append,
    )
    fuzz.report(result, out=lines.append)
    print("\n".join(lines))  # shown by pytest on failure
    return result


def test_every_request_was_answered(summary):
    assert summary["sent"] == REQUESTS
    unanswered = {
        endpoint: {s: n for s, n in statuses.items() if not s.isdigit()}
        for endpoint, statuses in summary["http"]["by_endpoint"].items()
    }
    assert not any(unanswered.values()), unanswered


def test_no_5xx(summary):
    check = summary["checks"]["no_5xx"]
    repros = json.dumps(summary["http"]["reproductions"][:10], indent=1, ensure_ascii=False)
    exceptions = json.dumps(summary["server_exceptions"][:10], indent=1, ensure_ascii=False)
    assert check["ok"], f"{check['count']} 5xx:\n{repros}\n{exceptions}"


def test_no_socket_internal_error(summary):
    check = summary["checks"]["no_socket_internal_error"]
    assert check["ok"], summary["socket"]["internal_error_reproductions"]


def test_money_invariant(summary):
    money = summary["checks"]["money_invariant"]
    assert money["orders_by_status"].get("paid"), "the seed should have paid some orders"
    assert money["ok"], "\n".join(money["violations"])


def test_no_secret_in_log(summary):
    leaks = summary["checks"]["no_secret_in_log"]
    assert leaks["ok"], leaks["found"]
    assert summary["checks"]["no_secret_in_responses"]["ok"]

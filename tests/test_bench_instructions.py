"""`make bench-instructions` keeps working as the app changes: each counted process, run
here without valgrind and with a few callbacks, pays every order it posts for, and the
raw-SQL reference replays paymentapp's statements to the same effect.

The counting itself (valgrind, minutes per run) is `bench/instructions.py`'s job; this
checks what it counts.
"""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest

from bench import instructions
from tests import services

pytestmark = pytest.mark.e2e

CALLBACKS = 3


@pytest.fixture
def database_url():
    services.require_redis()
    url = services.create_pg_database()
    yield url
    services.drop_pg_database(url)


def counted_process(database_url: str, kind: str, orders: int) -> None:
    env = instructions.inner_env(database_url, orders)
    done = subprocess.run(
        [sys.executable, instructions.__file__, "--inner", kind, str(CALLBACKS)],
        env=env, cwd=instructions.ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "ok", (done.stdout, done.stderr[-3000:])


def tables(database_url: str) -> dict:
    with psycopg.connect(services.psycopg_url(database_url)) as conn:
        return {
            "orders": dict(conn.execute("SELECT status, count(*) FROM orders GROUP BY 1")),
            "receipts": conn.execute(
                "SELECT count(DISTINCT receipt) FROM payments WHERE status = 'completed'"
            ).fetchone()[0],
            "records": dict(
                conn.execute("SELECT outcome, count(*) FROM callback_records GROUP BY 1")
            ),
            "paid_events": conn.execute(
                "SELECT count(*) FROM order_events WHERE kind = 'order_paid'"
            ).fetchone()[0],
        }


@pytest.mark.parametrize("kind", ["paymentapp", "reference"])
def test_every_callback_pays_its_order(database_url, kind):
    orders = instructions.WARM + CALLBACKS + 5
    counted_process(database_url, kind, orders)
    # the reference's first callback goes through paymentapp (its statements are captured)
    paid = instructions.WARM + CALLBACKS + (kind == "reference")
    assert tables(database_url) == {
        "orders": {"paid": paid, "pending": orders - paid},
        "receipts": paid,
        "records": {"applied": paid},
        "paid_events": paid,
    }

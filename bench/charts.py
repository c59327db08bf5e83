"""The dashboard's charts on 1 M payments (run by hand: `make bench-charts`).

Seeds a fresh PostgreSQL database (migrated with `flask db upgrade`) with 800,000 orders
and 1,000,000 payments spread over the last 60 days, in SQL (INSERT … SELECT from
generate_series, in time order as a live table grows: under a minute), with a mix like
a real shop's: 56 % paid by STK Push, 16 % by Paybill, 2 % flagged for review, 9 %
failed, 9 % cancelled, 7 % timed out, 1 % still waiting, and one order in four with an
earlier failed or cancelled attempt. Then, in this process:

- each chart's query (`paymentapp/admin/charts.py`) and the 30-day median time to pay:
  the median of 5 runs after one warm-up, and its plan (EXPLAIN ANALYZE: which index);
- the whole orders page (`GET /admin/`, signed in, through Flask's test client), with the
  charts (page 1) and without them (page 2), the same way;
- how long migration 0016 (the charts' indexes) takes on the seeded payments.

    .venv/bin/python bench/charts.py [--payments 1000000] [--days 60] [--json PATH] [--keep]

Needs PostgreSQL at 127.0.0.1:5432 (or PAYMENTAPP_PG_URL). Results: docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import event  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from paymentapp import create_app  # noqa: E402
from paymentapp.admin import charts, queries  # noqa: E402
from paymentapp.extensions import db  # noqa: E402
from tests import services  # noqa: E402
from tests.helpers import PASSWORD, USERNAME, base_env, login  # noqa: E402

RUNS = 5

# A deterministic uniform number in [0, 1) for row i and draw k: the same data every run.
UNIFORM = """
CREATE FUNCTION bench_u(i bigint, k int) RETURNS float8 IMMUTABLE LANGUAGE sql AS
$$ SELECT (hashint8(i * 8 + k)::float8 + 2147483648) / 4294967296 $$
"""

# Each order's last payment decides it: u2 below 0.56 paid by STK Push, below 0.72 by
# Paybill, 0.74 flagged (paid 50 short), 0.83 failed, 0.92 cancelled, 0.99 timed out, else
# waiting. 1 % of the paid ones had 100 refunded.
DRAWS = """
WITH s AS (
  SELECT i, CAST(%(now)s AS timestamptz) - interval '1 day' * %(days)s * bench_u(i, 1) AS t,
         bench_u(i, 2) AS u2, bench_u(i, 3) AS u3, 100 + mod(i, 50) * 100 AS amount
  FROM generate_series(1, %(orders)s) AS i
)
"""
ORDERS = (
    DRAWS
    + """
INSERT INTO orders (id, number, amount, description, status, version, created_at,
                    updated_at, paid_at, number_checked)
SELECT 'ord_b' || i, 'ORD-' || (1000000 + i), amount, '',
       CASE WHEN u2 < 0.72 THEN 'paid' ELSE 'pending' END, 1, t, t,
       CASE WHEN u2 < 0.72 THEN t + interval '1 minute' END, true
FROM s ORDER BY t
"""
)
# Each order's last payment (made 20 s after the order, or 200 s when an earlier attempt
# came first), and for one order in four that earlier failed or cancelled attempt (10 s).
PAYMENTS = (
    DRAWS
    + """, p AS (
  SELECT s.*,
         CASE WHEN u2 < 0.56 THEN 'stk' WHEN u2 < 0.72 THEN 'paybill' ELSE 'stk' END AS method,
         CASE WHEN u2 < 0.74 THEN 'completed' WHEN u2 < 0.83 THEN 'failed'
              WHEN u2 < 0.92 THEN 'cancelled' WHEN u2 < 0.99 THEN 'timeout'
              ELSE 'pending' END AS status,
         t + CASE WHEN mod(i, 4) = 0 THEN interval '200 seconds' ELSE interval '20 seconds' END
           AS made
  FROM s
), last AS (
  SELECT 'pay_b' || i AS id, 'ord_b' || i AS order_id, method,
         CASE WHEN method = 'stk' THEN '2547' || lpad(mod(i, 100000000)::text, 8, '0')
              ELSE '2547*****126' END AS phone,
         amount,
         CASE WHEN method = 'stk' THEN 'ws_CO_b' || i END AS checkout_request_id,
         status,
         CASE status WHEN 'completed' THEN 0 WHEN 'failed' THEN 1 WHEN 'cancelled' THEN 1032
                     WHEN 'timeout' THEN 1037 END AS result_code,
         CASE WHEN status = 'completed' THEN 'B' || lpad(i::text, 9, '0') END AS receipt,
         CASE WHEN status = 'completed'
              THEN amount - CASE WHEN u2 >= 0.72 THEN 50 ELSE 0 END END AS paid_amount,
         CASE WHEN status = 'completed' THEN 'callback' END AS amount_source,
         CASE WHEN status = 'completed'
              THEN made + interval '1 second' * (5 + 55 * u3) END AS paid_at,
         status = 'completed' AND u2 >= 0.72 AS needs_review,
         CASE WHEN status = 'completed' AND u2 >= 0.72 THEN 'amount mismatch' END
           AS review_reason,
         CASE WHEN status = 'completed' AND u2 < 0.72 AND u3 < 0.01 THEN 100 ELSE 0 END
           AS refunded_amount,
         made
  FROM p
), earlier AS (
  SELECT 'pay_a' || i, 'ord_b' || i, 'stk', '2547' || lpad(mod(i, 100000000)::text, 8, '0'),
         amount, 'ws_CO_a' || i, CASE WHEN u3 < 0.5 THEN 'failed' ELSE 'cancelled' END,
         CASE WHEN u3 < 0.5 THEN 1 ELSE 1032 END, NULL, NULL::int, NULL,
         NULL::timestamptz, false, NULL, 0, t + interval '10 seconds'
  FROM s WHERE mod(i, 4) = 0
)
INSERT INTO payments (id, order_id, method, phone, amount, checkout_request_id, status,
                      result_code, receipt, paid_amount, amount_source, paid_at,
                      needs_review, review_reason, refunded_amount, refunding_amount, held,
                      query_count, created_at, updated_at)
SELECT id, order_id, method, phone, amount, checkout_request_id, status, result_code,
       receipt, paid_amount, amount_source, paid_at, needs_review, review_reason,
       refunded_amount, 0, false, 0, made, made
FROM (SELECT * FROM last UNION ALL SELECT * FROM earlier) AS made_payments
ORDER BY made
"""
)


def machine() -> str:
    """CPU, cores, memory and PostgreSQL's version: what the numbers were measured on."""
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as info:
        kib = int(info.readline().split()[1])
    return f"{cpu}, {os.cpu_count()} cores, {kib / 2**20:.1f} GiB RAM, {platform.system()}"


def timed(run, runs: int = RUNS) -> float:
    """The median wall time of `runs` calls (ms), after one warm-up call."""
    run()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def statements_of(run) -> list[tuple[str, object]]:
    """The SQL (and parameters) `run` sends to the database."""
    sent = []

    def keep(conn, cursor, statement, parameters, context, executemany):
        sent.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", keep)
    try:
        run()
    finally:
        event.remove(db.engine, "before_cursor_execute", keep)
    return sent


SCAN = re.compile(r"(Index Only Scan|Index Scan|Bitmap Index Scan|Seq Scan)( using| on) (\w+)")


def plans(run) -> list[dict]:
    """EXPLAIN ANALYZE of each statement `run` sends: the scans it chose, and the plan."""
    found = []
    for statement, parameters in statements_of(run):
        rows = db.session.connection().exec_driver_sql(
            "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters
        )
        plan = "\n".join(row[0] for row in rows)
        scans = sorted({f"{kind} {name}" for kind, _, name in SCAN.findall(plan)})
        found.append({"scans": scans, "plan": plan})
    db.session.rollback()
    return found


def seed(env: dict, payments: int, days: int) -> dict:
    """1 M payments (and their orders) in SQL; returns how long each step took (s)."""
    import psycopg

    orders = payments * 4 // 5
    url = make_url(env["DATABASE_URL"]).set(drivername="postgresql")
    url = url.render_as_string(hide_password=False)
    took = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(UNIFORM)
        params = {"now": datetime.now(UTC), "days": days, "orders": orders}
        for name, sql in (("orders", ORDERS), ("payments", PAYMENTS)):
            started = time.perf_counter()
            conn.execute(sql, params)
            took[name] = round(time.perf_counter() - started, 1)
            print(f"seeded {name} in {took[name]} s", flush=True)
        started = time.perf_counter()
        conn.execute("VACUUM ANALYZE orders")
        conn.execute("VACUUM ANALYZE payments")
        took["vacuum analyze"] = round(time.perf_counter() - started, 1)
        count = conn.execute("SELECT count(*) FROM payments").fetchone()[0]
    assert count == payments, count
    return took


def measure(env: dict) -> dict:
    """Each chart's query, the median, and the whole page: median ms and plans."""
    app = create_app({"SOCKETIO_ASYNC_MODE": "threading"}, env=env)
    results = {"queries": {}, "page": {}}
    with app.app_context():
        hours, days = charts.windows()
        reads = {
            "payments per hour, 24 h (by outcome)": lambda: charts.outcome_counts(hours),
            "payments per day, 30 days (by outcome)": lambda: charts.outcome_counts(days),
            "money per day, 30 days (by method)": lambda: charts.money_by_method(days),
            "success rate per day, 30 days": lambda: charts.success_by_bucket(days),
            "median prompt → paid, 30 days": lambda: queries.median_seconds_to_pay(
                [], made_since=days.since
            ),
            "all of the above (charts.read)": charts.read,
        }
        for name, run in reads.items():
            ms = timed(run)
            explained = plans(run) if "charts.read" not in name else []
            results["queries"][name] = {"ms": round(ms, 1), "plans": explained}
            scans = "; ".join(", ".join(p["scans"]) for p in explained)
            print(f"{ms:8.1f} ms  {name}  [{scans}]", flush=True)
        client = app.test_client()
        assert login(client).status_code == 302
        for name, path in (
            ("/admin/ (with the charts)", "/admin/"),
            ("/admin/?page=2", "/admin/?page=2"),
        ):
            assert client.get(path).status_code == 200
            ms = timed(lambda path=path: client.get(path))
            results["page"][name] = round(ms, 1)
            print(f"{ms:8.1f} ms  GET {name}", flush=True)
        db.session.remove()
        db.engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=60, help="spread the payments over")
    parser.add_argument("--json", default="test-artifacts/bench-charts.json")
    parser.add_argument("--keep", action="store_true", help="keep the database; print its URL")
    args = parser.parse_args()
    database = services.create_pg_database()
    env = {**base_env(database), "LOG_LEVEL": "WARNING"}
    try:
        services.flask_cli(env, "db", "upgrade", "0015_approvals")
        seeded = seed(env, args.payments, args.days)
        started = time.perf_counter()
        services.flask_cli(env, "db", "upgrade", timeout=1800)  # 0016: the charts' indexes
        migration_s = round(time.perf_counter() - started, 1)
        print(f"migration 0016 on {args.payments:,} payments: {migration_s} s", flush=True)
        services.flask_cli(env, "admin", "create", USERNAME, input=f"{PASSWORD}\n" * 2)
        results = measure(env)
        pg = subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout
        report = {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "postgresql": pg.strip(),
            "payments": args.payments,
            "days": args.days,
            "seed_s": seeded,
            "migration_0016_s": migration_s,
            **results,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2, ensure_ascii=False))
        print(f"results: {args.json}")
    finally:
        if args.keep:
            print(f"kept: {database}")
        else:
            services.drop_pg_database(database)


if __name__ == "__main__":
    main()

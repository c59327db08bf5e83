"""Instructions per paid STK callback, counted by valgrind (`make bench-instructions`).

The timed benchmark (`callbacks.py`) measures seconds of CPU, which move with whatever
else the machine runs: on a shared 2-core machine the same code measured 4.3 ms one day
and 9 ms another, and a change worth 5 % disappears under that. This counts the
instructions the app's process executes for one callback instead: `valgrind
--tool=callgrind` gives the same count for the same code and inputs, however busy the
machine is (PostgreSQL and Redis are other processes, not counted).

What one callback is here: in process, through Flask's test client (no HTTP server, no
socket delivery), the production path of `POST /callbacks/stk/<token>` for a Daraja STK
success: store the raw body, parse, lock the order, read its payments, decide, write,
commit, publish `payment_update` to Redis; `LOG_LEVEL=INFO` (the log lines are formatted
and queued; the writer thread writes them to /dev/null).

Each measurement is two runs under valgrind with the same setup (a fresh database,
`--orders` pending orders, `WARM` callbacks first) that differ only in how many callbacks
follow: instructions per callback = (count(M2) - count(M1)) / (M2 - M1). Setup, imports
and first-time costs cancel.

`--reference` also measures the same SQL without SQLAlchemy or paymentapp's code: a bare
Flask route that sends, through one raw psycopg connection, the four statements
paymentapp sent for a real callback (captured), with this callback's ids, then commits
and publishes one message to Redis. It is what the statements, Flask and Redis cost from
Python; the rest of paymentapp's count is its ORM, SQLAlchemy and its own code.

    .venv/bin/python bench/instructions.py [--callbacks 200] [--reference] [--log-level WARNING]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WARM = 20  # callbacks before the counted ones: first-time costs (compiles, caches)
CALLBACK_TOKEN = "bench-instructions-token-0123456789"
COLLECTED = re.compile(r"Collected : (\d+)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--callbacks", type=int, default=200, help="M2 - M1 (default 200)")
    parser.add_argument("--reference", action="store_true", help="also the raw-SQL reference")
    parser.add_argument(
        "--log-level", default="INFO", help="the app's LOG_LEVEL (default INFO, as deployed)"
    )
    parser.add_argument("--json", help="write the numbers here")
    parser.add_argument("--inner", nargs=2, metavar=("KIND", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        kind, count = args.inner
        run_inner(kind, int(count), int(os.environ["BENCH_ORDERS"]))
        return
    if subprocess.run(["valgrind", "--version"], capture_output=True).returncode:
        sys.exit("valgrind is needed (Debian: apt-get install valgrind)")
    # one run first, uncounted: a fresh checkout's first run compiles the app's bytecode
    # and makes its instance files (the simulator's RSA key pair, the encryption key),
    # which would land in the smaller run's count (it came out less than half)
    count_run("paymentapp", 0, 0, args.log_level, counted=False)
    results = {}
    for kind in ["paymentapp"] + (["reference"] if args.reference else []):
        counts = [
            count_run(kind, m, args.callbacks, args.log_level) for m in (10, 10 + args.callbacks)
        ]
        per_callback = (counts[1] - counts[0]) / args.callbacks
        results[kind] = {"instructions_per_callback": round(per_callback), "runs": counts}
        print(f"[instructions] {kind}: {per_callback / 1e6:.2f} M instructions per callback")
    if "reference" in results:
        share = (
            results["reference"]["instructions_per_callback"]
            / results["paymentapp"]["instructions_per_callback"]
        )
        print(f"[instructions] the raw-SQL reference is {share:.0%} of paymentapp's count")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def count_run(kind: str, count: int, most: int, log_level: str, counted: bool = True) -> int:
    """Instructions of one whole run of `count` callbacks (setup identical for every
    count: the orders for the largest run are always seeded); 0 when not `counted` (the
    process runs without valgrind)."""
    from tests import services

    database_url = services.create_pg_database()
    try:
        env = inner_env(database_url, WARM + 10 + most, log_level)
        with tempfile.NamedTemporaryFile(suffix=".log") as log:
            valgrind = [
                "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                f"--log-file={log.name}",
            ]  # fmt: skip
            inner = [sys.executable, __file__, "--inner", kind, str(count)]
            done = subprocess.run(
                (valgrind if counted else []) + inner,
                env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip
            found = COLLECTED.findall(Path(log.name).read_text())
        if done.returncode or done.stdout.strip() != "ok":
            raise RuntimeError(f"the counted process failed: {done.stdout.strip()[-2000:]}")
        if not counted:
            return 0
        if not found:
            raise RuntimeError(f"valgrind reported no count for {kind} {count}")
        return int(found[-1])
    finally:
        services.drop_pg_database(database_url)


def inner_env(database_url: str, orders: int, log_level: str = "INFO") -> dict:
    """The environment of one counted process: the app as `wsgi.py` builds it."""
    from tests import services

    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": services.require_redis(),
        "SOCKETIO_CHANNEL": f"bench-instructions-{os.getpid()}",
        "SECRET_KEY": "bench-instructions-secret-key-0123456789abcdef",
        "MPESA_CALLBACK_TOKEN": CALLBACK_TOKEN,
        "MPESA_ENV": "simulator",
        "LOG_LEVEL": log_level,
        "PAYMENTAPP_ALLOW_MISSING_ASSETS": "1",
        "BENCH_ORDERS": str(orders),
    }


# -- inside valgrind ---------------------------------------------------------------------------


def run_inner(kind: str, count: int, orders: int) -> None:
    """Seed, then `WARM + count` callbacks (stderr, where the log lines go, is /dev/null)."""
    # isort: off
    from wsgi import app  # first: patches gevent, builds the app from the environment

    # isort: on
    from bench.load.seed_paymentapp import seed
    from paymentapp.extensions import db

    with app.app_context():
        db.create_all()
    bodies = [stk_body(order["checkout_id"], order["amount"]) for order in seed(orders, "instr")]
    client = app.test_client()
    path = f"/callbacks/stk/{CALLBACK_TOKEN}"
    if kind == "paymentapp":
        post = lambda body: client.post(path, data=body, content_type="application/json")  # noqa: E731
    else:
        post = reference_route(app, client, path, bodies[0])
        bodies = bodies[1:]
    for body in bodies[: WARM + count]:
        answer = post(body)
        if answer.status_code != 200 or answer.get_json() != {
            "ResultCode": 0,
            "ResultDesc": "Accepted",
        }:
            raise RuntimeError(f"callback answered {answer.status_code}: {answer.data[:200]}")
    # Every emit published: under valgrind a process runs ~50 times slower, and a publish
    # that missed its timeout (1 s of wall time) would be work not done, not counted
    from paymentapp.metrics.instruments import REDIS_PUBLISH_FAILURES

    failures = sum(
        sample.value
        for metric in REDIS_PUBLISH_FAILURES.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )
    if failures:
        print(f"{failures:.0f} Redis publishes failed or were skipped: the count is wrong")
        sys.exit(1)
    print("ok")


def stk_body(checkout_id: str, amount: int) -> bytes:
    """Daraja's STK success callback paying `amount` (the test suite's, with its receipt)."""
    from tests.helpers import stk_callback

    return json.dumps(stk_callback(checkout_id, amount=amount)).encode()


def receipt_in(body: dict) -> str:
    items = body["Body"]["stkCallback"]["CallbackMetadata"]["Item"]
    return next(item["Value"] for item in items if item["Name"] == "MpesaReceiptNumber")


def reference_route(app, client, path: str, first_body: bytes):
    """Apply one callback through paymentapp, capturing its statements; return a poster
    for the bare route that replays them for each later callback, from raw psycopg."""
    import flask
    import psycopg
    import redis
    from sqlalchemy import event

    from paymentapp.extensions import db
    from paymentapp.models import new_id

    captured = []
    with app.app_context():
        engine = db.engine
        listener = lambda _c, _cur, sql, params, _ctx, _many: captured.append((sql, params))  # noqa: E731
        event.listen(engine, "before_cursor_execute", listener)
        if client.post(path, data=first_body, content_type="application/json").status_code != 200:
            raise RuntimeError("the captured callback failed")
        event.remove(engine, "before_cursor_execute", listener)
        dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    if len(captured) != 4:  # store, lock, payments, the commit's appended statement
        raise RuntimeError(f"paymentapp sent {len(captured)} statements, not 4: update this")
    store, lock, payments, write = captured
    (store_sql, store_params), (lock_sql, _), (payments_sql, payments_params) = (
        store,
        lock,
        payments,
    )
    write_sql, write_params = write
    tables = dict(re.findall(r"row_update_(\d+) AS\s*\(UPDATE (\w+)", write_sql))
    autocommit = psycopg.connect(dsn, autocommit=True)
    connection = psycopg.connect(dsn)
    queue = redis.Redis.from_url(os.environ["REDIS_URL"])
    bare = flask.Flask("reference")

    @bare.post("/cb")
    def apply():
        body = flask.request.get_data()
        parsed = json.loads(body)
        checkout_id = parsed["Body"]["stkCallback"]["CheckoutRequestID"]
        receipt = receipt_in(parsed)
        record = autocommit.execute(store_sql, {**store_params, "body": body.decode()})
        record_id = record.fetchone()[0]
        order_id = connection.execute(lock_sql, {"key": checkout_id}).fetchone()[0]
        params = {**payments_params, "order_id": order_id}
        if "receipt" in params:
            params["receipt"] = receipt
        payment_id = connection.execute(payments_sql, params).fetchone()[0]
        ids = {"order_id": order_id, "payment_id": payment_id}
        params = dict(write_params, record_id=record_id, record_payment_id=payment_id)
        params["record_checkout_request_id"] = checkout_id
        for index, table in tables.items():
            params[f"u{index}_id"] = order_id if table == "orders" else payment_id
            if table == "payments" and f"u{index}_receipt" in params:
                params[f"u{index}_receipt"] = receipt
        # the appended rows, one JSON array per table (outbox/writer.py): this callback's
        # ids, and a new id for each webhook event
        for name in ("audit_rows", "event_rows"):
            if name in params:
                rows = json.loads(params[name])
                for row in rows:
                    row.update({key: ids[key] for key in ids.keys() & row.keys()})
                    if name == "event_rows":
                        row["id"] = new_id("evt")
                params[name] = json.dumps(rows)
        connection.execute(write_sql, params).fetchall()
        connection.commit()
        queue.publish("bench-reference", json.dumps({"order_id": order_id, "status": "paid"}))
        return flask.jsonify({"ResultCode": 0, "ResultDesc": "Accepted"})

    reference = bare.test_client()
    return lambda body: reference.post("/cb", data=body, content_type="application/json")


if __name__ == "__main__":
    main()

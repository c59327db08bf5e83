"""Webhook delivery, measured (run by hand: `.venv/bin/python bench/webhooks.py`).

1. Throughput: N `order.created` events queued with no worker running, then one
   `flask --app wsgi webhooks deliver --loop` process sends them to a local receiver.
2. Latency: for each of M payments, the success callback is posted (its 200 means the
   change and its outbox row are committed) and the clock runs until the receiver has the
   signed `order.paid`, with the worker polling every 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import services  # noqa: E402
from tests.e2e import callback_body  # noqa: E402
from tests.helpers import base_env  # noqa: E402
from tests.receiver import Receiver  # noqa: E402


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--payments", type=int, default=30)
    args = parser.parse_args()
    database = services.create_pg_database()
    env = {
        **base_env(database),
        "PAYMENTAPP_INSTANCE_PATH": str(Path("/tmp") / f"whbench-{uuid.uuid4().hex[:8]}"),
        "LOG_LEVEL": "WARNING",
    }
    try:
        services.flask_cli(env, "db", "upgrade")
        key = services.flask_cli(env, "apikey", "create", "bench").strip().splitlines()[-1]
        auth = {"Authorization": f"Bearer {key}"}
        with Receiver() as receiver, services.Gunicorn(env) as server, requests.Session() as s:
            services.flask_cli(env, "webhooks", "add", receiver.url)
            for _ in range(args.events):
                s.post(server.url + "/api/orders", json={"amount": 10}, headers=auth, timeout=10)
            worker = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "flask",
                    "--app",
                    "wsgi",
                    "webhooks",
                    "deliver",
                    "--loop",
                    "--interval",
                    "0.05",
                ],
                cwd=ROOT,
                env={**os.environ, **env},
            )
            try:
                started = time.monotonic()
                services.wait_for(
                    lambda: len(receiver.received) >= args.events,
                    "every event",
                    timeout=300,
                    interval=0.01,
                )
                elapsed = time.monotonic() - started
                print(
                    f"throughput: {args.events} events in {elapsed:.2f} s = "
                    f"{args.events / elapsed:.0f} events/s (one worker, local receiver)"
                )
                latencies = []
                for n in range(args.payments):
                    order = s.post(
                        server.url + "/api/orders", json={"amount": 25}, headers=auth, timeout=10
                    ).json()
                    s.post(
                        f"{server.url}/api/orders/{order['id']}/payments",
                        json={"phone": f"2547{n:08d}"},
                        headers={"X-Order-Token": order["client_token"]},
                        timeout=15,
                    )
                    checkout = s.get(
                        f"{server.url}/api/orders/{order['id']}", headers=auth, timeout=10
                    ).json()["payments"][-1]["checkout_request_id"]
                    body = callback_body(checkout, 0, amount=25)
                    t0 = time.monotonic()
                    s.post(
                        f"{server.url}/callbacks/stk/{env['MPESA_CALLBACK_TOKEN']}",
                        json=body,
                        timeout=10,
                    )

                    def paid(order_id=order["id"]):
                        return next(
                            (
                                r
                                for r in receiver.received
                                if json.loads(r.body)["type"] == "order.paid"
                                and json.loads(r.body)["data"]["order"]["id"] == order_id
                            ),
                            None,
                        )

                    got = services.wait_for(paid, "order.paid", timeout=30, interval=0.002)
                    latencies.append((got.at - t0) * 1000)
                print(
                    f"callback committed → order.paid received, {args.payments} payments: "
                    f"p50 {statistics.median(latencies):.0f} ms, p99 {pct(latencies, 99):.0f} ms,"
                    f" max {max(latencies):.0f} ms (worker polls every 50 ms)"
                )
            finally:
                worker.terminate()
                worker.wait(10)
    finally:
        services.drop_pg_database(database)


if __name__ == "__main__":
    main()

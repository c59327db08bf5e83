"""Benchmarks, run by hand (`make bench`); results go in the README, never in tests.

Starts the production shape on this machine: gunicorn (`gunicorn.conf.py`, 2 gevent
workers), a fresh PostgreSQL database, Redis as the Socket.IO queue, and the app's own
Daraja simulator. Then measures:

1. order creation: N orders through `POST /api/orders`, C at a time;
2. money → browser: for each order a websocket client subscribes, the payment is started,
   the simulated phone presses "Enter PIN", and we time from that press until the client
   receives `payment_update` with `order_status: paid` (simulator callback, callback
   handling, commit, Redis, the other worker, the socket).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
import socketio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import services  # noqa: E402


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def summary(name: str, values_ms: list[float]) -> str:
    return (
        f"{name}: n={len(values_ms)} p50={pct(values_ms, 50):.1f} ms "
        f"p95={pct(values_ms, 95):.1f} ms max={max(values_ms):.1f} ms "
        f"mean={statistics.mean(values_ms):.1f} ms"
    )


def api_key(env: dict) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "apikey", "create", "bench"],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.strip().splitlines()[-1]


def bench_orders(url: str, key: str, count: int, concurrency: int) -> list[dict]:
    session = requests.Session()
    headers = {"Authorization": f"Bearer {key}"}

    def create(i: int):
        started = time.perf_counter()
        response = session.post(
            f"{url}/api/orders", json={"amount": 10 + i % 50}, headers=headers, timeout=30
        )
        response.raise_for_status()
        return (time.perf_counter() - started) * 1000, response.json()

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(create, range(count)))
    elapsed = time.perf_counter() - started
    print(summary(f"create order (x{concurrency} concurrent)", [r[0] for r in results]))
    print(f"create order throughput: {count / elapsed:.0f} orders/s")
    return [r[1] for r in results]


def bench_paid_latency(url: str, orders: list[dict]) -> None:
    latencies = []
    workers = set()
    for i, order in enumerate(orders):
        got_paid = threading.Event()
        client = socketio.Client(reconnection=False)

        @client.on("payment_update")
        def on_update(data, order_id=order["id"], event=got_paid):
            if data["order_id"] == order_id and data["order_status"] == "paid":
                event.set()

        client.connect(url, transports=["websocket"])
        who = client.call("whoami", timeout=5)
        workers.add(who.get("pid") if isinstance(who, dict) else who)
        ack = client.call(
            "subscribe", {"order_id": order["id"], "token": order["client_token"]}, timeout=5
        )
        assert ack["ok"], ack
        phone = f"0712{i % 1_000_000:06d}"
        response = requests.post(
            f"{url}/api/orders/{order['id']}/payments",
            json={"phone": phone},
            timeout=30,
            headers={"X-Order-Token": order["client_token"]},
        )
        assert response.status_code == 202, response.text
        prompt = requests.get(
            f"{url}/_simulator/api/prompts",
            params={"account_reference": order["number"]},
            timeout=5,
        ).json()["prompts"][0]
        pressed = time.perf_counter()
        requests.post(
            f"{url}/_simulator/api/prompts/{prompt['checkout_request_id']}/accept", timeout=10
        ).raise_for_status()
        if not got_paid.wait(10):
            raise SystemExit(f"no paid update for {order['number']}")
        latencies.append((time.perf_counter() - pressed) * 1000)
        client.disconnect()
    print(summary("'Enter PIN' pressed -> paid update in the browser socket", latencies))
    print(f"socket clients landed on {len(workers)} worker(s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--payments", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    database_url = services.create_pg_database()
    redis_url = services.require_redis()
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SOCKETIO_CHANNEL": f"bench-{os.getpid()}",
        "SECRET_KEY": "bench-secret",
        "MPESA_CALLBACK_TOKEN": "bench-callback-token-0123",
        "PAYMENT_PHONE_COOLDOWN_S": "0",
        "ACCESS_LOG": "/dev/null",
        "LOG_LEVEL": "WARNING",
    }
    try:
        subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
            cwd=ROOT,
            env={**os.environ, **env},
            check=True,
            capture_output=True,
        )
        key = api_key(env)
        with services.Gunicorn(env, workers=args.workers) as server:
            print(
                f"gunicorn: {args.workers} gevent workers, PostgreSQL, Redis, simulator; "
                f"{os.cpu_count()} CPU cores"
            )
            orders = bench_orders(server.url, key, args.orders, args.concurrency)
            bench_paid_latency(server.url, orders[: args.payments])
    finally:
        services.drop_pg_database(database_url)


if __name__ == "__main__":
    main()

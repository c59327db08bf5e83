"""Shared helpers of the end-to-end tests: a real stack (gunicorn with 2 gevent workers,
Redis, PostgreSQL), real Socket.IO watchers, and Daraja-format callbacks."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
import uuid
from dataclasses import dataclass

import requests
import socketio

from tests import services
from tests.helpers import Simulator, base_env, stk_callback

WAIT_S = 15  # bound for any single event to arrive
_phones = itertools.count(100)


def next_phone() -> str:
    """A distinct Safaricom-range phone per payment (no subscriber lock, no cooldown)."""
    return f"2547{next(_phones):08d}"


@dataclass
class Stack:
    url: str
    env: dict
    api_key: str
    redis: services.RedisServer
    server: services.Gunicorn
    # One session for every request, closed before gunicorn stops: an idle keep-alive
    # connection left open would hold a gevent worker for its whole graceful timeout.
    http: requests.Session

    @property
    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.api_key}"}

    @property
    def simulator(self) -> Simulator:
        return Simulator(self.url, self.http)


@contextlib.contextmanager
def running_stack(instance_path, **extra_env):
    """gunicorn (2 workers) on a fresh migrated PostgreSQL database and a private Redis."""
    database = services.create_pg_database()
    try:
        with services.RedisServer() as redis_server:
            port = services.free_port()
            env = {
                **base_env(database),
                "REDIS_URL": redis_server.url,
                "SOCKETIO_CHANNEL": f"e2e-{uuid.uuid4().hex}",
                "PAYMENTAPP_INSTANCE_PATH": str(instance_path),
                "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
                "PAYMENT_QUERY_AFTER_S": "1",
                # The Daraja client keeps a keep-alive connection to the simulator served
                # by the same worker, which holds that worker for the whole graceful
                # timeout at shutdown; nothing here needs a graceful stop.
                "GUNICORN_CMD_ARGS": "--graceful-timeout 2",
                **extra_env,
            }
            services.flask_cli(env, "db", "upgrade")
            api_key = services.flask_cli(env, "apikey", "create", "e2e").strip().splitlines()[-1]
            with services.Gunicorn(env, workers=2, port=port) as server, requests.Session() as http:
                yield Stack(server.url, env, api_key, redis_server, server, http)
    finally:
        services.drop_pg_database(database)


class Watcher:
    """A real Socket.IO client (websocket only) recording the `payment_update`s it gets."""

    def __init__(self, url: str):
        self.updates: list[dict] = []
        self._changed = threading.Condition()
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("payment_update", self._on_update)
        self.sio.connect(url, transports=["websocket"], wait_timeout=WAIT_S)
        self.pid = self.sio.call("whoami", timeout=WAIT_S)["pid"]

    def _on_update(self, data) -> None:
        with self._changed:
            self.updates.append({**data, "_received": time.monotonic()})
            self._changed.notify_all()

    def subscribe(self, order: dict, token: str | None = None) -> dict:
        token = order["client_token"] if token is None else token
        return self.sio.call("subscribe", {"order_id": order["id"], "token": token}, timeout=WAIT_S)

    def matching(self, order_id: str, **expected) -> list[dict]:
        """Updates received for `order_id` whose fields (or payment fields) match."""

        def match(update):
            payment = update.get("payment") or {}
            return update["order_id"] == order_id and all(
                update.get(k, payment.get(k)) == v for k, v in expected.items()
            )

        return [u for u in self.updates if match(u)]

    def wait_for(self, order_id: str, count: int = 1, **expected) -> dict:
        """Wait (bounded) until `count` matching updates arrived; return the last."""
        with self._changed:
            self._changed.wait_for(
                lambda: len(self.matching(order_id, **expected)) >= count, timeout=WAIT_S
            )
            found = self.matching(order_id, **expected)
        assert len(found) >= count, f"worker {self.pid}: {expected} ×{count}: {self.updates}"
        return found[-1]

    def close(self) -> None:
        self.sio.disconnect()


class Watchers:
    """Opens watchers until each of the two workers has enough; closes them all."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.opened: list[Watcher] = []

    def on_both_workers(self, per_worker: int = 1) -> list[list[Watcher]]:
        by_pid: dict[int, list[Watcher]] = {}
        for _ in range(60):
            watcher = Watcher(self.stack.url)
            self.opened.append(watcher)
            by_pid.setdefault(watcher.pid, []).append(watcher)
            if len(by_pid) == 2 and all(len(ws) >= per_worker for ws in by_pid.values()):
                break
        assert len(by_pid) == 2, f"all connections landed on one worker: {list(by_pid)}"
        return [ws[:per_worker] for ws in by_pid.values()]

    def close(self) -> None:
        for watcher in self.opened:
            watcher.close()


def create_order(stack: Stack, amount: int) -> dict:
    response = stack.http.post(
        stack.url + "/api/orders", json={"amount": amount}, headers=stack.auth, timeout=10
    )
    assert response.status_code == 201, response.text
    return response.json()


def start_payment(stack: Stack, order: dict) -> str:
    """`POST /api/orders/<id>/payments` against the simulator; returns the CheckoutRequestID."""
    response = stack.http.post(
        f"{stack.url}/api/orders/{order['id']}/payments",
        json={"phone": next_phone()},
        headers={"X-Order-Token": order["client_token"]},
        timeout=15,
    )
    assert response.status_code == 202, response.text
    details = stack.http.get(
        f"{stack.url}/api/orders/{order['id']}", headers=stack.auth, timeout=10
    )
    return details.json()["payments"][-1]["checkout_request_id"]


def callback_body(checkout_id: str, result_code: int, amount: int = 0) -> dict:
    """A Daraja STK callback as Safaricom would post it, with a receipt of its own."""
    return stk_callback(
        checkout_id,
        result_code,
        amount=float(amount),
        receipt=f"SIM{uuid.uuid4().hex[:7].upper()}",
        phone=254708374149,
    )


def callback_url(stack: Stack) -> str:
    return f"{stack.url}/callbacks/stk/{stack.env['MPESA_CALLBACK_TOKEN']}"


def post_callback(stack: Stack, checkout_id: str, result_code: int, amount: int = 0) -> dict:
    """Post a callback and expect Daraja's Accepted; returns the body sent."""
    body = callback_body(checkout_id, result_code, amount)
    response = stack.http.post(callback_url(stack), json=body, timeout=10)
    assert response.status_code == 200 and response.json()["ResultCode"] == 0, response.text
    return body

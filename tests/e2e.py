"""Shared helpers of the end-to-end tests: a real stack (gunicorn with 2 gevent workers,
Redis, PostgreSQL), real Socket.IO watchers, and Daraja-format callbacks."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import requests
import socketio

from tests import services
from tests.helpers import Simulator, base_env, csrf_in, stk_callback

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
            # the kernel hands each connection to whichever worker accepts first; a pause
            # lets a worker busy with the last one fall behind, so the other gets a turn
            time.sleep(0.05)
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


# -- concurrency: the dashboard over HTTP, Paybill confirmations, a lock gate, races ------


class Admin:
    """A dashboard session over real HTTP (its own cookies), for a user the CLI created."""

    def __init__(self, stack: Stack, username: str, password: str):
        self.stack = stack
        self.http = requests.Session()
        page = self.http.get(f"{stack.url}/admin/login", timeout=10)
        signed_in = self.http.post(
            f"{stack.url}/admin/login",
            data={"username": username, "password": password, "csrf_token": csrf_in(page.text)},
            allow_redirects=False,
            timeout=10,
        )
        assert signed_in.status_code == 302, signed_in.text
        # the session is started afresh at sign-in: the form token comes from a new page
        # (a plain one: the tests here need no more of the dashboard than its forms)
        self.csrf = csrf_in(self.http.get(f"{stack.url}/admin/api-keys", timeout=10).text)

    def post(self, path: str, **fields) -> requests.Response:
        """A dashboard form, as the browser sends it (redirects are not followed)."""
        return self.http.post(
            self.stack.url + path,
            data={**fields, "csrf_token": self.csrf},
            allow_redirects=False,
            timeout=30,
        )

    def close(self) -> None:
        self.http.close()


def create_admin(stack: Stack, username: str, password: str) -> Admin:
    """`flask admin create` (as an operator would), then sign in over HTTP."""
    services.flask_cli(stack.env, "admin", "create", username, "--password", password)
    return Admin(stack, username, password)


def c2b_url(stack: Stack) -> str:
    return f"{stack.url}/callbacks/c2b/confirmation/{stack.env['MPESA_CALLBACK_TOKEN']}"


def order_details(stack: Stack, order_id: str) -> dict:
    """`GET /api/orders/<id>`: the committed state, with payments."""
    response = stack.http.get(f"{stack.url}/api/orders/{order_id}", headers=stack.auth, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def deliver_webhooks(stack: Stack) -> str:
    """One `flask webhooks deliver` pass: every delivery due now is sent when it returns."""
    return services.flask_cli(stack.env, "webhooks", "deliver")


class OrderGate:
    """Holds an order's row, and its payments' rows, locked by a transaction of the test's
    own (`FOR NO KEY UPDATE`: an insert referencing them still passes), so requests that
    want the order queue on the lock in the order they were sent; `release` lets them
    through, first come first served. Whatever the app locks first (the order, or the
    payments), a request sent while the gate is shut waits for it, so an interleaving
    is the same on every run, with or without a pause in the app itself."""

    def __init__(self, stack: Stack, order_id: str):
        import psycopg

        url = services.psycopg_url(stack.env["DATABASE_URL"])
        self.conn = psycopg.connect(url)
        self.conn.execute("SELECT 1 FROM orders WHERE id = %s FOR NO KEY UPDATE", (order_id,))
        self.conn.execute(
            "SELECT 1 FROM payments WHERE order_id = %s FOR NO KEY UPDATE", (order_id,)
        )
        self.watch = psycopg.connect(url, autocommit=True)

    def waiting(self) -> int:
        """How many other database sessions are waiting for a lock right now."""
        return self.watch.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
        ).fetchone()[0]

    def release(self) -> None:
        if not self.conn.closed:
            self.conn.commit()
            self.conn.close()

    def close(self) -> None:
        self.release()
        self.watch.close()


@dataclass
class Sent:
    """One request of a race and what came of it."""

    label: str
    response: requests.Response | None = None
    error: BaseException | None = None
    done: threading.Event = dataclasses.field(default_factory=threading.Event)

    @property
    def status(self) -> int | None:
        return self.response.status_code if self.response is not None else None

    def json(self) -> dict:
        try:
            return self.response.json()
        except ValueError:
            return {}


def race(gate: OrderGate, *groups: list[tuple[str, Callable]], timeout: float = WAIT_S):
    """Send groups of requests, one group after the other, and return what each got.

    A group's requests start together (threads released by one `threading.Barrier`);
    the next group goes once every request sent so far is queued on a lock (or was
    answered), so it lands behind them. Then the gate opens and the queue drains in
    the order it formed. A request is `(label, send)`; `send()` returns the response.
    """
    sent: list[Sent] = []
    threads: list[threading.Thread] = []

    def run(item: Sent, send, barrier: threading.Barrier) -> None:
        try:
            barrier.wait(timeout)
            item.response = send()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            item.error = exc
        finally:
            item.done.set()

    try:
        for group in groups:
            barrier = threading.Barrier(len(group))
            for label, send in group:
                item = Sent(label)
                sent.append(item)
                thread = threading.Thread(target=run, args=(item, send, barrier), daemon=True)
                threads.append(thread)
                thread.start()
            services.wait_for(
                lambda: gate.waiting() + sum(s.done.is_set() for s in sent) >= len(sent),
                f"{[s.label for s in sent]} to queue on the order's lock",
                timeout,
                interval=0.01,
            )
    finally:
        gate.release()
        for thread in threads:
            thread.join(timeout)
    for item in sent:
        assert item.done.is_set(), f"{item.label}: no answer within {timeout}s"
    return sent

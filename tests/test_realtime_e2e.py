"""Real time across processes: real gunicorn (2 gevent workers), Redis, PostgreSQL.

Socket clients are real python-socketio clients on the websocket transport. Every order
is watched from both workers, so whichever worker handles a request, some watcher gets
the update through Redis from the other one.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from dataclasses import dataclass

import pytest
import requests
import socketio
import websocket

from tests import services
from tests.conftest import base_env

pytestmark = pytest.mark.e2e

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


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    database = services.create_pg_database()
    try:
        with services.RedisServer() as redis_server:
            port = services.free_port()
            env = {
                **base_env(database),
                "REDIS_URL": redis_server.url,
                "SOCKETIO_CHANNEL": f"e2e-{uuid.uuid4().hex}",
                "PAYMENTAPP_INSTANCE_PATH": str(tmp_path_factory.mktemp("instance")),
                "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
                "PAYMENT_QUERY_AFTER_S": "1",
                # The Daraja client keeps a keep-alive connection to the simulator served
                # by the same worker, which holds that worker for the whole graceful
                # timeout at shutdown; nothing here needs a graceful stop.
                "GUNICORN_CMD_ARGS": "--graceful-timeout 2",
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


@pytest.fixture
def watchers(stack):
    """`watchers(n)`: n watchers connected to each of the two workers."""
    opened: list[Watcher] = []

    def on_both_workers(per_worker: int = 1) -> list[list[Watcher]]:
        by_pid: dict[int, list[Watcher]] = {}
        for _ in range(60):
            watcher = Watcher(stack.url)
            opened.append(watcher)
            by_pid.setdefault(watcher.pid, []).append(watcher)
            if len(by_pid) == 2 and all(len(ws) >= per_worker for ws in by_pid.values()):
                break
        assert len(by_pid) == 2, f"all connections landed on one worker: {list(by_pid)}"
        return [ws[:per_worker] for ws in by_pid.values()]

    yield on_both_workers
    for watcher in opened:
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


def post_callback(stack: Stack, checkout_id: str, result_code: int, amount: int = 0) -> None:
    """A Daraja-format STK callback (DARAJA.md), as Safaricom would post it."""
    callback = {
        "MerchantRequestID": f"29115-{uuid.uuid4().hex[:8]}-1",
        "CheckoutRequestID": checkout_id,
        "ResultCode": result_code,
        "ResultDesc": "The service request is processed successfully."
        if result_code == 0
        else "Request cancelled by user",
    }
    if result_code == 0:
        callback["CallbackMetadata"] = {
            "Item": [
                {"Name": "Amount", "Value": float(amount)},
                {"Name": "MpesaReceiptNumber", "Value": f"SIM{uuid.uuid4().hex[:7].upper()}"},
                {"Name": "Balance"},
                {"Name": "TransactionDate", "Value": 20250101120000},
                {"Name": "PhoneNumber", "Value": 254708374149},
            ]
        }
    response = stack.http.post(
        f"{stack.url}/callbacks/stk/{stack.env['MPESA_CALLBACK_TOKEN']}",
        json={"Body": {"stkCallback": callback}},
        timeout=10,
    )
    assert response.status_code == 200 and response.json()["ResultCode"] == 0, response.text


def test_updates_cross_workers_and_reach_only_their_own_room(stack, watchers):
    first_worker, second_worker = watchers(per_worker=2)
    a, b = create_order(stack, 120), create_order(stack, 340)
    # On each worker one watcher per order: whichever worker handles a request, one
    # watcher of that order sits on the other worker.
    watching = {
        a["id"]: [first_worker[0], second_worker[0]],
        b["id"]: [first_worker[1], second_worker[1]],
    }
    for order in (a, b):
        for watcher in watching[order["id"]]:
            ack = watcher.subscribe(order)
            assert ack["ok"] and ack["status"]["version"] == 1, ack

    a_checkout = start_payment(stack, a)
    b_checkout = start_payment(stack, b)
    post_callback(stack, b_checkout, 1032)
    sent = time.monotonic()
    post_callback(stack, a_checkout, 0, amount=120)
    start_payment(stack, b)  # the customer tries again after cancelling

    latencies = []
    for watcher in watching[a["id"]]:
        paid = watcher.wait_for(a["id"], order_status="paid", status="completed")
        latencies.append(paid["_received"] - sent)
        assert paid["payment"]["receipt"].startswith("SIM")
        assert paid["payment"]["phone_masked"] and "254" not in paid["payment"]["phone_masked"][4:]
    for watcher in watching[b["id"]]:
        watcher.wait_for(b["id"], status="cancelled")
        watcher.wait_for(b["id"], status="pending", order_status="pending", version=4)

    for order_id, group in watching.items():
        for watcher in group:
            assert {u["order_id"] for u in watcher.updates} == {order_id}
            versions = [u["version"] for u in watcher.updates]
            assert versions == sorted(set(versions)), versions
    print(
        f"\ncallback → payment_update on both workers: {[round(s * 1000, 1) for s in latencies]} ms"
    )

    # subscribing after the fact still ends on the right status
    late = Watcher(stack.url)
    try:
        ack = late.subscribe(a)
        assert ack["ok"] and ack["status"]["order_status"] == "paid"
        assert ack["status"]["version"] == watching[a["id"]][0].updates[-1]["version"]
    finally:
        late.close()
    assert "Traceback" not in stack.server.log()


def test_a_command_line_process_emits_to_clients_on_every_worker(stack, watchers):
    """`flask --app wsgi mpesa reconcile` (not a web worker) settles a payment; all see it."""
    order = create_order(stack, 55)
    group = [ws[0] for ws in watchers()]
    for watcher in group:
        assert watcher.subscribe(order)["ok"]
    checkout = start_payment(stack, order)
    # The customer pays but the callback is lost: only STK Query can find out.
    lost = stack.http.post(
        f"{stack.url}/_simulator/api/prompts/{checkout}/lose_callback", timeout=10
    )
    assert lost.status_code == 200, lost.text
    deadline = time.monotonic() + WAIT_S
    while True:  # the payment becomes due for a query PAYMENT_QUERY_AFTER_S (1 s) after start
        report = services.flask_cli(stack.env, "mpesa", "reconcile")
        if "resolved=1" in report or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert "resolved=1" in report, report
    for watcher in group:
        watcher.wait_for(order["id"], order_status="paid", status="completed")

    # and an operator's command re-sends the current snapshot to every worker's clients
    out = services.flask_cli(stack.env, "realtime", "resend", order["id"])
    assert order["number"] in out
    for watcher in group:
        watcher.wait_for(order["id"], count=2, order_status="paid")
        first, again = watcher.matching(order["id"], order_status="paid")
        assert first["version"] == again["version"]


def test_unauthorised_subscribe_is_refused_and_joins_nothing(stack, watchers):
    order, other = create_order(stack, 10), create_order(stack, 20)
    watcher = watchers()[0][0]
    tampered = order["client_token"][:-3] + (
        "abc" if not order["client_token"].endswith("abc") else "xyz"
    )
    for token, code in (
        (other["client_token"], "invalid_token"),
        (tampered, "invalid_token"),
        ("", "missing_token"),
    ):
        ack = watcher.subscribe(order, token=token)
        assert ack == {"ok": False, "error": {"code": code, "message": ack["error"]["message"]}}
    bad = watcher.sio.call("subscribe", "x" * 1000, timeout=WAIT_S)
    assert bad["ok"] is False and bad["error"]["code"] == "invalid_payload"

    start_payment(stack, order)  # an update the refused watcher must not see
    assert watcher.subscribe(other)["ok"]
    start_payment(stack, other)
    watcher.wait_for(other["id"], status="pending")
    assert {u["order_id"] for u in watcher.updates} == {other["id"]}


def test_only_websocket_from_allowed_origins(stack):
    ws_url = stack.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(ws_url, origin="https://evil.example", timeout=10)
    assert refused.value.status_code == 403
    allowed = websocket.create_connection(ws_url, origin=stack.url, timeout=10)
    try:
        assert allowed.recv().startswith("0{")  # engine.io "open" packet
    finally:
        allowed.close()
    # the origin check is for socket handshakes only; plain HTTP from other sites is served
    other_site = stack.http.get(stack.url + "/healthz", headers={"Origin": "https://evil.example"})
    assert other_site.status_code == 200
    # long-polling is off, so no request ever depends on reaching the same worker twice
    polling = stack.http.get(stack.url + "/socket.io/?EIO=4&transport=polling", timeout=10)
    assert polling.status_code == 400
    sio = socketio.Client(reconnection=False, http_session=stack.http)
    with pytest.raises(socketio.exceptions.ConnectionError):
        sio.connect(stack.url, transports=["polling"], wait_timeout=5)


def test_redis_outage_keeps_the_app_working_and_clients_resync(stack, watchers):
    group = [ws[0] for ws in watchers()]
    order = create_order(stack, 77)
    for watcher in group:
        assert watcher.subscribe(order)["ok"]
    checkout = start_payment(stack, order)
    for watcher in group:
        watcher.wait_for(order["id"], status="pending")

    # A hung Redis: requests still answer, each emit waits at most about a second.
    stack.redis.freeze()
    try:
        frozen = stack.http.post(
            stack.url + "/api/orders", json={"amount": 5}, headers=stack.auth, timeout=5
        )
        assert frozen.status_code == 201
    finally:
        stack.redis.thaw()

    stack.redis.stop()
    during = create_order(stack, 66)
    health = stack.http.get(stack.url + "/healthz", timeout=10)
    assert health.status_code == 503 and health.json()["redis"] == "error"
    post_callback(stack, checkout, 0, amount=77)  # stored and applied, emit fails quietly
    stored = stack.http.get(f"{stack.url}/api/orders/{order['id']}", headers=stack.auth, timeout=10)
    assert stored.json()["status"] == "paid"
    assert stack.http.get(f"{stack.url}/api/orders/{during['id']}", headers=stack.auth).ok
    resubscribed = group[0].subscribe(order)
    assert resubscribed["ok"] and resubscribed["status"]["order_status"] == "paid"

    stack.redis.start()  # same port: the workers' listeners reconnect on their own
    # Watchers that never resubscribed get the state they missed: each worker re-sends
    # snapshots to its rooms once its subscription is back.
    for watcher in group:
        watcher.wait_for(order["id"], order_status="paid", status="completed")
    # and emission across workers works again
    after = create_order(stack, 88)
    for watcher in group:
        assert watcher.subscribe(after)["ok"]
    start_payment(stack, after)
    for watcher in group:
        watcher.wait_for(after["id"], status="pending")
    assert stack.http.get(stack.url + "/healthz", timeout=10).status_code == 200
    assert "Traceback" not in stack.server.log()

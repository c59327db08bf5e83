"""Real time across processes: real gunicorn (2 gevent workers), Redis, PostgreSQL.

Socket clients are real python-socketio clients on the websocket transport. Every order
is watched from both workers, so whichever worker handles a request, some watcher gets
the update through Redis from the other one.
"""

from __future__ import annotations

import time

import pytest
import socketio
import websocket

from tests import services
from tests.e2e import (
    WAIT_S,
    Watcher,
    Watchers,
    create_order,
    post_callback,
    running_stack,
    start_payment,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("instance")) as running:
        yield running


@pytest.fixture
def watchers(stack):
    """`watchers(n)`: n watchers connected to each of the two workers."""
    opened = Watchers(stack)
    yield opened.on_both_workers
    opened.close()


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
    stack.simulator.press(checkout, "lose_callback")

    def resolved() -> bool:
        return "resolved=1" in services.flask_cli(stack.env, "mpesa", "reconcile")

    # the payment becomes due for a query PAYMENT_QUERY_AFTER_S (1 s) after start
    services.wait_for(resolved, "a reconcile pass to resolve the payment", WAIT_S, interval=0.5)
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
    # the refusal names the origin, what is allowed and the setting, on one structured line
    refusals = [
        line
        for line in stack.server.wait_log("websocket refused for origin https://evil").splitlines()
        if "websocket refused for origin https://evil.example" in line
    ]
    assert len(refusals) == 1, refusals
    assert " WARNING " in refusals[0]
    assert f"(allowed: {stack.url}, {stack.url.replace('127.0.0.1', 'localhost')})" in refusals[0]
    assert "add it to CORS_ALLOWED_ORIGINS" in refusals[0]
    assert refusals[0].endswith("| event=socket.origin_refused origin=https://evil.example")
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


def test_localhost_and_127_0_0_1_both_open_the_socket_in_simulator_mode(stack):
    """A new user opens either address; both are the app's own pages."""
    ws_url = stack.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    for origin in (stack.url, stack.url.replace("127.0.0.1", "localhost")):
        opened = websocket.create_connection(ws_url, origin=origin, timeout=10)
        try:
            assert opened.recv().startswith("0{")
        finally:
            opened.close()
    assert "websocket refused for origin http://localhost" not in stack.server.log()


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

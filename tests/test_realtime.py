"""Socket.IO protocol in-process: subscribe with snapshot, updates per room, errors, limits."""

import logging
import time

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from paymentapp.extensions import socketio
from paymentapp.models import Order, OrderStatus
from paymentapp.realtime import emit, events
from paymentapp.realtime.message_queue import BATCH, BoundedRedisManager
from paymentapp.security import CLIENT_TOKEN_SALT, make_client_token
from tests import services
from tests.helpers import TEST_SECRET, change, updates


def subscribe(sock, order, token=None):
    payload = {"order_id": order["id"], "token": order["client_token"] if token is None else token}
    return sock.emit("subscribe", payload, callback=True)


def assert_refused(ack, code):
    assert ack["ok"] is False, ack
    assert ack["error"]["code"] == code, ack
    assert ack["error"]["message"]


def test_subscribe_acks_the_same_snapshot_as_the_status_endpoint(client, make_order, socket_client):
    order = make_order(250)
    sock = socket_client()
    ack = subscribe(sock, order)
    assert ack["ok"] is True
    status = client.get(f"/api/orders/{order['id']}/status?token={order['client_token']}")
    assert ack["status"] == status.get_json()
    assert ack["status"]["version"] == 1 and ack["status"]["payment"] is None


def test_updates_reach_their_room_only_with_increasing_versions(db, make_order, socket_client):
    first, second = make_order(100), make_order(200)
    watch_first, watch_second, idle = socket_client(), socket_client(), socket_client()
    assert subscribe(watch_first, first)["ok"] and subscribe(watch_second, second)["ok"]
    watch_first.get_received(), watch_second.get_received(), idle.get_received()

    v2 = change(db, first["id"])
    v3 = change(db, first["id"], status=OrderStatus.CANCELLED)

    got = updates(watch_first)
    assert [u["version"] for u in got] == [v2, v3] == [2, 3]
    assert all(u["order_id"] == first["id"] for u in got)
    assert got[-1]["order_status"] == "cancelled"
    assert set(got[-1]) >= {"order_id", "order_number", "order_status", "version", "updated_at"}
    assert updates(watch_second) == [] and idle.get_received() == []


def test_late_subscriber_gets_the_committed_state(db, make_order, socket_client):
    order = make_order()
    change(db, order["id"])
    change(db, order["id"], status=OrderStatus.PAID)
    ack = subscribe(socket_client(), order)
    assert ack["ok"] and ack["status"]["order_status"] == "paid" and ack["status"]["version"] == 3


def test_snapshot_is_read_after_joining_the_room(db, make_order, socket_client, monkeypatch):
    """An update committed while the client joins is in the ack or in a later event."""
    order = make_order()
    real_join = events.join_room

    def join_then_commit_elsewhere(room):
        real_join(room)
        # another worker commits (and emits) right after we joined, before the read
        change(db, order["id"], status=OrderStatus.PAID)

    monkeypatch.setattr(events, "join_room", join_then_commit_elsewhere)
    ack = subscribe(socket_client(), order)
    assert ack["status"]["version"] == 2 and ack["status"]["order_status"] == "paid"


def test_unsubscribe_stops_updates(db, make_order, socket_client):
    order = make_order()
    sock = socket_client()
    subscribe(sock, order)
    assert sock.emit("unsubscribe", {"order_id": order["id"]}, callback=True) == {"ok": True}
    change(db, order["id"])
    assert updates(sock) == []
    # leaving a room one is not in is fine
    assert sock.emit("unsubscribe", {"order_id": "ord_other"}, callback=True) == {"ok": True}


def test_refused_subscriptions_join_no_room(app, db, make_order, socket_client, monkeypatch):
    order, other = make_order(), make_order()
    sock = socket_client()
    with monkeypatch.context() as patch:
        patch.setattr(TimestampSigner, "get_timestamp", lambda self: int(time.time()) - 3 * 86400)
        expired = URLSafeTimedSerializer(TEST_SECRET, salt=CLIENT_TOKEN_SALT).dumps(order["id"])
    forged = URLSafeTimedSerializer("not-the-secret", salt=CLIENT_TOKEN_SALT).dumps(order["id"])
    oid = order["id"]
    cases = [
        ({"order_id": oid, "token": other["client_token"]}, "invalid_token"),
        ({"order_id": oid, "token": order["client_token"][:-2] + "xx"}, "invalid_token"),
        ({"order_id": oid, "token": forged}, "invalid_token"),
        ({"order_id": oid, "token": expired}, "token_expired"),
        ({"order_id": oid}, "missing_token"),
        ({"order_id": oid, "token": ""}, "missing_token"),
        ({"order_id": oid, "token": 12345}, "invalid_payload"),
        ({"order_id": oid, "token": "t" * 10_000}, "invalid_payload"),
        ({"order_id": "o" * 65, "token": order["client_token"]}, "invalid_payload"),
        ({"order_id": ["x"], "token": order["client_token"]}, "invalid_payload"),
        ({"token": order["client_token"]}, "invalid_payload"),
        ("just a string", "invalid_payload"),
        ([oid, order["client_token"]], "invalid_payload"),
        (None, "invalid_payload"),
    ]
    for payload, code in cases:
        ack = sock.emit("subscribe", payload, callback=True)
        assert_refused(ack, code)
    # a valid signature for an order that does not exist: refused, and the room is left
    ghost = make_client_token("ord_doesnotexist")
    assert_refused(
        sock.emit("subscribe", {"order_id": "ord_doesnotexist", "token": ghost}, callback=True),
        "order_not_found",
    )
    assert_refused(sock.emit("unsubscribe", 42, callback=True), "invalid_payload")
    assert_refused(sock.emit("subscribe", callback=True), "invalid_payload")
    sid = sock.eio_sid and socketio.server.manager.sid_from_eio_sid(sock.eio_sid, "/")
    assert [r for r in socketio.server.rooms(sid) if str(r).startswith("order:")] == []
    change(db, order["id"])
    assert updates(sock) == []
    assert sock.is_connected()


def test_unknown_events_are_refused_and_whoami_names_the_process(socket_client):
    import os

    sock = socket_client()
    assert_refused(sock.emit("hack", {"x": 1}, callback=True), "unknown_event")
    assert sock.emit("whoami", callback=True) == {"ok": True, "pid": os.getpid()}


def test_rooms_per_connection_are_limited(make_order, socket_client, monkeypatch):
    monkeypatch.setattr(events, "MAX_ROOMS_PER_SOCKET", 2)
    a, b, c = make_order(), make_order(), make_order()
    sock = socket_client()
    assert subscribe(sock, a)["ok"] and subscribe(sock, b)["ok"]
    assert_refused(subscribe(sock, c), "too_many_subscriptions")
    assert subscribe(sock, a)["ok"], "re-subscribing to a watched order is not a new room"
    sock.emit("unsubscribe", {"order_id": b["id"]}, callback=True)
    assert subscribe(sock, c)["ok"]
    # the limit is per connection
    assert subscribe(socket_client(), b)["ok"]


def test_rooms_are_indexed_per_connection_and_dropped_on_disconnect(make_order, socket_client):
    """The manager's sid → rooms index (realtime/rooms.py) answers `rooms()` and empties
    a closing connection's rooms without looking through every room; nothing of the
    connection is left behind, and the other connections keep theirs."""
    manager = socketio.server.manager
    a, b = make_order(), make_order()
    first, second = socket_client(), socket_client()
    assert subscribe(first, a)["ok"] and subscribe(first, b)["ok"] and subscribe(second, a)["ok"]
    sid = manager.sid_from_eio_sid(first.eio_sid, "/")
    other = manager.sid_from_eio_sid(second.eio_sid, "/")
    assert sorted(map(str, socketio.server.rooms(sid))) == sorted(
        [sid, f"order:{a['id']}", f"order:{b['id']}"]
    )
    first.emit("unsubscribe", {"order_id": b["id"]}, callback=True)
    assert f"order:{b['id']}" not in manager.rooms["/"]  # an emptied room is gone
    first.disconnect()
    assert all(sid not in members for members in manager.rooms["/"].values())
    assert ("/", sid) not in manager._rooms_of
    assert set(manager.rooms["/"][f"order:{a['id']}"]) == {other}
    assert sorted(map(str, socketio.server.rooms(other))) == sorted([other, f"order:{a['id']}"])


def test_event_rate_is_limited_and_a_flooding_client_is_dropped(socket_client, monkeypatch):
    monkeypatch.setattr(events, "DISCONNECT_AFTER_REFUSED", 30)
    sock = socket_client()
    acks = [sock.emit("whoami", callback=True) for _ in range(events.EVENT_BURST)]
    assert all(ack["ok"] for ack in acks)
    refused = []
    while sock.is_connected() and len(refused) < 200:
        ack = sock.emit("whoami", callback=True)
        if ack and not ack["ok"]:
            refused.append(ack["error"]["code"])
    assert refused and set(refused) == {"rate_limited"}
    assert not sock.is_connected()
    # another connection is not affected
    assert socket_client().emit("whoami", callback=True)["ok"]


def test_handlers_are_live_in_every_app_of_the_process(database_url, make_order):
    """Flask-SocketIO only re-attaches handlers registered before its first init_app."""
    from paymentapp import create_app
    from tests.helpers import base_env

    order = make_order()
    again = create_app(
        {"TESTING": True, "SOCKETIO_ASYNC_MODE": "threading"}, env=base_env(database_url)
    )
    sock = socketio.test_client(again)
    try:
        assert subscribe(sock, order)["ok"]
    finally:
        sock.disconnect()


@pytest.fixture
def dead_redis(app_env):
    """Point the app at a Redis that is not there (before `app` is built)."""
    url = f"redis://127.0.0.1:{services.free_port()}/0"
    app_env["REDIS_URL"] = url
    return url


def test_a_failing_emit_never_fails_the_request(dead_redis, client, auth, db, caplog):
    caplog.set_level(logging.ERROR)
    response = client.post("/api/orders", json={"amount": 10}, headers=auth)
    assert response.status_code == 201
    order_id = response.get_json()["id"]
    assert change(db, order_id) == 2  # a service's emit after commit: logged, not raised
    assert db.session.get(Order, order_id).version == 2
    assert "cannot publish to Redis" in caplog.text


@pytest.fixture
def live_redis(app_env):
    """The real Redis, on a channel of this test's own (before `app` is built)."""
    import uuid

    app_env["REDIS_URL"] = services.require_redis()
    app_env["SOCKETIO_CHANNEL"] = f"test-{uuid.uuid4().hex}"
    return app_env


def test_cli_commands_publish_through_a_write_only_emitter(live_redis, app, make_order, db):
    import json

    import click
    import redis

    order = make_order()
    change(db, order["id"], status=OrderStatus.CANCELLED)
    assert emit.current_emitter() is socketio
    with click.Context(click.Command("any")):
        emitter = emit.current_emitter()
        assert isinstance(emitter, BoundedRedisManager) and emitter.write_only

    listener = redis.Redis.from_url(live_redis["REDIS_URL"]).pubsub(ignore_subscribe_messages=True)
    listener.subscribe(live_redis["SOCKETIO_CHANNEL"])
    try:
        result = app.test_cli_runner().invoke(args=["realtime", "resend", order["id"]])
        assert result.exit_code == 0, result.output
        messages = []

        def published() -> bool:
            message = listener.get_message(timeout=1)
            if message:
                messages.append(json.loads(message["data"]))
            return bool(messages)

        services.wait_for(published, "a message on the Redis channel")
    finally:
        listener.close()
    # one publish carries both emits (the order's room and the admin dashboards)
    assert messages[0]["method"] == BATCH
    to_room, to_admins = messages[0]["messages"]
    assert to_room["event"] == to_admins["event"] == "payment_update"
    assert to_room["room"] == f"order:{order['id']}" and to_room["namespace"] == "/"
    assert to_admins["namespace"] == "/admin" and to_admins["room"] is None
    assert to_room["data"] == [emit_snapshot(db, order["id"])]
    assert to_room["data"][0]["version"] == 2


def emit_snapshot(db, order_id):
    from paymentapp.orders.schemas import status_snapshot

    db.session.expire_all()
    return status_snapshot(db.session.get(Order, order_id))


def test_resend_command_needs_redis_and_a_real_order(app, make_order):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["realtime", "resend", make_order()["id"]])
    assert result.exit_code != 0 and "REDIS_URL is not set" in result.output


def test_first_subscribe_waits_until_the_worker_listens_to_redis(
    live_redis, app, make_order, socket_client, monkeypatch, request
):
    """Until a fresh worker has subscribed to Redis, other workers' updates pass it by."""
    real_client = BoundedRedisManager._listener_client

    def slow_listener_client(self):
        time.sleep(0.5)  # a slow Redis at the worker's first connection
        return real_client(self)

    monkeypatch.setattr(BoundedRedisManager, "_listener_client", slow_listener_client)
    request.addfinalizer(lambda: manager.close())
    # Flask-SocketIO's test client refuses message queues outright; its fake transport
    # works with one all the same, which is what this test needs.
    monkeypatch.setattr("flask_socketio.test_client.PubSubManager", type("NoQueue", (), {}))
    manager = socketio.server.manager
    order = make_order()
    sock = socket_client()
    assert subscribe(sock, order)["ok"]
    assert manager.listening.is_set()

    # an update published by another process reaches this process's room
    other_process = BoundedRedisManager(
        live_redis["REDIS_URL"], live_redis["SOCKETIO_CHANNEL"], write_only=True
    )
    other_process.emit(
        "payment_update",
        {"order_id": order["id"], "version": 9},
        to=emit.order_room(order["id"]),
        namespace="/",
    )
    got = services.wait_for(
        lambda: updates(sock), "the update from the other process", interval=0.02
    )
    assert got == [{"order_id": order["id"], "version": 9}]


def test_subscribe_with_a_non_ascii_id_and_a_real_token_is_refused(make_order, socket_client):
    """This was once an `internal_error` ack (compare_digest on non-ASCII text)."""
    order = make_order()
    sock = socket_client()
    ack = sock.emit("subscribe", {"order_id": "é", "token": order["client_token"]}, callback=True)
    assert_refused(ack, "invalid_token")
    ack = sock.emit("subscribe", {"order_id": "\ud800", "token": "x"}, callback=True)
    assert_refused(ack, "invalid_payload")


def test_extra_event_arguments_are_ignored_not_an_internal_error(make_order, socket_client):
    """Found by the fuzz: `emit("subscribe", payload, "x")` was a TypeError."""
    order = make_order()
    sock = socket_client()
    payload = {"order_id": order["id"], "token": order["client_token"]}
    ack = sock.emit("subscribe", payload, "x", callback=True)
    assert ack["ok"] is True
    assert sock.emit("unsubscribe", payload, 1, 2, callback=True) == {"ok": True}


def test_a_page_can_ask_whether_its_origin_may_open_the_socket(client, app):
    """`GET /realtime/origin`, which the JS client asks when its socket cannot connect."""
    for origin, allowed in (
        ("http://127.0.0.1:5000", True),  # simulator mode: both local addresses
        ("http://localhost:5000", True),
        ("https://shop.example", False),
    ):
        response = client.get("/realtime/origin", headers={"Origin": origin})
        assert response.get_json() == {
            "origin": origin,
            "allowed": allowed,
            "setting": "CORS_ALLOWED_ORIGINS",
        }
        assert response.headers["Access-Control-Allow-Origin"] == "*"  # any page may ask
        assert response.headers["Cache-Control"] == "no-store"
    # a same-origin GET carries no Origin header: the address the page was opened at
    same_origin = client.get("/realtime/origin", base_url="http://localhost:5000")
    assert same_origin.get_json()["origin"] == "http://localhost:5000"
    assert same_origin.get_json()["allowed"] is True
    assert client.get("/realtime/origin", base_url="http://box.lan:5000").get_json() == {
        "origin": "http://box.lan:5000",
        "allowed": False,
        "setting": "CORS_ALLOWED_ORIGINS",
    }

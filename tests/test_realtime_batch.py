"""`subscribe_many` (a status board, a reconnect's resubscribe) and the configurable
per-connection limits SOCKET_MAX_ROOMS and SOCKET_EVENT_BURST."""

import pytest

from paymentapp.config import ConfigError, load_config
from paymentapp.models import OrderStatus
from paymentapp.realtime import events
from paymentapp.security import make_client_token
from tests.helpers import change, updates


def pairs(*orders) -> list[dict]:
    return [{"order_id": o["id"], "token": o["client_token"]} for o in orders]


def subscribe_many(sock, payload):
    return sock.emit("subscribe_many", payload, callback=True)


def codes(ack) -> list:
    assert ack["ok"] is True, ack
    return [r["status"]["order_id"] if r["ok"] else r["error"]["code"] for r in ack["results"]]


def test_one_call_subscribes_many_orders_with_their_snapshots(
    client, db, make_order, socket_client
):
    orders = [make_order(100 + i) for i in range(20)]
    sock = socket_client()
    ack = subscribe_many(sock, pairs(*orders))
    assert codes(ack) == [o["id"] for o in orders]
    for order, result in zip(orders, ack["results"], strict=True):
        assert result["order_id"] == order["id"]
        status = client.get(f"/api/orders/{order['id']}/status?token={order['client_token']}")
        assert result["status"] == status.get_json()
    sock.get_received()

    change(db, orders[0]["id"])
    change(db, orders[19]["id"], status=OrderStatus.PAID)
    got = updates(sock)
    assert [(u["order_id"], u["version"]) for u in got] == [
        (orders[0]["id"], 2),
        (orders[19]["id"], 2),
    ]


def test_each_order_is_answered_in_the_order_asked(db, make_order, socket_client):
    good, other = make_order(), make_order()
    ghost = "ord_does_not_exist"
    payload = [
        {"order_id": good["id"], "token": good["client_token"]},
        {"order_id": good["id"], "token": other["client_token"]},
        {"order_id": other["id"]},
        "not an object",
        {"order_id": ghost, "token": make_client_token(ghost)},
        {"order_id": other["id"], "token": other["client_token"]},
    ]
    ack = subscribe_many(socket_client(), payload)
    assert codes(ack) == [
        good["id"],
        "invalid_token",
        "missing_token",
        "invalid_payload",
        "order_not_found",
        other["id"],
    ]
    assert [r["order_id"] for r in ack["results"]] == [
        good["id"],
        good["id"],
        other["id"],
        None,
        ghost,
        other["id"],
    ]
    assert all(r["error"]["message"] for r in ack["results"] if not r["ok"])


def test_refused_orders_join_no_room(db, make_order, socket_client):
    order, other = make_order(), make_order()
    sock = socket_client()
    ack = subscribe_many(sock, [{"order_id": order["id"], "token": other["client_token"]}])
    assert codes(ack) == ["invalid_token"]
    change(db, order["id"])
    assert updates(sock) == []


def test_a_payload_that_is_not_a_list_is_refused(socket_client):
    sock = socket_client()
    for payload in ({"order_id": "ord_x", "token": "t"}, "ord_x", None):
        ack = subscribe_many(sock, payload)
        assert ack["ok"] is False and ack["error"]["code"] == "invalid_payload", ack
    assert subscribe_many(sock, []) == {"ok": True, "results": []}


def test_snapshots_are_read_after_every_room_is_joined(db, make_order, socket_client, monkeypatch):
    first, second = make_order(), make_order()
    real_join = events.join_room
    joined = []

    def join_then_commit_elsewhere(room):
        real_join(room)
        joined.append(room)
        if len(joined) == 2:  # another worker commits right after the last join
            change(db, first["id"], status=OrderStatus.PAID)

    monkeypatch.setattr(events, "join_room", join_then_commit_elsewhere)
    ack = subscribe_many(socket_client(), pairs(first, second))
    assert ack["results"][0]["status"]["order_status"] == "paid"
    assert ack["results"][0]["status"]["version"] == 2


def test_resubscribe_after_a_reconnect_catches_up_in_one_call(db, make_order, socket_client):
    orders = [make_order() for _ in range(5)]
    sock = socket_client()
    assert all(r["ok"] for r in subscribe_many(sock, pairs(*orders))["results"])
    sock.disconnect()
    change(db, orders[2]["id"], status=OrderStatus.PAID)  # while the client was away

    sock.connect()
    sock.get_received()
    change(db, orders[1]["id"])
    assert updates(sock) == [], "rooms belong to the connection: none after a reconnect"
    ack = subscribe_many(sock, pairs(*orders))
    versions = {r["status"]["order_id"]: r["status"]["version"] for r in ack["results"]}
    assert versions == {o["id"]: (2 if o in orders[1:3] else 1) for o in orders}
    assert ack["results"][2]["status"]["order_status"] == "paid"


@pytest.mark.parametrize("app_config", [{"SOCKET_MAX_ROOMS": 3}])
def test_the_room_limit_is_configurable_and_counts_single_subscribes(
    make_order, socket_client, app_config
):
    orders = [make_order() for _ in range(5)]
    sock = socket_client()
    first = orders[0]
    assert sock.emit("subscribe", pairs(first)[0], callback=True)["ok"]
    ack = subscribe_many(sock, pairs(*orders))
    assert codes(ack) == [o["id"] for o in orders[:3]] + ["too_many_subscriptions"] * 2
    assert "at most 3 orders" in ack["results"][3]["error"]["message"]
    single = sock.emit("subscribe", pairs(orders[4])[0], callback=True)
    assert single["error"]["code"] == "too_many_subscriptions"


def test_the_defaults_fit_a_status_board(app):
    assert app.config["SOCKET_MAX_ROOMS"] is None and app.config["SOCKET_EVENT_BURST"] is None
    assert events.MAX_ROOMS_PER_SOCKET == 50 and events.EVENT_BURST == 50


@pytest.mark.parametrize("app_config", [{"SOCKET_EVENT_BURST": 6}])
def test_a_batch_counts_one_event_per_order_against_a_configurable_burst(
    make_order, socket_client, app_config, monkeypatch
):
    # No refill while the test runs: on a slow machine the batch itself can take longer
    # than the 200 ms in which one token comes back, and the counts below must be exact.
    monkeypatch.setattr(events, "EVENTS_PER_SECOND", 0)
    orders = [make_order() for _ in range(8)]
    sock = socket_client()
    # More orders than the burst: a fresh connection may still resubscribe all at once.
    assert codes(subscribe_many(sock, pairs(*orders))) == [o["id"] for o in orders]
    refused = sock.emit("whoami", callback=True)
    assert refused["ok"] is False and refused["error"]["code"] == "rate_limited"

    sock = socket_client()
    assert codes(subscribe_many(sock, pairs(*orders[:4]))) == [o["id"] for o in orders[:4]]
    assert sock.emit("whoami", callback=True)["ok"]  # 4 + 1 of 6
    assert sock.emit("whoami", callback=True)["ok"]
    again = subscribe_many(sock, pairs(*orders[:2]))
    assert again["ok"] is False and again["error"]["code"] == "rate_limited"


def test_limits_come_from_the_environment():
    config = load_config({"SOCKET_MAX_ROOMS": "80", "SOCKET_EVENT_BURST": "100"})
    assert config["SOCKET_MAX_ROOMS"] == 80 and config["SOCKET_EVENT_BURST"] == 100
    assert load_config({})["SOCKET_MAX_ROOMS"] is None
    for name, value in (("SOCKET_MAX_ROOMS", "0"), ("SOCKET_EVENT_BURST", "many")):
        with pytest.raises(ConfigError, match=name):
            load_config({name: value})

"""The `/admin` Socket.IO namespace: only live admin sessions connect and listen."""

from __future__ import annotations

import time

import pytest

from paymentapp.admin import events
from paymentapp.admin.auth import SEEN_KEY
from paymentapp.extensions import socketio
from tests.helpers import csrf_from
from tests.services import wait_for

NS = "/admin"


def connect(app, flask_client, **kwargs):
    return socketio.test_client(app, namespace=NS, flask_test_client=flask_client, **kwargs)


def received(sock, name: str) -> list:
    return [m["args"][0] for m in sock.get_received(NS) if m["name"] == name]


def test_anonymous_connection_is_refused(app, client):
    sock = connect(app, client)
    assert not sock.is_connected(NS)


def test_admin_connects_and_hears_about_new_and_changed_orders(
    app, admin_client, client, auth, make_order
):
    sock = connect(app, admin_client)
    assert sock.is_connected(NS)
    anonymous = connect(app, client)
    order = make_order(1234, customer_phone="0712345678")
    created = received(sock, "order_created")
    assert [o["number"] for o in created] == [order["number"]]
    assert created[0]["customer_phone"] == "2547•••••678"  # never the full number
    token = csrf_from(admin_client, f"/admin/orders/{order['id']}")
    admin_client.post(f"/admin/orders/{order['id']}/cancel", data={"csrf_token": token})
    updates = received(sock, "payment_update")
    assert [(u["order_id"], u["order_status"], u["version"]) for u in updates] == [
        (order["id"], "cancelled", 2)
    ]
    assert not anonymous.is_connected(NS)
    sock.disconnect(NS)


def test_idle_session_cannot_connect(app, admin_client):
    with admin_client.session_transaction() as sess:
        sess[SEEN_KEY] = time.time() - app.config["ADMIN_IDLE_TIMEOUT_S"] - 1
    assert not connect(app, admin_client).is_connected(NS)


def test_cross_site_handshake_is_refused(app, admin_client):
    evil = connect(app, admin_client, headers={"Origin": "http://evil.example"})
    assert not evil.is_connected(NS)
    ours = connect(app, admin_client, headers={"Origin": "http://localhost"})
    assert ours.is_connected(NS)
    ours.disconnect(NS)


def test_logout_hangs_up_open_sockets(app, admin_client, monkeypatch):
    monkeypatch.setattr(events, "RECHECK_S", 0.1)
    sock = connect(app, admin_client)
    assert sock.is_connected(NS)
    token = csrf_from(admin_client, "/admin")
    admin_client.post("/admin/logout", data={"csrf_token": token})
    wait_for(lambda: not sock.is_connected(NS), "the socket to be hung up")


@pytest.mark.parametrize("app_config", [{"ADMIN_IDLE_TIMEOUT_S": 2}])
def test_socket_is_hung_up_when_its_session_goes_idle(app, admin_client):
    sock = connect(app, admin_client)
    assert sock.is_connected(NS)
    wait_for(lambda: not sock.is_connected(NS), "the socket to be hung up")


def test_dashboards_are_told_to_refresh_after_a_redis_outage(app, admin_client):
    """Updates published while this worker's Redis link was down never arrived."""
    from paymentapp.extensions import socketio
    from paymentapp.realtime.emit import resend_local_snapshots

    sock = connect(app, admin_client)
    assert sock.is_connected(NS)
    resend_local_snapshots(app, socketio.server.manager)
    assert received(sock, "resync") == [{}]

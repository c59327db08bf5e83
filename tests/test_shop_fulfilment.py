"""The demo shop fulfils only on a verified `order.paid` webhook: the reference integration."""

from __future__ import annotations

import json

from sqlalchemy import select

from paymentapp.models import ShopFulfilment, WebhookEndpoint
from paymentapp.webhooks import signing
from paymentapp.webhooks.delivery import deliver_due
from tests.helpers import assert_error, csrf_in, stk_callback

CALLBACK = "/callbacks/stk/cbtoken-test-0123456789"


def buy(client) -> dict:
    token = csrf_in(client.get("/").get_data(as_text=True))
    response = client.post(
        "/shop/buy",
        data={"product": "tea", "csrf_token": token},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_the_shop_registers_its_endpoint_and_fulfils_on_paid(client, db, live_server):
    order = buy(client)
    [endpoint] = db.session.scalars(select(WebhookEndpoint))
    assert endpoint.url == live_server.url + "/shop/webhooks" and endpoint.events == "order.paid"
    status = client.get(f"/shop/orders/{order['order_id']}/fulfilment?token={order['token']}")
    assert status.get_json() == {"fulfilled": False, "fulfilled_at": None}
    payment = client.post(
        f"/api/orders/{order['order_id']}/payments",
        json={"phone": "0712345678"},
        headers={"X-Order-Token": order["token"]},
    ).get_json()
    from paymentapp.models import Payment

    checkout = db.session.get(Payment, payment["id"]).checkout_request_id
    client.post(CALLBACK, json=stk_callback(checkout, amount=order["amount"]))
    assert deliver_due().succeeded == 1  # over real HTTP to the shop's receiver
    done = client.get(f"/shop/orders/{order['order_id']}/fulfilment?token={order['token']}")
    assert done.get_json()["fulfilled"] is True
    assert buy(client) and len(list(db.session.scalars(select(WebhookEndpoint)))) == 1


def test_a_forged_or_stale_webhook_fulfils_nothing(client, db, live_server):
    order = buy(client)
    endpoint = db.session.scalar(select(WebhookEndpoint))
    body = json.dumps(
        {"id": "evt_x", "type": "order.paid", "data": {"order": {"id": order["order_id"]}}}
    ).encode()
    forged = signing.signature_header(["whsec_guess"], int(__import__("time").time()), body)
    assert_error(
        client.post("/shop/webhooks", data=body, headers={"Paymentapp-Signature": forged}), 403
    )
    stale = signing.signature_header([endpoint.secret], 1_000_000, body)
    assert_error(
        client.post("/shop/webhooks", data=body, headers={"Paymentapp-Signature": stale}), 403
    )
    assert db.session.scalar(select(ShopFulfilment)) is None


def test_a_repeated_order_paid_fulfils_once(client, db, live_server):
    order = buy(client)
    endpoint = db.session.scalar(select(WebhookEndpoint))
    body = json.dumps(
        {
            "id": "evt_y",
            "type": "order.paid",
            "data": {"order": {"id": order["order_id"], "number": order["order_number"]}},
        }
    ).encode()
    header = signing.signature_header([endpoint.secret], int(__import__("time").time()), body)
    answers = [
        client.post(
            "/shop/webhooks", data=body, headers={"Paymentapp-Signature": header}
        ).get_json()["received"]
        for _ in range(2)
    ]
    assert answers == ["fulfilled", "duplicate"]

"""Scoped API keys: a key does only what its scopes allow (403
`insufficient_scope` naming the scope, and nothing changes), a key made without scopes
keeps full access, and one made with --own-orders sees and changes only its own
orders (any other is a 404, as if it did not exist)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from paymentapp.models import Order, WebhookEndpoint
from paymentapp.security import SCOPES, create_api_key
from tests.helpers import assert_error


def key(scopes: str | None = None, own_orders: bool = False) -> dict:
    _, plain = create_api_key("scoped", scopes=scopes, own_orders=own_orders)
    return {"Authorization": f"Bearer {plain}"}


def make_order(client, auth, amount=100) -> dict:
    answer = client.post("/api/orders", json={"amount": amount}, headers=auth)
    assert answer.status_code == 201, answer.get_data(as_text=True)
    return answer.get_json()


# (method, path, body, the scope it needs); {id} is an order of the full key
ROUTES = [
    ("post", "/api/orders", {"amount": 100}, "orders:write"),
    ("get", "/api/orders", None, "orders:read"),
    ("get", "/api/orders/{id}", None, "orders:read"),
    ("post", "/api/orders/{id}/cancel", None, "orders:write"),
    ("get", "/api/orders/{id}/refunds", None, "orders:read"),
    ("post", "/api/orders/{id}/refunds", {"reason": "other"}, "refunds:write"),
    ("get", "/api/webhook-endpoints", None, "webhooks:manage"),
    (
        "post",
        "/api/webhook-endpoints",
        {"url": "http://127.0.0.1:9/hook", "events": ["*"]},
        "webhooks:manage",
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "needs"), ROUTES)
def test_every_route_needs_its_scope(app, client, auth, db, method, path, body, needs):
    order = make_order(client, auth)
    url = path.format(id=order["id"])
    before = (
        db.session.scalar(select(func.count()).select_from(Order)),
        db.session.scalar(select(func.count()).select_from(WebhookEndpoint)),
    )
    others = " ".join(scope for scope in SCOPES if scope != needs)
    refused = getattr(client, method)(url, json=body, headers=key(others))
    error = assert_error(refused, 403, "insufficient_scope")
    assert needs in error["message"]
    db.session.expire_all()
    assert (
        db.session.scalar(select(func.count()).select_from(Order)),
        db.session.scalar(select(func.count()).select_from(WebhookEndpoint)),
    ) == before
    assert db.session.get(Order, order["id"]).status == "pending"  # nothing changed
    allowed = getattr(client, method)(url, json=body, headers=key(needs))
    assert allowed.status_code not in (401, 403), allowed.get_data(as_text=True)


def test_a_key_made_without_scopes_may_do_everything(client, auth):
    order = make_order(client, auth)
    full = key()
    assert client.get(f"/api/orders/{order['id']}", headers=full).status_code == 200
    assert client.get("/api/webhook-endpoints", headers=full).status_code == 200


def test_an_own_orders_key_sees_and_changes_only_its_own(client, auth):
    theirs = make_order(client, auth)
    own = key("orders:write orders:read refunds:write", own_orders=True)
    mine = make_order(client, own)
    listed = client.get("/api/orders", headers=own).get_json()["orders"]
    assert [o["id"] for o in listed] == [mine["id"]]
    assert client.get(f"/api/orders/{mine['id']}", headers=own).status_code == 200
    for method, path in (
        ("get", "/api/orders/{id}"),
        ("post", "/api/orders/{id}/cancel"),
        ("get", "/api/orders/{id}/refunds"),
    ):
        answer = getattr(client, method)(path.format(id=theirs["id"]), headers=own)
        assert_error(answer, 404, "order_not_found")
    answer = client.post(
        f"/api/orders/{theirs['id']}/refunds", json={"reason": "other"}, headers=own
    )
    assert_error(answer, 404, "order_not_found")
    assert client.get(f"/api/orders/{theirs['id']}", headers=auth).get_json()["status"] == "pending"
    assert client.post(f"/api/orders/{mine['id']}/cancel", headers=own).status_code == 200
    # the full key still sees both
    assert len(client.get("/api/orders", headers=auth).get_json()["orders"]) == 2


def test_the_cli_makes_scoped_keys_and_refuses_unknown_scopes(app, client):
    runner = app.test_cli_runner()
    made = runner.invoke(
        args=["apikey", "create", "reporting", "--scopes", "orders:read", "--own-orders"]
    )
    assert made.exit_code == 0, made.output
    assert "orders:read · own orders only" in made.output
    plain = made.output.strip().splitlines()[-1]
    reader = {"Authorization": f"Bearer {plain}"}
    assert client.get("/api/orders", headers=reader).status_code == 200
    assert_error(
        client.post("/api/orders", json={"amount": 5}, headers=reader), 403, "insufficient_scope"
    )
    bad = runner.invoke(args=["apikey", "create", "x", "--scopes", "orders:delete"])
    assert bad.exit_code != 0 and "Unknown scope orders:delete" in bad.output
    listed = runner.invoke(args=["apikey", "list"])
    assert "orders:read · own orders only" in listed.output

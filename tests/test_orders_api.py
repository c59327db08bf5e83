"""Merchant order API: create, read, list, idempotency and every kind of bad input."""

import pytest
from sqlalchemy import func, select

from paymentapp.models import Order
from tests.helpers import assert_error


def count_orders(db) -> int:
    return db.session.scalar(select(func.count()).select_from(Order))


def test_create_order_returns_number_token_and_payment_url(client, auth, db):
    response = client.post(
        "/api/orders",
        json={
            "amount": 1500,
            "description": "2 kg sugar",
            "reference": "cart-9",
            "customer_phone": "0712 345 678",
        },
        headers=auth,
    )
    assert response.status_code == 201
    order = response.get_json()
    assert order["number"].startswith("ORD-") and len(order["number"]) <= 12
    assert order["amount"] == 1500 and order["status"] == "pending" and order["version"] == 1
    assert order["customer_phone"] == "254712345678"
    assert order["payment_url"].endswith(f"/pay/{order['id']}?token={order['client_token']}")
    assert order["created_at"].endswith("Z")
    stored = db.session.get(Order, order["id"])
    assert stored.amount == 1500 and stored.created_at.tzinfo is not None


def test_order_numbers_increase(make_order):
    numbers = [int(make_order()["number"].removeprefix("ORD-")) for _ in range(3)]
    assert numbers == sorted(numbers) and len(set(numbers)) == 3


def test_get_order_with_payments(client, auth, make_order):
    order = make_order(250)
    response = client.get(f"/api/orders/{order['id']}", headers=auth)
    assert response.status_code == 200
    body = response.get_json()
    assert body["number"] == order["number"] and body["payments"] == []
    assert "client_token" not in body


def test_list_orders_paginates_with_cursor_and_filters(client, auth, make_order):
    created = [make_order(100 + i, description=f"item {i}") for i in range(5)]
    seen, cursor = [], None
    while True:
        url = "/api/orders?limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(url, headers=auth).get_json()
        seen += [o["id"] for o in body["orders"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == [o["id"] for o in reversed(created)]
    body = client.get(f"/api/orders?q={created[2]['number']}", headers=auth).get_json()
    assert [o["id"] for o in body["orders"]] == [created[2]["id"]]
    body = client.get("/api/orders?q=item 4", headers=auth).get_json()
    assert [o["id"] for o in body["orders"]] == [created[4]["id"]]
    assert client.get("/api/orders?status=paid", headers=auth).get_json()["orders"] == []
    assert len(client.get("/api/orders?status=pending", headers=auth).get_json()["orders"]) == 5


def test_list_rejects_bad_parameters(client, auth):
    assert_error(client.get("/api/orders?status=nope", headers=auth), 422)
    assert_error(client.get("/api/orders?limit=0", headers=auth), 422)
    assert_error(client.get("/api/orders?limit=abc", headers=auth), 422)
    assert_error(client.get("/api/orders?cursor=%%%", headers=auth), 422)


def test_idempotency_key_same_body_returns_same_order(client, auth, db):
    headers = {**auth, "Idempotency-Key": "checkout-42"}
    first = client.post("/api/orders", json={"amount": 300}, headers=headers)
    second = client.post("/api/orders", json={"amount": 300}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.get_json()["id"] == second.get_json()["id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert count_orders(db) == 1


def test_idempotency_key_with_different_body_conflicts(client, auth, db):
    headers = {**auth, "Idempotency-Key": "checkout-43"}
    assert client.post("/api/orders", json={"amount": 300}, headers=headers).status_code == 201
    response = client.post("/api/orders", json={"amount": 301}, headers=headers)
    assert_error(response, 409, "idempotency_key_reused")
    assert count_orders(db) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"amount": 0}, "amount"),
        ({"amount": -5}, "amount"),
        ({"amount": 250001}, "amount"),
        ({"amount": 1.5}, "amount"),
        ({"amount": "100"}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": None}, "amount"),
        ({}, "amount"),
        ({"amount": 10, "description": "x" * 201}, "description"),
        ({"amount": 10, "description": 5}, "description"),
        ({"amount": 10, "colour": "red"}, "colour"),
        ({"amount": 10, "customer_phone": "020 123 4567"}, "customer_phone"),
        ({"amount": 10, "reference": "r" * 65}, "reference"),
    ],
)
def test_invalid_order_bodies_are_422_and_write_nothing(client, auth, db, body, field):
    error = assert_error(
        client.post("/api/orders", json=body, headers=auth), 422, "validation_error"
    )
    assert field in error["fields"]
    assert count_orders(db) == 0


def test_non_json_and_wrong_content_type(client, auth, db):
    assert_error(
        client.post(
            "/api/orders", data="{not json", headers={**auth, "Content-Type": "application/json"}
        ),
        400,
        "invalid_json",
    )
    assert_error(
        client.post(
            "/api/orders",
            data="amount=5",
            headers={**auth, "Content-Type": "application/x-www-form-urlencoded"},
        ),
        415,
    )
    assert_error(client.post("/api/orders", json=[1, 2], headers=auth), 400, "invalid_json")
    assert count_orders(db) == 0


def test_oversized_body_is_413(client, auth, db):
    body = '{"amount": 10, "description": "' + "x" * 70_000 + '"}'
    response = client.post(
        "/api/orders", data=body, headers={**auth, "Content-Type": "application/json"}
    )
    assert_error(response, 413, "payload_too_large")
    assert count_orders(db) == 0


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ],
)
def test_missing_or_invalid_api_key_is_401(client, db, headers):
    assert_error(client.post("/api/orders", json={"amount": 5}, headers=headers), 401)
    assert_error(client.get("/api/orders", headers=headers), 401)
    assert count_orders(db) == 0


def test_revoked_api_key_is_401(client, auth, api_key, db):
    from paymentapp.models import ApiKey, utcnow

    for key in db.session.scalars(select(ApiKey)):
        key.revoked_at = utcnow()
    db.session.commit()
    assert_error(client.get("/api/orders", headers=auth), 401, "invalid_api_key")


def test_unknown_order_is_404(client, auth):
    assert_error(client.get("/api/orders/ord_doesnotexist", headers=auth), 404, "order_not_found")
    assert_error(client.get("/api/orders/" + "x" * 300, headers=auth), 404)


def test_unknown_route_and_method_are_json(client):
    assert_error(client.get("/api/nothing"), 404, "not_found")
    response = client.delete("/api/orders")
    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


def test_nul_characters_never_reach_the_database(client, auth, make_order, db):
    assert_error(client.get("/api/orders/ord%00x", headers=auth), 400, "invalid_characters")
    assert_error(client.get("/api/orders?q=ORD%00", headers=auth), 400, "invalid_characters")
    response = client.post(
        "/api/orders", json={"amount": 5, "description": "tea\u0000"}, headers=auth
    )
    assert_error(response, 422, "invalid_characters")
    order = make_order()
    response = client.get(f"/api/orders/{order['id']}/status?token=a%00b")
    assert_error(response, 400, "invalid_characters")
    assert count_orders(db) == 1


def test_deeply_nested_bodies_are_refused_without_recursing(client, auth, db):
    """A description nested 400 levels deep was once a RecursionError (500)."""
    nested = "[" * 400 + "]" * 400
    response = client.post(
        "/api/orders",
        data=f'{{"amount": 5, "description": {nested}}}',
        content_type="application/json",
        headers=auth,
    )
    assert_error(response, 400, "invalid_json")
    deeper = "[" * 5000 + "]" * 5000  # deeper than the JSON parser itself can go
    response = client.post(
        "/api/orders", data=deeper, content_type="application/json", headers=auth
    )
    assert_error(response, 400, "invalid_json")
    assert count_orders(db) == 0


@pytest.mark.parametrize("field", ["description", "reference"])
def test_lone_surrogates_are_refused(client, auth, db, field):
    """A lone "\\ud800" in a text field was once a UnicodeEncodeError (500) on PostgreSQL."""
    body = '{"amount": 5, "' + field + '": "tea \\ud800"}'
    response = client.post("/api/orders", data=body, content_type="application/json", headers=auth)
    assert_error(response, 422, "invalid_characters")
    assert count_orders(db) == 0


@pytest.mark.parametrize(
    "cursor",
    [
        "WyIyMDI0LTAxLTAxIiwgIm9yZF94Il0",  # ["2024-01-01", "ord_x"]: a naive time
        "WyIwMDAxLTAxLTAxVDAwOjAwOjAwKzE0OjAwIiwgIngiXQ",  # year 1 at +14:00: overflows
        "WzEsIDJd",  # [1, 2]
        "WyIyMDI0LTAxLTAxVDAwOjAwOjAwWiIsICJcdWQ4MDAiXQ",  # a lone surrogate as the id
        "!!!",
    ],
)
def test_forged_cursors_are_422(client, auth, cursor):
    response = client.get(f"/api/orders?cursor={cursor}", headers=auth)
    assert_error(response, 422, "validation_error")


@pytest.mark.parametrize(
    "path", ["/api/orders/%C3%A9/status", "/api/orders/%C3%A9/payments", "/pay/%C3%A9"]
)
def test_non_ascii_order_id_with_a_real_token_is_refused(client, make_order, path):
    """compare_digest on non-ASCII text once raised TypeError (500)."""
    token = make_order()["client_token"]
    if path.endswith("/payments"):
        response = client.post(path, json={"phone": "0712345678"}, headers={"X-Order-Token": token})
    else:
        response = client.get(f"{path}?token={token}", headers={"Accept": "application/json"})
    assert response.status_code == 403

"""Customer status endpoint, authorised by the order's signed client token."""

import time

from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from paymentapp.security import CLIENT_TOKEN_SALT
from tests.helpers import TEST_SECRET, assert_error


def test_status_with_token_header_and_query(client, make_order):
    order = make_order(700)
    by_query = client.get(f"/api/orders/{order['id']}/status?token={order['client_token']}")
    by_header = client.get(
        f"/api/orders/{order['id']}/status", headers={"X-Order-Token": order["client_token"]}
    )
    assert by_query.status_code == by_header.status_code == 200
    snap = by_query.get_json()
    assert snap == by_header.get_json()
    assert snap["order_id"] == order["id"] and snap["order_number"] == order["number"]
    assert snap["order_status"] == "pending" and snap["version"] == 1
    assert snap["payment"] is None


def test_status_refuses_missing_wrong_tampered_and_expired_tokens(client, make_order, monkeypatch):
    order, other = make_order(), make_order()
    url = f"/api/orders/{order['id']}/status"
    assert_error(client.get(url), 401, "missing_token")
    assert_error(
        client.get(url, headers={"X-Order-Token": other["client_token"]}), 403, "invalid_token"
    )
    assert_error(client.get(url, headers={"X-Order-Token": order["client_token"] + "x"}), 403)
    with monkeypatch.context() as patch:
        patch.setattr(TimestampSigner, "get_timestamp", lambda self: int(time.time()) - 3 * 86400)
        expired = URLSafeTimedSerializer(TEST_SECRET, salt=CLIENT_TOKEN_SALT).dumps(order["id"])
    assert_error(client.get(url, headers={"X-Order-Token": expired}), 401, "token_expired")
    forged = URLSafeTimedSerializer("another-secret", salt=CLIENT_TOKEN_SALT).dumps(order["id"])
    assert_error(client.get(url, headers={"X-Order-Token": forged}), 403)


def test_status_of_unknown_order_with_valid_signature_is_404(client, app):
    from paymentapp.security import make_client_token

    token = make_client_token("ord_missing")
    assert_error(client.get(f"/api/orders/ord_missing/status?token={token}"), 404)

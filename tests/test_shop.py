"""Demo shop, its CSRF-guarded buy endpoint, and the hosted payment page."""

import re

from itsdangerous import TimestampSigner
from sqlalchemy import func, select

from paymentapp.models import ApiKey, Order
from paymentapp.security import make_client_token
from tests.helpers import csrf_in


def csrf_token(client) -> str:
    return csrf_in(client.get("/").get_data(as_text=True))


def buy(client, product="coffee", **headers):
    return client.post(
        "/shop/buy",
        data={"csrf_token": csrf_token(client), "product": product},
        headers={"Accept": "application/json", **headers},
    )


def test_shop_lists_products_and_links_the_simulated_phone(client):
    response = client.get("/")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Nyeri AA coffee" in html and "KES 1,450" in html
    assert 'href="/_simulator/phone"' in html
    assert "pk_" not in html  # no API key ever reaches the browser
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]


def test_shop_hides_the_simulator_link_outside_simulator_mode(app, client):
    app.config["MPESA_ENV"] = "sandbox"
    assert "_simulator" not in client.get("/").get_data(as_text=True)


def test_buy_creates_a_pending_order_with_the_demo_shop_key(client, db):
    first = buy(client, "coffee")
    second = buy(client, "tea")
    assert first.status_code == 201 and second.status_code == 201
    body = first.get_json()
    assert body["amount"] == 1450 and re.fullmatch(r"ORD-\d+", body["order_number"])
    assert body["payment_url"] == f"/pay/{body['order_id']}?token={body['token']}"
    order = db.session.get(Order, body["order_id"])
    assert order.status == "pending" and order.description == "Nyeri AA coffee"
    keys = db.session.scalar(select(func.count()).where(ApiKey.name == "demo-shop"))
    assert keys == 1
    assert order.api_key_id == db.session.get(Order, second.get_json()["order_id"]).api_key_id


def test_buy_without_javascript_redirects_to_the_hosted_dialog(client):
    response = client.post("/shop/buy", data={"csrf_token": csrf_token(client), "product": "kikoy"})
    assert response.status_code == 303
    assert re.fullmatch(r"/pay/ord_[\w-]+\?token=[\w.-]+", response.headers["Location"])


def test_buy_refuses_requests_without_the_session_csrf_token(app, client, db):
    no_token = client.post("/shop/buy", data={"product": "coffee"})
    assert no_token.status_code == 403
    assert no_token.get_json()["error"]["code"] == "csrf_failed"
    # A token from another browser's session does not work either.
    other = app.test_client()
    stolen = csrf_token(other)
    client.get("/")
    forged = client.post("/shop/buy", data={"csrf_token": stolen, "product": "coffee"})
    assert forged.status_code == 403
    assert db.session.scalar(select(func.count()).select_from(Order)) == 0


def test_buy_unknown_product_is_a_404(client):
    response = buy(client, "ugali")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "product_not_found"


def test_hosted_page_embeds_the_status_snapshot(client, make_order):
    order = make_order(2500, description="Fees </script><script>alert(1)</script>")
    response = client.get(f"/pay/{order['id']}?token={order['client_token']}")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert order["number"] in html
    assert '"order_status": "pending"' in html or '"order_status":"pending"' in html
    assert "<script>alert(1)" not in html  # the description is JSON-escaped
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"


def test_hosted_page_errors_are_pages_not_tracebacks(client, make_order, monkeypatch):
    order = make_order(100)
    cases = {
        f"/pay/{order['id']}": (401, "This payment link is not valid"),
        f"/pay/{order['id']}?token=garbage": (403, "This payment link is not valid"),
        f"/pay/{order['id']}?token={make_client_token('ord_other')}": (
            403,
            "This payment link is not valid",
        ),
        f"/pay/ord_missing?token={make_client_token('ord_missing')}": (
            404,
            "We can&#39;t find this order",
        ),
    }
    for url, (status, title) in cases.items():
        response = client.get(url, headers={"Accept": "text/html"})
        assert response.status_code == status, url
        assert response.content_type.startswith("text/html")
        assert title in response.get_data(as_text=True), url

    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: 1_000_000_000)
    old = make_client_token(order["id"])
    monkeypatch.undo()
    expired = client.get(f"/pay/{order['id']}?token={old}")
    assert expired.status_code == 401
    assert "This payment link has expired" in expired.get_data(as_text=True)


def test_dialog_files_load_cross_origin_and_the_api_answers_allowed_origins(
    app, client, make_order
):
    script = client.get("/static/js/pay-dialog.js", headers={"Origin": "https://merchant.example"})
    assert script.status_code == 200
    assert script.headers["Access-Control-Allow-Origin"] == "*"
    script.close()

    order = make_order(100)
    url = f"/api/orders/{order['id']}/payments"
    allowed = app.config["CORS_ALLOWED_ORIGINS"][0]  # by default PUBLIC_BASE_URL's origin
    preflight = client.options(
        url,
        headers={
            "Origin": allowed,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-order-token",
        },
    )
    assert preflight.headers["Access-Control-Allow-Origin"] == allowed
    assert "X-Order-Token" in preflight.headers["Access-Control-Allow-Headers"]
    status = client.get(
        f"/api/orders/{order['id']}/status",
        headers={"Origin": allowed, "X-Order-Token": order["client_token"]},
    )
    assert status.headers["Access-Control-Allow-Origin"] == allowed

    stranger = client.options(url, headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in stranger.headers


def test_buy_is_rate_limited_per_address(client):
    token = csrf_token(client)
    codes = [
        client.post(
            "/shop/buy",
            data={"csrf_token": token, "product": "tea"},
            headers={"Accept": "application/json"},
        ).status_code
        for _ in range(31)
    ]
    assert codes[:30] == [201] * 30
    assert codes[30] == 429

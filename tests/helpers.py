"""Helpers shared by test modules: the test environment, request and Daraja-body builders,
the contract's error shape, the simulator's test API and admin sign-in.

Fixtures live in the `conftest.py` files; polling and real processes in `tests/services.py`;
the end-to-end stack in `tests/e2e.py`.
"""

from __future__ import annotations

import json
import os
import re

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import g
from sqlalchemy import select

from paymentapp.extensions import db as _db
from paymentapp.models import CallbackRecord
from tests.services import NO_DOTENV, wait_for

TEST_SECRET = "test-secret-key"
TEST_CALLBACK_TOKEN = "cbtoken-test-0123456789"

# A complete production configuration (no simulator, no development defaults).
LIVE = {
    "MPESA_ENV": "production",
    "SECRET_KEY": "s" * 32,
    "ENCRYPTION_KEY": "tTvlV1PIOcFKyw9W0BLl8H2bL6iMHm8rIp2a9qXo4lE=",
    "MPESA_CALLBACK_TOKEN": "cb" + "t" * 30,
    "MPESA_CONSUMER_KEY": "ck",
    "MPESA_CONSUMER_SECRET": "cs",
    "MPESA_SHORTCODE": "600000",
    "MPESA_PASSKEY": "pk",
    "PUBLIC_BASE_URL": "https://pay.example.com",
    "DATABASE_URL": "postgresql+psycopg://pay@db.example/pay",
    "REDIS_URL": "redis://cache.example:6379/0",
}


def base_env(database_url: str, **extra) -> dict:
    """The environment a test app is configured from (never the developer's .env)."""
    return {
        "SECRET_KEY": TEST_SECRET,
        "MPESA_CALLBACK_TOKEN": TEST_CALLBACK_TOKEN,
        "DATABASE_URL": database_url,
        "MPESA_ENV": "simulator",
        # every test's client is 127.0.0.1: one address for the whole suite (the limit
        # itself is tested in tests/test_prompt_limits.py)
        "PAYMENT_ADDRESS_RATE_LIMIT": "10000 per minute",
        # the suite's dashboards have one owner, who moves money by hand alone (approvals
        # by a second owner: tests/admin/test_approvals.py)
        "APPROVALS": "off",
        # Redis channels and rate-limit keys of this test process only: runs side by side
        # (the PostgreSQL pass on every core) never hear each other
        "SOCKETIO_CHANNEL": f"paymentapp-test-{os.getpid()}",
        **NO_DOTENV,
        **extra,
    }


# -- the HTTP API ----------------------------------------------------------------------------


def assert_error(response, status: int, code: str | None = None) -> dict:
    """`response` is the contract's error with this status (and code); returns the error."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "fields"}
    assert body["error"]["message"]
    if code:
        assert body["error"]["code"] == code
    return body["error"]


def pay(client, order, phone="0712 345 678", token=None):
    """`POST /api/orders/<id>/payments` as the customer's browser (the order's client token)."""
    return client.post(
        f"/api/orders/{order['id']}/payments",
        json={"phone": phone},
        headers={"X-Order-Token": token or order["client_token"]},
    )


CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_in(html: str) -> str:
    """The CSRF token of the first form in a page."""
    match = CSRF_FIELD.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)


# -- M-Pesa ------------------------------------------------------------------------------------


def stk_callback(
    checkout_id: str,
    result_code=0,
    *,
    amount=100,
    receipt=None,
    phone=254712345678,
    desc=None,
    metadata=True,
) -> dict:
    """A Daraja STK callback body (success carries CallbackMetadata). The receipt is
    derived from the checkout id unless given: one payment, one receipt (a receipt is
    never on two payments), and copies of one callback carry the same one."""
    if receipt is None:
        import hashlib

        receipt = "R" + hashlib.sha1(checkout_id.encode()).hexdigest()[:9].upper()
    callback = {
        "MerchantRequestID": "29115-34620561-1",
        "CheckoutRequestID": checkout_id,
        "ResultCode": result_code,
        "ResultDesc": desc
        or (
            "The service request is processed successfully."
            if result_code in (0, "0")
            else "Request cancelled by user"
        ),
    }
    if metadata and result_code in (0, "0"):
        callback["CallbackMetadata"] = {
            "Item": [
                {"Name": "Amount", "Value": amount},
                {"Name": "MpesaReceiptNumber", "Value": receipt},
                {"Name": "Balance"},
                {"Name": "TransactionDate", "Value": 20191219102115},
                {"Name": "PhoneNumber", "Value": phone},
            ]
        }
    return {"Body": {"stkCallback": callback}}


class Simulator:
    """The simulated Daraja's test API (`/_simulator/api`) of an app served at `url`.

    `http` is `requests` or a `requests.Session` (whose keep-alive connections the
    caller closes).
    """

    def __init__(self, url: str, http=requests):
        self.url = url
        self.http = http

    def prompts(self, **params) -> list[dict]:
        response = self.http.get(f"{self.url}/_simulator/api/prompts", params=params, timeout=10)
        response.raise_for_status()
        return response.json()["prompts"]

    def prompt_for(self, order_number: str) -> dict:
        """The first prompt sent for this order, whatever its state."""
        prompts = self.prompts(account_reference=order_number)
        assert prompts, f"no prompt for {order_number}"
        return prompts[0]

    def open_prompt(self, order_number: str, timeout: float = 30.0) -> dict:
        """The prompt waiting on the phone for this order (waits for it to arrive)."""

        def find():
            prompts = self.prompts(account_reference=order_number)
            return next((p for p in prompts if p["state"] == "open"), None)

        return wait_for(find, f"an open STK prompt for {order_number}", timeout, interval=0.2)

    def press(self, checkout_id: str, action: str) -> dict:
        """Press a button on the phone: accept, cancel, insufficient, lose_callback, …"""
        response = self.http.post(
            f"{self.url}/_simulator/api/prompts/{checkout_id}/{action}", timeout=10
        )
        assert response.status_code == 200, response.text
        return response.json()

    def answer(self, order_number: str, action: str) -> dict:
        """Press a button on this order's open prompt."""
        return self.press(self.open_prompt(order_number)["checkout_request_id"], action)

    def fault(self, endpoint: str, status: int = 500, body=None, delay_s: float = 0) -> None:
        """Make the simulator's next answer on `endpoint` this status and body."""
        response = self.http.post(
            f"{self.url}/_simulator/api/faults",
            json={"endpoint": endpoint, "status": status, "body": body or {}, "delay_s": delay_s},
            timeout=10,
        )
        assert response.status_code == 201


# -- the admin dashboard ---------------------------------------------------------------------

USERNAME = "alice"
PASSWORD = "correct horse battery"


def csrf_from(client, path: str = "/admin/login") -> str:
    """The CSRF token a page hands out (the session cookie it belongs to stays in `client`)."""
    # The `app` fixture keeps one app context for the whole test, so `g` (where Flask-WTF
    # caches the token) outlives requests; a real server starts every request afresh.
    g.pop("csrf_token", None)
    page = client.get(path)
    match = CSRF_FIELD.search(page.get_data(as_text=True))
    assert match, f"no CSRF token on {path} ({page.status_code})"
    return match.group(1)


def login(client, username: str = USERNAME, password: str = PASSWORD, **extra):
    return client.post(
        "/admin/login",
        data={"username": username, "password": password, "csrf_token": csrf_from(client), **extra},
    )


def session_cookie(client) -> str:
    cookie = client.get_cookie("session")
    return cookie.value if cookie else ""


_c2b_ids = iter(range(10**7))


def c2b_confirmation(account: str, amount="1450.00", trans_id: str | None = None, **extra) -> dict:
    """A Daraja C2B confirmation (or validation) body, with the MSISDN masked as Daraja's
    v2 does (docs/daraja.md). Each call gets a fresh TransID unless one is given, and
    `TransTime` is now in East Africa Time unless given."""
    from datetime import UTC, datetime, timedelta

    now_eat = datetime.now(UTC) + timedelta(hours=3)
    return {
        "TransactionType": "Pay Bill",
        "TransID": trans_id or f"RKT{next(_c2b_ids):07d}",
        "TransTime": now_eat.strftime("%Y%m%d%H%M%S"),
        "TransAmount": amount,
        "BusinessShortCode": "600638",
        "BillRefNumber": account,
        "InvoiceNumber": "",
        "OrgAccountBalance": "49197.00",
        "ThirdPartyTransID": "",
        "MSISDN": "2547 ***** 126",
        "FirstName": "John",
        "MiddleName": "",
        "LastName": "",
        **extra,
    }


def assert_paid_once(db) -> None:
    """The money invariant: a paid order's counting payments cover it and it was paid
    exactly once; an unpaid one never was; a receipt is on one payment at most."""
    from sqlalchemy import func, select

    from paymentapp.models import Order, OrderEvent, Payment

    db.session.expire_all()
    for order in db.session.scalars(select(Order)):
        paid_events = db.session.scalar(
            select(func.count())
            .select_from(OrderEvent)
            .where(OrderEvent.order_id == order.id, OrderEvent.kind == "order_paid")
        )
        if order.status == "paid":
            assert order.amount_paid >= order.amount and paid_events == 1, order.number
        else:
            assert paid_events == 0, order.number
    receipts = [r for r in db.session.scalars(select(Payment.receipt)) if r]
    assert len(receipts) == len(set(receipts))


def updates(sock) -> list[dict]:
    """The `payment_update` payloads an in-process Socket.IO test client received."""
    return [e["args"][0] for e in sock.get_received() if e["name"] == "payment_update"]


def change(db, order_id: str, status: str | None = None) -> int:
    """A committed change of an order, then its emit (a test's stand-in for a service)."""
    from paymentapp.models import Order
    from paymentapp.realtime import emit

    order = db.session.get(Order, order_id)
    if status:
        order.status = status
    order.bump_version()
    db.session.commit()
    emit.emit_order_update(order)
    return order.version


# -- /metrics ----------------------------------------------------------------------------------

METRICS_TOKEN = "metrics-token-0123456789abcdef"


def samples(text: str) -> dict[tuple, float]:
    """A scrape as `{(sample name, sorted label pairs without pid): value}`, summed over
    processes (pid labels of multiprocess gauges)."""
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[tuple, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "pid"))
            key = (sample.name, labels)
            found[key] = found.get(key, 0.0) + sample.value
    return found


def value(scraped: dict, name: str, **labels) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


# -- shared by several test modules -----------------------------------------------------------


def fresh_session() -> None:
    """Forget what the test's session read: the test client's requests share it (the
    fixture's app context is theirs too), and a result applied meanwhile by the server's
    thread would otherwise be hidden behind rows read before."""
    _db.session.commit()


class Merchant:
    """The merchant's side of the API, with its key."""

    def __init__(self, client, auth):
        self.client, self.auth = client, auth

    def order(self, order) -> dict:
        fresh_session()
        return self.client.get(f"/api/orders/{order['id']}", headers=self.auth).get_json()

    def refunds(self, order) -> list[dict]:
        fresh_session()
        answer = self.client.get(f"/api/orders/{order['id']}/refunds", headers=self.auth)
        assert answer.status_code == 200
        return answer.get_json()["refunds"]

    def refund(self, order, idempotency_key=None, **body):
        headers = dict(self.auth)
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return self.client.post(f"/api/orders/{order['id']}/refunds", json=body, headers=headers)

    def settled(self, order) -> dict:
        """The order's one refund, once M-Pesa's result has settled it."""
        return wait_for(
            lambda: (r := self.refunds(order)[0])["status"] in ("succeeded", "failed") and r,
            "the refund's result",
        )


def paid_order(api, live_server, make_order, amount=300) -> dict:
    """An order paid on the simulated phone (as `make_order` made it)."""
    order = make_order(amount)
    assert pay(api.client, order).status_code == 202
    prompt = live_server.open_prompt(order["number"])
    live_server.press(prompt["checkout_request_id"], "accept")
    wait_for(lambda: api.order(order)["status"] == "paid", "the order paid")
    return order


def paid(client, auth, live_server, make_order, amount) -> dict:
    """An order paid on the simulated phone; the merchant API's view of it."""
    order = make_order(amount)
    assert pay(client, order).status_code == 202
    live_server.press(live_server.open_prompt(order["number"])["checkout_request_id"], "accept")
    wait_for(
        lambda: (
            fresh_session()
            or client.get(f"/api/orders/{order['id']}", headers=auth).get_json()["status"] == "paid"
        ),
        "the order paid",
    )
    return client.get(f"/api/orders/{order['id']}", headers=auth).get_json()


def pay_by_paybill(client, account: str, amount, trans_id: str | None = None) -> dict:
    """A Daraja C2B confirmation posted to the app (through the test client); its body."""
    body = c2b_confirmation(account, str(amount), trans_id)
    response = client.post(
        f"/callbacks/c2b/confirmation/{TEST_CALLBACK_TOKEN}",
        data=json.dumps(body),
        content_type="application/json",
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return body


def unmatched_record(db) -> CallbackRecord:
    """The first Paybill confirmation stored (fresh from the database)."""
    db.session.expire_all()
    return db.session.scalar(
        select(CallbackRecord).where(CallbackRecord.kind == "c2b").order_by(CallbackRecord.id)
    )


def html_of(admin_client, path: str) -> str:
    """A dashboard page's HTML (it must answer 200)."""
    response = admin_client.get(path)
    assert response.status_code == 200, path
    return response.get_data(as_text=True)


def post_form(admin_client, path: str, data: dict, page: str, **kwargs):
    """Post a dashboard form with the CSRF token `page` hands out."""
    token = csrf_from(admin_client, page)
    return admin_client.post(path, data={"csrf_token": token, **data}, **kwargs)


def lost_paybill_payment(live_server, order: dict, amount: int, copies: int = 0) -> str:
    """A Paybill payment to the order whose confirmation is lost (copies=0); its receipt."""
    answer = live_server.http.post(
        f"{live_server.url}/_simulator/api/c2b/pay",
        json={"account": order["number"], "amount": amount, "copies": copies},
        timeout=10,
    )
    assert answer.status_code == 202, answer.text
    trans_id = answer.json()["payment"]["trans_id"]
    wait_for(
        lambda: live_server.http.get(
            f"{live_server.url}/_simulator/api/c2b", params={"trans_id": trans_id}, timeout=10
        ).json()["payments"][0]["confirmation_status"],
        "the simulator to finish the payment",
    )
    return trans_id


def key_pair():
    """A fresh RSA key and its public key in PEM (an initiator certificate's stand-in)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, public_pem


def register_endpoint(client, auth, url, **fields) -> dict:
    """A webhook endpoint registered through the merchant API; its JSON (with the secret)."""
    response = client.post("/api/webhook-endpoints", json={"url": url, **fields}, headers=auth)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def decode_qr(png: bytes) -> str:
    """The text a QR code image holds, read as a phone's camera would (zxing-cpp)."""
    import io

    import zxingcpp
    from PIL import Image

    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)).convert("L"))
    assert len(found) == 1, f"{len(found)} codes in the image"
    return found[0].text

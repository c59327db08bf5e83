"""paymentapp's benchmark setup in sandbox mode, as a merchant runs it: a strict fake Daraja
(MPESA_BASE_URL points at it) and, with `--seed api`, the orders and STK pushes made
through the app's HTTP API before the measured part (`POST /api/orders` with an API key,
then `POST /api/orders/<id>/payments {phone}` with the order's client token).

The fake answers OAuth and STK Push with Daraja's checks and error codes (the same ones
paymentapp's built-in simulator applies; docs/daraja.md) and never posts a callback: the
load generator posts the success callbacks, which is what the benchmark measures.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import requests

CONSUMER_KEY, CONSUMER_SECRET = "bench-consumer-key", "bench-consumer-secret"
SHORTCODE = "174379"
PASSKEY = "bench-passkey-0123456789abcdef"
PUBLIC_BASE_URL = "https://pay.bench.example"  # https, as sandbox mode requires; never called
SEED_THREADS = 8
PHONE = re.compile(r"^254\d{9}$")
TIMESTAMP = re.compile(r"^\d{14}$")
INVALID = "400.002.02"


def sandbox_env(daraja_url: str) -> dict:
    """What paymentapp needs in sandbox mode (on top of the database, Redis and secrets)."""
    return {
        "MPESA_ENV": "sandbox",
        "MPESA_BASE_URL": daraja_url,
        "MPESA_CONSUMER_KEY": CONSUMER_KEY,
        "MPESA_CONSUMER_SECRET": CONSUMER_SECRET,
        "MPESA_SHORTCODE": SHORTCODE,
        "MPESA_PASSKEY": PASSKEY,
        "ENCRYPTION_KEY": base64.urlsafe_b64encode(b"bench-encryption-key-0123456789a").decode(),
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        # every push of the setup comes from the bench's one address
        "PAYMENT_ADDRESS_RATE_LIMIT": "1000000 per minute",
    }


def push_problem(body: dict) -> tuple[str, str] | None:
    """Daraja's checks of an STK Push, in Daraja's words; None when acceptable."""
    timestamp = str(body.get("Timestamp", ""))
    password = base64.b64encode(f"{SHORTCODE}{PASSKEY}{timestamp}".encode()).decode()
    amount = body.get("Amount")
    checks = [
        (str(body.get("BusinessShortCode")) == SHORTCODE, "Invalid BusinessShortCode"),
        (TIMESTAMP.match(timestamp), "Invalid Timestamp"),
        (body.get("Password") == password, "Wrong credentials"),
        (
            body.get("TransactionType") in ("CustomerPayBillOnline", "CustomerBuyGoodsOnline"),
            "Invalid TransactionType",
        ),
        (
            isinstance(amount, int) and not isinstance(amount, bool) and amount >= 1,
            "Invalid Amount",
        ),
        (PHONE.match(str(body.get("PartyA", ""))), "Invalid PartyA"),
        (PHONE.match(str(body.get("PhoneNumber", ""))), "Invalid PhoneNumber"),
        (str(body.get("PartyB")) == SHORTCODE, "Invalid PartyB"),
        (
            str(body.get("CallBackURL", "")).startswith(f"{PUBLIC_BASE_URL}/callbacks/stk/"),
            "Invalid CallBackURL",
        ),
        (1 <= len(str(body.get("AccountReference") or "")) <= 12, "Invalid AccountReference"),
        (1 <= len(str(body.get("TransactionDesc") or "")) <= 13, "Invalid TransactionDesc"),
    ]
    for ok, message in checks:
        if not ok:
            if message == "Wrong credentials":
                return "500.001.1001", message
            return INVALID, f"Bad Request - {message}"
    return None


class FakeDaraja(ThreadingHTTPServer):
    """OAuth and STK Push on 127.0.0.1, in a thread of the bench. `pushes` maps the phone
    of each accepted push to its CheckoutRequestID; a phone with an open prompt is
    refused, as Daraja locks a subscriber (no prompt is ever answered here)."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.token = ""
        self.calls = 0  # every request, so a run can tell whether the app called Daraja
        self.pushes: dict[str, str] = {}
        self.lock = threading.Lock()
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> FakeDaraja:
        threading.Thread(target=self.serve_forever, name="fake-daraja", daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Daraja's front end
    server: FakeDaraja

    def log_message(self, format, *args):  # quiet: the bench prints its own lines
        pass

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: str, message: str) -> None:
        self._answer(
            status, {"requestId": secrets.token_hex(6), "errorCode": code, "errorMessage": message}
        )

    def do_GET(self):
        self.server.calls += 1
        url = urlsplit(self.path)
        if url.path != "/oauth/v1/generate":
            return self._error(404, "404.001.01", "Resource not found")
        if parse_qs(url.query).get("grant_type") != ["client_credentials"]:
            return self._error(400, "400.008.02", "Invalid grant type passed")
        basic = base64.b64encode(f"{CONSUMER_KEY}:{CONSUMER_SECRET}".encode()).decode()
        if self.headers.get("Authorization") != f"Basic {basic}":
            return self._error(400, "400.008.01", "Invalid Authentication passed")
        with self.server.lock:  # a new token invalidates the previous one, as Daraja's
            self.server.token = secrets.token_urlsafe(24)
            token = self.server.token
        self._answer(200, {"access_token": token, "expires_in": "3599"})

    def do_POST(self):
        self.server.calls += 1
        body_bytes = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/mpesa/stkpush/v1/processrequest":
            return self._error(404, "404.001.01", "Resource not found")
        if self.headers.get("Authorization") != f"Bearer {self.server.token}":
            return self._error(401, "404.001.03", "Invalid Access Token")
        try:
            body = json.loads(body_bytes)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return self._error(400, INVALID, "Bad Request - Invalid JSON")
        if problem := push_problem(body):
            return self._error(500 if problem[0].startswith("500") else 400, *problem)
        with self.server.lock:
            if body["PhoneNumber"] in self.server.pushes:
                return self._error(
                    500,
                    "500.001.1001",
                    "Unable to lock subscriber, a transaction is already in process for "
                    "the current subscriber",
                )
            checkout_id = f"ws_CO_{secrets.randbelow(10**18):018d}"
            self.server.pushes[body["PhoneNumber"]] = checkout_id
        accepted = "Success. Request accepted for processing"
        self._answer(
            200,
            {
                "MerchantRequestID": f"{secrets.randbelow(10**5)}-{secrets.randbelow(10**8)}-1",
                "CheckoutRequestID": checkout_id,
                "ResponseCode": "0",
                "ResponseDescription": accepted,
                "CustomerMessage": accepted,
            },
        )


def seed_through_api(base_url: str, api_key: str, daraja: FakeDaraja, count: int) -> list[dict]:
    """`count` orders, each with one STK push to its own phone, through the app's API
    (SEED_THREADS at a time); what the load generator needs per order."""
    local = threading.local()

    def one(i: int) -> dict:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        session = local.session
        amount = 10 + i % 90
        made = session.post(
            f"{base_url}/api/orders",
            json={"amount": amount, "description": "bench"},
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=30,
        )
        if made.status_code != 201:
            raise RuntimeError(f"POST /api/orders: {made.status_code} {made.text[:300]}")
        order = made.json()
        phone = f"25471{i:07d}"  # one subscriber per order: Daraja locks a phone's prompt
        pushed = session.post(
            f"{base_url}/api/orders/{order['id']}/payments",
            json={"phone": phone},
            headers={"X-Order-Token": order["client_token"]},
            timeout=30,
        )
        if pushed.status_code != 202:
            raise RuntimeError(f"POST …/payments: {pushed.status_code} {pushed.text[:300]}")
        return {
            "order_id": order["id"],
            "token": order["client_token"],
            "amount": amount,
            "phone": phone,
        }

    with ThreadPoolExecutor(SEED_THREADS) as pool:
        orders = list(pool.map(one, range(count)))
    for order in orders:
        order["checkout_id"] = daraja.pushes[order["phone"]]
    return orders

"""Fuzz the production shape: no 5xx, no bypass, no leak.

Starts gunicorn (2 gevent workers) on a fresh PostgreSQL database with Redis and the
built-in simulator as Daraja, seeds orders and real STK prompts, then sends N mutated
requests (deterministic from --seed) to the callback, order, payment, status and hosted
pages, plus Socket.IO subscribe/unsubscribe events. Afterwards it checks, straight from
PostgreSQL and the gunicorn log: zero 5xx, no socket `internal_error` ack, the money
invariant, and that no configured secret ever reached the log.

    .venv/bin/python bench/fuzz.py --requests 10000 --seed 1 [--json PATH]

The mutations are a pure function of the seed and the request index; which real
checkout id a "known id" callback targets depends on the state of the run.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import random
import re
import secrets
import shutil
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import requests
import socketio

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests import services  # noqa: E402

CALLBACK = "POST /callbacks/stk/<token>"
ORDERS_CREATE = "POST /api/orders"
ORDERS_LIST = "GET /api/orders"
ORDER_SHOW = "GET /api/orders/<id>"
ORDER_STATUS = "GET /api/orders/<id>/status"
PAYMENT_CREATE = "POST /api/orders/<id>/payments"
PAY_PAGE = "GET /pay/<id>"
ENDPOINTS = [
    (CALLBACK, 40),
    (ORDERS_CREATE, 14),
    (ORDERS_LIST, 10),
    (ORDER_SHOW, 8),
    (ORDER_STATUS, 10),
    (PAYMENT_CREATE, 10),
    (PAY_PAGE, 8),
]
# 502s the contract documents for `POST /api/orders/<id>/payments` (Daraja's own refusal).
DOCUMENTED_502 = {"mpesa_refused", "mpesa_busy", "mpesa_unavailable", "mpesa_error", "phone_busy"}
SEED_ORDERS = 30
SEED_PAYMENTS = 20
SEED_ACCEPT = 4
SEED_CANCEL = 3
EVENTS_PER_SOCKET = 15  # under the server's burst of 20 events per connection
SOCKET_SHARE = 0.075  # ~750 socket events per 10,000 requests
HTTP_TIMEOUT = (5, 30)


# -- JSON that json.dumps will not write -----------------------------------------------------


class Raw(str):
    """A JSON fragment sent verbatim: -0, 1e400, NaN literals, nesting, broken syntax."""


class Pairs(list):
    """An object written with repeated keys, e.g. two ResultCode members."""


def dump(value) -> str:
    """JSON text; lone surrogates become `\\ud800` escapes (ensure_ascii)."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, Pairs):
        return "{" + ",".join(f"{json.dumps(k)}:{dump(v)}" for k, v in value) + "}"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dump(v) for v in value) + "]"
    return json.dumps(value)


def nested(depth: int, closed: bool = True) -> Raw:
    """`[[[…]]]`: parsers that recurse per level must refuse it, not crash."""
    return Raw("[" * depth + ("]" * depth if closed else ""))


WEIRD = [
    None, True, False, "", " ", "x", "null", [], {}, [1, 2], {"Value": 1}, [[[]]],
    0, 1, -1, 2**31, 2**63, 10**12, 10**30, -(10**30), 3_000_000_000,
    0.5, 1.5, -0.0, 1e308, -1e308, 1e-308,
    Raw("1e400"), Raw("-1e400"), Raw("-0"), Raw("Infinity"), Raw("-Infinity"), Raw("NaN"),
    Raw("1E2"), Raw("0.000"),
    "Infinity", "-Infinity", "NaN", "-0", "00", "\uff10", "\uff11\uff15\uff10\uff10", "1,500",
    "1_500", " 100 ", "1e3", "0x10", "+1", "--1", "\u0663",
    "\ud800", "\udfff", "a\ud800b", "\x00", "a\x00b", "\u202e", "\u00e9" * 70, "x" * 300,
    "\U0001f600", 20191219102115, "20191219102115", 99999999999999, "99991399999999",
]  # fmt: skip


def weird(rng: random.Random):
    """A value of the wrong type, size or spelling for any field."""
    roll = rng.random()
    if roll < 0.03:
        return nested(rng.choice([50, 400]))
    if roll < 0.05:
        return {"a": {"b": [rng.choice(WEIRD)]}}
    return rng.choice(WEIRD)


def short(value) -> str:
    """A value as a reproduction shows it (Python repr for text, JSON otherwise)."""
    plain = isinstance(value, str | bytes) and not isinstance(value, Raw)
    text = repr(value) if plain else dump(value)
    return text if len(text) <= 40 else f"{text[:30]}…({len(text)} chars)"


# -- URL pieces --------------------------------------------------------------------------------


def enc(value: str | bytes) -> str:
    """Percent-encode one path segment or query value (surrogates as their UTF-8 bytes)."""
    raw = value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")
    return quote(raw, safe="")


def query(params: list[tuple[str, str | bytes]]) -> str:
    """A query string built by hand, so repeated and undecodable values survive."""
    return "&".join(f"{enc(k)}={enc(v)}" for k, v in params)


WEIRD_IDS = [
    "\u00e9", "\u00e9" * 20, "x" * 33, "x" * 64, "x" * 300, "x" * 3000, "\ud800", "ord_\ud800",
    b"\xff", b"\xc3", "\x00", "ord_\x00", " ", "null", "..", "ord_" + "a" * 28, "\u0661\u0662",
    "ORD-1001", "\u202eord", "ord_\U0001f600", "%", "ord_x?y", "'; select 1; --",
]  # fmt: skip


LIST_PARAMS = {
    "status": ["paid", "pending", "cancelled", "PAID", "", "x", "\ud800", "\u00e9", "paid\x00"],
    "q": ["ORD-1", "%", "_", "\\", "ref-1", "x" * 101, "\ud800", "\u00e9", "'", "\x00", b"\xff"],
    "limit": ["0", "1", "100", "101", "-1", "1e3", "\uff15", "9" * 30, "", " 5", "5.0", "nan"],
}  # fmt: skip


@dataclass
class Req:
    endpoint: str
    method: str
    path: str  # percent-encoded; the real callback token in place
    headers: dict = field(default_factory=dict)
    body: bytes | None = None
    label: list[str] = field(default_factory=list)


@dataclass
class SeedOrder:
    id: str
    number: str
    amount: int
    token: str


class State:
    """What the fuzzer knows about the running app: seeded orders and real checkout ids."""

    def __init__(self, url: str, callback_token: str, api_key: str, database_url: str):
        self.url = url
        self.callback_token = callback_token
        self.api_key = api_key
        self.database_url = database_url
        self.orders: list[SeedOrder] = []
        self.known: list[tuple[str, int]] = []  # (CheckoutRequestID, amount), every payment
        self.pending: list[tuple[str, int]] = []  # the ones still pending

    def refresh_checkouts(self) -> None:
        """Re-read real checkout ids (payments started during the fuzz count too)."""
        import psycopg

        with psycopg.connect(pg_dsn(self.database_url)) as conn:
            rows = conn.execute(
                "SELECT checkout_request_id, amount, status FROM payments "
                "WHERE checkout_request_id IS NOT NULL ORDER BY created_at, id"
            ).fetchall()
        known = [(r[0], r[1]) for r in rows]
        pending = [(r[0], r[1]) for r in rows if r[2] == "pending"]
        self.known, self.pending = known or self.known, pending

    def redact(self, text: str) -> str:
        """Reproductions name secrets instead of printing them."""
        text = text.replace(self.callback_token, "<token>").replace(self.api_key, "<api-key>")
        for order in self.orders:
            text = text.replace(order.token, f"<client-token {order.number}>")
        return text


def pg_dsn(url: str) -> str:
    """psycopg wants a plain `postgresql://` URL, SQLAlchemy the `+psycopg` one."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


# -- generators ----------------------------------------------------------------------------------


class Generator:
    """Builds request `i` from `Random(f"{seed}:{i}")` and the seeded state."""

    def __init__(self, seed: int, state: State):
        self.seed = seed
        self.state = state
        self.endpoints = [name for name, _ in ENDPOINTS]
        self.weights = [weight for _, weight in ENDPOINTS]

    def request(self, index: int) -> Req:
        rng = random.Random(f"{self.seed}:{index}")
        endpoint = rng.choices(self.endpoints, self.weights)[0]
        build = {
            CALLBACK: self.callback,
            ORDERS_CREATE: self.order_create,
            ORDERS_LIST: self.orders_list,
            ORDER_SHOW: self.by_id,
            ORDER_STATUS: self.by_id,
            PAYMENT_CREATE: self.payment_create,
            PAY_PAGE: self.by_id,
        }[endpoint]
        return build(rng, endpoint)

    # -- callbacks ---------------------------------------------------------------------------

    def _checkout(self, rng: random.Random, req: Req) -> tuple[object, int]:
        roll = rng.random()
        pool = self.state.pending if roll < 0.5 and self.state.pending else self.state.known
        if roll < 0.75 and pool:
            checkout, amount = pool[rng.randrange(1 << 30) % len(pool)]
            req.label.append("known id" + (" (pending)" if pool is self.state.pending else ""))
            return checkout, amount
        if roll < 0.95:
            req.label.append("unknown id")
            return f"ws_CO_{rng.randrange(10**20):020d}", rng.randint(1, 5000)
        value = weird(rng)
        req.label.append(f"CheckoutRequestID={short(value)}")
        return value, rng.randint(1, 5000)

    def callback(self, rng: random.Random, endpoint: str) -> Req:
        req = Req(endpoint, "POST", "", {"Content-Type": "application/json"})
        token = self.state.callback_token
        if rng.random() < 0.05:
            token, note = rng.choice(
                [
                    (token + "x", "token+x"),
                    (token[:-1], "token[:-1]"),
                    (token.upper(), "TOKEN"),
                    ("\u00e9", "token=é"),
                    ("\ud800", "token=\\ud800"),
                    (token + "\u00e9", "token+é"),
                    ("", "empty token"),
                ]
            )
            req.label.append(note)
        req.path = "/callbacks/stk/" + enc(token)
        checkout, amount = self._checkout(rng, req)
        roll = rng.random()
        if roll < 0.12:
            req.body = self._callback_bytes(rng, req, checkout, amount)
        else:
            doc = self._callback_doc(rng, req, checkout, amount)
            req.body = dump(doc).encode()
        if rng.random() < 0.04:
            req.headers["Content-Type"] = rng.choice(
                [
                    "text/plain",
                    "application/x-www-form-urlencoded",
                    "application/json; charset=latin-1",
                ]
            )
            req.label.append(f"Content-Type: {req.headers['Content-Type']}")
        elif rng.random() < 0.02:
            del req.headers["Content-Type"]
            req.label.append("no Content-Type")
        return req

    def _callback_bytes(self, rng: random.Random, req: Req, checkout, amount: int) -> bytes:
        choice = rng.randrange(13)
        req.label.append(f"raw body #{choice}")
        if choice == 9:  # stored as lossy UTF-8, so the money check could not read it back
            checkout = f"ws_CO_utf16_{rng.randrange(10**12)}"
        valid = dump(base_callback(checkout, 0, amount, rng)).encode()
        return [
            nested(2000, closed=False).encode(),
            nested(2000).encode(),
            ('{"Body":' * 2000).encode(),
            ('{"Body":{"stkCallback":' + "[" * 3000 + "]" * 3000 + "}}").encode(),
            b"not json",
            b"",
            b"\xff\xfe\x00{",
            b'{"Body": {"stkCallback": {"CheckoutRequestID": "\xed\xa0\x80", "ResultCode": 0}}}',
            b"\xef\xbb\xbf" + valid,
            valid.decode().encode("utf-16"),
            valid + b"garbage",
            valid[: len(valid) // 2],
            b'{"Body": {"stkCallback": {"x": "' + b"y" * 17000 + b'"}}}',
        ][choice]

    def _callback_doc(self, rng: random.Random, req: Req, checkout, amount: int):
        result_code = rng.choice([0, 0, 0, 0, 0, 1032, 1, 2001, 1037, 17])
        doc = base_callback(checkout, result_code, amount, rng)
        req.label.append(f"ResultCode={result_code}")
        for _ in range(rng.choice([0, 1, 1, 1, 2, 2, 3])):
            doc = self._mutate_callback(rng, req, doc, amount)
        return doc

    def _mutate_callback(self, rng: random.Random, req: Req, doc, amount: int):
        callback = _get(doc, "Body", "stkCallback")
        items = _get(callback, "CallbackMetadata", "Item")
        op = rng.randrange(100)
        if op < 22 and isinstance(callback, dict):
            key = rng.choice(
                ["MerchantRequestID", "CheckoutRequestID", "ResultCode", "ResultDesc"]
                + ["CallbackMetadata"]
            )
            callback[key] = weird(rng)
            req.label.append(f"{key}={short(callback[key])}")
        elif op < 30 and isinstance(callback, dict):
            callback["ResultCode"] = rng.choice(
                [0, "0", "-0", "00", "\uff10", 0.0, Raw("-0"), Raw("0e0"), "0 ", False, 10**12]
            )
            req.label.append(f"ResultCode={short(callback['ResultCode'])}")
        elif op < 48 and isinstance(items, list):
            value = rng.choice(
                [amount, amount * 1.0, amount + 1, amount - 1, str(amount), f"{amount}.00",
                 amount + 0.5, -amount, 0, None, -1, -1e308, 1e308, 3_000_000_000,
                 "Infinity", "abc", "1,500", "", Raw("NaN"), weird(rng)]
            )  # fmt: skip
            _set_item(items, "Amount", value)
            req.label.append(f"Amount={short(value)}")
        elif op < 58 and isinstance(items, list):
            name = rng.choice(["MpesaReceiptNumber", "TransactionDate", "PhoneNumber", "Balance"])
            value = rng.choice([weird(rng), Raw("Infinity"), 10**30, "\ud800", -1])
            _set_item(items, name, value)
            req.label.append(f"{name}={short(value)}")
        elif op < 70:
            where, key = _drop_random(rng, doc)
            req.label.append(f"drop {where}{key}")
        elif op < 76:
            target = rng.choice([doc, callback, _get(callback, "CallbackMetadata")])
            if isinstance(target, dict):
                target[rng.choice(["extra", "Amount", "body", "\u00e9", "\ud800"])] = weird(rng)
                req.label.append("extra key")
        elif (
            op < 82
            and isinstance(callback, dict)
            and isinstance(callback.get("CallbackMetadata"), dict)
        ):
            shape = rng.choice(
                [{}, "x", None, [1, "x", None], [{"Name": 1, "Value": 2}], [{"Name": None}]]
            )
            callback["CallbackMetadata"]["Item"] = shape
            req.label.append(f"Item={short(shape)}")
        elif op < 88 and isinstance(doc, dict):
            if rng.random() < 0.5:
                doc["Body"] = rng.choice([None, "x", [], 1, {}, [callback]])
                req.label.append(f"Body={short(doc['Body'])}")
            elif isinstance(doc.get("Body"), dict):
                doc["Body"]["stkCallback"] = rng.choice([[], None, "x", 1, [callback]])
                req.label.append(f"stkCallback={short(doc['Body']['stkCallback'])}")
        elif op < 92:
            doc = rng.choice([[], "x", None, 1, [doc]])
            req.label.append(f"document={short(doc)}")
        elif op < 96 and isinstance(callback, dict):
            pairs = Pairs(list(callback.items()))
            pairs.append(("ResultCode", rng.choice([0, 1032, "x", None])))
            doc = {"Body": {"stkCallback": pairs}}
            req.label.append("duplicate ResultCode key")
        elif isinstance(callback, dict):
            callback["ResultDesc"] = rng.choice(["\ud800", "\x00", "x" * 5000, "\u00e9" * 300])
            req.label.append(f"ResultDesc={short(callback['ResultDesc'])}")
        return doc

    # -- merchant API ------------------------------------------------------------------------

    def _auth(self, rng: random.Random, req: Req) -> None:
        roll = rng.random()
        if roll < 0.88:
            req.headers["Authorization"] = f"Bearer {self.state.api_key}"
            return
        value = rng.choice(
            [
                None,
                "Bearer ",
                "Bearer pk_wrong",
                "Basic dXNlcjpwdw==",
                f"bearer {self.state.api_key}",
                f"Bearer  {self.state.api_key} ",
                f"Bearer {self.state.api_key}x",
                "Bearer " + "\u00e9".encode().decode("latin-1"),
            ]
        )
        if value is not None:
            req.headers["Authorization"] = value.encode("latin-1")
        req.label.append("auth: " + self.state.redact(repr(value)))

    def order_create(self, rng: random.Random, endpoint: str) -> Req:
        req = Req(endpoint, "POST", "/api/orders", {"Content-Type": "application/json"})
        self._auth(rng, req)
        doc: dict = {"amount": rng.randint(1, 250_000)}
        for name, value in (
            ("description", f"fuzz order {rng.randrange(10**6)}"),
            ("reference", f"ref-{rng.randrange(10**6)}"),
            ("customer_phone", f"07{rng.randrange(10**8):08d}"),
        ):
            if rng.random() < 0.5:
                doc[name] = value
        for _ in range(rng.choice([0, 1, 1, 2, 3])):
            op = rng.randrange(100)
            name = rng.choice(["amount", "description", "reference", "customer_phone"])
            if op < 45:
                doc[name] = weird(rng)
                req.label.append(f"{name}={short(doc[name])}")
            elif op < 60:
                doc["amount"] = rng.choice(
                    [0, 250_001, 1.0, "100", True, 10**30, 1e308, -5, Raw("1e400"), Raw("-0")]
                )
                req.label.append(f"amount={short(doc['amount'])}")
            elif op < 72:
                field_name = rng.choice(["description", "reference"])
                doc[field_name] = rng.choice(
                    [
                        nested(400),
                        nested(400, closed=False),
                        "\ud800",
                        "a\udfffb",
                        "x" * 201,
                        "x" * 65,
                    ]
                )
                req.label.append(f"{field_name}={short(doc[field_name])}")
            elif op < 78:
                doc[rng.choice(["extra", "id", "status", "\ud800"])] = weird(rng)
                req.label.append("unknown field")
            elif op < 84:
                doc.pop(name, None)
                req.label.append(f"drop {name}")
            elif op < 90:
                doc = rng.choice([[], "x", None, 1, [doc], nested(400)])
                req.label.append(f"document={short(doc)}")
                break
            elif op < 94:
                req.headers["Idempotency-Key"] = rng.choice(
                    ["k1", "k2", "x" * 129, "a\tb", "caf\u00e9".encode().decode("latin-1")]
                ).encode("latin-1")
                req.label.append(f"Idempotency-Key={req.headers['Idempotency-Key'][:20]!r}")
            else:
                req.headers["Content-Type"] = rng.choice(["text/plain", "application/jsonx", ""])
                req.label.append(f"Content-Type={req.headers['Content-Type']!r}")
        if rng.random() < 0.03:
            req.body = rng.choice([b"{", b"\xff\xfe", b'{"amount": 1' + b" " * 70000 + b"}"])
            req.label.append(f"raw body {req.body[:12]!r}")
        else:
            req.body = dump(doc).encode()
        if rng.random() < 0.1 and "Idempotency-Key" not in req.headers:
            req.headers["Idempotency-Key"] = f"fuzz-{rng.randrange(20)}"
            req.label.append(f"Idempotency-Key={req.headers['Idempotency-Key']}")
        return req

    def orders_list(self, rng: random.Random, endpoint: str) -> Req:
        req = Req(endpoint, "GET", "/api/orders")
        self._auth(rng, req)
        params: list[tuple[str, str | bytes]] = []
        for name, values in LIST_PARAMS.items():
            if rng.random() < 0.4:
                params.append((name, rng.choice(values)))
        if rng.random() < 0.6:
            params.append(("cursor", self._cursor(rng)))
        if rng.random() < 0.1 and params:
            params.append(rng.choice(params))
        req.path += "?" + query(params) if params else ""
        req.label.append(self.state.redact(query(params))[:120])
        return req

    def _cursor(self, rng: random.Random) -> str | bytes:
        def b64(raw: bytes) -> str:
            return base64.urlsafe_b64encode(raw).decode().rstrip("=")

        doc = rng.choice(
            [
                ["2024-01-01", "ord_x"],
                ["0001-01-01T00:00:00+14:00", "x"],
                ["9999-12-31T23:59:59-14:00", "x"],
                ["2024-01-01T00:00:00+00:00", ["nested"]],
                ["2024-01-01T00:00:00+00:00", "\ud800"],
                ["2024-01-01T00:00:00+00:00"],
                [None, None],
                [1, 2],
                {"a": 1},
                "x",
                ["2024-13-45", "x"],
                ["\uff12\uff10\uff12\uff14-01-01", "x"],
            ]
        )
        roll = rng.random()
        if roll < 0.6:
            return b64(dump(doc).encode())
        if roll < 0.8:
            return b64(bytes(rng.randrange(256) for _ in range(rng.randint(0, 40))))
        return rng.choice(["!!!", "=", "a", "\x00", b"\xff", "x" * 2000, b64(nested(500).encode())])

    # -- customer endpoints ------------------------------------------------------------------

    def _id_and_token(self, rng: random.Random, req: Req) -> tuple[str | bytes, str | None]:
        orders = self.state.orders
        order = orders[rng.randrange(len(orders))]
        other = orders[rng.randrange(len(orders))]
        roll = rng.random()
        if roll < 0.3:
            order_id, token, note = order.id, order.token, f"id+token of {order.number}"
        elif roll < 0.55:
            order_id = rng.choice(WEIRD_IDS)
            token, note = order.token, f"weird id {short(order_id)} + valid token of {order.number}"
        elif roll < 0.65:
            order_id, token = order.id, other.token
            note = f"id of {order.number} + token of {other.number}"
        elif roll < 0.75:
            order_id = order.id + rng.choice(["x", "\u00e9", "/", "%", "\ud800"])
            token, note = order.token, f"id of {order.number}+suffix + its token"
        else:
            order_id = rng.choice([order.id, *WEIRD_IDS])
            token = rng.choice(
                [
                    None,
                    "",
                    "x",
                    order.token[:-2] + "xx",
                    order.token + ".x",
                    "x" * 600,
                    "\u00e9",
                    "\ud800",
                    order.token.replace(".", "\u00e9"),
                    "eyJ4IjoxfQ.x.y",
                ]
            )
            note = f"id {short(order_id)} + token {short(token)}"
        req.label.append(self.state.redact(note))
        return order_id, token

    def _place_token(self, rng: random.Random, req: Req, token: str | None) -> None:
        if token is None:
            return
        roll = rng.random()
        if roll < 0.55:
            try:
                req.headers["X-Order-Token"] = token.encode("latin-1")
                return
            except UnicodeEncodeError:
                pass
        sep = "&" if "?" in req.path else "?"
        req.path += f"{sep}token={enc(token)}"
        if roll > 0.9 and self.state.orders:
            req.headers["X-Order-Token"] = self.state.orders[0].token

    def by_id(self, rng: random.Random, endpoint: str) -> Req:
        order_id, token = self._id_and_token(rng, req := Req(endpoint, "GET", ""))
        segment = enc(order_id)
        if endpoint == ORDER_SHOW:
            req.path = f"/api/orders/{segment}"
            self._auth(rng, req)
            if rng.random() < 0.3:
                self._place_token(rng, req, token)
        elif endpoint == ORDER_STATUS:
            req.path = f"/api/orders/{segment}/status"
            self._place_token(rng, req, token)
        else:
            req.path = f"/pay/{segment}"
            sep = "?"
            if token is not None:
                req.path += f"?token={enc(token)}"
                sep = "&"
            if rng.random() < 0.5:
                req.headers["Accept"] = "text/html"
            if rng.random() < 0.05:
                req.path += f"{sep}token=x"
        return req

    def payment_create(self, rng: random.Random, endpoint: str) -> Req:
        req = Req(endpoint, "POST", "", {"Content-Type": "application/json"})
        order_id, token = self._id_and_token(rng, req)
        req.path = f"/api/orders/{enc(order_id)}/payments"
        self._place_token(rng, req, token)
        phone = rng.choice(
            [
                f"07{rng.randrange(10**8):08d}",
                f"+254 7{rng.randrange(10**8):08d}",
                f"2541{rng.choice('01')}{rng.randrange(10**7):07d}",
                "0712 345 678",
                weird(rng),
            ]
        )
        doc = {"phone": phone}
        roll = rng.random()
        if roll < 0.08:
            doc["extra"] = 1
            req.label.append("extra field")
        elif roll < 0.14:
            doc = rng.choice(
                [[], "x", None, nested(400), Pairs([("phone", "0712345678"), ("phone", [])])]
            )
            req.label.append(f"document={short(doc)}")
        req.label.append(f"phone={short(phone)}")
        req.body = dump(doc).encode()
        return req


def base_callback(checkout, result_code: int, amount: int, rng: random.Random) -> dict:
    """A real-format Daraja STK callback (docs/daraja.md); metadata only on success."""
    callback = {
        "MerchantRequestID": f"{rng.randrange(10**5)}-{rng.randrange(10**8)}-1",
        "CheckoutRequestID": checkout,
        "ResultCode": result_code,
        "ResultDesc": "The service request is processed successfully."
        if result_code == 0
        else "Request cancelled by user",
    }
    if result_code == 0:
        callback["CallbackMetadata"] = {
            "Item": [
                {"Name": "Amount", "Value": amount * 1.0},
                {"Name": "MpesaReceiptNumber", "Value": f"FZ{rng.randrange(36**8):08X}"[:10]},
                {"Name": "Balance"},
                {"Name": "TransactionDate", "Value": 20250101120000 + rng.randrange(5000)},
                {"Name": "PhoneNumber", "Value": 254700000000 + rng.randrange(10**8)},
            ]
        }
    return {"Body": {"stkCallback": callback}}


def _get(value, *keys):
    """`value[k1][k2]…`, or None as soon as something is not an object."""
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _set_item(items: list, name: str, value) -> None:
    for item in items:
        if isinstance(item, dict) and item.get("Name") == name:
            item["Value"] = value
            return
    items.append({"Name": name, "Value": value})


def _drop_random(rng: random.Random, doc) -> tuple[str, str]:
    """Delete one key (or metadata item) somewhere in the document."""
    spots = []

    def walk(value, where: str) -> None:
        if isinstance(value, dict):
            for key, child in value.items():
                spots.append((value, key, where))
                walk(child, f"{where}{key}.")
        elif isinstance(value, list):
            for child in value:
                walk(child, where)

    walk(doc, "")
    if not spots:
        return "", "nothing"
    container, key, where = spots[rng.randrange(len(spots))]
    del container[key]
    return where, str(key)


# -- sending -----------------------------------------------------------------------------------


@dataclass
class Outcome:
    req: Req
    status: int | str
    body: bytes = b""


def has_error_shape(body: bytes) -> bool:
    """The contract's `{"error": {"code": …}}`, the only acceptable error body."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError, RecursionError):
        return False
    return isinstance(error, dict) and isinstance(error.get("code"), str)


class HttpFuzzer:
    """Sends the generated requests from a bounded thread pool, one session per thread."""

    def __init__(self, state: State, generator: Generator, concurrency: int, deadline: float):
        self.state = state
        self.generator = generator
        self.concurrency = concurrency
        self.deadline = deadline
        self.local = threading.local()
        self.sessions: list[requests.Session] = []
        self.lock = threading.Lock()
        self.outcomes: list[Outcome] = []

    def _session(self) -> requests.Session:
        session = getattr(self.local, "session", None)
        if session is None:
            session = self.local.session = requests.Session()
            with self.lock:
                self.sessions.append(session)
        return session

    def send(self, index: int) -> None:
        if time.monotonic() > self.deadline:
            return
        req = self.generator.request(index)
        try:
            response = self._session().request(
                req.method,
                self.state.url + req.path,
                headers=req.headers,
                data=req.body,
                timeout=HTTP_TIMEOUT,
                allow_redirects=False,
            )
            outcome = Outcome(req, response.status_code, response.content)
        except requests.RequestException as exc:
            outcome = Outcome(req, f"ERR {exc.__class__.__name__}")
        except Exception as exc:  # the client refused to send it: a generator bug, counted
            outcome = Outcome(req, f"CLIENT {exc.__class__.__name__}")
        with self.lock:
            self.outcomes.append(outcome)

    def run(self, count: int) -> None:
        stop = threading.Event()

        def refresher():
            while not stop.wait(2.0):
                try:
                    self.state.refresh_checkouts()
                except Exception as exc:  # a failed refresh keeps the old pool
                    print(f"fuzz: checkout refresh failed: {exc}", file=sys.stderr)

        thread = threading.Thread(target=refresher, name="fuzz-refresh", daemon=True)
        thread.start()
        try:
            with ThreadPoolExecutor(self.concurrency, thread_name_prefix="fuzz") as pool:
                for _ in pool.map(self.send, range(count)):
                    pass
        finally:
            stop.set()
            thread.join(10)
            for session in self.sessions:
                session.close()


# -- sockets -----------------------------------------------------------------------------------


class SocketFuzzer:
    """Mutated subscribe/unsubscribe events over real websocket connections."""

    def __init__(self, state: State, seed: int, deadline: float):
        self.state = state
        self.seed = seed
        self.deadline = deadline
        self.acks: Counter = Counter()
        self.internal: Counter = Counter()
        self.connections = 0
        self.lock = threading.Lock()

    def event(self, index: int) -> tuple[str, object, str]:
        rng = random.Random(f"{self.seed}:socket:{index}")
        orders = self.state.orders
        order, other = rng.choice(orders), rng.choice(orders)
        name = rng.choices(["subscribe", "unsubscribe", "other"], [65, 25, 10])[0]
        if name == "other":
            name = rng.choice(["foo", "", "subscribe ", "SUBSCRIBE", "payment_update", "\u00e9"])
        roll = rng.random()
        if roll < 0.2:
            payload, note = {"order_id": order.id, "token": order.token}, "valid"
        elif roll < 0.4:
            order_id = rng.choice(
                ["\u00e9", "\u00e9" * 10, "\ud800", "ord_\x00", "x" * 64, "\u0661"]
            )
            payload = {"order_id": order_id, "token": order.token}
            note = f"order_id={short(order_id)} + valid token of {order.number}"
        elif roll < 0.5:
            payload = {"order_id": order.id, "token": other.token}
            note = f"id of {order.number} + token of {other.number}"
        elif roll < 0.7:
            payload = {
                "order_id": rng.choice([order.id, weird(rng)]),
                "token": rng.choice([order.token, weird(rng)]),
            }
            note = f"order_id={short(payload['order_id'])} token={short(payload['token'])}"
        elif roll < 0.8:
            payload = rng.choice([None, "x", 1, [], [order.id, order.token], True, 1e308])
            note = f"payload={short(payload)}"
        elif roll < 0.88:
            payload = ({"order_id": order.id, "token": order.token}, rng.choice(["x", None, {}]))
            note = "two arguments"
        elif roll < 0.94:
            payload = {"order_id": order.id, "token": order.token, "extra": weird(rng)}
            note = "extra key"
        else:
            depth = rng.choice([50, 300])
            deep: object = order.id
            for _ in range(depth):
                deep = [deep]
            payload = {"order_id": deep, "token": order.token}
            note = f"order_id nested {depth} deep"
        if isinstance(payload, dict):
            payload = {k: (str(v) if isinstance(v, Raw) else v) for k, v in payload.items()}
        return name, payload, self.state.redact(note)

    def _record(self, key: str, repro: str | None = None) -> None:
        with self.lock:
            self.acks[key] += 1
            if repro:
                self.internal[repro] += 1

    def run_range(self, start: int, stop: int) -> None:
        index = start
        while index < stop and time.monotonic() < self.deadline:
            client = socketio.Client(reconnection=False)
            try:
                client.connect(self.state.url, transports=["websocket"], wait_timeout=10)
            except Exception as exc:  # a refused connection is a finding too
                self._record(f"connect failed: {exc.__class__.__name__}")
                index += 1
                continue
            with self.lock:
                self.connections += 1
            try:
                for _ in range(EVENTS_PER_SOCKET):
                    if index >= stop or not client.connected:
                        break
                    name, payload, note = self.event(index)
                    index += 1
                    self._call(client, name, payload, note)
            finally:
                client.disconnect()

    def _call(self, client: socketio.Client, name: str, payload, note: str) -> None:
        try:
            ack = client.call(name, payload, timeout=10)
        except socketio.exceptions.TimeoutError:
            self._record("no ack (timeout)")
            return
        except Exception as exc:  # the client could not even send it
            self._record(f"not sent: {exc.__class__.__name__}")
            return
        if isinstance(ack, dict) and ack.get("ok") is True:
            self._record("ok")
        elif isinstance(ack, dict) and isinstance(ack.get("error"), dict):
            code = str(ack["error"].get("code"))
            self._record(code, f"{name} {note}" if code == "internal_error" else None)
        else:
            self._record(f"odd ack: {short(ack)}")

    def run(self, count: int, threads: int = 2) -> None:
        bounds = [(count * k // threads, count * (k + 1) // threads) for k in range(threads)]
        with ThreadPoolExecutor(threads, thread_name_prefix="fuzz-socket") as pool:
            for _ in pool.map(lambda b: self.run_range(*b), bounds):
                pass


# -- the stack ---------------------------------------------------------------------------------


class Stack:
    """Fresh database, migrations, an API key, and gunicorn (workers, Redis, simulator)."""

    def __init__(self, workers: int, redis_db: int, log_path: Path | None, keep_db: bool = False):
        self.workers = workers
        self.keep_db = keep_db
        self.redis_url = re.sub(r"/\d*$", f"/{redis_db}", services.REDIS_URL)
        self.log_path = log_path
        self.database_url: str | None = None
        self.server: services.Gunicorn | None = None
        self.instance = Path(tempfile.mkdtemp(prefix="paymentapp-fuzz-"))
        self.channel = f"fuzz-{uuid.uuid4().hex}"
        self.callback_token = "fuzzcb" + secrets.token_hex(16)
        self.secret_key = "fuzzsk" + secrets.token_hex(16)
        self.api_key = ""
        self.env: dict = {}

    def start(self) -> Stack:
        services.require_redis(self.redis_url)
        self.database_url = services.create_pg_database()
        port = services.free_port()
        self.env = {
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "SOCKETIO_CHANNEL": self.channel,
            "SECRET_KEY": self.secret_key,
            "MPESA_ENV": "simulator",
            "MPESA_CALLBACK_TOKEN": self.callback_token,
            "PAYMENTAPP_INSTANCE_PATH": str(self.instance),
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            # seeded prompts stay open for the whole run, so known-id callbacks find them
            "MPESA_SIMULATOR_PROMPT_TTL_S": "3600",
            "LOG_LEVEL": "INFO",
            # idle keep-alive sockets would hold a worker for the whole graceful timeout
            "GUNICORN_CMD_ARGS": "--graceful-timeout 2",
        }
        services.flask_cli(self.env, "db", "upgrade")
        out = services.flask_cli(self.env, "apikey", "create", "fuzz")
        self.api_key = out.strip().splitlines()[-1]
        self.server = services.Gunicorn(self.env, workers=self.workers, port=port)
        if self.log_path is not None:
            self.server.log_path = self.log_path
        self.server.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.server.log_path.unlink(missing_ok=True)
        self.server.start()
        return self

    @property
    def url(self) -> str:
        return self.server.url

    def stop_server(self) -> None:
        if self.server is not None:
            self.server.stop()

    def cleanup(self) -> None:
        """Stop gunicorn, drop the database, delete only this run's Redis keys."""
        self.stop_server()
        if self.database_url and self.keep_db:
            print(f"fuzz: database kept for inspection: {self.database_url}", file=sys.stderr)
        elif self.database_url:
            services.drop_pg_database(self.database_url)
        try:
            import redis

            client = redis.Redis.from_url(self.redis_url, socket_timeout=5)
            with client:
                keys = list(client.scan_iter(match=f"*{self.channel}*"))
                if self.server is not None:
                    keys += list(client.scan_iter(match="paymentapp:daraja-token:*"))
                    keys = [k for k in keys if self._ours(k)]
                if keys:
                    client.delete(*keys)
        except Exception as exc:  # cleanup is best effort; the keys expire anyway
            print(f"fuzz: Redis cleanup skipped: {exc}", file=sys.stderr)
        shutil.rmtree(self.instance, ignore_errors=True)

    def _ours(self, key: bytes) -> bool:
        """Our channel's keys, and the Daraja token cached for our simulator's URL."""
        import hashlib

        if self.channel.encode() in key:
            return True
        base = f"{self.server.url}/_simulator"
        fingerprint = hashlib.sha256(f"{base}|simulator-consumer-key".encode()).hexdigest()[:16]
        return key.decode(errors="replace").startswith(f"paymentapp:daraja-token:{fingerprint}")


def seed_state(stack: Stack, seed: int) -> State:
    """~30 orders through the API, real STK prompts on 20, a few answered by the phone."""
    rng = random.Random(f"{seed}:seed")
    state = State(stack.url, stack.callback_token, stack.api_key, stack.database_url)
    auth = {"Authorization": f"Bearer {stack.api_key}"}
    with requests.Session() as http:
        for k in range(SEED_ORDERS):
            amount = rng.randint(10, 5000)
            response = http.post(
                f"{stack.url}/api/orders",
                json={"amount": amount, "description": f"fuzz seed {k}", "reference": f"seed-{k}"},
                headers=auth,
                timeout=HTTP_TIMEOUT,
            )
            if response.status_code != 201:
                raise RuntimeError(
                    f"seeding an order failed: {response.status_code} {response.text}"
                )
            body = response.json()
            state.orders.append(SeedOrder(body["id"], body["number"], amount, body["client_token"]))
        prompts = []
        for k, order in enumerate(state.orders[:SEED_PAYMENTS]):
            response = http.post(
                f"{stack.url}/api/orders/{order.id}/payments",
                json={"phone": f"07{10_000_000 + k * 7919 + rng.randrange(1000):08d}"},
                headers={"X-Order-Token": order.token},
                timeout=HTTP_TIMEOUT,
            )
            if response.status_code != 202:
                print(
                    f"fuzz: seeding payment {order.number}: {response.status_code}", file=sys.stderr
                )
                continue
            found = http.get(
                f"{stack.url}/_simulator/api/prompts",
                params={"account_reference": order.number},
                timeout=HTTP_TIMEOUT,
            ).json()["prompts"]
            if found:
                prompts.append((order, found[0]["checkout_request_id"]))
        for k, (_order, checkout) in enumerate(prompts[: SEED_ACCEPT + SEED_CANCEL]):
            action = "accept" if k < SEED_ACCEPT else "cancel"
            http.post(f"{stack.url}/_simulator/api/prompts/{checkout}/{action}", timeout=10)
        deadline = time.monotonic() + 15
        for order, _checkout in prompts[:SEED_ACCEPT]:
            while time.monotonic() < deadline:
                status = http.get(
                    f"{stack.url}/api/orders/{order.id}/status",
                    headers={"X-Order-Token": order.token},
                    timeout=HTTP_TIMEOUT,
                ).json()
                if status.get("order_status") == "paid":
                    break
                time.sleep(0.1)
    state.refresh_checkouts()
    return state


# -- checks ------------------------------------------------------------------------------------


_DECIMAL = re.compile(r"\s*\d+(\.\d+)?\s*", re.ASCII)


def said_amount(value) -> int | None:
    """The whole positive amount a callback's `Amount` states (a number or "1500.00"), or None."""
    # What a callback says, not how strictly the app should parse it: "1,500", "１５００",
    # "Infinity", bools and fractions state no amount.
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value <= 0 or not float(value).is_integer():
        return None
    return int(value)


def strict_success_amounts(body: str, checkout: str | None) -> set[int]:
    """Amounts a stored body stated in a success (ResultCode exactly 0 or "0"),
    for the prompt `checkout` (None: any prompt)."""
    try:
        data = json.loads(body.removeprefix("\ufeff"))  # the app reads bytes: a BOM is fine
    except (ValueError, RecursionError):
        return set()
    callback = _get(data, "Body", "stkCallback")
    if not isinstance(callback, dict):
        return set()
    given = callback.get("CheckoutRequestID")
    if not isinstance(given, str):
        return set()
    # a payment with no checkout id of its own (a second receipt for a completed prompt
    # is its own payment) is backed by the callbacks recorded against it
    if checkout is not None and given.strip() != checkout.strip():
        return set()
    code = callback.get("ResultCode")
    if not ((type(code) is int and code == 0) or code == "0"):
        return set()
    items = _get(callback, "CallbackMetadata", "Item")
    amounts = {
        said_amount(item.get("Value"))
        for item in (items if isinstance(items, list) else [])
        if isinstance(item, dict) and item.get("Name") == "Amount"
    }
    return amounts - {None}


def callback_gist(body: str) -> str:
    """`ResultCode=… Amount=…` of a stored callback, for a violation message."""
    try:
        callback = _get(json.loads(body.removeprefix("\ufeff")), "Body", "stkCallback")
    except (ValueError, RecursionError):
        return "(not JSON)"
    if not isinstance(callback, dict):
        return "(no stkCallback object)"
    items = _get(callback, "CallbackMetadata", "Item")
    amounts = [
        short(item.get("Value", "<no Value>"))
        for item in (items if isinstance(items, list) else [])
        if isinstance(item, dict) and item.get("Name") == "Amount"
    ]
    return f"ResultCode={short(callback.get('ResultCode', '<missing>'))} Amount={amounts or '-'}"


def receipt_in(body: str) -> str | None:
    """The receipt a stored callback carried, as the app stores it (text, ≤ 32, no NUL)."""
    try:
        items = _get(
            json.loads(body.removeprefix("\ufeff")),
            "Body",
            "stkCallback",
            "CallbackMetadata",
            "Item",
        )
    except (ValueError, RecursionError):
        return None
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and item.get("Name") == "MpesaReceiptNumber":
            value = item.get("Value")
            return str(value).replace("\x00", "")[:32] if value not in (None, "") else None
    return None


def settling_callback(bodies: list[str], receipt: str | None) -> int | None:
    """Index of the callback whose receipt the payment holds (each fuzzed one is unique)."""
    if not receipt:
        return None
    return next((i for i, body in enumerate(bodies) if receipt_in(body) == receipt), None)


def backed(bodies: list[str], settling: int | None, paid: int, checkout: str | None) -> bool:
    """Did a success callback state `paid`? Judged on the settling callback when known."""
    # The receipt names the callback that completed the payment, unless a receipt-less
    # success completed it and a later duplicate only filled the receipt in: so a
    # receipt-less success stating `paid` before the receipt's callback counts as well.
    if settling is None:
        return any(paid in strict_success_amounts(body, checkout) for body in bodies)
    if paid in strict_success_amounts(bodies[settling], checkout):
        return True
    return any(
        paid in strict_success_amounts(body, checkout) and not receipt_in(body)
        for body in bodies[:settling]
    )


def check_money(database_url: str) -> dict:
    """The money invariant, read straight from PostgreSQL."""
    import psycopg

    violations: list[str] = []
    with psycopg.connect(pg_dsn(database_url)) as conn:
        columns = {
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'payments'"
            )
        }
        counts = dict(
            conn.execute("SELECT status, count(*) FROM orders GROUP BY status").fetchall()
        )
        for order_id, number, amount in conn.execute(
            "SELECT o.id, o.number, o.amount FROM orders o WHERE o.status = 'paid' AND NOT EXISTS"
            " (SELECT 1 FROM payments p WHERE p.order_id = o.id AND p.status = 'completed'"
            " AND NOT p.needs_review AND p.paid_amount = o.amount) ORDER BY o.number"
        ).fetchall():
            payments = "; ".join(
                f"{status} paid_amount={paid} needs_review={review} ({reason or '-'})"
                for status, paid, review, reason in conn.execute(
                    "SELECT status, paid_amount, needs_review, review_reason FROM payments"
                    " WHERE order_id = %s ORDER BY created_at",
                    (order_id,),
                )
            )
            violations.append(
                f"{number} is paid without a completed, unflagged payment of {amount} KES;"
                f" its payments: {payments or 'none'}"[:400]
            )
        for pid, status, paid in conn.execute(
            "SELECT id, status, paid_amount FROM payments WHERE paid_amount IS NOT NULL"
            " AND status <> 'completed' AND NOT needs_review ORDER BY id"
        ):
            violations.append(f"payment {pid} is {status} but has paid_amount {paid}")
        for pid, number, status in conn.execute(
            "SELECT p.id, o.number, o.status FROM payments p JOIN orders o ON o.id = p.order_id"
            " WHERE p.status = 'completed' AND NOT p.needs_review AND p.paid_amount >= o.amount"
            " AND o.status <> 'paid' ORDER BY p.id"
        ):
            violations.append(f"payment {pid} paid {number} in full but the order is {status}")
        # No invented amounts: a paid amount is one M-Pesa reported (or STK Query confirmed).
        source = "p.amount_source" if "amount_source" in columns else "NULL"
        rows = conn.execute(
            f"SELECT p.id, p.checkout_request_id, p.status, p.paid_amount, p.needs_review,"
            f" {source}, p.receipt, o.number FROM payments p JOIN orders o ON o.id = p.order_id"
            " WHERE p.paid_amount IS NOT NULL ORDER BY p.id"
        ).fetchall()
        by_query = 0
        for pid, checkout, status, paid, review, amount_source, receipt, number in rows:
            if amount_source == "query":
                by_query += 1
                continue
            records = conn.execute(
                "SELECT body FROM callback_records WHERE payment_id = %s"
                " OR (checkout_request_id IS NOT NULL AND checkout_request_id = %s) ORDER BY id",
                (pid, checkout),
            ).fetchall()
            bodies = [r[0] for r in records]
            settling = settling_callback(bodies, receipt)
            if not backed(bodies, settling, paid, checkout):
                flag = "flagged" if review else "not flagged"
                gist = callback_gist(bodies[settling]) if settling is not None else "none matched"
                violations.append(
                    f"payment {pid} ({number}, {status}, {flag}) has paid_amount {paid} that no "
                    f"success callback stated; the callback whose receipt it holds: {gist}"
                )
    return {
        "ok": not violations,
        "orders_by_status": counts,
        "paid_amount_from_query": by_query,
        "violations": violations,
    }


def check_leaks(log_text: str, secrets_by_name: dict[str, str]) -> dict:
    """Lines of the gunicorn log containing a configured secret."""
    found = {}
    for name, secret in secrets_by_name.items():
        lines = [line for line in log_text.splitlines() if secret in line]
        if lines:
            found[name] = {
                "lines": len(lines),
                "example": lines[0].replace(secret, "<SECRET>")[:200],
            }
    return {"ok": not found, "found": found}


_UNHANDLED = re.compile(r"unhandled error on (\S+) (\S+)")
_SOCKET_FAILED = re.compile(r"socket event (\S+) failed")
_MESSAGE = re.compile(r"(?:ERROR|WARNING|CRITICAL) \S+ \[pid \d+\] (.*)")
_FRAME = re.compile(r'^\s+File "([^"]+)", line (\d+), in (\S+)')


def endpoint_of(method: str, path: str) -> str:
    if path.startswith("/callbacks/stk/"):
        return CALLBACK
    if path.startswith("/pay/"):
        return PAY_PAGE
    if path.rstrip("/") == "/api/orders":
        return ORDERS_CREATE if method == "POST" else ORDERS_LIST
    if path.startswith("/api/orders/"):
        if path.endswith("/status"):
            return ORDER_STATUS
        if path.endswith("/payments"):
            return PAYMENT_CREATE
        return ORDER_SHOW
    return f"{method} {path[:40]}"


def server_exceptions(log_text: str, redact) -> list[dict]:
    """Tracebacks in the gunicorn log, grouped by endpoint, exception and app frame."""
    groups: Counter = Counter()
    examples: dict = {}
    lines = log_text.splitlines()
    context, logged = "?", ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if match := _UNHANDLED.search(line):
            context = endpoint_of(match.group(1), match.group(2))
        elif match := _SOCKET_FAILED.search(line):
            context = f"socket {match.group(1)}"
        if not line.startswith("Traceback (most recent call last):"):
            if context == "?" and (match := _MESSAGE.search(line)):
                logged = redact(match.group(1))[:60]  # e.g. a guarded failure's own message
            i += 1
            continue
        if context == "?":
            context = f"log: {logged}" if logged else "?"
        frames, exc_line = [], ""
        while i < len(lines) and lines[i].startswith("Traceback (most recent call last):"):
            i += 1
            section = []
            while i < len(lines) and (lines[i].startswith(" ") or not lines[i].strip()):
                if frame := _FRAME.match(lines[i]):
                    section.append(frame.groups())
                i += 1
            exc_line = lines[i] if i < len(lines) else ""
            frames = section or frames
            i += 1
            # chained: "During handling of the above exception..." then another traceback
            while i < len(lines) and (
                not lines[i].strip()
                or lines[i].startswith(("During handling", "The above exception"))
            ):
                i += 1
        own = [f for f in frames if "/paymentapp/" in f[0] and "/.venv/" not in f[0]]
        where = own[-1] if own else (frames[-1] if frames else ("?", "?", "?"))
        path = where[0].split(str(ROOT) + "/", 1)[-1]
        kind = exc_line.split(":", 1)[0].strip() or "?"
        key = (context, kind, f"{path}:{where[1]} in {where[2]}")
        groups[key] += 1
        examples.setdefault(key, redact(exc_line)[:160])
        context, logged = "?", ""
    return [
        {"endpoint": k[0], "exception": k[1], "where": k[2], "count": n, "message": examples[k]}
        for k, n in groups.most_common()
    ]


# -- the run -----------------------------------------------------------------------------------


def summarize_http(outcomes: list[Outcome], state: State) -> dict:
    by_endpoint: dict[str, Counter] = defaultdict(Counter)
    server_errors: Counter = Counter()
    documented: Counter = Counter()
    repros: dict[tuple, dict] = {}
    shape: Counter = Counter()
    leaked: Counter = Counter()
    secret_values = [state.callback_token, state.api_key]
    for outcome in outcomes:
        req, status = outcome.req, outcome.status
        by_endpoint[req.endpoint][str(status)] += 1
        for secret in secret_values:
            if secret.encode() in outcome.body:
                leaked[req.endpoint] += 1
        if b"Traceback (most recent call last)" in outcome.body:
            leaked[req.endpoint + " (traceback)"] += 1
        if not isinstance(status, int):
            continue
        if 400 <= status < 600 and req.endpoint != PAY_PAGE and not has_error_shape(outcome.body):
            shape[f"{req.endpoint} {status}"] += 1
        if status < 500:
            continue
        code = ""
        if has_error_shape(outcome.body):
            code = json.loads(outcome.body)["error"]["code"]
        if req.endpoint == PAYMENT_CREATE and status == 502 and code in DOCUMENTED_502:
            documented[code] += 1
            continue
        server_errors[req.endpoint] += 1
        key = (req.endpoint, status, tuple(req.label))
        if key not in repros:
            body = (req.body or b"")[:160].decode("utf-8", "backslashreplace")
            repros[key] = {
                "endpoint": req.endpoint,
                "status": status,
                "method": req.method,
                "path": state.redact(req.path)[:200],
                "body_prefix": state.redact(body),
                "body_bytes": len(req.body or b""),
                "mutation": "; ".join(req.label),
                "count": 0,
            }
        repros[key]["count"] += 1
    return {
        "by_endpoint": {k: dict(sorted(v.items())) for k, v in sorted(by_endpoint.items())},
        "server_errors": dict(server_errors),
        "documented_502": dict(documented),
        "reproductions": sorted(repros.values(), key=lambda r: -r["count"]),
        "not_contract_shape": dict(shape),
        "secret_in_response": dict(leaked),
    }


def run(
    requests_count: int = 10_000,
    seed: int = 1,
    concurrency: int = 12,
    socket_events: int | None = None,
    workers: int = 2,
    redis_db: int = 12,
    max_seconds: float = 900,
    log_path: Path | None = None,
    json_path: Path | None = None,
    keep_db: bool = False,
    out=print,
) -> dict:
    """Start the stack, seed it, fuzz it, check it, tear it down; returns the summary."""
    started = time.monotonic()
    if socket_events is None:
        socket_events = round(requests_count * SOCKET_SHARE)
    if log_path is None:
        log_path = ROOT / "test-artifacts" / f"fuzz-seed{seed}-gunicorn.log"
    stack = Stack(workers, redis_db, log_path, keep_db)
    summary: dict = {
        "seed": seed,
        "requests": requests_count,
        "socket_events": socket_events,
        "concurrency": concurrency,
        "workers": workers,
    }
    try:
        stack.start()
        out(f"fuzz: gunicorn {workers} workers at {stack.url}, log {stack.server.log_path}")
        state = seed_state(stack, seed)
        out(
            f"fuzz: seeded {len(state.orders)} orders, {len(state.known)} checkout ids "
            f"({len(state.pending)} pending); sending {requests_count} requests, "
            f"{socket_events} socket events"
        )
        deadline = time.monotonic() + max_seconds
        http = HttpFuzzer(state, Generator(seed, state), concurrency, deadline)
        sockets = SocketFuzzer(state, seed, deadline)
        socket_thread = threading.Thread(
            target=sockets.run, args=(socket_events,), name="fuzz-sockets", daemon=True
        )
        fuzz_started = time.monotonic()
        socket_thread.start()
        http.run(requests_count)
        socket_thread.join(max(1.0, deadline - time.monotonic() + 30))
        summary["fuzz_seconds"] = round(time.monotonic() - fuzz_started, 1)
        summary["sent"] = len(http.outcomes)
        time.sleep(1.0)  # simulator callbacks still on their way
        stack.stop_server()
        log_text = stack.server.log()
        summary["http"] = summarize_http(http.outcomes, state)
        summary["socket"] = {
            "connections": sockets.connections,
            "acks": dict(sockets.acks.most_common()),
            "internal_error": sockets.acks.get("internal_error", 0),
            "internal_error_reproductions": [
                {"event": k, "count": n} for k, n in sockets.internal.most_common()
            ],
        }
        summary["server_exceptions"] = server_exceptions(log_text, state.redact)
        summary["worker_trouble"] = [
            line[:200]
            for line in log_text.splitlines()
            if "WORKER TIMEOUT" in line or "was sent SIGKILL" in line or "Worker failed" in line
        ]
        money = check_money(stack.database_url)
        leaks = check_leaks(
            log_text,
            {
                "callback token": stack.callback_token,
                "SECRET_KEY": stack.secret_key,
                "API key": stack.api_key,
            },
        )
        server_error_count = sum(summary["http"]["server_errors"].values())
        summary["log"] = str(stack.server.log_path)
        summary["checks"] = {
            "no_5xx": {"ok": server_error_count == 0, "count": server_error_count},
            "no_socket_internal_error": {
                "ok": summary["socket"]["internal_error"] == 0,
                "count": summary["socket"]["internal_error"],
            },
            "money_invariant": money,
            "no_secret_in_log": leaks,
            "no_secret_in_responses": {
                "ok": not summary["http"]["secret_in_response"],
                "found": summary["http"]["secret_in_response"],
            },
        }
        summary["ok"] = all(check["ok"] for check in summary["checks"].values())
    except BaseException as exc:
        summary["ok"] = False
        summary["error"] = f"{exc.__class__.__name__}: {exc}"
        if not isinstance(exc, Exception):
            raise  # pytest's skip/fail outcomes, KeyboardInterrupt
        summary["traceback"] = traceback.format_exc()
        raise
    finally:
        stack.cleanup()
        summary["seconds"] = round(time.monotonic() - started, 1)
        if json_path is not None:
            Path(json_path).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return summary


def report(summary: dict, out=print) -> None:
    """The human summary, ending in one PASS/FAIL line."""
    http = summary["http"]
    out(
        f"\nseed {summary['seed']}: {summary['sent']} of {summary['requests']} requests "
        f"({summary['concurrency']} at a time) and {summary['socket_events']} socket events "
        f"on {summary['workers']} workers in {summary['fuzz_seconds']} s"
    )
    out("status codes by endpoint:")
    for endpoint, statuses in http["by_endpoint"].items():
        total = sum(statuses.values())
        codes = " ".join(f"{s}:{n}" for s, n in statuses.items())
        out(f"  {endpoint:<34} {total:>5}  {codes}")
    if http["documented_502"]:
        out(f"documented 502s on {PAYMENT_CREATE} (not counted): {http['documented_502']}")
    total_5xx = sum(http["server_errors"].values())
    out(f"5xx: {total_5xx} {http['server_errors'] or ''}")
    for repro in http["reproductions"][:40]:
        out(
            f"  {repro['status']} ×{repro['count']} {repro['method']} {repro['path']}  "
            f"[{repro['mutation']}]  body({repro['body_bytes']} B): {repro['body_prefix'][:100]!r}"
        )
    if len(http["reproductions"]) > 40:
        out(f"  … {len(http['reproductions']) - 40} more distinct inputs (see --json)")
    if summary["server_exceptions"]:
        out("exceptions in the gunicorn log:")
        for exc in summary["server_exceptions"]:
            out(
                f"  ×{exc['count']} {exc['endpoint']}: {exc['exception']} at {exc['where']}"
                f" ({exc['message'][:90]})"
            )
    for line in summary["worker_trouble"][:5]:
        out(f"  worker: {line}")
    socket_part = summary["socket"]
    out(f"socket: {socket_part['connections']} connections, acks {socket_part['acks']}")
    for repro in socket_part["internal_error_reproductions"][:15]:
        out(f"  internal_error ×{repro['count']}: {repro['event']}")
    if http["not_contract_shape"]:
        out(f"errors without the contract's shape (info): {http['not_contract_shape']}")
    checks = summary["checks"]
    money = checks["money_invariant"]
    out("checks:")
    out(f"  [{'ok' if checks['no_5xx']['ok'] else 'FAIL'}] no 5xx: {checks['no_5xx']['count']}")
    out(
        f"  [{'ok' if checks['no_socket_internal_error']['ok'] else 'FAIL'}] no socket "
        f"internal_error ack: {checks['no_socket_internal_error']['count']}"
    )
    out(
        f"  [{'ok' if money['ok'] else 'FAIL'}] money invariant: orders {money['orders_by_status']}"
        f", {len(money['violations'])} violations"
    )
    for violation in money["violations"][:20]:
        out(f"      {violation}")
    leaks = checks["no_secret_in_log"]
    out(f"  [{'ok' if leaks['ok'] else 'FAIL'}] no secret in the gunicorn log ({summary['log']})")
    for name, found in leaks["found"].items():
        out(f"      {name}: {found['lines']} lines, e.g. {found['example']}")
    responses = checks["no_secret_in_responses"]
    mark = "ok" if responses["ok"] else "FAIL"
    out(f"  [{mark}] no secret/traceback in responses {responses['found'] or ''}")
    failed = []
    if total_5xx:
        failed.append(f"{total_5xx} 5xx")
    if socket_part["internal_error"]:
        failed.append(f"{socket_part['internal_error']} socket internal_error")
    if not money["ok"]:
        failed.append(f"money invariant ({len(money['violations'])} violations)")
    if not leaks["ok"]:
        failed.append("secrets in log (" + ", ".join(leaks["found"]) + ")")
    if not responses["ok"]:
        failed.append("secrets in responses")
    verdict = "FUZZ PASS" if summary["ok"] else "FUZZ FAIL: " + "; ".join(failed)
    out(f"{verdict} ({summary['sent']} requests, seed {summary['seed']}, {summary['seconds']} s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=12)
    parser.add_argument("--socket-events", type=int, default=None, help="default: 7.5%% of N")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--redis-db", type=int, default=12)
    parser.add_argument("--max-seconds", type=float, default=900)
    parser.add_argument("--log", type=Path, default=None, help="gunicorn log file")
    parser.add_argument("--json", type=Path, default=None, help="write the summary here")
    parser.add_argument("--keep-db", action="store_true", help="leave the database to inspect")
    args = parser.parse_args(argv)
    try:
        summary = run(
            requests_count=args.requests,
            seed=args.seed,
            concurrency=args.concurrency,
            socket_events=args.socket_events,
            workers=args.workers,
            redis_db=args.redis_db,
            max_seconds=args.max_seconds,
            log_path=args.log,
            json_path=args.json,
            keep_db=args.keep_db,
        )
    except Exception as exc:
        traceback.print_exc()
        print(f"FUZZ ERROR: {exc.__class__.__name__}: {exc}")
        return 2
    except BaseException as exc:  # pytest.skip/fail from tests/services.py: a missing service
        if isinstance(exc, KeyboardInterrupt):
            raise
        print(f"FUZZ ERROR: {exc}")
        return 2
    report(summary)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

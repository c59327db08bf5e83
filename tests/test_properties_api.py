"""API and socket properties: a client gets the contract's errors, never a 5xx."""

# Whatever a client sends, the answer is a success or a 4xx in the error shape, and a client
# token opens exactly its own order. Examples share one app and database (`app` is
# function-scoped): the orders a fixture makes are only read.

from __future__ import annotations

import base64
import json
import re
from datetime import timedelta, timezone
from urllib.parse import quote, quote_from_bytes, urlencode

import pytest
from hypothesis import event, given, note
from hypothesis import strategies as st
from sqlalchemy import func, select

from paymentapp.models import Order, Payment
from tests.strategies import (
    DEPTHS,
    ENCODED_JSON,
    JSON,
    KEYS,
    NUMBERS,
    ODD_TEXT,
    TEXT,
    assert_error_shape,
    encode,
    json_values,
    nested,
    share,
)

MAX_ORDER_AMOUNT = 250_000
ORDER_FIELDS = ("amount", "description", "customer_phone", "reference")


def order_count(db) -> int:
    return db.session.scalar(select(func.count()).select_from(Order))


def payment_count(db) -> int:
    return db.session.scalar(select(func.count()).select_from(Payment))


def assert_success_or_client_error(response, *success: int, extra_ok: bool = False) -> bool:
    """True for one of the `success` statuses; otherwise a 4xx in the error shape."""
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    if response.status_code in success:
        return True
    assert 400 <= response.status_code < 500, response.status_code
    assert_error_shape(response, top_level_extra=extra_ok)
    return False


# -- POST /api/orders ----------------------------------------------------------------------------


def deep_order(depth: int, field: str, opener: str, closer: str) -> bytes:
    """A field nested `depth` deep, written out (json.dumps would itself recurse)."""
    value = nested(depth, opener, closer, '"x"')
    if field == "amount":
        return f'{{"amount": {value}}}'.encode()
    return f'{{"amount": 100, "{field}": {value}}}'.encode()


ODD_ORDER_BODIES = [
    b'{"amount": 1e308}', b'{"amount": -1e308}', b'{"amount": NaN}', b'{"amount": Infinity}',
    b'{"amount": ' + b"9" * 5000 + b"}", b'{"amount": 100, "description": "\\ud800"}',
    b'{"amount": 100, "reference": "\\udfff"}', b'{"amount": 100, "description": "a\\u0000"}',
    b'{"amount": 100, "customer_phone": "\\ud800"}', b'{"amount": 100, "reference": 1e999}',
]  # fmt: skip
ORDER_LIKE = st.builds(
    lambda known, unknown: {**unknown, **known},
    st.fixed_dictionaries(
        {},
        optional={
            "amount": st.integers(1, MAX_ORDER_AMOUNT) | NUMBERS | JSON,
            "description": TEXT | ODD_TEXT | JSON,
            "customer_phone": st.sampled_from(["0712 345 678", "+254712345678"]) | TEXT | JSON,
            "reference": TEXT | ODD_TEXT | JSON,
        },
    ),
    st.dictionaries(KEYS, JSON, max_size=2) | st.just({}),
)
# a valid amount with odd text around it: the bodies that get furthest, to the database
NEAR_VALID_ORDER = st.fixed_dictionaries(
    {"amount": st.integers(1, MAX_ORDER_AMOUNT)},
    optional={
        "description": st.none() | TEXT | ODD_TEXT,
        "customer_phone": st.sampled_from(["0712 345 678", "+254712345678", "0112345678"]) | TEXT,
        "reference": TEXT | ODD_TEXT,
    },
)
ORDER_BODIES = st.one_of(
    st.builds(encode, NEAR_VALID_ORDER, st.booleans()),
    st.builds(encode, ORDER_LIKE, st.booleans()),
    ENCODED_JSON,
    st.binary(max_size=200),
    st.builds(
        lambda depth, field, pair: deep_order(depth, field, *pair),
        st.integers(1, 1000),
        st.sampled_from(ORDER_FIELDS),
        st.sampled_from([("[", "]"), ('{"a":', "}")]),
    ),
    st.builds(nested, DEPTHS).map(str.encode),
    st.sampled_from(ODD_ORDER_BODIES),
)
# a header value as a WSGI server hands it over: Latin-1, no line breaks
HEADER_TEXT = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=24
)


@share(3)
@given(
    body=ORDER_BODIES,
    content_type=st.sampled_from(
        ["application/json"] * 6
        + ["application/json; charset=utf-8", "text/plain", "application/x-www-form-urlencoded", ""]
    ),
    idempotency_key=st.none() | HEADER_TEXT,
)
def test_create_order_answers_201_or_a_4xx_and_bad_input_writes_nothing(
    client, auth, db, body, content_type, idempotency_key
):
    """Any JSON, 1000-deep nesting, huge numbers, surrogates: a merchant gets 201 or a 4xx."""
    headers = dict(auth)
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    before = order_count(db)
    response = client.post("/api/orders", data=body, content_type=content_type, headers=headers)
    event(f"HTTP {response.status_code}")
    if assert_success_or_client_error(response, 201):
        created = response.get_json()
        assert created["amount"] == json.loads(body)["amount"]
        assert type(created["amount"]) is int and 1 <= created["amount"] <= MAX_ORDER_AMOUNT
        replayed = response.headers.get("Idempotent-Replayed") == "true"
        assert order_count(db) == before + (0 if replayed else 1)
    else:
        assert order_count(db) == before, "bad input writes nothing"


# -- GET /api/orders -----------------------------------------------------------------------------


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# cursors that once failed: a naive date, and datetimes whose UTC value is out of range
ODD_CURSORS = [
    ("2024-01-01", "ord_x"), ("0001-01-01T00:00:00+14:00", "x"), ("9999-12-31T23:59:59-14:00", "x"),
    ("2024-01-01T00:00:00Z", "ord_\ud800"), ("2024-01-01T00:00:00+00:00", "ord_\x00"),
]  # fmt: skip
OFFSETS = st.builds(
    timezone,
    st.timedeltas(
        min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)
    ),
)
CURSOR_VALUES = (
    st.one_of(
        st.tuples(st.datetimes(timezones=st.none() | OFFSETS).map(lambda d: d.isoformat()), TEXT),
        st.tuples(st.dates().map(lambda d: d.isoformat()), TEXT),
        st.tuples(JSON, JSON),
        st.sampled_from(ODD_CURSORS),
    ).map(list)
    | JSON
)
CURSORS = st.one_of(
    st.builds(encode, CURSOR_VALUES, st.booleans()).map(b64url),
    st.binary(max_size=64).map(b64url),
    TEXT,
    st.sampled_from(["", "=", "%", "WyIyMDI0LTAxLTAxIiwgIm9yZF94Il0", "W10", "bnVsbA"]),
)
LIST_PARAMS = st.fixed_dictionaries(
    {},
    optional={
        "cursor": CURSORS,
        "limit": st.integers(1, 100).map(str)
        | st.integers().map(str)
        | TEXT
        | st.sampled_from(["", "0", "101", "1e2", "١"]),
        "status": st.sampled_from(["pending", "paid", "cancelled", ""]) | TEXT,
        "q": st.sampled_from(["%", "_", "\\", "ORD-", "ORD-100", "item 2", "\ud800"])
        | TEXT
        | st.text(max_size=150),
    },
)


@pytest.fixture
def some_orders(make_order):
    """A few orders so pages, cursors and searches have rows to compare."""
    return [make_order(amount, description=f"item {amount}") for amount in (100, 200, 300)]


@share(3)
@given(params=LIST_PARAMS)
def test_listing_orders_answers_200_or_a_4xx(client, auth, some_orders, params):
    """A cursor is client input too: base64 of any JSON or odd datetimes must not be a 5xx."""
    query = urlencode(params, errors="surrogatepass")
    response = client.get(f"/api/orders?{query}", headers=auth)
    event(f"HTTP {response.status_code}")
    if assert_success_or_client_error(response, 200):
        body = response.get_json()
        assert isinstance(body["orders"], list) and "next_cursor" in body
    else:
        assert response.status_code in (400, 422), response.status_code


# -- client tokens -------------------------------------------------------------------------------

# ids and tokens are drawn as recipes over the fixture's two real orders
ID_RECIPES = st.one_of(
    st.tuples(st.just("id"), st.integers(0, 1)),
    st.tuples(st.just("id+"), st.integers(0, 1), TEXT),
    st.tuples(st.just("id[:k]"), st.integers(0, 1), st.integers(0, 40)),
    st.tuples(st.just("text"), TEXT | ODD_TEXT | st.sampled_from(["é", "ord_é", "..", ".", "%"])),
    st.tuples(st.just("bytes"), st.binary(min_size=1, max_size=24)),
)
TOKEN_RECIPES = st.one_of(
    st.tuples(st.just("token"), st.integers(0, 1)),
    st.tuples(st.just("token+"), st.integers(0, 1), TEXT),
    st.tuples(st.just("token[:k]"), st.integers(0, 1), st.integers(0, 120)),
    st.tuples(st.just("text"), TEXT | ODD_TEXT),
)
# the right pair, a real id with any token, or anything
PAIRS = st.one_of(
    st.integers(0, 1).map(lambda i: (("id", i), ("token", i))),
    st.tuples(st.tuples(st.just("id"), st.integers(0, 1)), TOKEN_RECIPES),
    st.tuples(ID_RECIPES, TOKEN_RECIPES),
)


def resolve(recipe: tuple, orders: list[dict], field: str) -> str | bytes:
    """The id or token a recipe names, built from the real orders."""
    kind, *args = recipe
    if kind in ("text", "bytes"):
        return args[0]
    value = orders[args[0]][field]
    if kind.endswith("+"):
        return value + args[1]
    if kind.endswith("[:k]"):
        return value[: args[1]]
    return value


def path_segment(order_id: str | bytes) -> str:
    """Percent-encode anything (lone surrogates as their raw bytes, dots too)."""
    if isinstance(order_id, bytes):
        return quote_from_bytes(order_id, safe="").replace(".", "%2E")
    return quote(order_id, safe="", errors="surrogatepass").replace(".", "%2E")


def is_right_pair(order_id, token, orders: list[dict]) -> bool:
    return any(order_id == o["id"] and token == o["client_token"] for o in orders)


def base64url_only(token: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "", token)


def is_tolerated(order_id, token, orders: list[dict]) -> bool:
    """Junk after a real token may verify: no bypass, since it still needs the real token."""
    # itsdangerous' base64 decoder drops some characters outside the alphabet: `sig::`,
    # `sig=` and `sigé` verify like `sig`
    return isinstance(token, str) and any(
        order_id == o["id"] and base64url_only(token) == o["client_token"] for o in orders
    )


def header_safe(token: str) -> bool:
    return all(0x20 <= ord(c) <= 0xFF and c != "\x7f" for c in token)


def assert_success_or_client_error_or_redirect(response) -> bool:
    """Like assert_success_or_client_error for 2xx; a redirect (merged slashes) is fine too."""
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    if 300 <= response.status_code < 400:
        return False
    return assert_success_or_client_error(response, 200, 201, 202, 204, extra_ok=True)


@pytest.fixture
def two_orders(make_order):
    return [make_order(100), make_order(200)]


@share(3)
@given(
    recipes=PAIRS,
    endpoint=st.sampled_from(["status", "payments", "pay"]),
    in_header=st.booleans(),
)
def test_a_client_token_opens_only_its_own_order(
    client, db, two_orders, recipes, endpoint, in_header
):
    """Odd, non-ASCII, swapped or truncated ids and tokens: no 5xx, and no other order opens."""
    order_id = resolve(recipes[0], two_orders, "id")
    token = resolve(recipes[1], two_orders, "client_token")
    right = is_right_pair(order_id, token, two_orders)
    either = not right and is_tolerated(order_id, token, two_orders)
    note(f"order_id={order_id!r} token={token!r} right={right} either={either}")
    segment = path_segment(order_id)
    headers, query = {}, urlencode({"token": token}, errors="surrogatepass")
    if in_header and endpoint != "pay" and header_safe(token):
        headers, query = {"X-Order-Token": token}, ""

    if endpoint == "status":
        response = client.get(f"/api/orders/{segment}/status?{query}", headers=headers)
        if right:
            assert response.status_code == 200, response.get_data(as_text=True)[:500]
            assert response.get_json()["order_id"] == order_id
        elif assert_success_or_client_error_or_redirect(response):
            assert either and response.get_json()["order_id"] == order_id
    elif endpoint == "payments":
        before = payment_count(db)
        response = client.post(
            f"/api/orders/{segment}/payments?{query}", json={"phone": "12"}, headers=headers
        )
        assert response.status_code < 500, response.get_data(as_text=True)[:500]
        assert payment_count(db) == before, "no payment without a valid phone"
        if right:  # past the token check, stopped by the phone: no prompt is sent
            assert response.status_code == 422, response.get_data(as_text=True)[:500]
            assert response.get_json()["error"]["code"] == "invalid_phone"
        else:
            assert not assert_success_or_client_error_or_redirect(response)
            if 400 <= response.status_code < 500 and not either:
                assert response.get_json()["error"]["code"] != "invalid_phone", "token not checked"
    else:
        response = client.get(f"/pay/{segment}?{query}", headers={"Accept": "text/html"})
        assert response.status_code < 500, response.get_data(as_text=True)[:500]
        if right:
            assert response.status_code == 200
        elif not either:
            assert not 200 <= response.status_code < 300, response.status_code
    event(f"{endpoint}: HTTP {response.status_code}")


# -- Socket.IO subscribe -------------------------------------------------------------------------

# python-engineio refuses to decode integers over 100 digits before any handler runs
SOCKET_JSON = json_values(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**99) + 1, 10**99 - 1),
        st.floats(),
        st.sampled_from([2**31, 2**63, 10**12, 1e308, -1e308]),
        TEXT,
        ODD_TEXT,
    )
)
SUBSCRIBE_PAYLOADS = st.one_of(
    st.builds(
        lambda pair, extra: {"order_id": pair[0], "token": pair[1], **extra},
        PAIRS,
        st.fixed_dictionaries({}, optional={"extra": SOCKET_JSON}),
    ),
    st.fixed_dictionaries({}, optional={"order_id": SOCKET_JSON, "token": SOCKET_JSON}),
    SOCKET_JSON,
)


def resolve_payload(payload, orders: list[dict]):
    """Turn id/token recipes into the real strings; other payloads go as drawn."""
    if not (isinstance(payload, dict) and isinstance(payload.get("order_id"), tuple)):
        return payload
    order_id = resolve(payload["order_id"], orders, "id")
    if isinstance(order_id, bytes):
        order_id = order_id.decode("utf-8", "surrogateescape")
    return {
        **payload,
        "order_id": order_id,
        "token": resolve(payload["token"], orders, "client_token"),
    }


@share(3)
@given(payload=SUBSCRIBE_PAYLOADS)
def test_subscribe_acks_ok_only_for_the_right_pair(socket_client, two_orders, payload):
    """A socket client learns an order only with its token; refusals say why, never internal."""
    payload = resolve_payload(payload, two_orders)
    note(f"payload={payload!r}")
    sock = socket_client()  # a new connection per example: the event rate limit is per socket
    try:
        ack = sock.emit("subscribe", payload, callback=True)
    finally:
        sock.disconnect()
    sent = (payload.get("order_id"), payload.get("token")) if isinstance(payload, dict) else ()
    right = bool(sent) and is_right_pair(*sent, two_orders)
    either = bool(sent) and not right and is_tolerated(*sent, two_orders)
    assert isinstance(ack, dict), ack
    event("ok" if ack.get("ok") else f"refused: {ack.get('error', {}).get('code')}")
    if right or (either and ack.get("ok")):
        assert ack["ok"] is True, ack
        assert ack["status"]["order_id"] == payload["order_id"]
    else:
        assert ack["ok"] is False, ack
        error = ack["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str), ack
        assert error["code"] != "internal_error", ack

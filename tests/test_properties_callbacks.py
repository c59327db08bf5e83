"""Callback properties: Daraja retries any 5xx, and no callback may invent money."""

# Any body gets Daraja's Accepted or a 4xx in the contract's error shape and is stored; a
# payment completes only on an exact success carrying the right amount. Examples share one
# app and database (`app` is function-scoped): each makes its own order and payment and
# checks only those.

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation

from hypothesis import event, given
from hypothesis import strategies as st
from sqlalchemy import func, select

from paymentapp.models import CallbackRecord, Order, Payment
from tests.helpers import TEST_CALLBACK_TOKEN, stk_callback
from tests.strategies import (
    ANY_BODY,
    JSON,
    RESULT_CODES,
    TEXT,
    assert_error_shape,
    encode,
    share,
)

URL = f"/callbacks/stk/{TEST_CALLBACK_TOKEN}"
ACCEPTED = {"ResultCode": 0, "ResultDesc": "Accepted"}
MAX_CALLBACK_BYTES = 16 * 1024
MAX_ORDER_AMOUNT = 250_000
INT32_MAX = 2**31 - 1


def assert_accepted_or_refused(response) -> None:
    """Daraja's Accepted or a 4xx in the error shape: Daraja retries a 5xx, forever."""
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    if response.status_code == 200:
        assert response.get_json() == ACCEPTED
    else:
        assert 400 <= response.status_code < 500, response.status_code
        assert_error_shape(response)


def post_callback(client, body: bytes):
    return client.post(URL, data=body, content_type="application/json")


def record_count(db) -> int:
    return db.session.scalar(select(func.count()).select_from(CallbackRecord))


def post_and_check_stored(client, db, body: bytes):
    """Post a body; it must be answered properly and stored as exactly one new record."""
    before = record_count(db)
    response = post_callback(client, body)
    assert_accepted_or_refused(response)
    if len(body) > MAX_CALLBACK_BYTES:
        assert response.status_code == 413
        assert record_count(db) == before
        return response
    assert record_count(db) == before + 1, "every callback past the token check is stored"
    record = db.session.scalar(select(CallbackRecord).order_by(CallbackRecord.id.desc()).limit(1))
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and "\x00" not in text:
        assert record.body == text, "a readable body is stored exactly as received"
    return response


def fresh_payment(make_order, make_payment, db, amount: int = 100) -> tuple[str, str, str]:
    """A new pending order and payment; returns (order id, payment id, checkout id)."""
    order = make_order(amount)
    payment = make_payment(order)
    return order["id"], payment.id, payment.checkout_request_id


def load(db, order_id: str, payment_id: str) -> tuple[Order, Payment]:
    db.session.expire_all()
    return db.session.get(Order, order_id), db.session.get(Payment, payment_id)


def assert_money_invariant(order: Order) -> None:
    """Paid only through a trusted completed payment of the full amount."""
    if order.status == "paid":
        assert any(
            p.status == "completed"
            and not p.needs_review
            and p.paid_amount == p.amount == order.amount
            for p in order.payments
        ), [(p.status, p.needs_review, p.amount, p.paid_amount) for p in order.payments]
    for payment in order.payments:
        if payment.status == "completed" and not payment.needs_review:
            assert payment.paid_amount == payment.amount, "a trusted payment paid in full"
            assert order.status == "paid", "a trusted full payment pays its pending order"


def is_exact_success(code) -> bool:
    """The rule being built: only the integer 0 or the string "0" is a success."""
    return (type(code) is int and code == 0) or code == "0"


def as_number(value) -> Decimal | None:
    """The numeric value a JSON value carries, leniently (for "was it received?")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return Decimal(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def sent_amounts(body) -> set[Decimal]:
    """Every value sent under an `Amount` item of the callback's metadata."""
    try:
        items = body["Body"]["stkCallback"]["CallbackMetadata"]["Item"]
    except (KeyError, TypeError, IndexError):
        return set()
    if not isinstance(items, list):
        return set()
    values = (i.get("Value") for i in items if isinstance(i, dict) and i.get("Name") == "Amount")
    return {n for n in map(as_number, values) if n is not None}


def dig(body, *path):
    for key in path:
        if isinstance(body, dict) and isinstance(key, str) and key in body:
            body = body[key]
        elif isinstance(body, list) and isinstance(key, int) and key < len(body):
            body = body[key]
        else:
            return None
    return body


class Sentinel:
    """A named marker that reads well in hypothesis' falsifying examples."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


DELETE = Sentinel("DELETE")
CALLBACK = ("Body", "stkCallback")
ITEMS = (*CALLBACK, "CallbackMetadata", "Item")
MUTABLE_PATHS = [
    (),
    ("Body",),
    CALLBACK,
    *((*CALLBACK, key) for key in (
        "MerchantRequestID", "CheckoutRequestID", "ResultCode", "ResultDesc", "CallbackMetadata"
    )),
    ITEMS,
    *((*ITEMS, i) for i in range(5)),
    *((*ITEMS, i, "Name") for i in range(5)),
    *((*ITEMS, i, "Value") for i in range(5)),
]  # fmt: skip
MUTATIONS = st.lists(
    st.tuples(st.sampled_from(MUTABLE_PATHS), st.one_of(JSON, RESULT_CODES, st.just(DELETE))),
    min_size=1,
    max_size=3,
)


def mutate(body, path: tuple, value):
    """Replace (or delete) what lives at `path`; a path that no longer exists is skipped."""
    if not path:
        return {} if value is DELETE else value
    parent = dig(body, *path[:-1]) if len(path) > 1 else body
    key = path[-1]
    if not (
        (isinstance(parent, dict) and isinstance(key, str))
        or (isinstance(parent, list) and isinstance(key, int) and key < len(parent))
    ):
        return body
    if value is DELETE:
        if isinstance(parent, dict):
            parent.pop(key, None)
        else:
            del parent[key]
    else:
        parent[key] = value
    return body


# -- properties ------------------------------------------------------------------------------------


@share(2)
@given(body=ANY_BODY)
def test_any_body_is_accepted_or_refused_and_stored(client, db, body):
    """Bytes, any JSON, huge numbers, surrogates, deep nesting: Daraja must never see a 5xx."""
    response = post_and_check_stored(client, db, body)
    event(f"HTTP {response.status_code}")


@share(2)
@given(amount=st.integers(1, MAX_ORDER_AMOUNT), mutations=MUTATIONS, ascii_only=st.booleans())
def test_mutated_callback_for_a_real_payment_never_invents_money(
    client, db, make_order, make_payment, amount, mutations, ascii_only
):
    """A real callback with any field replaced must not pay what it did not say was paid."""
    order_id, payment_id, checkout_id = fresh_payment(make_order, make_payment, db, amount)
    body = stk_callback(checkout_id, amount=amount)
    for path, value in mutations:
        body = mutate(body, path, value)
    post_and_check_stored(client, db, encode(body, ascii_only))

    order, payment = load(db, order_id, payment_id)
    event(f"payment {payment.status}{' (review)' if payment.needs_review else ''}")
    assert_money_invariant(order)
    if payment.paid_amount is not None:
        assert Decimal(payment.paid_amount) in sent_amounts(body), "paid_amount was never sent"
        assert payment.amount_source == "callback"
    if payment.status == "completed":
        assert is_exact_success(dig(body, *CALLBACK, "ResultCode"))
        sent_id = dig(body, *CALLBACK, "CheckoutRequestID")
        assert isinstance(sent_id, str) and sent_id.strip() == checkout_id
    if order.status == "paid":
        assert Decimal(amount) in sent_amounts(body)


ZERO_LOOKALIKES = [
    "-0", "00", "0.0", "０", "٠", "+0", " 0", "0 ", "0e0", "0x0", "", 0.0, -0.0, False, None,
    [0], {"code": 0}, "Infinity", 1032, 1, 2001, 1037, 10**12, -(2**63),
]  # fmt: skip
NOT_SUCCESS_CODES = st.one_of(
    st.sampled_from(ZERO_LOOKALIKES),
    st.integers().filter(lambda n: n != 0),
    st.floats(),
    TEXT.filter(lambda s: s != "0"),
)


@given(amount=st.integers(1, MAX_ORDER_AMOUNT), code=NOT_SUCCESS_CODES)
def test_only_integer_or_string_zero_counts_as_success(
    client, db, make_order, make_payment, amount, code
):
    """Lookalikes of 0 ("-0", "00", 0.0, false, "０") mean the money did not move: pay nothing."""
    order_id, payment_id, checkout_id = fresh_payment(make_order, make_payment, db, amount)
    body = stk_callback(checkout_id, 0, amount=amount)
    body["Body"]["stkCallback"]["ResultCode"] = code
    post_and_check_stored(client, db, encode(body))

    order, payment = load(db, order_id, payment_id)
    assert payment.status != "completed", (payment.status, payment.result_code)
    assert payment.paid_amount is None
    assert order.status == "pending"


def same_value(amount: int):
    """Representations of one whole amount: 100, 100.0, "100", "100.00"."""
    return st.sampled_from([amount, float(amount), str(amount), f"{amount}.00", f"{amount}.0"])


@st.composite
def amount_and_equal_value(draw):
    amount = draw(st.integers(1, MAX_ORDER_AMOUNT))
    return amount, draw(same_value(amount))


@given(case=amount_and_equal_value(), code=st.sampled_from([0, "0"]))
def test_success_with_the_payments_amount_pays_the_order(
    client, db, make_order, make_payment, case, code
):
    """The one case that pays: an exact success carrying the amount asked for, in any form."""
    amount, sent = case
    order_id, payment_id, checkout_id = fresh_payment(make_order, make_payment, db, amount)
    response = post_and_check_stored(
        client, db, encode(stk_callback(checkout_id, code, amount=sent))
    )
    assert response.status_code == 200

    order, payment = load(db, order_id, payment_id)
    assert payment.status == "completed" and not payment.needs_review
    assert payment.paid_amount == amount and payment.amount_source == "callback"
    assert order.status == "paid"
    assert_money_invariant(order)


@st.composite
def amount_and_other_value(draw):
    amount = draw(st.integers(1, MAX_ORDER_AMOUNT))
    other = draw(st.integers(1, MAX_ORDER_AMOUNT - 1))
    other += other >= amount  # any whole amount but the one asked for
    return amount, other, draw(same_value(other))


@given(case=amount_and_other_value(), code=st.sampled_from([0, "0"]))
def test_success_with_another_amount_is_recorded_for_review(
    client, db, make_order, make_payment, case, code
):
    """A different amount moved real money: keep it as received for review, pay nothing."""
    amount, other, sent = case
    order_id, payment_id, checkout_id = fresh_payment(make_order, make_payment, db, amount)
    response = post_and_check_stored(
        client, db, encode(stk_callback(checkout_id, code, amount=sent))
    )
    assert response.status_code == 200

    order, payment = load(db, order_id, payment_id)
    assert payment.paid_amount == other and payment.amount_source == "callback"
    assert payment.needs_review
    assert order.status == "pending"
    assert_money_invariant(order)


def unusable_text(text: str) -> bool:
    """Text that cannot be read as a positive whole number of a sane size."""
    number = as_number(text)
    return number is None or number <= 0 or number != number.to_integral_value()


MISSING = Sentinel("MISSING")
ISSUE_AMOUNTS = [
    MISSING, None, True, False, -1, 0, -0.0, -1e308, 1e308, math.inf, -math.inf, math.nan,
    "Infinity", "-Infinity", "NaN", "abc", "1,500", "", " ", "100.5", "0.00", "-100", 2**31,
    3_000_000_000, 10**12, 2**63, 10**300, [100], {"Value": 100},
]  # fmt: skip
UNUSABLE_AMOUNTS = st.one_of(
    st.sampled_from(ISSUE_AMOUNTS),
    st.integers(max_value=0),
    st.integers(min_value=INT32_MAX + 1),
    st.floats(allow_nan=True, allow_infinity=True).filter(
        lambda x: not math.isfinite(x) or x <= 0 or not x.is_integer() or x > INT32_MAX
    ),
    TEXT.filter(unusable_text),
)


@given(
    amount=st.integers(1, MAX_ORDER_AMOUNT),
    sent=UNUSABLE_AMOUNTS,
    code=st.sampled_from([0, "0"]),
    metadata=st.booleans(),
)
def test_success_without_a_usable_amount_completes_nothing(
    client, db, make_order, make_payment, amount, sent, code, metadata
):
    """Without a usable Amount nothing is known: flag it and let STK Query settle it."""
    order_id, payment_id, checkout_id = fresh_payment(make_order, make_payment, db, amount)
    body = stk_callback(checkout_id, code, amount=sent, metadata=metadata)
    if sent is MISSING and metadata:
        items = body["Body"]["stkCallback"]["CallbackMetadata"]["Item"]
        items[:] = [item for item in items if item["Name"] != "Amount"]
    response = post_and_check_stored(client, db, encode(body))
    assert response.status_code == 200

    order, payment = load(db, order_id, payment_id)
    assert payment.status == "pending", (payment.status, payment.paid_amount)
    assert payment.paid_amount is None, "an amount the callback never said"
    assert payment.needs_review
    assert payment.next_query_at is not None, "the reconciler asks STK Query"
    assert order.status == "pending"

"""Generated inputs shared by the property-based tests (hypothesis strategies) and the
contract's error-shape check. A non-test module: test modules import it, never each other."""

from __future__ import annotations

import json

from hypothesis import settings
from hypothesis import strategies as st


def share(factor: float) -> settings:
    """This test's share of the profile's max_examples: cheap tests run more cases."""
    return settings(max_examples=max(1, round(settings.default.max_examples * factor)))


# -- strategies shared with test_properties_api -------------------------------------------------

# every code point: lone surrogates (sent as JSON escapes like "\ud800"), NUL, astral planes
CHARS = st.characters(exclude_categories=())
TEXT = st.text(CHARS, max_size=24)
ODD_TEXT = st.sampled_from(
    ["", " ", "0", "-0", "\ud800", "\udfff", "\x00", "a\x00b", "Infinity", "NaN", "1,500", "１",
     "٠", "\u202e", "%00", "../", "null", "ws_CO_", "x" * 300]
)  # fmt: skip
NUMBERS = st.one_of(
    st.integers(),
    st.sampled_from([2**31, 2**63, 10**12, -(10**30), 10**300]),
    st.floats(),  # NaN and ±Infinity are written as Python's json writes them
    st.sampled_from([1e308, -1e308, 5e-324, -0.0, 0.1, 100.5]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT, ODD_TEXT)
DARAJA_KEYS = (
    "Body", "stkCallback", "MerchantRequestID", "CheckoutRequestID", "ResultCode", "ResultDesc",
    "CallbackMetadata", "Item", "Name", "Value", "Amount", "MpesaReceiptNumber",
    "TransactionDate", "PhoneNumber", "Balance",
)  # fmt: skip
KEYS = st.one_of(st.sampled_from(DARAJA_KEYS), TEXT)


def json_values(scalars=SCALARS):
    """Any JSON value: lists and objects of `scalars`, a few levels deep."""
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
        max_leaves=12,
    )


JSON = json_values()


def encode(value, ascii_only: bool = True) -> bytes:
    """JSON as a client might send it; non-ASCII surrogates become invalid UTF-8 bytes."""
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


ENCODED_JSON = st.builds(encode, JSON, st.booleans())


def nested(depth: int, opener: str = "[", closer: str = "]", core: str = "1") -> str:
    """Nesting `depth` deep, written out (json.dumps would itself recurse)."""
    return opener * depth + core + closer * depth


DEPTHS = st.integers(min_value=1, max_value=3000)
DEEP_JSON = st.one_of(
    st.builds(nested, DEPTHS),
    st.builds(nested, DEPTHS, st.just('{"Body":'), st.just("}")),
    st.builds(lambda n: "[" * n, DEPTHS),  # never closed
).map(str.encode)
RAW_ODDITIES = st.sampled_from(
    [b"", b"null", b"NaN", b"-Infinity", b"[]", b"{}", b'"\\u0000"', b"\xff\xfe\xfd",
     b"1" + b"0" * 5000,  # past Python's int-to-str digit limit
     b'{"Body": {"stkCallback": {"CheckoutRequestID": "ws_CO_x", "ResultCode": '
     + b"9" * 5000 + b"}}}",
     b'{"Body": {"stkCallback": {"CheckoutRequestID": "\\ud800", "ResultCode": 0}}}',
     b'{"Body": {"stkCallback": {"CheckoutRequestID": "ws_CO_x", "ResultCode": 0, '
     b'"CallbackMetadata": {"Item": [{"Name": "TransactionDate", "Value": Infinity}]}}}}',
     b'{"Body": null}', b'{"Body": "x"}', b'{"Body": {"stkCallback": []}}']
)  # fmt: skip

ITEM_NAMES = ("Amount", "MpesaReceiptNumber", "Balance", "TransactionDate", "PhoneNumber")
RESULT_CODES = st.sampled_from([0, "0", 1032, 1037, 1019, 1, 2001, 17, 10**12, -1])
ITEM = st.fixed_dictionaries(
    {}, optional={"Name": st.sampled_from(ITEM_NAMES) | JSON, "Value": JSON}
)
STK_CALLBACK_LIKE = st.fixed_dictionaries(
    {},
    optional={
        "MerchantRequestID": JSON,
        "CheckoutRequestID": st.just("ws_CO_unknown") | JSON,
        "ResultCode": RESULT_CODES | JSON,
        "ResultDesc": JSON,
        "CallbackMetadata": st.fixed_dictionaries({}, optional={"Item": st.lists(ITEM) | JSON})
        | JSON,
    },
).map(lambda callback: {"Body": {"stkCallback": callback}})

ANY_BODY = st.one_of(
    st.binary(max_size=200),
    ENCODED_JSON,
    st.builds(encode, STK_CALLBACK_LIKE, st.booleans()),
    DEEP_JSON,
    RAW_ODDITIES,
)

# -- helpers -------------------------------------------------------------------------------------


def assert_error_shape(response, top_level_extra: bool = False) -> dict:
    """The contract's error: {"error": {"code": str, "message": str, "fields": dict}}."""
    assert response.is_json, response.get_data(as_text=True)[:500]
    body = response.get_json()
    assert isinstance(body, dict) and "error" in body, body
    if not top_level_extra:
        assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "fields"}, body
    assert isinstance(error["code"], str) and error["code"], body
    assert isinstance(error["message"], str) and error["message"], body
    assert isinstance(error["fields"], dict), body
    return error

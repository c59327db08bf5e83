"""paymentapp/mpesa/formats.py: Daraja's formats, one definition each (timestamps,
amounts, receipts, account numbers), as the client, the callback parsers and the
simulator use them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paymentapp.mpesa import client, formats
from paymentapp.mpesa.formats import (
    eat_timestamp,
    luhn_ok,
    normalise_account,
    order_digits,
    order_number,
    parse_amount,
    parse_eat_timestamp,
    parse_receipt,
)


def test_the_client_hands_on_the_formats_it_always_exported():
    assert client.EAT is formats.EAT
    assert client.eat_timestamp is formats.eat_timestamp
    assert client.stk_password is formats.stk_password


@pytest.mark.parametrize("value", [20191219102115, "20191219102115"])
def test_transaction_date_and_trans_time_are_east_africa_time(value):
    assert parse_eat_timestamp(value) == datetime(2019, 12, 19, 7, 21, 15, tzinfo=UTC)


def test_a_timestamp_reads_back_as_the_moment_it_was_written():
    now = datetime(2024, 7, 10, 21, 5, 9, tzinfo=UTC)
    assert eat_timestamp(now) == "20240711000509"  # the next day in Nairobi
    assert parse_eat_timestamp(eat_timestamp(now)) == now


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        True,
        2019121910211.5,
        "2019-12-19 10:21",
        "20191319102115",  # month 13
        "20190230120000",  # February 30th
        "20191219240000",  # hour 24
        "20191219105960",  # second 60
        "00000101000000",  # year 0
        "２０１９１２１９１０２１１５",  # fullwidth digits
    ],
)
def test_anything_else_is_no_timestamp(value):
    assert parse_eat_timestamp(value) is None


@given(st.text(alphabet="0123456789", min_size=14, max_size=14))
def test_fourteen_digits_read_as_strptime_reads_them(text):
    """Read field by field, as `strptime` would: the same moment, or None where strptime
    refuses the date (February 30th, hour 24, second 60, year 0)."""
    try:
        expected = datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=formats.EAT)
        expected = expected.astimezone(UTC)
    except (ValueError, OverflowError):
        expected = None
    assert parse_eat_timestamp(text) == expected
    assert parse_eat_timestamp(int(text)) == (expected if text[0] != "0" else None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, (1, None)),
        (1.0, (1, None)),
        ("10.00", (10, None)),
        (None, (None, "no Amount")),
        (True, (None, "Amount is not a number")),
        ("1e3", (None, "Amount is not a number")),
        (float("nan"), (None, "Amount is not finite")),
        (0, (None, "Amount is not positive")),
        ("12.50", (None, "Amount is not a whole number of shillings")),
        (2**31, (None, "Amount is out of range")),
    ],
)
def test_amounts_are_whole_shillings_or_say_why_not(value, expected):
    assert parse_amount(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("NLJ7RT61SV", "NLJ7RT61SV"),
        (" rktqdm7w6s ", "RKTQDM7W6S"),
        ("ABC123", "ABC123"),  # 6: the shortest accepted
        ("A" * 20, "A" * 20),  # 20: the longest
        ("ABC12", None),
        ("A" * 21, None),
        ("NLJ7-RT61SV", None),
        ("ßLJ7RT61SV", None),  # letters and digits of ASCII only
        (None, None),
        (1234567, None),
    ],
)
def test_one_receipt_rule(value, expected):
    assert parse_receipt(value) == expected


def test_order_numbers_end_in_a_check_digit():
    assert order_number(1001) == "ORD-10017"
    assert order_digits("ORD-10017") == "10017" and luhn_ok("10017")
    assert not luhn_ok("10018")


@pytest.mark.parametrize(
    ("typed", "number"),
    [
        ("ORD-10017", "ORD-10017"),
        ("ord 10017", "ORD-10017"),
        ("ord.10017", "ORD-10017"),
        (" 10017 ", "ORD-10017"),
        ("ORD-12345678", "ORD-12345678"),  # as long as an AccountReference allows
        ("ORD-123456789", None),
        ("invoice 7", None),
        ("", None),
    ],
)
def test_account_numbers_are_read_loosely(typed, number):
    assert normalise_account(typed) == number

"""paymentapp/phones.py: which numbers are accepted (any Kenyan mobile), and whose range a
number is in (the dialog's network hint). The browser twin is checked against the same
tables in tests/test_browser_phone_hint.py."""

from __future__ import annotations

import pytest

from paymentapp import phones
from paymentapp.phones import InvalidPhone, masked_payload, network_of, normalize_phone
from tests.phone_cases import NETWORK_TABLE


def test_the_rule_is_named_for_what_it_checks():
    assert hasattr(phones, "KENYAN_MOBILE")
    assert not hasattr(phones, "SAFARICOM_MOBILE")


@pytest.mark.parametrize(
    "typed", ["0733 123 456", "0750 123 456", "0771 234 567", "0101 234 567", "0762 123 456"]
)
def test_airtel_and_telkom_ranges_are_accepted_since_numbers_are_ported(typed):
    assert normalize_phone(typed).startswith("254")


def test_a_refused_number_is_called_not_kenyan_rather_than_not_safaricom():
    with pytest.raises(InvalidPhone) as refused:
        normalize_phone("0812 345 678")
    assert "not a Kenyan mobile number" in str(refused.value)
    assert "Safaricom" not in str(refused.value)


@pytest.mark.parametrize(("typed", "network"), NETWORK_TABLE)
def test_network_of_follows_the_allocations(typed, network):
    assert network_of(typed) == network


def test_network_of_ignores_what_is_not_a_phone_number():
    assert network_of(None) is None
    assert network_of(True) is None
    assert network_of(254712345678) == "Safaricom"


def test_every_network_range_is_a_kenyan_mobile_range_and_none_overlap():
    codes = []
    for low, high, name in phones.NETWORK_RANGES:
        assert low <= high and name in ("Safaricom", "Airtel", "Telkom")
        codes += range(low, high + 1)
        for code in (low, high):
            assert phones.KENYAN_MOBILE.match(f"254{code}123456"), code
    assert len(codes) == len(set(codes)), "overlapping ranges"


def test_masked_payload_masks_every_phone_of_an_order_and_its_payments():
    order = {
        "id": "ord_1",
        "customer_phone": "254712345678",
        "payments": [{"id": "pay_1", "phone": "254722000111", "phone_masked": "2547•••••111"}],
    }
    masked = masked_payload(order)
    assert masked["customer_phone"] == "2547•••••678"
    assert masked["payments"] == [
        {"id": "pay_1", "phone": "2547•••••111", "phone_masked": "2547•••••111"}
    ]
    # `paid_phone` is masked when a payment's JSON has it, and never added when it has not
    paid = masked_payload({**order, "payments": [{"phone": None, "paid_phone": "254722000111"}]})
    assert paid["payments"] == [{"phone": None, "paid_phone": "2547•••••111"}]
    assert order["customer_phone"] == "254712345678"  # the caller's dict is left alone
    assert masked_payload({"customer_phone": None}) == {"customer_phone": None}

"""Daraja's formats, each defined once: the client (`stk.py`), the callback parsers
(`callbacks/stk.py`, `callbacks/c2b.py`), order numbers (`orders/services.py`) and the
simulator all use these, so the app and its stand-in for Daraja cannot drift apart.

- **Time**: `YYYYMMDDHHmmss` in East Africa Time (UTC+3), with no zone written: the STK
  Push/Query `Timestamp` (which also goes into the `Password`), the STK callback's
  `TransactionDate` (a JSON number) and the C2B `TransTime` (a string). Stored as UTC.
- **Amounts**: whole shillings. Daraja sends `1`, `1.0` or `"10.00"` (`parse_amount`);
  it takes 1 to `MAX_AMOUNT` for one payment.
- **Receipts**: `RECEIPT`, the one rule for an M-Pesa receipt (why 6 to 20: see there).
- **Account numbers**: the order number is the Paybill account and the STK
  `AccountReference`: `ORD-` and digits, the last a Luhn check digit. Customers type it
  loosely; `normalise_account` reads it back.
- **Phone numbers** are `paymentapp/phones.py` (normalise, mask, `masked_payload`): what
  customers type is as much their format as Daraja's.
"""

from __future__ import annotations

import base64
import math
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

# -- time -------------------------------------------------------------------------------

EAT = timezone(timedelta(hours=3), "EAT")
TIMESTAMP_FORMAT = "%Y%m%d%H%M%S"


def eat_timestamp(now: datetime | None = None) -> str:
    """Daraja's `YYYYMMDDHHmmss` in East Africa Time (UTC+3)."""
    return (now or datetime.now(UTC)).astimezone(EAT).strftime(TIMESTAMP_FORMAT)


def parse_eat_timestamp(value) -> datetime | None:
    """Daraja's `YYYYMMDDHHmmss` (STK `TransactionDate` 20191219102115, C2B `TransTime`
    "20191122063845"), East Africa Time, as UTC; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    text = str(value)
    if not (len(text) == 14 and text.isascii() and text.isdigit()):
        return None
    try:  # the fields by position: strptime reads them the same, about 10 times slower
        fields = (text[0:4], text[4:6], text[6:8], text[8:10], text[10:12], text[12:14])
        return datetime(*map(int, fields), tzinfo=EAT).astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def stk_password(shortcode: str, passkey: str, timestamp: str) -> str:
    """STK Push/Query `Password`: base64 of shortcode + passkey + the request's Timestamp
    (a Timestamp that differs from the one in the Password is "Wrong credentials")."""
    return base64.b64encode(f"{shortcode}{passkey}{timestamp}".encode()).decode()


# -- amounts ------------------------------------------------------------------------------

MAX_AMOUNT = 250_000  # Daraja's ceiling for one STK Push or Paybill payment, in shillings
# Largest value the integer columns hold on every database (PostgreSQL INTEGER).
MAX_DB_INT = 2**31 - 1
AMOUNT_TEXT = re.compile(r"[0-9]{1,12}(\.[0-9]{1,6})?")


def parse_amount(value) -> tuple[int | None, str | None]:
    """Daraja sends `1.00` or `1`: a positive whole number of shillings, or (None, why)."""
    if value is None:
        return None, "no Amount"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None, "Amount is not a number"
    if isinstance(value, str):
        if not AMOUNT_TEXT.fullmatch(value):
            return None, "Amount is not a number"
        number = Decimal(value)
    elif isinstance(value, float) and not math.isfinite(value):
        return None, "Amount is not finite"
    else:
        number = Decimal(value)
    if number <= 0:
        return None, "Amount is not positive"
    if number != number.to_integral_value():
        return None, "Amount is not a whole number of shillings"
    if number > MAX_DB_INT:
        return None, "Amount is out of range"
    return int(number), None


# -- receipts -----------------------------------------------------------------------------

# An M-Pesa receipt: the STK callback's `MpesaReceiptNumber` and the C2B `TransID` (one
# alphabet, unique across both). Daraja documents no length; every receipt it shows
# (NLJ7RT61SV, RKTQDM7W6S) and every one the tests use is 10 letters and digits. We accept
# 6 to 20 ASCII letters and digits, as Paybill confirmations and hand entries always have:
# refusing a confirmation for an unexpected length would drop the notice of money that
# moved, which is worse than accepting an odd receipt. Stored upper-case.
RECEIPT = re.compile(r"[A-Za-z0-9]{6,20}")


def parse_receipt(value) -> str | None:
    """`value` as a stored receipt (trimmed, upper-case), or None when it is not one."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    return text.upper() if RECEIPT.fullmatch(text) else None


# -- account numbers (order numbers) ------------------------------------------------------

ORDER_PREFIX = "ORD-"
ACCOUNT_REFERENCE_MAX = 12  # STK Push `AccountReference`: an order number must fit
TRANSACTION_DESC_MAX = 13  # STK Push `TransactionDesc`
MAX_ORDER_DIGITS = ACCOUNT_REFERENCE_MAX - len(ORDER_PREFIX)
ACCOUNT_NOISE = re.compile(r"[\s\-._/#:]+")
_PREFIX_LETTERS = ACCOUNT_NOISE.sub("", ORDER_PREFIX)  # "ORD": what is left once typed loosely


def luhn_digit(digits: str) -> str:
    """The Luhn check digit for `digits`: it catches every single-digit typo and most
    swaps of neighbours, so an account number typed at a Paybill cannot name another
    order by one slip."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 0:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return str((10 - total % 10) % 10)


def luhn_ok(digits: str) -> bool:
    """Do `digits` end in their Luhn check digit?"""
    return len(digits) >= 2 and luhn_digit(digits[:-1]) == digits[-1]


def order_number(serial: int, prefix: str = ORDER_PREFIX) -> str:
    """`ORD-<serial><check digit>`: order 1001 is `ORD-10017`."""
    return f"{prefix}{serial}{luhn_digit(str(serial))}"


def order_digits(number: str) -> str:
    """`ORD-10017` → `10017`: the digits of an order number, check digit included."""
    return number.removeprefix(ORDER_PREFIX)


def normalise_account(account: str) -> str | None:
    """`ord 10017`, `ORD-10017`, `ord.10017`, `10017` → `ORD-10017`; None if no number."""
    compact = ACCOUNT_NOISE.sub("", account or "").upper().removeprefix(_PREFIX_LETTERS)
    if not (compact.isascii() and compact.isdigit()) or not 1 <= len(compact) <= MAX_ORDER_DIGITS:
        return None
    return f"{ORDER_PREFIX}{compact}"

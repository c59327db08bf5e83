"""Kenyan mobile numbers: normalise what customers type to Daraja's 2547XXXXXXXX form."""

from __future__ import annotations

import re

# Any Kenyan mobile number (07…, 010…/011…): Safaricom's, Airtel's and Telkom's ranges
# alike, because numbers are ported between networks and a ported number keeps its
# prefix. `network_of` says whose range a number is in, for a hint only. The browser
# twin is clients/js/packages/client/src/phones.ts (KENYAN_MOBILE, networkOf); the
# parity tests keep the two in step.
_MOBILE = r"254(7\d{8}|1[01]\d{7})"
KENYAN_MOBILE = re.compile(rf"^{_MOBILE}$")
_MOBILE_IN_TEXT = re.compile(rf"(?<!\d){_MOBILE}(?!\d)")
ACCEPTED_EXAMPLE = "0712 345 678, 0112 345 678, +254 712 345 678 or 254712345678"

# The Communications Authority's allocations, by the three digits after 0/254
# (inclusive ranges, as commonly listed). Ranges not here (e.g. 0760) have no network.
NETWORK_RANGES: tuple[tuple[int, int, str], ...] = (
    (700, 729, "Safaricom"),
    (740, 743, "Safaricom"),
    (745, 746, "Safaricom"),
    (748, 748, "Safaricom"),
    (757, 759, "Safaricom"),
    (768, 769, "Safaricom"),
    (790, 799, "Safaricom"),
    (110, 115, "Safaricom"),
    (730, 739, "Airtel"),
    (750, 756, "Airtel"),
    (762, 762, "Airtel"),
    (780, 789, "Airtel"),
    (100, 102, "Airtel"),
    (770, 779, "Telkom"),
)


class InvalidPhone(ValueError):
    """The text is not a Kenyan mobile number."""


def normalize_phone(raw) -> str:
    """Return `2547XXXXXXXX`/`2541XXXXXXXX` or raise `InvalidPhone` with a helpful message."""
    if raw is None or raw == "":
        raise InvalidPhone(f"Enter your M-Pesa phone number, for example {ACCEPTED_EXAMPLE}.")
    if not isinstance(raw, str | int) or isinstance(raw, bool):
        raise InvalidPhone(f"Enter a phone number as text, for example {ACCEPTED_EXAMPLE}.")
    text = str(raw).strip()[:40]
    compact = re.sub(r"[\s\-().]", "", text)
    if compact.startswith("+"):
        compact = compact[1:]
    if not compact.isdigit():
        raise InvalidPhone(f"A phone number has only digits. Use e.g. {ACCEPTED_EXAMPLE}.")
    if compact.startswith("0") and len(compact) == 10:
        compact = "254" + compact[1:]
    elif len(compact) == 9 and compact[0] in "71":
        compact = "254" + compact
    if not KENYAN_MOBILE.match(compact):
        raise InvalidPhone(f"{text!r} is not a Kenyan mobile number. Use e.g. {ACCEPTED_EXAMPLE}.")
    return compact


def network_of(phone) -> str | None:
    """`"Safaricom"`, `"Airtel"` or `"Telkom"`: whose range the number's prefix is in, or
    None (not a mobile number, or a range not allocated to these three). Only a hint: a
    number ported to Safaricom keeps its Airtel prefix and takes M-Pesa prompts."""
    try:
        normalized = normalize_phone(phone)
    except InvalidPhone:
        return None
    prefix = int(normalized[3:6])
    return next((name for low, high, name in NETWORK_RANGES if low <= prefix <= high), None)


def mask_phone(phone: str | None) -> str | None:
    """`254712345678` → `2547•••••678`: enough for a customer to recognise, not to reuse."""
    if not phone:
        return phone
    return phone[:4] + "•" * (len(phone) - 7) + phone[-3:]


def masked_payload(order: dict) -> dict:
    """An order's JSON (`orders/schemas.py` `order_json`, with or without payments) with
    every phone number masked: what admin browsers and webhook receivers are sent. The one
    list of phone fields: the order's `customer_phone`, each payment's `phone` and, when
    the payment's JSON has it, `paid_phone` (never added: a webhook's order has the shape
    of `GET /api/orders/<id>`, the OpenAPI document's `OrderWithPayments`)."""
    masked = {**order, "customer_phone": mask_phone(order["customer_phone"])}
    if "payments" in order:
        masked["payments"] = [_masked_payment(payment) for payment in order["payments"]]
    return masked


def _masked_payment(payment: dict) -> dict:
    masked = {**payment, "phone": mask_phone(payment["phone"])}
    if "paid_phone" in payment:
        masked["paid_phone"] = mask_phone(payment["paid_phone"])
    return masked


def mask_phones_in(text: str) -> str:
    """`text` with every Kenyan mobile number in it (254… form) masked."""
    return _MOBILE_IN_TEXT.sub(lambda match: mask_phone(match.group()), text)

"""Kenyan mobile numbers: normalise what customers type to Daraja's 2547XXXXXXXX form."""

from __future__ import annotations

import re

SAFARICOM_MOBILE = re.compile(r"^254(7\d{8}|1[01]\d{7})$")
ACCEPTED_EXAMPLE = "0712 345 678, 0112 345 678, +254 712 345 678 or 254712345678"


class InvalidPhone(ValueError):
    """The text is not a Safaricom-range mobile number."""


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
    if not SAFARICOM_MOBILE.match(compact):
        raise InvalidPhone(
            f"{text!r} is not a Safaricom mobile number. Use e.g. {ACCEPTED_EXAMPLE}."
        )
    return compact


def mask_phone(phone: str | None) -> str | None:
    """`254712345678` → `2547•••••678`: enough for a customer to recognise, not to reuse."""
    if not phone:
        return phone
    return phone[:4] + "•" * (len(phone) - 7) + phone[-3:]

"""`Paymentapp-Signature: t=<unix>,v1=<hex hmac_sha256(secret, "<t>.<body>")>`.

During a secret rotation a delivery carries one `v1=` per valid secret (new first), so a
receiver that knows either one verifies it. Receivers reject a `t` older than the
tolerance (5 minutes) to stop replays, and compare in constant time (`verify`).
"""

from __future__ import annotations

import hashlib
import hmac
import time

TOLERANCE_S = 300
HEADER = "Paymentapp-Signature"
EVENT_ID_HEADER = "Paymentapp-Event-Id"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secrets: list[str], timestamp: int, body: bytes) -> str:
    return ",".join([f"t={timestamp}", *(f"v1={signature(s, timestamp, body)}" for s in secrets)])


def verify(
    header: str | None,
    body: bytes,
    secret: str,
    *,
    now: float | None = None,
    tolerance_s: int = TOLERANCE_S,
) -> bool:
    """The receiver's check (the recipe in docs/webhooks.md, in Python)."""
    if not header:
        return False
    parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
    stamps = [v for k, v in parts if k.strip() == "t"]
    if len(stamps) != 1 or not stamps[0].isdigit():
        return False
    timestamp = int(stamps[0])
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = signature(secret, timestamp, body)
    return any(
        hmac.compare_digest(expected, value.strip()) for key, value in parts if key.strip() == "v1"
    )

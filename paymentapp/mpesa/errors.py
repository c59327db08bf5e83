"""What a Daraja answer means: the errors every API raises, and the one mapping from
Daraja's error answers to them (the table in docs/daraja.md).

`kind` names the error on the Daraja metrics (`paymentapp/metrics/instruments.py`);
`message` is safe to show; `code` is Daraja's `errorCode`.
"""

from __future__ import annotations


class DarajaError(Exception):
    """Daraja refused or failed. `message` is safe to show; `code` is Daraja's errorCode."""

    kind = "refused"

    def __init__(self, message: str, code: str | None = None, http_status: int | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status = http_status


class DarajaRefused(DarajaError):
    """A request Daraja judged invalid (e.g. 400.002.02 invalid field)."""


class DarajaAuthError(DarajaError):
    """Wrong consumer key/secret, shortcode or passkey."""

    kind = "auth"


class DarajaBusy(DarajaError):
    """Spike arrest or quota (500.003.02/03): back off before trying again."""

    kind = "busy"
    retry_after_s = 60


class SubscriberLocked(DarajaError):
    """Another STK prompt is open on this phone; wait about a minute."""

    kind = "subscriber_locked"
    retry_after_s = 60


class DarajaUnavailable(DarajaError):
    """No usable answer: connection failure, timeout, 5xx or malformed JSON."""

    kind = "unavailable"

    def __init__(self, message: str, *, maybe_sent: bool = False, **kwargs):
        super().__init__(message, **kwargs)
        self.maybe_sent = maybe_sent  # True when Daraja may have acted on the request


def error_from_body(status: int, body: dict) -> DarajaError:
    """Map a Daraja error answer to the right exception (table in docs/daraja.md)."""
    code = str(body.get("errorCode") or body.get("ResponseCode") or "")
    message = str(
        body.get("errorMessage")
        or body.get("ResponseDescription")
        or f"Daraja answered HTTP {status}"
    )
    lowered = message.lower()
    if code.startswith("500.003.0"):
        if code == "500.003.1001":
            return DarajaUnavailable(message, code=code, http_status=status)
        return DarajaBusy(message, code=code, http_status=status)
    if code == "500.001.1001":
        if "lock subscriber" in lowered or "in process for the current subscriber" in lowered:
            return SubscriberLocked(message, code=code, http_status=status)
        return DarajaAuthError(message, code=code, http_status=status)
    if status < 300 or code.startswith(("400.", "404.")) or status in (400, 401, 403, 404):
        if "credential" in lowered or "invalid authentication" in lowered:
            return DarajaAuthError(message, code=code, http_status=status)
        return DarajaRefused(message, code=code, http_status=status)
    return DarajaUnavailable(message, code=code or None, http_status=status)

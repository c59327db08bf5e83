"""M-Pesa Express: STK Push (the payment prompt on the customer's phone) and STK Query
(how did a prompt end?). The result itself arrives as a callback: `callbacks/stk.py`.

Quirks handled here (see docs/daraja.md):
- STK Push is not idempotent: it is sent again only when Daraja refused the token
  (`transport.py`); a refused connection fails at once, a read timeout is "maybe sent".
- The Timestamp is East Africa Time and goes into the Password too (`formats.py`).
- After a spike arrest or quota answer (500.003.0x) no process pushes for BUSY_PAUSE_S.
- STK Query's "The transaction is being processed" means the prompt is still open;
  its ResultCode is a string (a number in the callback).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from .errors import DarajaBusy, DarajaUnavailable, error_from_body
from .formats import ACCOUNT_REFERENCE_MAX, TRANSACTION_DESC_MAX, eat_timestamp, stk_password
from .transport import Endpoint, Transport, counts_errors

log = logging.getLogger(__name__)

PUSH = Endpoint("/mpesa/stkpush/v1/processrequest", "stkpush")
QUERY = Endpoint("/mpesa/stkpushquery/v1/query", "stkquery")
BUSY_PAUSE_S = 10  # after a 500.003.0x spike arrest / quota answer, pause new pushes
STILL_PROCESSING = "the transaction is being processed"


@dataclass(frozen=True)
class PushAccepted:
    merchant_request_id: str
    checkout_request_id: str
    customer_message: str


@dataclass(frozen=True)
class QueryResult:
    """`pending` True while the customer has not answered; else a final result code."""

    pending: bool
    result_code: int | None = None
    result_desc: str | None = None


class StkApi(Transport):
    """STK Push and STK Query for the configured shortcode."""

    def __init__(self, config: dict, redis_client=None):
        super().__init__(config, redis_client)
        self.shortcode = config["MPESA_SHORTCODE"]
        self.passkey = config["MPESA_PASSKEY"]
        self.transaction_type = config["MPESA_TRANSACTION_TYPE"]
        self.party_b = config["MPESA_PARTY_B"]
        self.callback_url = (
            f"{config['PUBLIC_BASE_URL']}/callbacks/stk/{config['MPESA_CALLBACK_TOKEN']}"
        )

    def busy_for(self) -> float:
        """Seconds to wait before the next push, after Daraja's spike arrest."""
        return self.tokens.paused_for()

    def _password(self) -> tuple[str, str]:
        timestamp = eat_timestamp()
        return stk_password(self.shortcode, self.passkey, timestamp), timestamp

    @counts_errors(PUSH)
    def stk_push(
        self, *, amount: int, phone: str, reference: str, description: str
    ) -> PushAccepted:
        """Send the payment prompt to the customer's phone."""
        password, timestamp = self._password()
        payload = {
            "BusinessShortCode": self.shortcode,
            "Password": password,
            "Timestamp": timestamp,
            "TransactionType": self.transaction_type,
            "Amount": int(amount),
            "PartyA": phone,
            "PartyB": self.party_b,
            "PhoneNumber": phone,
            "CallBackURL": self.callback_url,
            "AccountReference": reference[:ACCOUNT_REFERENCE_MAX],
            "TransactionDesc": (description or reference)[:TRANSACTION_DESC_MAX],
        }
        started = time.monotonic()
        status, body = self._authorised_post(PUSH, payload, maybe_sent_on_timeout=True)
        elapsed_ms = round((time.monotonic() - started) * 1000)
        if status == 200 and str(body.get("ResponseCode")) == "0" and body.get("CheckoutRequestID"):
            log.info(
                f"STK push accepted for {reference}",
                extra={
                    "event": "daraja.stk_push",
                    "order": reference,
                    "phone": phone,
                    "amount": amount,
                    "checkout_request_id": body["CheckoutRequestID"],
                    "ms": elapsed_ms,
                },
            )
            return PushAccepted(
                merchant_request_id=str(body.get("MerchantRequestID") or ""),
                checkout_request_id=str(body["CheckoutRequestID"]),
                customer_message=str(body.get("CustomerMessage") or ""),
            )
        error = error_from_body(status, body)
        if isinstance(error, DarajaBusy):
            self.tokens.pause(BUSY_PAUSE_S)
        log.info(
            f"STK push refused for {reference}",
            extra={
                "event": "daraja.stk_push_refused",
                "order": reference,
                "phone": phone,
                "code": error.code,
                "reason": error.message,
                "ms": elapsed_ms,
            },
        )
        raise error

    @counts_errors(QUERY)
    def stk_query(self, checkout_request_id: str) -> QueryResult:
        """Ask Daraja how a prompt ended; `pending` while the customer has not answered."""
        password, timestamp = self._password()
        payload = {
            "BusinessShortCode": self.shortcode,
            "Password": password,
            "Timestamp": timestamp,
            "CheckoutRequestID": checkout_request_id,
        }
        status, body = self._authorised_post(QUERY, payload, maybe_sent_on_timeout=False)
        message = str(body.get("errorMessage") or "")
        if STILL_PROCESSING in message.lower():
            return QueryResult(pending=True)
        if "ResultCode" in body and str(body.get("ResponseCode", "0")) == "0":
            try:
                code = int(str(body["ResultCode"]).strip())
            except ValueError:
                raise DarajaUnavailable("M-Pesa gave an unreadable query answer.") from None
            return QueryResult(
                pending=False, result_code=code, result_desc=str(body.get("ResultDesc") or "")
            )
        raise error_from_body(status, body)

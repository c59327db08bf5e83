"""Daraja API client: OAuth token, STK Push and STK Query on one shared `requests` session.

Quirks handled here (see docs/daraja.md):
- Each token request invalidates the previous token, so the deployment shares ONE token
  (Redis when configured, with a lock so one process refreshes) and refreshes it early.
- `404.001.03 Invalid Access Token` → refresh once and retry once.
- STK Push is not idempotent: it is retried only when Daraja surely did not get it
  (connection refused) or refused the token; a read timeout is reported as unknown.
- The Timestamp is East Africa Time and goes into the Password too.
- STK Query's "The transaction is being processed" means the prompt is still open.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import threading
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import urlsplit

import requests
from flask import current_app

from .. import metrics
from ..logs import log_event

log = logging.getLogger(__name__)

EAT = timezone(timedelta(hours=3), "EAT")
TOKEN_PATH = "/oauth/v1/generate?grant_type=client_credentials"
STK_PUSH_PATH = "/mpesa/stkpush/v1/processrequest"
STK_QUERY_PATH = "/mpesa/stkpushquery/v1/query"
C2B_REGISTER_PATH = "/mpesa/c2b/v2/registerurl"
TOKEN_REFRESH_MARGIN_S = 120  # refresh this long before Daraja's expiry
BUSY_PAUSE_S = 10  # after a 500.003.0x spike arrest / quota answer, pause new pushes
INVALID_TOKEN = "404.001.03"
STILL_PROCESSING = "the transaction is being processed"
# The `endpoint` label of the Daraja metrics (paymentapp/metrics.py), by request path.
ENDPOINTS = {
    TOKEN_PATH: "oauth",
    STK_PUSH_PATH: "stkpush",
    STK_QUERY_PATH: "stkquery",
    C2B_REGISTER_PATH: "c2b_register",
}


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


def eat_timestamp(now: datetime | None = None) -> str:
    """Daraja's `YYYYMMDDHHmmss` in East Africa Time (UTC+3)."""
    return (now or datetime.now(UTC)).astimezone(EAT).strftime("%Y%m%d%H%M%S")


def stk_password(shortcode: str, passkey: str, timestamp: str) -> str:
    return base64.b64encode(f"{shortcode}{passkey}{timestamp}".encode()).decode()


def _counts_errors(endpoint: str):
    """Count a DarajaError leaving this call, once: a token fetch that fails inside an
    STK Push is an `oauth` error, not also a `stkpush` one."""

    def decorate(call):
        @functools.wraps(call)
        def counted(*args, **kwargs):
            try:
                return call(*args, **kwargs)
            except DarajaError as exc:
                if not getattr(exc, "counted", False):
                    exc.counted = True
                    metrics.count_daraja_error(endpoint, exc.kind)
                raise

        return counted

    return decorate


def _error_from_body(status: int, body: dict) -> DarajaError:
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


class TokenCache:
    """One token for the whole deployment: shared in Redis (refreshed under a Redis lock),
    else in this process. If Redis is down, payments keep working on the process copy
    (at worst a few processes fetch their own token until Redis is back)."""

    _local: dict[str, tuple[str, float]] = {}
    _local_lock = threading.Lock()

    def __init__(self, redis_client, key: str):
        self.redis = redis_client
        self.key = key

    @classmethod
    def forget_local(cls) -> None:
        """Drop this process's copies (tests: a new simulator knows none of them)."""
        cls._local.clear()

    def _shared(self, operation, default=None):
        """Run a Redis operation; None (and a warning) when Redis is unreachable."""
        import redis

        try:
            return operation(self.redis)
        except redis.RedisError as exc:
            log.warning(
                "token cache: Redis unavailable (%s); using this process's copy",
                exc.__class__.__name__,
            )
            return default

    def get(self) -> str | None:
        if self.redis is not None:
            raw = self._shared(lambda r: r.get(self.key), default=False)
            if raw is not False:  # Redis answered: it is the source of truth
                if raw:
                    data = json.loads(raw)
                    if data["expires_at"] - TOKEN_REFRESH_MARGIN_S > time.time():
                        return data["token"]
                return None
        cached = self._local.get(self.key)
        if cached and cached[1] - TOKEN_REFRESH_MARGIN_S > time.time():
            return cached[0]
        return None

    def put(self, token: str, expires_in: int) -> None:
        expires_at = time.time() + expires_in
        self._local[self.key] = (token, expires_at)
        if self.redis is not None:
            value = json.dumps({"token": token, "expires_at": expires_at})
            self._shared(lambda r: r.set(self.key, value, ex=max(expires_in, 1)))

    def drop(self, token: str) -> None:
        """Forget `token` unless another process already replaced it."""
        if self._local.get(self.key, ("",))[0] == token:
            self._local.pop(self.key, None)
        if self.redis is not None:
            raw = self._shared(lambda r: r.get(self.key))
            if raw and json.loads(raw)["token"] == token:
                self._shared(lambda r: r.delete(self.key))

    def pause(self, seconds: float) -> None:
        """Daraja asked us to slow down: no process sends a push for `seconds`."""
        until = time.time() + seconds
        self._local[self.key + ":busy"] = ("", until)
        if self.redis is not None:
            self._shared(lambda r: r.set(self.key + ":busy", str(until), px=int(seconds * 1000)))

    def paused_for(self) -> float:
        """Seconds left of a spike-arrest pause (shared through Redis when configured)."""
        until = self._local.get(self.key + ":busy", ("", 0.0))[1]
        if self.redis is not None:
            raw = self._shared(lambda r: r.get(self.key + ":busy"))
            until = max(until, float(raw)) if raw else until
        return max(0.0, until - time.time())

    @contextmanager
    def lock(self):
        """Only one process refreshes: a Redis lock, or this process's lock without Redis."""
        import redis

        if self.redis is None:
            with self._local_lock:
                yield
            return
        shared = self.redis.lock(self.key + ":lock", timeout=15, blocking_timeout=20)
        try:
            acquired = shared.acquire()
        except redis.RedisError:
            acquired = None
        if not acquired:
            with self._local_lock:
                yield
            return
        try:
            yield
        finally:
            with suppress(redis.RedisError):
                shared.release()


# One connection pool for the process (gevent-patched sockets under gunicorn).
_SESSION = requests.Session()


class DarajaClient:
    """Talks to Daraja (or the simulator, which speaks the same protocol)."""

    def __init__(self, config: dict, redis_client=None):
        self.base_url = config["MPESA_BASE_URL"].rstrip("/")
        self.consumer_key = config["MPESA_CONSUMER_KEY"]
        self.consumer_secret = config["MPESA_CONSUMER_SECRET"]
        self.shortcode = config["MPESA_SHORTCODE"]
        self.passkey = config["MPESA_PASSKEY"]
        self.transaction_type = config["MPESA_TRANSACTION_TYPE"]
        self.party_b = config["MPESA_PARTY_B"]
        self.callback_url = (
            f"{config['PUBLIC_BASE_URL']}/callbacks/stk/{config['MPESA_CALLBACK_TOKEN']}"
        )
        self.timeout = (
            config.get("MPESA_CONNECT_TIMEOUT_S", 5),
            config.get("MPESA_READ_TIMEOUT_S", 30),
        )
        fingerprint = hashlib.sha256(f"{self.base_url}|{self.consumer_key}".encode()).hexdigest()
        self.tokens = TokenCache(redis_client, f"paymentapp:daraja-token:{fingerprint[:16]}")
        self.session = _SESSION

    # -- transport ---------------------------------------------------------------------

    def _request(self, method: str, path: str, *, maybe_sent_on_timeout: bool, **kwargs):
        url = self.base_url + path
        started = time.perf_counter()
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            metrics.observe_daraja(ENDPOINTS.get(path, "other"), time.perf_counter() - started)
            self._log_transport_error(exc, method, path)
            self._raise_unavailable(exc, maybe_sent_on_timeout)
        metrics.observe_daraja(ENDPOINTS.get(path, "other"), time.perf_counter() - started)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            # A gateway error page (5xx) means Daraja did not act; an unreadable 2xx may
            # hide an accepted push, so the caller must treat it as "maybe sent".
            raise DarajaUnavailable(
                f"M-Pesa gave an unreadable answer (HTTP {response.status_code}).",
                http_status=response.status_code,
                maybe_sent=maybe_sent_on_timeout and response.status_code < 500,
            )
        return response.status_code, body

    def _log_transport_error(self, exc: requests.RequestException, method: str, path: str):
        """Say why Daraja could not be reached: the exception, host and timeouts, never a
        secret (no headers, no body, no query string)."""
        log_event(
            log,
            "daraja.unreachable",
            f"Daraja request {method} {path} failed: {type(exc).__name__}",
            level=logging.WARNING,
            host=urlsplit(self.base_url).netloc,
            error=type(exc).__name__,
            cause=_cause(exc),
            connect_timeout_s=self.timeout[0],
            read_timeout_s=self.timeout[1],
        )

    @staticmethod
    def _raise_unavailable(exc: requests.RequestException, maybe_sent_on_timeout: bool):
        if isinstance(exc, requests.ConnectionError):
            if isinstance(exc, requests.ConnectTimeout) or "refused" in str(exc).lower():
                raise DarajaUnavailable("M-Pesa could not be reached.") from None
            raise DarajaUnavailable(
                "M-Pesa could not be reached.", maybe_sent=maybe_sent_on_timeout
            ) from None
        if isinstance(exc, requests.Timeout):
            raise DarajaUnavailable(
                "M-Pesa did not answer in time.", maybe_sent=maybe_sent_on_timeout
            ) from None
        raise DarajaUnavailable("M-Pesa could not be reached.") from None

    # -- token -------------------------------------------------------------------------

    @_counts_errors("oauth")
    def _fetch_token(self) -> tuple[str, int]:
        status, body = self._request(
            "GET",
            TOKEN_PATH,
            maybe_sent_on_timeout=False,
            auth=(self.consumer_key, self.consumer_secret),
        )
        token = body.get("access_token")
        if status != 200 or not token:
            error = _error_from_body(status, body)
            if status in (400, 401, 403):
                raise DarajaAuthError(
                    "M-Pesa refused the consumer key/secret.", code=error.code, http_status=status
                )
            raise error
        try:
            expires_in = int(str(body.get("expires_in", 3599)).strip())
        except ValueError:
            expires_in = 3599
        return token, expires_in

    def access_token(self) -> str:
        """The deployment's shared token, fetched under a lock only when it is due."""
        token = self.tokens.get()
        if token:
            return token
        with self.tokens.lock():
            token = self.tokens.get()  # another process may have refreshed meanwhile
            if token:
                return token
            token, expires_in = self._fetch_token()
            self.tokens.put(token, expires_in)
            log_event(
                log, "daraja.token", "fetched a new Daraja access token", expires_in=expires_in
            )
            return token

    def _authorised_post(self, path: str, payload: dict, *, maybe_sent_on_timeout: bool):
        """POST with the shared token; on 404.001.03 refresh once and retry once."""
        for attempt in (1, 2):
            token = self.access_token()
            status, body = self._request(
                "POST",
                path,
                json=payload,
                maybe_sent_on_timeout=maybe_sent_on_timeout,
                headers={"Authorization": f"Bearer {token}"},
            )
            if str(body.get("errorCode")) == INVALID_TOKEN and attempt == 1:
                log_event(log, "daraja.token_invalid", "Daraja rejected the token; refreshing")
                self.tokens.drop(token)
                continue
            return status, body
        return status, body

    # -- STK -----------------------------------------------------------------------------

    def busy_for(self) -> float:
        """Seconds to wait before the next push, after Daraja's spike arrest."""
        return self.tokens.paused_for()

    def _password(self) -> tuple[str, str]:
        timestamp = eat_timestamp()
        return stk_password(self.shortcode, self.passkey, timestamp), timestamp

    @_counts_errors("stkpush")
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
            "AccountReference": reference[:12],
            "TransactionDesc": (description or reference)[:13],
        }
        started = time.monotonic()
        status, body = self._authorised_post(STK_PUSH_PATH, payload, maybe_sent_on_timeout=True)
        elapsed_ms = round((time.monotonic() - started) * 1000)
        if status == 200 and str(body.get("ResponseCode")) == "0" and body.get("CheckoutRequestID"):
            log_event(
                log,
                "daraja.stk_push",
                f"STK push accepted for {reference}",
                order=reference,
                phone=phone,
                amount=amount,
                checkout_request_id=body["CheckoutRequestID"],
                ms=elapsed_ms,
            )
            return PushAccepted(
                merchant_request_id=str(body.get("MerchantRequestID") or ""),
                checkout_request_id=str(body["CheckoutRequestID"]),
                customer_message=str(body.get("CustomerMessage") or ""),
            )
        error = _error_from_body(status, body)
        if isinstance(error, DarajaBusy):
            self.tokens.pause(BUSY_PAUSE_S)
        log_event(
            log,
            "daraja.stk_push_refused",
            f"STK push refused for {reference}",
            order=reference,
            phone=phone,
            code=error.code,
            reason=error.message,
            ms=elapsed_ms,
        )
        raise error

    @_counts_errors("stkquery")
    def stk_query(self, checkout_request_id: str) -> QueryResult:
        """Ask Daraja how a prompt ended; `pending` while the customer has not answered."""
        password, timestamp = self._password()
        payload = {
            "BusinessShortCode": self.shortcode,
            "Password": password,
            "Timestamp": timestamp,
            "CheckoutRequestID": checkout_request_id,
        }
        status, body = self._authorised_post(STK_QUERY_PATH, payload, maybe_sent_on_timeout=False)
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
        raise _error_from_body(status, body)

    # -- C2B ------------------------------------------------------------------------------

    @_counts_errors("c2b_register")
    def register_c2b_urls(
        self, *, shortcode: str, confirmation_url: str, validation_url: str, response_type: str
    ) -> dict:
        """Daraja's C2B Register URL (v2); returns its answer. `response_type` is what
        M-Pesa does when the validation URL does not answer in time."""
        payload = {
            "ShortCode": shortcode,
            "ResponseType": response_type,
            "ConfirmationURL": confirmation_url,
            "ValidationURL": validation_url,
        }
        status, body = self._authorised_post(
            C2B_REGISTER_PATH, payload, maybe_sent_on_timeout=False
        )
        if str(body.get("ResponseCode", "")) == "0":
            return body
        raise _error_from_body(status, body)


def get_client() -> DarajaClient:
    """A client for the current app, sharing the token cache through Redis if configured."""
    from ..health import redis_client

    return DarajaClient(current_app.config, redis_client())


def _cause(exc: BaseException) -> str:
    """The innermost reason of a requests error (e.g. "Connection refused"), short."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    text = str(exc)
    return (text.rsplit(":", 1)[-1].strip() or type(exc).__name__)[:120]

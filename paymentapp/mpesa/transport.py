"""How every Daraja request goes out: one HTTP session for the process, the shared access
token (Daraja's Authorization API), and one authorised POST that each API module
(`stk.py`, `c2b.py`, ...) builds on.

Quirks handled here (see docs/daraja.md):
- Each token request invalidates the previous token, so the deployment shares ONE token
  (`tokens.py`) and refreshes it early, under a lock.
- `404.001.03 Invalid Access Token` → refresh once and retry once.
- A request that timed out may have been acted on: the caller says whether that matters
  (`maybe_sent_on_timeout`), and `DarajaUnavailable.maybe_sent` carries it back.
- Every request is timed, and every error leaving an API call counted once, by endpoint.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from typing import NamedTuple
from urllib.parse import urlsplit

import requests

from .. import metrics
from .errors import DarajaAuthError, DarajaError, DarajaUnavailable, error_from_body
from .tokens import TokenCache

log = logging.getLogger(__name__)

INVALID_TOKEN = "404.001.03"


class Endpoint(NamedTuple):
    """A Daraja path and its `endpoint` label on the Daraja metrics (a new label goes into
    `DARAJA_ENDPOINTS` in paymentapp/metrics/, so its series exist from the start)."""

    path: str
    label: str


TOKEN = Endpoint("/oauth/v1/generate?grant_type=client_credentials", "oauth")


def counts_errors(endpoint: Endpoint):
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
                    metrics.count_daraja_error(endpoint.label, exc.kind)
                raise

        return counted

    return decorate


# One connection pool for the process (gevent-patched sockets under gunicorn).
_SESSION = requests.Session()


class Transport:
    """The connection to Daraja (or the simulator, which speaks the same protocol): base
    URL, credentials, timeouts, the shared token. The API classes build on it."""

    def __init__(self, config: dict, redis_client=None):
        self.base_url = config["MPESA_BASE_URL"].rstrip("/")
        self.consumer_key = config["MPESA_CONSUMER_KEY"]
        self.consumer_secret = config["MPESA_CONSUMER_SECRET"]
        self.timeout = (
            config.get("MPESA_CONNECT_TIMEOUT_S", 5),
            config.get("MPESA_READ_TIMEOUT_S", 30),
        )
        fingerprint = hashlib.sha256(f"{self.base_url}|{self.consumer_key}".encode()).hexdigest()
        self.tokens = TokenCache(redis_client, f"paymentapp:daraja-token:{fingerprint[:16]}")
        self.session = _SESSION

    # -- requests ------------------------------------------------------------------------

    def _request(
        self, method: str, endpoint: Endpoint, *, maybe_sent_on_timeout: bool, **kwargs
    ) -> tuple[int, dict]:
        url = self.base_url + endpoint.path
        started = time.perf_counter()
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            metrics.observe_daraja(endpoint.label, time.perf_counter() - started)
            self._log_transport_error(exc, method, endpoint.path)
            self._raise_unavailable(exc, maybe_sent_on_timeout)
        metrics.observe_daraja(endpoint.label, time.perf_counter() - started)
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
        log.warning(
            f"Daraja request {method} {path} failed: {type(exc).__name__}",
            extra={
                "event": "daraja.unreachable",
                "host": urlsplit(self.base_url).netloc,
                "error": type(exc).__name__,
                "cause": _cause(exc),
                "connect_timeout_s": self.timeout[0],
                "read_timeout_s": self.timeout[1],
            },
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

    @counts_errors(TOKEN)
    def _fetch_token(self) -> tuple[str, int]:
        status, body = self._request(
            "GET",
            TOKEN,
            maybe_sent_on_timeout=False,
            auth=(self.consumer_key, self.consumer_secret),
        )
        token = body.get("access_token")
        if status != 200 or not token:
            error = error_from_body(status, body)
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
            log.info(
                "fetched a new Daraja access token",
                extra={"event": "daraja.token", "expires_in": expires_in},
            )
            return token

    def _authorised_post(self, endpoint: Endpoint, payload: dict, *, maybe_sent_on_timeout: bool):
        """POST with the shared token; on 404.001.03 refresh once and retry once."""
        for attempt in (1, 2):
            token = self.access_token()
            status, body = self._request(
                "POST",
                endpoint,
                json=payload,
                maybe_sent_on_timeout=maybe_sent_on_timeout,
                headers={"Authorization": f"Bearer {token}"},
            )
            if str(body.get("errorCode")) == INVALID_TOKEN and attempt == 1:
                log.info(
                    "Daraja rejected the token; refreshing", extra={"event": "daraja.token_invalid"}
                )
                self.tokens.drop(token)
                continue
            return status, body
        return status, body


def _cause(exc: BaseException) -> str:
    """The innermost reason of a requests error (e.g. "Connection refused"), short."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    text = str(exc)
    return (text.rsplit(":", 1)[-1].strip() or type(exc).__name__)[:120]

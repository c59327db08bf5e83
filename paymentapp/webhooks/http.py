"""One POST to a merchant's endpoint, within the time limit of its attempt.

The host name is resolved (and its addresses checked, `endpoints.resolve`) in a thread
given up at the attempt's deadline, then the POST goes to the checked address (no second
DNS lookup) over a keep-alive pool per address, TLS checked against the URL's host name:
connect 3 s at most, 10 s in all (WEBHOOK_TIMEOUT_S), DNS included. Redirects are not
followed and the body read is bounded. Every failure is an `Answer` with no status: the
caller (`delivery.py`) records it and retries.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import certifi
import urllib3
from flask import current_app

from .endpoints import UnsafeAddress, resolve

CONNECT_TIMEOUT_S = 3.0
TOTAL_TIMEOUT_S = 10.0
MAX_BODY_READ = 64 * 1024
KEEP_BODY = 1000  # characters of an answer's body kept on its WebhookAttempt


@dataclass
class Answer:
    """What one attempt got: the status and the start of the body, or why there is none."""

    status_code: int | None
    latency_ms: int
    body: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class ResolveTimeout(Exception):
    """The endpoint's host name was not resolved within the attempt's time limit."""


def total_timeout_s() -> float:
    """The time limit of one attempt, DNS lookup and POST together (WEBHOOK_TIMEOUT_S)."""
    return current_app.config.get("WEBHOOK_TIMEOUT_S", TOTAL_TIMEOUT_S)


def post(
    url: str, body: bytes, headers: dict, addresses: list[str], deadline: float | None = None
) -> Answer:
    """POST to the checked address (pinned: no second DNS lookup), TLS checked against the
    URL's host name; no redirects; done by `deadline` (time.monotonic(); default
    TOTAL_TIMEOUT_S from now); the body read is bounded."""
    parts = urlsplit(url)
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    started = time.monotonic()
    if deadline is None:
        deadline = started + total_timeout_s()
    budget = max(deadline - started, 0.001)  # what the DNS lookup left
    pool = _pool(parts.scheme, addresses[0], port, host)
    try:
        response = pool.urlopen(
            "POST",
            path,
            body=body,
            headers={**headers, "Host": parts.netloc.rsplit("@", 1)[-1]},
            redirect=False,
            retries=False,
            preload_content=False,
            timeout=urllib3.Timeout(
                connect=min(CONNECT_TIMEOUT_S, budget), read=budget, total=budget
            ),
        )
        chunks, size = [], 0
        for chunk in response.stream(8192):
            chunks.append(chunk)
            size += len(chunk)
            if size >= MAX_BODY_READ or time.monotonic() > deadline:
                break
        if size >= MAX_BODY_READ:
            response.close()  # the rest of a huge body is not read: drop the connection
        else:
            response.release_conn()  # kept alive for the next delivery to this address
        text = b"".join(chunks)[: KEEP_BODY * 4].decode("utf-8", "replace")[:KEEP_BODY]
        return Answer(response.status, _ms(started), body=text)
    except urllib3.exceptions.HTTPError as exc:
        return Answer(None, _ms(started), error=f"{type(exc).__name__}: {exc}"[:255])


_POOLS: dict[tuple, urllib3.HTTPConnectionPool] = {}
_POOLS_LOCK = threading.Lock()


def _pool(scheme: str, address: str, port: int, host: str):
    """A keep-alive connection pool per checked address (and the host name TLS checks);
    each request brings its own timeout (what is left of its attempt's)."""
    key = (scheme, address, port, host)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            if scheme == "https":
                pool = urllib3.HTTPSConnectionPool(
                    address,
                    port,
                    retries=False,
                    maxsize=4,
                    server_hostname=host,
                    assert_hostname=host,
                    cert_reqs="CERT_REQUIRED",
                    ca_certs=certifi.where(),
                )
            else:
                pool = urllib3.HTTPConnectionPool(address, port, retries=False, maxsize=4)
            if len(_POOLS) > 256:
                _POOLS.clear()
            _POOLS[key] = pool
        return pool


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def resolve_within(url: str, deadline: float, resolver=resolve) -> list[str]:
    """`resolver(url)`, given up at `deadline` (time.monotonic()): getaddrinfo has no
    timeout of its own, so it runs in a thread of its own (a greenlet under gevent, whose
    resolver yields) that is abandoned when late; raises ResolveTimeout, or what the
    resolver raised (UnsafeAddress)."""
    app = current_app._get_current_object()  # the address rules read the app's config
    outcome: dict = {}
    done = threading.Event()

    def run() -> None:
        with app.app_context():
            try:
                outcome["addresses"] = resolver(url)
            except Exception as exc:  # noqa: BLE001 - raised again in the waiting thread
                outcome["error"] = exc
            finally:
                done.set()

    threading.Thread(target=run, name="webhook-dns", daemon=True).start()
    if not done.wait(max(deadline - time.monotonic(), 0)):
        raise ResolveTimeout(url)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["addresses"]


def resolve_and_send(url: str, body: bytes, headers: dict, deadline: float, send, resolver):
    """The endpoint's answer; a refused address or a lookup past `deadline` is an attempt
    that failed."""
    started = time.monotonic()
    try:
        addresses = resolve_within(url, deadline, resolver)
    except UnsafeAddress as exc:
        return Answer(None, 0, error=f"refused: {exc}"[:255])
    except ResolveTimeout:
        return Answer(None, _ms(started), error="DNS resolution timed out")
    return send(url, body, headers, addresses, deadline=deadline)

"""Delivering webhook events: claim, sign, POST, record, retry with back-off.

At least once overall, never two copies at the same time: a worker claims a delivery by
setting `claimed_until` with a compare-and-set (plus `FOR UPDATE SKIP LOCKED` on
PostgreSQL, so workers do not queue behind each other); a worker killed mid-delivery
leaves a claim that expires after CLAIM_LEASE_S, and the delivery is sent again.

Any non-2xx, a timeout (connect 3 s, 10 s in all) or a connection error is retried after
1 min, 5 min, 30 min, 2 h, 5 h, 10 h, then every 12 h (each ±10 %), until the event is 3
days old; then the delivery is `failed`. An endpoint failing without a break for 3 days
is disabled and shown as such. Redirects are not followed. Time is passed in (`now`) so
tests need no sleeps.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import certifi
import urllib3
from flask import current_app
from sqlalchemy import or_, select, update

from ..extensions import db
from ..logs import log_event
from ..loops import run_forever, start_in_background
from ..models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    utcnow,
)
from ..payments.states import move_delivery
from .endpoints import UnsafeAddress, resolve
from .signing import EVENT_ID_HEADER, HEADER, signature_header

log = logging.getLogger(__name__)

SCHEDULE_S = (60, 300, 1800, 7200, 18000, 36000)
THEN_EVERY_S = 43200
GIVE_UP_AFTER = timedelta(days=3)
CLAIM_LEASE_S = 60
CONNECT_TIMEOUT_S = 3.0
TOTAL_TIMEOUT_S = 10.0
MAX_BODY_READ = 64 * 1024
KEEP_BODY = 1000
BATCH = 50
AUTO_DISABLED = "failing for 3 days: disabled automatically"
CONCURRENCY = 8  # deliveries in flight per worker (greenlets under gevent)


@dataclass
class Answer:
    status_code: int | None
    latency_ms: int
    body: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass
class Report:
    sent: int = 0
    succeeded: int = 0
    retrying: int = 0
    failed: int = 0
    cancelled: int = 0

    def __str__(self) -> str:
        return (
            f"sent={self.sent} succeeded={self.succeeded} retrying={self.retrying} "
            f"failed={self.failed} cancelled={self.cancelled}"
        )


def retry_delay(attempts: int, rng: random.Random | None = None) -> float:
    """Seconds before attempt `attempts + 1`, with ±10 % jitter."""
    base = SCHEDULE_S[attempts - 1] if attempts - 1 < len(SCHEDULE_S) else THEN_EVERY_S
    return base * (rng or random).uniform(0.9, 1.1)


def post(url: str, body: bytes, headers: dict, addresses: list[str]) -> Answer:
    """POST to the checked address (pinned: no second DNS lookup), TLS checked against the
    URL's host name; no redirects; at most TOTAL_TIMEOUT_S; the body read is bounded."""
    parts = urlsplit(url)
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    total = current_app.config.get("WEBHOOK_TIMEOUT_S", TOTAL_TIMEOUT_S)
    pool = _pool(parts.scheme, addresses[0], port, host, total)
    started = time.monotonic()
    try:
        response = pool.urlopen(
            "POST",
            path,
            body=body,
            headers={**headers, "Host": parts.netloc.rsplit("@", 1)[-1]},
            redirect=False,
            retries=False,
            preload_content=False,
        )
        chunks, size = [], 0
        deadline = started + total
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


def _pool(scheme: str, address: str, port: int, host: str, total: float):
    """A keep-alive connection pool per checked address (and the host name TLS checks)."""
    key = (scheme, address, port, host, total)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            timeout = urllib3.Timeout(
                connect=min(CONNECT_TIMEOUT_S, total), read=total, total=total
            )
            if scheme == "https":
                pool = urllib3.HTTPSConnectionPool(
                    address,
                    port,
                    timeout=timeout,
                    retries=False,
                    maxsize=4,
                    server_hostname=host,
                    assert_hostname=host,
                    cert_reqs="CERT_REQUIRED",
                    ca_certs=certifi.where(),
                )
            else:
                pool = urllib3.HTTPConnectionPool(
                    address, port, timeout=timeout, retries=False, maxsize=4
                )
            if len(_POOLS) > 256:
                _POOLS.clear()
            _POOLS[key] = pool
        return pool


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def claim_due(now: datetime, limit: int = BATCH) -> list[int]:
    """Take up to `limit` due deliveries for this worker; others skip them."""
    due = (
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.status == DeliveryStatus.PENDING,
            WebhookDelivery.next_attempt_at <= now,
            or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < now),
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
    )
    if db.session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    candidates = list(db.session.scalars(due))
    claimed = []
    for delivery_id in candidates:
        won = db.session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery_id,
                WebhookDelivery.status == DeliveryStatus.PENDING,
                or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < now),
            )
            .values(claimed_until=now + timedelta(seconds=CLAIM_LEASE_S))
        ).rowcount
        if won == 1:
            claimed.append(delivery_id)
    db.session.commit()
    return claimed


def attempt(delivery_id: int, now: datetime, send=post, rng=None) -> DeliveryStatus:
    """Send one claimed delivery once and record what happened."""
    delivery = db.session.get(WebhookDelivery, delivery_id)
    endpoint = db.session.get(WebhookEndpoint, delivery.endpoint_id)
    event = db.session.get(WebhookEvent, delivery.event_id)
    db.session.commit()  # no transaction (and no lock) held while the network is slow
    if not endpoint.enabled or endpoint.deleted_at is not None:
        return _finish(delivery_id, DeliveryStatus.CANCELLED, error="endpoint disabled or deleted")
    body = event.payload.encode()
    keys = [endpoint.secret]
    if (
        endpoint.previous_secret
        and endpoint.previous_secret_until
        and (endpoint.previous_secret_until > now)
    ):
        keys.append(endpoint.previous_secret)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "paymentapp-webhooks/1",
        HEADER: signature_header(keys, int(now.timestamp()), body),
        EVENT_ID_HEADER: event.id,
    }
    try:
        answer = send(endpoint.url, body, headers, resolve(endpoint.url))
    except UnsafeAddress as exc:
        answer = Answer(None, 0, error=f"refused: {exc}"[:255])
    return _record(delivery_id, event, answer, now, rng)


def _record(delivery_id: int, event: WebhookEvent, answer: Answer, now, rng) -> DeliveryStatus:
    delivery = db.session.get(WebhookDelivery, delivery_id)
    endpoint = db.session.get(WebhookEndpoint, delivery.endpoint_id)
    db.session.add(
        WebhookAttempt(
            delivery_id=delivery.id,
            at=now,
            status_code=answer.status_code,
            latency_ms=answer.latency_ms,
            response_body=answer.body,
            error=answer.error,
        )
    )
    delivery.attempts += 1
    delivery.last_status_code = answer.status_code
    delivery.last_error = answer.error
    delivery.claimed_until = None
    if answer.ok:
        move_delivery(delivery, DeliveryStatus.SUCCEEDED)
        delivery.delivered_at = now
        delivery.next_attempt_at = None
        endpoint.failing_since = None
    else:
        endpoint.failing_since = endpoint.failing_since or now
        if now - endpoint.failing_since >= GIVE_UP_AFTER and endpoint.enabled:
            endpoint.enabled = False
            endpoint.disabled_reason = AUTO_DISABLED
            log_event(
                log,
                "webhook.endpoint_disabled",
                f"webhook endpoint {endpoint.id} disabled after 3 days of failures",
                level=logging.WARNING,
                endpoint=endpoint.id,
            )
        if now - event.created_at >= GIVE_UP_AFTER:
            move_delivery(delivery, DeliveryStatus.FAILED)
            delivery.next_attempt_at = None
        else:
            delay = retry_delay(delivery.attempts, rng)
            delivery.next_attempt_at = now + timedelta(seconds=delay)
    db.session.commit()
    log_event(
        log,
        "webhook.delivery",
        f"webhook {event.type} {event.id} to {endpoint.id}: "
        f"{answer.status_code or answer.error}, {delivery.status}",
        level=logging.INFO if answer.ok else logging.WARNING,
        delivery=delivery.id,
        attempt=delivery.attempts,
        ms=answer.latency_ms,
    )
    return DeliveryStatus(delivery.status)


def _finish(delivery_id: int, status: DeliveryStatus, error: str) -> DeliveryStatus:
    delivery = db.session.get(WebhookDelivery, delivery_id)
    move_delivery(delivery, status)
    delivery.last_error = error
    delivery.claimed_until = None
    db.session.commit()
    return status


def deliver_due(
    now: datetime | None = None, send=post, rng=None, limit: int = BATCH, concurrency: int = 1
) -> Report:
    """One pass: claim what is due and send it (`concurrency` at a time, each with its own
    database session); safe with any number of workers."""
    report = Report()
    now = now or utcnow()
    claimed = claim_due(now, limit)
    report.sent = len(claimed)
    if concurrency > 1 and len(claimed) > 1:
        app = current_app._get_current_object()

        def one(delivery_id: int):
            with app.app_context():
                try:
                    return _attempt_safely(delivery_id, now, send, rng)
                finally:
                    db.session.remove()

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            statuses = list(pool.map(one, claimed))
    else:
        statuses = [_attempt_safely(d, now, send, rng) for d in claimed]
    for status in statuses:
        if status == DeliveryStatus.SUCCEEDED:
            report.succeeded += 1
        elif status == DeliveryStatus.PENDING:
            report.retrying += 1
        elif status == DeliveryStatus.FAILED:
            report.failed += 1
        elif status == DeliveryStatus.CANCELLED:
            report.cancelled += 1
    return report


def _attempt_safely(delivery_id: int, now, send, rng) -> DeliveryStatus | None:
    try:
        return attempt(delivery_id, now, send, rng)
    except Exception:  # noqa: BLE001 - one bad delivery must not stop the others
        db.session.rollback()
        log.exception("webhook delivery %s failed unexpectedly", delivery_id)
        return None


def resend(event_id: str) -> int:
    """Deliver an event again to every live endpoint that had it (a new delivery each);
    returns how many."""
    event = db.session.get(WebhookEvent, event_id) if len(event_id) <= 32 else None
    if event is None:
        from ..errors import NotFound

        raise NotFound("No webhook event with this id.", code="event_not_found")
    endpoint_ids = set(
        db.session.scalars(
            select(WebhookDelivery.endpoint_id)
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .where(
                WebhookDelivery.event_id == event.id,
                WebhookEndpoint.enabled.is_(True),
                WebhookEndpoint.deleted_at.is_(None),
            )
        )
    )
    now = utcnow()
    for endpoint_id in endpoint_ids:
        db.session.add(
            WebhookDelivery(
                event_id=event.id,
                endpoint_id=endpoint_id,
                status=DeliveryStatus.PENDING,
                next_attempt_at=now,
            )
        )
    db.session.commit()
    return len(endpoint_ids)


def delivery_pass() -> Report:
    """One pass of a delivery worker (several deliveries in flight)."""
    report = deliver_due(concurrency=CONCURRENCY)
    if report.sent:
        log_event(log, "webhook.pass", f"webhook pass: {report}")
    return report


def run_loop(app, interval: float = 1.0, stop=None) -> None:
    """Deliver forever (a process of its own in production, a greenlet under `make run`)."""
    run_forever(app, delivery_pass, "webhooks", interval, stop)


def start_background_delivery(app, interval: float = 1.0) -> None:
    """Run delivery in a background greenlet/thread of this process."""
    start_in_background(app, delivery_pass, "webhooks", interval)

"""Delivering webhook events: claim, sign, POST, record, retry with back-off.

At least once overall, never two copies at the same time. A pass lists what is due and
claims each delivery only just before sending it (not the whole batch up front: a batch
sent a few at a time can outlast any lease), by setting `claimed_until` with a
compare-and-set; that value is the claim's token. An attempt, DNS lookup included, ends
within the total timeout, well inside the lease, and its result is recorded only if
`claimed_until` still holds our token, in the same transaction; a worker that stalled
past its lease records nothing (`webhook.claim_lost`). A worker killed mid-delivery
leaves a claim that expires after the lease, and the delivery is sent again.

Any non-2xx, a timeout or a connection error (the POST itself is `http.py`) is retried
after 1 min, 5 min, 30 min, 2 h, 5 h, 10 h, then every 12 h (each ±10 %), until the event
is 3 days old; then the delivery is `failed`. An endpoint failing without a break for 3
days is disabled and shown as such. Time is passed in (`now`) so tests need no sleeps.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from flask import current_app
from sqlalchemy import or_, select, update

from .. import audit
from ..errors import get_or_404
from ..extensions import db
from ..models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    utcnow,
)
from ..outbox import redeliver
from ..payments.states import move_delivery
from .endpoints import resolve
from .http import (
    KEEP_BODY,  # noqa: F401  (admin/presenters.py still reads it here)
    Answer,
    post,
    resolve_and_send,
    total_timeout_s,
)
from .signing import EVENT_ID_HEADER, HEADER, signature_header

log = logging.getLogger(__name__)

SCHEDULE_S = (60, 300, 1800, 7200, 18000, 36000)
THEN_EVERY_S = 43200
GIVE_UP_AFTER = timedelta(days=3)
CLAIM_LEASE_S = 60  # WEBHOOK_CLAIM_LEASE_S; see lease_s()
LEASE_PER_ATTEMPT = 3  # a lease is never shorter than this many attempt time limits
BATCH = 50
AUTO_DISABLED = "failing for 3 days: disabled automatically"
CONCURRENCY = 8  # deliveries in flight per worker (greenlets under gevent)


class Outcome(StrEnum):
    """How a delivery's turn in a pass ended when it recorded no status."""

    NOT_CLAIMED = "not_claimed"  # another worker holds it, or it is no longer due
    CLAIM_LOST = "claim_lost"  # sent, but the claim expired and was taken: not recorded
    ERROR = "error"  # unexpected (logged); the claim expires and it is sent again


@dataclass
class Report:
    sent: int = 0
    succeeded: int = 0
    retrying: int = 0
    failed: int = 0
    cancelled: int = 0
    lost: int = 0

    def __str__(self) -> str:
        return (
            f"sent={self.sent} succeeded={self.succeeded} retrying={self.retrying} "
            f"failed={self.failed} cancelled={self.cancelled} lost={self.lost}"
        )


def retry_delay(attempts: int, rng: random.Random | None = None) -> float:
    """Seconds before attempt `attempts + 1`, with ±10 % jitter."""
    base = SCHEDULE_S[attempts - 1] if attempts - 1 < len(SCHEDULE_S) else THEN_EVERY_S
    return base * (rng or random).uniform(0.9, 1.1)


def lease_s() -> float:
    """How long a claim holds (WEBHOOK_CLAIM_LEASE_S, 60 s): never under LEASE_PER_ATTEMPT
    attempt time limits, so an attempt ends and records well before its claim expires."""
    configured = current_app.config.get("WEBHOOK_CLAIM_LEASE_S", CLAIM_LEASE_S)
    return max(configured, LEASE_PER_ATTEMPT * total_timeout_s())


def _unclaimed(at: datetime):
    return or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < at)


def find_due(now: datetime, limit: int = BATCH) -> list[int]:
    """Up to `limit` deliveries due and unclaimed at `now`, oldest first; nothing is
    claimed yet (each is claimed just before it is sent)."""
    due = list(
        db.session.scalars(
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.status == DeliveryStatus.PENDING,
                WebhookDelivery.next_attempt_at <= now,
                _unclaimed(now),
            )
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(limit)
        )
    )
    db.session.commit()  # no transaction left open while the deliveries are sent
    return due


def claim(delivery_id: int, at: datetime) -> datetime | None:
    """Take one delivery, if it is still pending, due and unclaimed at `at`; returns the
    claim's token (its `claimed_until`), or None when another worker has it or it is done.

    A compare-and-set in one UPDATE: of two workers racing for a delivery one wins. The
    token identifies the claim without a column of its own: a claim is taken over only
    once it has ended, so the new one ends later and the old holder's token no longer
    matches (`_hold`).
    """
    token = at + timedelta(seconds=lease_s())
    won = db.session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status == DeliveryStatus.PENDING,
            WebhookDelivery.next_attempt_at <= at,  # not already retried by another worker
            _unclaimed(at),
        )
        .values(claimed_until=token)
    ).rowcount
    db.session.commit()
    return token if won == 1 else None


def attempt(
    delivery_id: int, token: datetime, now: datetime, send=post, resolver=resolve, rng=None
) -> DeliveryStatus | Outcome:
    """Send one delivery we hold the claim `token` on, once, and record what happened."""
    deadline = time.monotonic() + total_timeout_s()  # the whole attempt, DNS included
    delivery = db.session.get(WebhookDelivery, delivery_id)
    endpoint = db.session.get(WebhookEndpoint, delivery.endpoint_id)
    event = db.session.get(WebhookEvent, delivery.event_id)
    db.session.commit()  # no transaction (and no lock) held while the network is slow
    if not endpoint.enabled or endpoint.deleted_at is not None:
        return _finish(delivery_id, token, DeliveryStatus.CANCELLED, "endpoint disabled or deleted")
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
    answer = resolve_and_send(endpoint.url, body, headers, deadline, send, resolver)
    return _record(delivery_id, token, event, answer, now, rng)


def _hold(delivery_id: int, token: datetime) -> WebhookDelivery | None:
    """The delivery, for recording, if our claim on it still stands (the claim is released
    in the same transaction); None, logged, if another worker took it after it expired
    (or the delivery was cancelled meanwhile, which also clears the claim).

    The compare-and-set on `claimed_until` and the writes after it commit together (the
    UPDATE holds the row, or SQLite's write lock, until then): a worker that stalled past
    its lease cannot overwrite the result of the worker that sent the delivery after it.
    """
    held = db.session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.claimed_until == token)
        .values(claimed_until=None)
    ).rowcount
    if held != 1:
        db.session.rollback()
        log.warning(
            f"webhook delivery {delivery_id}: claim lost before the result was recorded "
            "(it expired and another worker took the delivery, or it was cancelled); "
            "nothing recorded",
            extra={"event": "webhook.claim_lost", "delivery": delivery_id},
        )
        return None
    return db.session.get(WebhookDelivery, delivery_id, populate_existing=True)


def _record(
    delivery_id: int, token: datetime, event: WebhookEvent, answer: Answer, now, rng
) -> DeliveryStatus | Outcome:
    delivery = _hold(delivery_id, token)
    if delivery is None:
        return Outcome.CLAIM_LOST
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
            audit.record(
                "webhook.disabled",
                f"webhook endpoint {endpoint.url} disabled after 3 days of failures",
                target=endpoint.id,
                changes={"enabled": [True, False]},
                actor="system",
            )
            log.warning(
                f"webhook endpoint {endpoint.id} disabled after 3 days of failures",
                extra={"event": "webhook.endpoint_disabled", "endpoint": endpoint.id},
            )
        if now - event.created_at >= GIVE_UP_AFTER:
            move_delivery(delivery, DeliveryStatus.FAILED)
            delivery.next_attempt_at = None
        else:
            delay = retry_delay(delivery.attempts, rng)
            delivery.next_attempt_at = now + timedelta(seconds=delay)
    db.session.commit()
    log.log(
        logging.INFO if answer.ok else logging.WARNING,
        f"webhook {event.type} {event.id} to {endpoint.id}: "
        f"{answer.status_code or answer.error}, {delivery.status}",
        extra={
            "event": "webhook.delivery",
            "delivery": delivery.id,
            "attempt": delivery.attempts,
            "ms": answer.latency_ms,
        },
    )
    return DeliveryStatus(delivery.status)


def _finish(
    delivery_id: int, token: datetime, status: DeliveryStatus, error: str
) -> DeliveryStatus | Outcome:
    delivery = _hold(delivery_id, token)
    if delivery is None:
        return Outcome.CLAIM_LOST
    move_delivery(delivery, status)
    delivery.last_error = error
    db.session.commit()
    return status


def deliver_one(
    delivery_id: int, clock: Callable[[], datetime], send=post, resolver=resolve, rng=None
) -> DeliveryStatus | Outcome:
    """Claim one delivery and, if we won it, send it once and record the answer; an
    unexpected error is logged (one bad delivery must not stop the others)."""
    try:
        now = clock()  # the lease counts from the claim, not from the start of the pass
        token = claim(delivery_id, now)
        if token is None:
            return Outcome.NOT_CLAIMED
        return attempt(delivery_id, token, now, send, resolver, rng)
    except Exception:  # noqa: BLE001 - the claim expires and the delivery is sent again
        db.session.rollback()
        log.exception("webhook delivery %s failed unexpectedly", delivery_id)
        return Outcome.ERROR


def pass_clock(now: datetime | None) -> Callable[[], datetime]:
    """A pass's clock: real time, or the time a test passed in, moving on at real speed."""
    if now is None:
        return utcnow
    started = time.monotonic()
    return lambda: now + timedelta(seconds=time.monotonic() - started)


def deliver_due(
    now: datetime | None = None,
    send=post,
    rng=None,
    limit: int = BATCH,
    concurrency: int = 1,
    resolver=resolve,
) -> Report:
    """One pass: find what is due and deliver it (`concurrency` at a time, each with its
    own database session), each claimed just before it is sent; safe with any number of
    workers."""
    clock = pass_clock(now)
    due = find_due(clock(), limit)
    if concurrency > 1 and len(due) > 1:
        app = current_app._get_current_object()

        def one(delivery_id: int) -> DeliveryStatus | Outcome:
            with app.app_context():
                try:
                    return deliver_one(delivery_id, clock, send, resolver, rng)
                finally:
                    db.session.remove()

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            outcomes = list(pool.map(one, due))
    else:
        outcomes = [deliver_one(d, clock, send, resolver, rng) for d in due]
    return _report(outcomes)


def _report(outcomes: list[DeliveryStatus | Outcome]) -> Report:
    report = Report()
    for outcome in outcomes:
        if outcome == Outcome.NOT_CLAIMED:
            continue
        report.sent += 1
        if outcome == DeliveryStatus.SUCCEEDED:
            report.succeeded += 1
        elif outcome == DeliveryStatus.PENDING:
            report.retrying += 1
        elif outcome == DeliveryStatus.FAILED:
            report.failed += 1
        elif outcome == DeliveryStatus.CANCELLED:
            report.cancelled += 1
        elif outcome == Outcome.CLAIM_LOST:
            report.lost += 1
    return report


def resend(event_id: str) -> int:
    """Deliver an event again to every live endpoint that had it (a new delivery each);
    returns how many."""
    event = get_or_404(WebhookEvent, event_id, "No webhook event with this id.", "event_not_found")
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
    redeliver(db.session, event.id, sorted(endpoint_ids))
    audit.record(
        "webhook.resent",
        f"{event.type} {event.id} queued again for {len(endpoint_ids)} endpoint(s)",
        target=event.id,
        changes={"endpoints": ", ".join(sorted(endpoint_ids)) or "none"},
    )
    db.session.commit()
    return len(endpoint_ids)


def delivery_pass() -> Report:
    """One pass of a delivery worker (several deliveries in flight)."""
    report = deliver_due(concurrency=CONCURRENCY)
    if report.sent:
        log.info(f"webhook pass: {report}", extra={"event": "webhook.pass"})
    return report

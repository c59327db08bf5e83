"""Webhook delivery claims: two workers never send one delivery at once, a result is
recorded only by the worker that holds the claim, and an attempt (DNS lookup included)
ends within its time limit. Real delivery loops in threads, each with its own app
context and session, against a real HTTP receiver; on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from paymentapp.extensions import db as sqla
from paymentapp.loops import run_forever
from paymentapp.models import DeliveryStatus, WebhookAttempt, WebhookDelivery, utcnow
from paymentapp.webhooks.delivery import (
    CLAIM_LEASE_S,
    Outcome,
    attempt,
    claim,
    deliver_due,
    lease_s,
)
from paymentapp.webhooks.endpoints import resolve
from tests.helpers import register_endpoint
from tests.receiver import Receiver


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


def wait_until(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def attempted(db) -> int:
    """Deliveries with at least one recorded attempt (read fresh: the loops write them)."""
    count = db.session.scalar(
        select(func.count()).select_from(WebhookDelivery).where(WebhookDelivery.attempts > 0)
    )
    db.session.commit()
    return count


@pytest.mark.parametrize("status", [200, 500])
def test_two_delivery_loops_send_each_delivery_once_per_attempt(
    app, client, auth, db, receiver, make_order, log_output, status
):
    """A batch sent two at a time to a slow receiver takes longer than a claim's lease
    (40 × 0.1 s / 2 > 1.5 s): the second loop, started mid-batch, shares the work instead
    of sending what the first has listed but not sent yet. With 500s every delivery is
    retried a minute later, so each is still attempted exactly once here."""
    app.config.update(WEBHOOK_TIMEOUT_S=0.5, WEBHOOK_CLAIM_LEASE_S=1.5)
    register_endpoint(client, auth, receiver.url, events=["order.created"])
    for _ in range(40):
        make_order()
    receiver.delay_s, receiver.status = 0.1, status
    stop = threading.Event()

    def loop() -> None:
        run_forever(app, lambda: deliver_due(concurrency=2), "webhooks", 0.05, stop.is_set)

    loops = [threading.Thread(target=loop, name=f"loop-{n}") for n in range(2)]
    try:
        loops[0].start()
        wait_until(lambda: receiver.received, "the first loop's first send")
        loops[1].start()
        wait_until(lambda: attempted(db) == 40, "every delivery attempted")
        time.sleep(0.3)  # a late duplicate would arrive in this time
    finally:
        stop.set()
        for thread in loops:
            thread.join(30)
    sent = Counter(receiver.event_ids())
    deliveries = list(db.session.scalars(select(WebhookDelivery)))
    assert len(deliveries) == 40 and set(sent) <= {d.event_id for d in deliveries}
    assert set(sent.values()) == {1}, [e for e, n in sent.items() if n > 1]
    assert {d.attempts for d in deliveries} == {1}
    assert db.session.scalar(select(func.count()).select_from(WebhookAttempt)) == 40
    # on a loaded machine an attempt can time out (0.5 s) before it reaches the receiver:
    # still one attempt, recorded as failed and left for its retry; every other one arrived
    unreached = [(d.event_id, d.status, d.last_error) for d in deliveries if d.event_id not in sent]
    assert len(unreached) <= 2, unreached
    assert all(s == DeliveryStatus.PENDING and error for _, s, error in unreached), unreached
    expected = DeliveryStatus.SUCCEEDED if status == 200 else DeliveryStatus.PENDING
    assert {d.status for d in deliveries if d.event_id in sent} == {expected}
    assert all(d.claimed_until is None for d in deliveries)
    assert "webhook.claim_lost" not in log_output.getvalue()


def test_a_result_is_not_recorded_once_the_claim_is_lost(
    client, auth, db, receiver, make_order, log_output
):
    """A worker that stalled past its lease (its claim expired and another worker took
    the delivery) still sends, at least once, but records nothing; the holder does."""
    register_endpoint(client, auth, receiver.url, events=["order.created"])
    make_order()
    delivery_id = db.session.scalar(select(WebhookDelivery.id))
    now = utcnow()
    stalled = claim(delivery_id, now)
    later = now + timedelta(seconds=lease_s() + 1)
    taken = claim(delivery_id, later)
    assert stalled and taken and taken > stalled
    assert claim(delivery_id, later) is None  # held: nobody else gets it
    assert attempt(delivery_id, stalled, now) == Outcome.CLAIM_LOST
    db.session.expire_all()
    delivery = db.session.get(WebhookDelivery, delivery_id)
    assert delivery.attempts == 0 and delivery.claimed_until == taken  # untouched
    assert db.session.scalar(select(func.count()).select_from(WebhookAttempt)) == 0
    assert "event=webhook.claim_lost" in log_output.getvalue()
    assert attempt(delivery_id, taken, later) == DeliveryStatus.SUCCEEDED
    db.session.expire_all()
    assert delivery.attempts == 1 and delivery.claimed_until is None
    assert len(receiver.received) == 2  # sent by both: at least once, never recorded twice


def test_a_hung_dns_lookup_is_an_attempt_that_timed_out(app, client, auth, db, make_order):
    """getaddrinfo has no timeout of its own: a lookup that does not answer within the
    attempt's limit is a failed attempt (retried later), not a worker stuck for good."""
    app.config["WEBHOOK_TIMEOUT_S"] = 0.5
    released = threading.Event()

    def hung(url: str) -> list[str]:
        released.wait(10)
        return resolve(url)

    with Receiver() as never:
        register_endpoint(client, auth, never.url, events=["order.created"])
        make_order()
        started = time.monotonic()
        try:
            report = deliver_due(resolver=hung)
        finally:
            released.set()
        assert time.monotonic() - started < 5  # bounded by the 0.5 s limit, not the lookup
        assert report.retrying == 1 and never.received == []
    attempt_row = db.session.scalar(select(WebhookAttempt))
    assert attempt_row.error == "DNS resolution timed out" and attempt_row.status_code is None


def test_dns_time_counts_against_the_attempts_time_limit(
    app, client, auth, db, receiver, make_order
):
    """A 0.4 s lookup and a 0.4 s answer each fit a 0.6 s limit; together they do not."""
    app.config["WEBHOOK_TIMEOUT_S"] = 0.6
    receiver.delay_s = 0.4

    def slow(url: str) -> list[str]:
        time.sleep(0.4)
        return resolve(url)

    register_endpoint(client, auth, receiver.url, events=["order.created"])
    make_order()
    assert deliver_due(resolver=slow).retrying == 1
    assert "Timeout" in db.session.scalar(select(WebhookAttempt.error))


def test_two_workers_at_once_never_send_one_delivery_twice(app, client, auth, db, make_order):
    with Receiver() as slow:
        slow.delay_s = 0.3
        register_endpoint(client, auth, slow.url, events=["order.created"])
        for _ in range(6):
            make_order()
        reports, barrier = [], threading.Barrier(2)

        def worker():
            with app.app_context():
                barrier.wait()
                reports.append(deliver_due())
                sqla.session.remove()

        threads = [threading.Thread(target=worker) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sum(r.succeeded for r in reports) == 6
        assert sorted(slow.event_ids()) == sorted(set(slow.event_ids()))
        assert len(slow.received) == 6


def test_a_claim_left_by_a_dead_worker_expires_and_is_redelivered(
    client, auth, db, receiver, make_order
):
    register_endpoint(client, auth, receiver.url, events=["order.created"])
    make_order()
    now = utcnow()
    assert claim(db.session.scalar(select(WebhookDelivery.id)), now)  # then the worker died
    assert deliver_due(now=now + timedelta(seconds=5)).sent == 0  # still held
    assert deliver_due(now=now + timedelta(seconds=CLAIM_LEASE_S + 1)).succeeded == 1
    assert len(receiver.received) == 1

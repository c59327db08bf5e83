"""Merchant webhooks: endpoints, the transactional outbox, signed deliveries with retries,
SSRF rules. Every delivery goes over real HTTP to a receiver started by the test; time is
passed in, so retries and the signature tolerance need no sleeps."""

from __future__ import annotations

import json
import random
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from paymentapp.extensions import db as sqla
from paymentapp.models import (
    DeliveryStatus,
    Order,
    Payment,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    utcnow,
)
from paymentapp.payments.states import Kind, transition
from paymentapp.webhooks import signing
from paymentapp.webhooks.delivery import deliver_due, resend
from tests.helpers import LIVE, assert_error, base_env, register_endpoint, stk_callback
from tests.receiver import Receiver

URL = "/api/webhook-endpoints"
CALLBACK = f"/callbacks/stk/{base_env('x')['MPESA_CALLBACK_TOKEN']}"


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


def assert_money_invariant(db) -> None:
    """Every paid order has a completed, unflagged payment of its amount; nothing else paid."""
    db.session.expire_all()
    for order in db.session.scalars(select(Order)):
        good = [
            p
            for p in order.payments
            if p.status == "completed" and not p.needs_review and p.paid_amount == order.amount
        ]
        assert (order.status == "paid") == bool(good) or order.status == "cancelled", order.number


def pay_by_callback(client, make_payment, order, amount=None):
    payment = make_payment(order)
    receipt = "R" + payment.id[-9:].upper().replace("-", "X").replace("_", "Y")
    body = stk_callback(
        payment.checkout_request_id, amount=amount or order["amount"], receipt=receipt
    )
    assert client.post(CALLBACK, json=body).status_code == 200
    return payment


def test_register_list_and_delete_an_endpoint(client, auth, db, receiver):
    created = register_endpoint(client, auth, receiver.url, events=["order.paid", "payment.failed"])
    assert created["secret"].startswith("whsec_") and created["id"].startswith("we_")
    assert created["events"] == ["order.paid", "payment.failed"]
    listed = client.get(URL, headers=auth).get_json()["endpoints"]
    assert [e["id"] for e in listed] == [created["id"]] and "secret" not in listed[0]
    assert client.delete(f"{URL}/{created['id']}", headers=auth).get_json()["deleted"] is True
    assert client.get(URL, headers=auth).get_json()["endpoints"] == []
    assert_error(client.delete(f"{URL}/{created['id']}", headers=auth), 404)
    assert client.get(URL).status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "http://127.0.0.1:9/x", "events": ["order.shipped"]}, "events"),
        ({"url": "http://127.0.0.1:9/x", "events": "nope"}, "events"),
        ({"url": "http://127.0.0.1:9/x", "events": [1]}, "events"),
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "http://user:pw@127.0.0.1/x"}, "url"),
        ({"url": ""}, "url"),
        ({}, "url"),
        # a misspelt field is refused, not ignored (which would subscribe to every event)
        ({"url": "http://127.0.0.1:9/x", "event": ["order.paid"]}, "event"),
    ],
)
def test_invalid_endpoints_are_422(client, auth, db, body, field):
    error = assert_error(client.post(URL, json=body, headers=auth), 422)
    assert field in error["fields"]
    assert db.session.scalar(select(func.count()).select_from(WebhookEndpoint)) == 0


def test_paid_order_is_delivered_signed_with_its_version(
    client, auth, db, receiver, make_order, make_payment
):
    endpoint = register_endpoint(client, auth, receiver.url)
    order = make_order(150)
    pay_by_callback(client, make_payment, order)
    report = deliver_due()
    assert report.succeeded == report.sent == 2  # order.created, order.paid
    by_type = {json.loads(r.body)["type"]: r for r in receiver.received}
    paid = by_type["order.paid"]
    assert signing.verify(paid.headers["Paymentapp-Signature"], paid.body, endpoint["secret"])
    assert not signing.verify(paid.headers["Paymentapp-Signature"], paid.body, "whsec_other")
    event = json.loads(paid.body)
    assert paid.headers["Paymentapp-Event-Id"] == event["id"] and event["id"].startswith("evt_")
    snapshot = event["data"]["order"]
    stored = db.session.get(Order, order["id"])
    assert snapshot["status"] == "paid" and snapshot["version"] == stored.version
    assert snapshot["payments"][0]["phone"] == "2547•••••678"  # masked
    attempt = db.session.scalar(select(WebhookAttempt))
    assert attempt.status_code == 200 and attempt.latency_ms >= 0
    assert deliver_due().sent == 0  # delivered once
    assert_money_invariant(db)


def test_the_event_row_shares_the_transaction_of_the_change(client, auth, db, make_order, receiver):
    register_endpoint(client, auth, receiver.url)
    order = make_order()
    stored = db.session.get(Order, order["id"])
    transition(stored, Kind.ORDER_CANCELLED, "cancelled by test")
    db.session.rollback()  # the change never happened: neither did its event
    types = list(db.session.scalars(select(WebhookEvent.type)))
    assert types == ["order.created"]
    stored = db.session.get(Order, order["id"])
    transition(stored, Kind.ORDER_CANCELLED, "cancelled by test")
    db.session.commit()
    assert sorted(db.session.scalars(select(WebhookEvent.type))) == [
        "order.cancelled",
        "order.created",
    ]


def test_failed_payment_event_carries_reason_and_result_code(
    client, auth, db, receiver, make_order, make_payment
):
    register_endpoint(client, auth, receiver.url, events=["payment.failed"])
    payment = make_payment(make_order())
    body = stk_callback(payment.checkout_request_id, 1032, desc="Request cancelled by user")
    client.post(CALLBACK, json=body)
    deliver_due()
    [got] = receiver.received
    data = json.loads(got.body)["data"]
    assert data["reason"] == "Request cancelled by user" and data["result_code"] == 1032
    assert data["payment_id"] == payment.id


def test_receiver_down_is_retried_until_it_comes_back_then_delivered_once(
    client, auth, db, make_order
):
    with Receiver() as probe:
        url = probe.url  # a port that will be closed
    register_endpoint(client, auth, url, events=["order.created"])
    make_order()
    now = utcnow()
    assert deliver_due(now=now, rng=random.Random(1)).retrying == 1
    delivery = db.session.scalar(select(WebhookDelivery))
    wait = (delivery.next_attempt_at - now).total_seconds()
    assert 54 <= wait <= 66 and delivery.last_error  # 1 min ± 10 %
    assert deliver_due(now=now + timedelta(seconds=30)).sent == 0  # not due yet
    second = now + timedelta(seconds=70)
    assert deliver_due(now=second, rng=random.Random(1)).retrying == 1
    db.session.expire_all()
    delivery = db.session.scalar(select(WebhookDelivery))
    assert 270 <= (delivery.next_attempt_at - second).total_seconds() <= 330  # 5 min
    # the receiver comes back on the same port
    with Receiver(port=int(url.rsplit(":", 1)[1].split("/")[0])) as revived:
        third = second + timedelta(seconds=400)
        assert deliver_due(now=third).succeeded == 1
        assert deliver_due(now=third + timedelta(days=1)).sent == 0
        assert len(revived.received) == 1
    assert db.session.scalar(select(func.count()).select_from(WebhookAttempt)) == 3


@pytest.mark.parametrize("answer", ["500", "redirect", "slow", "huge"])
def test_bad_answers_are_retried_and_recorded(client, auth, db, receiver, make_order, app, answer):
    register_endpoint(client, auth, receiver.url, events=["order.created"])
    if answer == "500":
        receiver.status = 500
    elif answer == "redirect":
        receiver.status, receiver.headers = 302, {"Location": "http://127.0.0.1:9/elsewhere"}
    elif answer == "slow":
        app.config["WEBHOOK_TIMEOUT_S"] = 0.5
        receiver.delay_s = 1.5
    else:
        receiver.body = b"x" * 1_000_000
        receiver.status = 503
    make_order()
    report = deliver_due()
    assert report.retrying == 1 and report.succeeded == 0
    attempt = db.session.scalar(select(WebhookAttempt))
    delivery = db.session.scalar(select(WebhookDelivery))
    assert delivery.status == "pending" and delivery.next_attempt_at > utcnow()
    if answer == "redirect":
        assert attempt.status_code == 302 and len(receiver.received) == 1  # not followed
    if answer == "slow":
        assert attempt.status_code is None and "Timeout" in attempt.error
    if answer == "huge":
        assert attempt.status_code == 503 and len(attempt.response_body) == 1000


def test_after_three_days_a_delivery_fails_and_the_endpoint_is_disabled(
    client, auth, db, receiver, make_order
):
    register_endpoint(client, auth, receiver.url, events=["order.created"])
    receiver.status = 500
    make_order()
    now = utcnow()
    deliver_due(now=now)
    later = now + timedelta(days=3, seconds=1)
    sqla.session.execute(
        WebhookDelivery.__table__.update().values(next_attempt_at=later - timedelta(seconds=1))
    )
    sqla.session.commit()
    assert deliver_due(now=later).failed == 1
    endpoint = db.session.scalar(select(WebhookEndpoint))
    db.session.refresh(endpoint)
    assert not endpoint.enabled and "3 days" in endpoint.disabled_reason


def test_rotated_secret_both_signatures_valid_in_the_grace_period(
    client, auth, db, receiver, make_order
):
    old = register_endpoint(client, auth, receiver.url, events=["order.created"])
    new = client.post(f"{URL}/{old['id']}/rotate-secret", headers=auth).get_json()
    assert new["secret"] != old["secret"] and new["previous_secret_valid_until"]
    make_order()
    deliver_due()
    got = receiver.received[-1]
    header = got.headers["Paymentapp-Signature"]
    assert signing.verify(header, got.body, new["secret"])
    assert signing.verify(header, got.body, old["secret"])
    make_order()
    after_grace = utcnow() + timedelta(hours=25)
    deliver_due(now=after_grace)
    got = receiver.received[-1]
    header = got.headers["Paymentapp-Signature"]
    stamp = after_grace.timestamp()
    assert signing.verify(header, got.body, new["secret"], now=stamp)
    assert not signing.verify(header, got.body, old["secret"], now=stamp)


def test_signatures_outside_the_tolerance_are_rejected():
    body = b'{"id": "evt_1"}'
    header = signing.signature_header(["whsec_k"], 1_000_000, body)
    assert signing.verify(header, body, "whsec_k", now=1_000_000 + 299)
    assert not signing.verify(header, body, "whsec_k", now=1_000_000 + 301)
    assert not signing.verify(header, body + b" ", "whsec_k", now=1_000_000)
    assert not signing.verify("t=abc,v1=00", body, "whsec_k")


def test_deleting_an_endpoint_stops_its_pending_deliveries(client, auth, db, receiver, make_order):
    endpoint = register_endpoint(client, auth, receiver.url, events=["order.created"])
    make_order()
    client.delete(f"{URL}/{endpoint['id']}", headers=auth)
    assert deliver_due().sent == 0 and receiver.received == []
    assert db.session.scalar(select(WebhookDelivery.status)) == DeliveryStatus.CANCELLED


def test_resend_delivers_an_event_again(client, auth, db, receiver, make_order):
    register_endpoint(client, auth, receiver.url, events=["order.created"])
    make_order()
    deliver_due()
    event_id = receiver.event_ids()[0]
    assert resend(event_id) == 1
    deliver_due()
    assert receiver.event_ids() == [event_id, event_id]


@pytest.fixture
def sandbox_client(make_app):
    def make(**env):
        live = {**LIVE, "MPESA_ENV": "sandbox", "ALLOW_SQLITE_IN_PRODUCTION": "1", **env}
        live.pop("DATABASE_URL")
        return make_app(live).test_client()

    return make


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://10.1.2.3/hook",
        "https://192.168.1.10/hook",
        "https://[::1]/hook",
        "http://93.184.215.14/hook",  # not https
    ],
)
def test_private_and_metadata_addresses_are_refused_in_live_modes(
    sandbox_client, auth, api_key, url
):
    client = sandbox_client()
    error = assert_error(client.post(URL, json={"url": url}, headers=auth), 422)
    assert "url" in error["fields"]


def test_private_networks_opt_in_but_metadata_and_loopback_stay_refused(
    sandbox_client, auth, api_key
):
    client = sandbox_client(WEBHOOK_ALLOW_PRIVATE="1")
    ok = client.post(URL, json={"url": "https://10.1.2.3/hook"}, headers=auth)
    assert ok.status_code == 201
    for url in ("https://169.254.169.254/x", "https://127.0.0.1/x"):
        assert_error(client.post(URL, json={"url": url}, headers=auth), 422)


METADATA_URLS = [
    "http://169.254.169.254/latest/meta-data",  # AWS, GCP, Azure, OpenStack, …
    "http://[fd00:ec2::254]/latest/meta-data",  # AWS over IPv6
    "http://169.254.170.2/v2/credentials",  # AWS ECS task metadata
    "http://169.254.169.123/",  # AWS time sync
    "http://[fd00:ec2::123]/",
    "http://100.100.100.200/latest/meta-data",  # Alibaba Cloud
    "http://168.63.129.16/machine",  # Azure WireServer
    "http://169.254.0.23/meta-data",  # Tencent Cloud
    "http://192.0.0.192/latest/",  # Oracle Cloud classic
    "http://[::ffff:169.254.169.254]/latest/meta-data",  # IPv4-mapped
]


@pytest.mark.parametrize("url", METADATA_URLS)
def test_cloud_metadata_addresses_are_refused_in_every_mode(
    client, sandbox_client, auth, api_key, url
):
    """In the simulator (which allows loopback), and live with WEBHOOK_ALLOW_PRIVATE=1."""
    error = assert_error(client.post(URL, json={"url": url}, headers=auth), 422)
    assert "cloud metadata" in error["fields"]["url"]
    live = sandbox_client(WEBHOOK_ALLOW_PRIVATE="1")
    https = url.replace("http://", "https://", 1)
    error = assert_error(live.post(URL, json={"url": https}, headers=auth), 422)
    assert "cloud metadata" in error["fields"]["url"]


def test_an_address_that_turns_private_after_registration_is_refused_at_delivery(
    client, auth, db, receiver, make_order, app
):
    """The check runs again at delivery (DNS can change), and the delivery connects to
    the address it checked."""
    register_endpoint(client, auth, receiver.url, events=["order.created"])
    make_order()
    app.config["MPESA_ENV"] = "sandbox"  # now 127.0.0.1 is refused
    try:
        report = deliver_due()
    finally:
        app.config["MPESA_ENV"] = "simulator"
    assert report.retrying == 1 and receiver.received == []
    assert "loopback" in db.session.scalar(select(WebhookAttempt.error))


def test_payment_flows_keep_the_money_invariant(
    client, auth, db, receiver, make_order, make_payment
):
    register_endpoint(client, auth, receiver.url)
    paid = make_order(100)
    pay_by_callback(client, make_payment, paid)
    wrong = make_order(100)
    pay_by_callback(client, make_payment, wrong, amount=99)
    deliver_due()
    types = sorted(json.loads(r.body)["type"] for r in receiver.received)
    assert types.count("order.paid") == 1 and "payment.needs_review" in types
    assert_money_invariant(db)
    assert db.session.scalar(select(func.count()).select_from(Payment)) == 2


def test_a_test_event_reaches_one_endpoint(client, auth, db, receiver):
    endpoint = register_endpoint(client, auth, receiver.url, events=["order.paid"])
    queued = client.post(f"{URL}/{endpoint['id']}/test", headers=auth)
    assert queued.status_code == 202
    deliver_due()
    [got] = receiver.received
    body = json.loads(got.body)
    assert body["type"] == "endpoint.test" and body["data"]["endpoint_id"] == endpoint["id"]
    assert signing.verify(got.headers["Paymentapp-Signature"], got.body, endpoint["secret"])


def documented_recipe(language: str) -> str:
    """The verification recipe exactly as docs/webhooks.md gives it."""
    from tests.services import ROOT

    text = (ROOT / "docs" / "webhooks.md").read_text()
    return text.split(f"```{language}\n", 1)[1].split("```", 1)[0]


def test_the_documented_recipes_verify_a_real_delivery(client, auth, db, receiver, make_order):
    """The Python and Node recipes of docs/webhooks.md accept our signature, and refuse a
    wrong secret and a changed body."""
    import shutil
    import subprocess

    endpoint = register_endpoint(client, auth, receiver.url, events=["order.created"])
    make_order()
    deliver_due()
    [got] = receiver.received
    header, body = got.headers["Paymentapp-Signature"], got.body
    scope: dict = {}
    exec(documented_recipe("python"), scope)  # noqa: S102 - our own documentation
    assert scope["verify"](header, body, endpoint["secret"])
    assert not scope["verify"](header, body, "whsec_wrong")
    assert not scope["verify"](header, body + b" ", endpoint["secret"])
    node = shutil.which("node")
    assert node, "node is needed (it builds the JS packages too)"
    script = documented_recipe("js") + (
        "\nconst [h, b, s] = process.argv.slice(1);"
        "\nprocess.stdout.write(String(verify(h, Buffer.from(b, 'base64'), s)));"
    )
    import base64

    def node_says(secret: str, raw: bytes) -> str:
        return subprocess.run(
            [node, "-e", script, header, base64.b64encode(raw).decode(), secret],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout

    assert node_says(endpoint["secret"], body) == "true"
    assert node_says("whsec_wrong", body) == "false"


def test_the_events_of_one_order_in_a_commit_share_one_snapshot_built_once(
    db, make_order, monkeypatch
):
    """Events of one order written by one commit (an overpaying payment: `order.paid` and
    `payment.needs_review`) carry the same snapshot, built once for the order."""
    from paymentapp.outbox import events

    order = db.session.get(Order, make_order()["id"])
    built = []
    real = events.order_snapshot
    monkeypatch.setattr(events, "order_snapshot", lambda order: built.append(1) or real(order))
    rows = events.outbox_rows(
        [(order, "order.paid", {}), (order, "payment.needs_review", {"reason": "overpaid"})]
    )
    first, second = (json.loads(row["payload"])["data"] for row in rows)
    assert first["order"] == second["order"] and first["order"]["id"] == order.id
    assert second["reason"] == "overpaid"
    assert len(built) == 1

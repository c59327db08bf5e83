"""The webhooks pages of the dashboard: `/admin/webhooks` (add with the secret shown once,
rotate, disable/enable, delete after a confirm step, send a test event) and an order's
webhook events with every delivery attempt and "Resend". Real rows, real HTTP receivers
(`tests/receiver.py`), the Flask test client; every POST needs the CSRF token."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from markupsafe import escape
from sqlalchemy import func, select

from paymentapp.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    utcnow,
)
from paymentapp.webhooks import signing
from paymentapp.webhooks.delivery import deliver_due
from paymentapp.webhooks.endpoints import create_endpoint
from tests import services
from tests.helpers import csrf_from
from tests.receiver import Receiver

PAGE = "/admin/webhooks"
SECRET = re.compile(r'<code id="new-secret" class="key">(whsec_[^<]+)</code>')
FIELD_ERROR = re.compile(r'<p class="field-error" id="wh-(\w+)-error">([^<]*)</p>')


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


@pytest.fixture
def token(admin_client):
    return csrf_from(admin_client, PAGE)


def endpoints(db) -> list[WebhookEndpoint]:
    db.session.expire_all()
    return list(db.session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.created_at)))


def count(db, model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def flashes(html: str) -> list[str]:
    return [
        re.sub(r"\s+", " ", text).strip()
        for text in re.findall(r'<p class="flash flash-\w+" role="\w+">(.*?)</p>', html, re.S)
    ]


# -- the endpoints page ----------------------------------------------------------------------


def test_the_pages_need_a_session_and_are_in_the_nav(app, admin_client, db, receiver):
    endpoint = create_endpoint(receiver.url)
    anonymous = app.test_client()
    for method, path in [
        ("GET", PAGE),
        ("POST", PAGE),
        ("POST", f"{PAGE}/{endpoint.id}/rotate"),
        ("POST", f"{PAGE}/{endpoint.id}/disable"),
        ("POST", f"{PAGE}/{endpoint.id}/enable"),
        ("GET", f"{PAGE}/{endpoint.id}/delete"),
        ("POST", f"{PAGE}/{endpoint.id}/delete"),
        ("POST", f"{PAGE}/{endpoint.id}/test"),
        ("POST", f"{PAGE}/events/evt_nothing/resend"),
    ]:
        response = anonymous.open(path, method=method)
        assert response.status_code == 302, (method, path)
        assert response.location.startswith("/admin/login"), (method, path)
    assert endpoints(db)[0].enabled and endpoints(db)[0].deleted_at is None
    html = admin_client.get("/admin").get_data(as_text=True)
    assert '<a href="/admin/webhooks" >Webhooks</a>' in html
    page = admin_client.get(PAGE)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert 'aria-current="page">Webhooks</a>' in page.get_data(as_text=True)


def test_lists_endpoints_and_flags_one_disabled_after_3_days_of_failures(admin_client, db):
    now = utcnow()
    paid = create_endpoint(
        "http://127.0.0.1:9/paid", ["order.paid", "payment.failed"], "fulfilment"
    )
    everything = create_endpoint("http://127.0.0.1:9/all")
    broken = create_endpoint("http://127.0.0.1:9/broken")
    paused = create_endpoint("http://127.0.0.1:9/paused")
    flaky = create_endpoint("http://127.0.0.1:9/flaky")
    broken.enabled = False
    broken.disabled_reason = "failing for 3 days: disabled automatically"
    broken.failing_since = now - timedelta(days=3, minutes=5)
    paused.enabled = False
    paused.disabled_reason = "disabled by the merchant"
    flaky.failing_since = now - timedelta(hours=5, minutes=10)
    db.session.commit()

    html = admin_client.get(PAGE).get_data(as_text=True)
    rows = re.findall(r'<tr id="endpoint-(we_[^"]+)" class="endpoint-([\w-]+)">', html)
    assert rows == [
        (paid.id, "enabled"),
        (everything.id, "enabled"),
        (broken.id, "auto-disabled"),
        (paused.id, "disabled"),
        (flaky.id, "enabled"),
    ]
    # the auto-disabled endpoint stands out: a banner at the top and a flagged row
    banner = re.search(
        r'<div class="flash flash-error flagged" role="alert">(.*?)</div>', html, re.S
    )
    assert banner and "1 endpoint disabled automatically" in banner.group(1)
    assert "http://127.0.0.1:9/broken" in banner.group(1)
    assert "/paused" not in banner.group(1)
    row = html.split(f'id="endpoint-{broken.id}"')[1].split("</tr>")[0]
    assert '<span class="badge badge-auto-disabled">auto-disabled</span>' in row
    assert '<span class="warn">failing for 3 days: disabled automatically</span>' in row
    assert "Enable<" in row and "Send test event" not in row
    row = html.split(f'id="endpoint-{paused.id}"')[1].split("</tr>")[0]
    assert '<span class="badge badge-disabled">disabled</span>' in row
    assert "disabled by the merchant" in row
    row = html.split(f'id="endpoint-{flaky.id}"')[1].split("</tr>")[0]
    assert "failing for 5 h 10 min; disabled after 3 days" in row
    row = html.split(f'id="endpoint-{paid.id}"')[1].split("</tr>")[0]
    assert "<code>order.paid</code>" in row and "<code>payment.failed</code>" in row
    assert "fulfilment" in row and "Send test event" in row and "Disable<" in row
    assert '<td data-label="Failing since">—</td>' in row
    row = html.split(f'id="endpoint-{everything.id}"')[1].split("</tr>")[0]
    assert '<td data-label="Events">all</td>' in row
    for endpoint in endpoints(db):
        assert endpoint.secret not in html  # never on the list


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"url": ""}, "url", "Required"),
        ({"url": "ftp://shop.example/hooks"}, "url", "Use an http(s) URL"),
        ({"url": "https://user:pw@shop.example/hooks"}, "url", "Credentials in the URL"),
        ({"url": "https://\x00"}, "url", "Use an http(s) URL"),
        ({"url": "http://127.0.0.1:9/h", "events": []}, "events", "A list of event types"),
        (
            {"url": "http://127.0.0.1:9/h", "events": ["order.paid", "order.shipped"]},
            "events",
            "Unknown: order.shipped.",
        ),
        ({"url": "http://127.0.0.1:9/h", "description": "d" * 201}, "description", "at most 200"),
    ],
)
def test_add_with_invalid_input_shows_the_field_error_and_writes_nothing(
    admin_client, db, token, form, field, message
):
    data = {"csrf_token": token, "events": ["*"], **form}
    response = admin_client.post(PAGE, data=data)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    errors = dict(FIELD_ERROR.findall(html))
    assert list(errors) == [field] and message in errors[field], errors
    assert "The endpoint was not added:" in html
    if field != "events":
        assert f'aria-describedby="wh-{field}' in html and 'aria-invalid="true"' in html
    else:
        assert 'aria-describedby="wh-events-error"' in html
    if form["url"].startswith("http://"):
        assert 'value="http://127.0.0.1:9/h"' in html  # the form keeps what was typed
    if form.get("events"):
        assert 'value="order.paid" checked' in html
    assert count(db, WebhookEndpoint) == 0
    assert SECRET.search(html) is None


def test_add_shows_the_secret_once_and_it_signs_the_deliveries(
    admin_client, db, token, receiver, make_order
):
    response = admin_client.post(
        PAGE,
        data={
            "csrf_token": token,
            "url": f"  {receiver.url}  ",
            "description": "web shop",
            "events": ["order.created", "order.paid"],
        },
    )
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    html = response.get_data(as_text=True)
    secret = SECRET.search(html).group(1)
    assert "shown only once" in html
    [endpoint] = endpoints(db)
    assert endpoint.url == receiver.url and endpoint.secret == secret
    assert endpoint.events == "order.created,order.paid" and endpoint.description == "web shop"
    assert f'id="endpoint-{endpoint.id}"' in html  # and the list already has it
    assert secret not in admin_client.get(PAGE).get_data(as_text=True)

    make_order()
    assert deliver_due().succeeded == 1
    [got] = receiver.received
    assert signing.verify(got.headers["Paymentapp-Signature"], got.body, secret)


def test_all_events_wins_over_single_types(admin_client, db, token):
    data = {"csrf_token": token, "url": "http://127.0.0.1:9/h", "events": ["order.paid", "*"]}
    assert admin_client.post(PAGE, data=data).status_code == 201
    assert endpoints(db)[0].events == "*"


def test_rotate_shows_the_new_secret_once_and_the_old_one_stays_valid_24_hours(
    admin_client, db, token, receiver, make_order
):
    endpoint = create_endpoint(receiver.url, ["order.created"])
    old = endpoint.secret
    response = admin_client.post(f"{PAGE}/{endpoint.id}/rotate", data={"csrf_token": token})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    new = SECRET.search(html).group(1)
    assert new != old and "The old secret stays valid until" in html
    [endpoint] = endpoints(db)
    assert endpoint.secret == new and endpoint.previous_secret == old
    until = endpoint.previous_secret_until - utcnow()
    assert timedelta(hours=23, minutes=59) < until <= timedelta(hours=24)
    listed = admin_client.get(PAGE).get_data(as_text=True)
    assert new not in listed and old not in listed
    assert "old secret valid until" in listed

    make_order()
    deliver_due()
    [got] = receiver.received
    for secret in (old, new):  # both sign during the grace period
        assert signing.verify(got.headers["Paymentapp-Signature"], got.body, secret)
    assert (
        admin_client.post(f"{PAGE}/we_nope/rotate", data={"csrf_token": token}).status_code == 404
    )


def test_disable_cancels_pending_deliveries_and_enable_resumes(admin_client, db, token, make_order):
    endpoint = create_endpoint("http://127.0.0.1:9/h", ["order.created"])
    make_order()
    make_order()
    done = admin_client.post(
        f"{PAGE}/{endpoint.id}/disable", data={"csrf_token": token}, follow_redirects=True
    )
    assert done.request.path == PAGE
    html = done.get_data(as_text=True)
    assert (
        "http://127.0.0.1:9/h is disabled: no events are sent to it; "
        "2 pending deliveries cancelled." in flashes(html)
    )
    [endpoint] = endpoints(db)
    assert not endpoint.enabled and endpoint.disabled_reason == "disabled by admin:alice"
    statuses = set(db.session.scalars(select(WebhookDelivery.status)))
    assert statuses == {DeliveryStatus.CANCELLED}
    assert '<span class="badge badge-disabled">disabled</span>' in html
    assert (
        "disabled by admin:alice" in html and "flash-error flagged" not in html
    )  # not auto-disabled
    make_order()  # nothing is queued for a disabled endpoint
    assert count(db, WebhookDelivery) == 2

    admin_client.post(f"{PAGE}/{endpoint.id}/enable", data={"csrf_token": token})
    [endpoint] = endpoints(db)
    assert endpoint.enabled and endpoint.disabled_reason is None
    make_order()
    pending = db.session.scalar(
        select(func.count()).where(WebhookDelivery.status == DeliveryStatus.PENDING)
    )
    assert pending == 1


def test_delete_asks_first_then_cancels_pending_deliveries(admin_client, db, token, make_order):
    endpoint = create_endpoint("http://127.0.0.1:9/h", ["order.created"], "till 2")
    make_order()
    confirm = admin_client.get(f"{PAGE}/{endpoint.id}/delete")
    html = confirm.get_data(as_text=True)
    assert confirm.status_code == 200
    assert "Delete the webhook endpoint" in html and "http://127.0.0.1:9/h" in html
    assert "<strong>1</strong> pending delivery is cancelled" in html and "Delete endpoint" in html
    assert endpoints(db)[0].deleted_at is None  # asking is not doing

    assert admin_client.post(f"{PAGE}/{endpoint.id}/delete").status_code == 400  # no CSRF
    assert endpoints(db)[0].deleted_at is None

    done = admin_client.post(
        f"{PAGE}/{endpoint.id}/delete", data={"csrf_token": token}, follow_redirects=True
    )
    assert done.request.path == PAGE
    html = done.get_data(as_text=True)
    assert "1 pending delivery cancelled." in " ".join(flashes(html))
    assert f'id="endpoint-{endpoint.id}"' not in html and "No endpoints yet" in html
    [endpoint] = endpoints(db)
    assert endpoint.deleted_at is not None and not endpoint.enabled
    assert db.session.scalar(select(WebhookDelivery.status)) == DeliveryStatus.CANCELLED
    assert admin_client.get(f"{PAGE}/{endpoint.id}/delete").status_code == 404
    again = admin_client.post(f"{PAGE}/{endpoint.id}/delete", data={"csrf_token": token})
    assert again.status_code == 404


def test_send_test_event_queues_it_and_shows_the_answer(admin_client, db, token, receiver):
    endpoint = create_endpoint(receiver.url, ["order.paid"])
    done = admin_client.post(
        f"{PAGE}/{endpoint.id}/test", data={"csrf_token": token}, follow_redirects=True
    )
    assert done.request.path == PAGE
    [event] = db.session.scalars(select(WebhookEvent))
    assert event.type == "endpoint.test" and event.order_id is None
    assert f"Test event {event.id} queued for {receiver.url}" in " ".join(
        flashes(done.get_data(as_text=True))
    )
    [delivery] = db.session.scalars(select(WebhookDelivery))
    assert delivery.endpoint_id == endpoint.id and delivery.status == DeliveryStatus.PENDING

    assert deliver_due().succeeded == 1
    assert receiver.event_ids() == [event.id]
    html = admin_client.get(PAGE).get_data(as_text=True)
    recent = html.split("Recent test events")[1]
    assert f'id="event-{event.id}"' in recent and "endpoint.test" in recent
    assert '<span class="badge badge-succeeded">HTTP 200</span>' in recent
    assert '<span class="badge badge-succeeded">succeeded</span>' in recent

    again = admin_client.post(f"{PAGE}/events/{event.id}/resend", data={"csrf_token": token})
    assert again.status_code == 302 and again.location == PAGE  # no order: back to the list
    assert deliver_due().succeeded == 1 and receiver.event_ids() == [event.id, event.id]

    admin_client.post(f"{PAGE}/{endpoint.id}/disable", data={"csrf_token": token})
    refused = admin_client.post(
        f"{PAGE}/{endpoint.id}/test", data={"csrf_token": token}, follow_redirects=True
    )
    assert "enable it before sending a test event" in refused.get_data(as_text=True)
    assert count(db, WebhookEvent) == 1 and count(db, WebhookDelivery) == 2


# -- an order's webhook events ---------------------------------------------------------------


@pytest.fixture
def delivered_order(db, make_order, receiver):
    """An order whose `order.created` went to three endpoints: one answered 200, one 503
    with a huge body, one refused the connection."""
    with Receiver() as failing:
        failing.status, failing.body = 503, b"<h1>down</h1>" + b"x" * 5000
        ok = create_endpoint(receiver.url, ["order.created"])
        bad = create_endpoint(failing.url, ["order.created"])
        down = create_endpoint(f"http://127.0.0.1:{services.free_port()}/hooks", ["order.created"])
        order = make_order(750)
        report = deliver_due()
    assert report.sent == 3 and report.succeeded == 1 and report.retrying == 2
    return order, {"ok": ok, "bad": bad, "down": down}


def test_order_page_shows_every_delivery_attempt(admin_client, db, delivered_order):
    order, by_name = delivered_order
    [event] = db.session.scalars(select(WebhookEvent).where(WebhookEvent.order_id == order["id"]))
    html = admin_client.get(f"/admin/orders/{order['id']}").get_data(as_text=True)
    section = html.split('<h2 id="webhook-events">Webhook events</h2>')[1]
    head = section.split(f'<li class="wh-event" id="event-{event.id}">')[1].split("</div>")[0]
    assert "<strong>order.created</strong>" in head and event.id in head and "version 1" in head
    assert "Resend" in head

    deliveries = {
        d.endpoint_id: d
        for d in db.session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.event_id == event.id)
        )
    }

    def card(name: str) -> str:
        delivery = deliveries[by_name[name].id]
        return section.split(f'id="delivery-{delivery.id}"')[1].split("</li>")[0]

    ok = card("ok")
    assert by_name["ok"].url in ok and '<span class="badge badge-succeeded">succeeded</span>' in ok
    assert "<dt>Delivered</dt>" in ok and "<dt>Attempts</dt><dd>1</dd>" in ok
    assert '<span class="badge badge-succeeded">HTTP 200</span>' in ok
    assert "12 characters" in ok and "{&#34;ok&#34;: true}" in ok and "(truncated)" not in ok

    bad = card("bad")
    assert '<span class="badge badge-pending">pending</span>' in bad
    assert '<span class="badge badge-failed">HTTP 503</span>' in bad
    assert "1,000 characters (truncated)" in bad
    body = re.search(r'<pre tabindex="0">(.*?)</pre>', bad, re.S).group(1)
    assert body.startswith("&lt;h1&gt;down&lt;/h1&gt;xxx")  # escaped, never markup
    assert len(body.replace("&lt;", "<").replace("&gt;", ">")) == 1000
    next_attempt = deliveries[by_name["bad"].id].next_attempt_at
    from paymentapp.admin.presenters import local_time

    assert f'<dt>Next attempt</dt><dd class="time">{local_time(next_attempt)}</dd>' in bad
    assert "Retried with back-off until" in bad

    down = card("down")
    [attempt] = db.session.scalars(
        select(WebhookAttempt).where(
            WebhookAttempt.delivery_id == deliveries[by_name["down"].id].id
        )
    )
    assert attempt.status_code is None and attempt.error
    assert f'<span class="warn">{escape(attempt.error)}</span>' in down
    assert '<span class="muted">empty</span>' in down and "badge-failed" not in down
    # a deleted endpoint's deliveries stay, marked as such
    admin_client.post(
        f"{PAGE}/{by_name['down'].id}/delete", data={"csrf_token": csrf_from(admin_client, PAGE)}
    )
    html = admin_client.get(f"/admin/orders/{order['id']}").get_data(as_text=True)
    assert f'{by_name["down"].url} <span class="muted">(deleted)</span>' in html
    down = html.split(f'id="delivery-{deliveries[by_name["down"].id].id}"')[1].split("</li>")[0]
    assert "Cancelled: its endpoint was disabled or deleted." in down
    assert '<span class="badge badge-cancelled">cancelled</span>' in down


def test_an_order_without_events_says_so(admin_client, db, make_order):
    order = make_order()  # no endpoint: the event is written, but sent nowhere
    html = admin_client.get(f"/admin/orders/{order['id']}").get_data(as_text=True)
    section = html.split('<h2 id="webhook-events">Webhook events</h2>')[1]
    assert "Not sent: no endpoint took order.created when it happened." in section
    assert "Resend<span" not in section  # nothing to resend


def test_resend_queues_a_new_delivery_per_endpoint(admin_client, db, token, delivered_order):
    order, by_name = delivered_order
    event = db.session.scalar(select(WebhookEvent).where(WebhookEvent.order_id == order["id"]))
    before = count(db, WebhookDelivery)
    done = admin_client.post(
        f"{PAGE}/events/{event.id}/resend", data={"csrf_token": token}, follow_redirects=False
    )
    assert done.status_code == 302
    assert done.location == f"/admin/orders/{order['id']}"
    html = admin_client.get(done.location).get_data(as_text=True)
    assert f"Queued for 3 endpoints: order.created {event.id}." in flashes(html)
    assert count(db, WebhookDelivery) == before + 3
    fresh = list(
        db.session.scalars(
            select(WebhookDelivery).where(
                WebhookDelivery.event_id == event.id, WebhookDelivery.attempts == 0
            )
        )
    )
    assert {d.endpoint_id for d in fresh} == {e.id for e in by_name.values()}
    assert all(d.status == DeliveryStatus.PENDING for d in fresh)
    assert html.count('<li class="delivery" id="delivery-') == before + 3
    assert html.count("Not attempted yet.") == 3
    # an endpoint deleted since gets no new copy: only the two live ones are queued
    admin_client.post(f"{PAGE}/{by_name['down'].id}/delete", data={"csrf_token": token})
    queued = count(db, WebhookDelivery)
    again = admin_client.post(
        f"{PAGE}/events/{event.id}/resend", data={"csrf_token": token}, follow_redirects=True
    )
    assert f"Queued for 2 endpoints: order.created {event.id}." in flashes(
        again.get_data(as_text=True)
    )
    assert count(db, WebhookDelivery) == queued + 2
    missing = admin_client.post(f"{PAGE}/events/evt_nope/resend", data={"csrf_token": token})
    assert missing.status_code == 404


def test_every_webhook_post_without_csrf_is_refused(admin_client, db, delivered_order):
    order, by_name = delivered_order
    endpoint = by_name["ok"]
    secret = endpoint.secret
    event = db.session.scalar(select(WebhookEvent))
    deliveries, events = count(db, WebhookDelivery), count(db, WebhookEvent)
    posts = [
        (PAGE, {"url": "http://127.0.0.1:9/new", "events": ["*"]}),
        (f"{PAGE}/{endpoint.id}/rotate", {}),
        (f"{PAGE}/{endpoint.id}/disable", {}),
        (f"{PAGE}/{by_name['bad'].id}/enable", {}),
        (f"{PAGE}/{endpoint.id}/delete", {}),
        (f"{PAGE}/{endpoint.id}/test", {}),
        (f"{PAGE}/events/{event.id}/resend", {}),
    ]
    for path, data in posts:
        for token in (None, "forged"):
            form = {**data, **({"csrf_token": token} if token else {})}
            response = admin_client.post(path, data=form)
            assert response.status_code == 400, (path, token)
            assert "expired or did not come from the dashboard" in response.get_data(as_text=True)
    now = endpoints(db)
    assert len(now) == 3 and all(e.enabled and e.deleted_at is None for e in now)
    assert db.session.get(WebhookEndpoint, endpoint.id).secret == secret
    assert count(db, WebhookDelivery) == deliveries and count(db, WebhookEvent) == events
    assert admin_client.get(PAGE).status_code == 200  # still signed in

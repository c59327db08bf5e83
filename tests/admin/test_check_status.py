"""The "Check status now" button: its message says what M-Pesa answered, in a fitting style
(green only when money arrived), and every query sent leaves a `status_checked` entry on
the order's timeline, in the same committed change (one version) as whatever it settled."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from paymentapp.models import Order, OrderEvent, Payment
from paymentapp.mpesa.client import DarajaClient, QueryResult
from tests.helpers import csrf_from

FLASH = re.compile(r'<p class="flash flash-(\w+)" role="(\w+)">([^<]*)</p>')


@pytest.fixture
def started(client, live_server, make_order, db):
    """An order whose STK prompt is open on the simulated phone."""
    order = make_order(100)
    response = client.post(
        f"/api/orders/{order['id']}/payments",
        json={"phone": "0712345678"},
        headers={"X-Order-Token": order["client_token"]},
    )
    assert response.status_code == 202, response.get_json()
    return order, db.session.get(Payment, response.get_json()["id"])


def check(admin_client, order, payment) -> tuple[str, str, str]:
    """Press "Check status now"; returns the message's (style, role, text)."""
    token = csrf_from(admin_client, f"/admin/orders/{order['id']}")
    page = admin_client.post(
        f"/admin/payments/{payment.id}/check", data={"csrf_token": token}, follow_redirects=True
    )
    assert page.status_code == 200
    flashes = FLASH.findall(page.get_data(as_text=True))
    assert len(flashes) == 1, flashes
    return flashes[0]


def checks(db, order) -> list[OrderEvent]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(OrderEvent)
            .where(OrderEvent.order_id == order["id"], OrderEvent.kind == "status_checked")
            .order_by(OrderEvent.id)
        )
    )


def version(db, order) -> int:
    db.session.expire_all()
    return db.session.get(Order, order["id"]).version


def test_still_waiting_is_news_not_success_and_goes_on_the_timeline(admin_client, started, db):
    order, payment = started
    before = version(db, order)
    style, role, text = check(admin_client, order, payment)
    assert (style, role) == ("info", "status")
    assert text == "M-Pesa says the customer has not answered yet."
    [event] = checks(db, order)
    assert event.actor == "admin:alice" and event.payment_id == payment.id
    assert "not answered yet" in event.detail
    assert version(db, order) == before + 1  # the timeline entry is a change dashboards see
    page = admin_client.get(f"/admin/orders/{order['id']}").get_data(as_text=True)
    assert "status checked" in page and "by admin:alice" in page


def test_paid_by_query_is_green_and_recorded_with_the_payment(
    admin_client, started, live_server, db
):
    order, payment = started
    live_server.press(payment.checkout_request_id, "lose_callback")  # paid; no callback comes
    before = version(db, order)
    style, _, text = check(admin_client, order, payment)
    assert style == "ok"
    assert text.startswith("M-Pesa says the customer paid (0: ")
    assert f"order {order['number']} is paid." in text
    [event] = checks(db, order)
    assert event.detail.startswith("M-Pesa says 0: ") and "(payment completed)" in event.detail
    assert db.session.get(Order, order["id"]).status == "paid"
    assert version(db, order) == before + 1  # payment, order and check: one committed change


def test_a_failed_payment_is_a_warning(admin_client, started, db, monkeypatch):
    order, payment = started
    monkeypatch.setattr(
        DarajaClient,
        "stk_query",
        lambda self, checkout_id: QueryResult(False, 1032, "Request cancelled by user"),
    )
    style, _, text = check(admin_client, order, payment)
    assert style == "warn"
    assert text == (
        "M-Pesa says the payment did not go through (1032: Request cancelled by user); "
        "the payment is cancelled."
    )
    [event] = checks(db, order)
    assert "1032" in event.detail and "(payment cancelled)" in event.detail
    assert db.session.get(Payment, payment.id).status == "cancelled"


def test_no_answer_is_an_error_that_changes_nothing_but_the_timeline(
    admin_client, started, live_server, db
):
    order, payment = started
    live_server.fault("query", 500, {"errorCode": "500.001.1001", "errorMessage": "Server down"})
    style, role, text = check(admin_client, order, payment)
    assert (style, role) == ("error", "alert")
    assert text.startswith("M-Pesa did not answer the query: ")
    [event] = checks(db, order)
    assert event.detail.startswith("M-Pesa did not answer the query: ")
    assert db.session.get(Payment, payment.id).status == "pending"


def test_nothing_to_ask_sends_no_query_and_writes_nothing(
    admin_client, make_order, add_payment, db
):
    order = make_order(100)
    pending = add_payment(order["id"], "pending")  # the push never got a checkout id
    style, _, text = check(admin_client, order, pending)
    assert style == "info"
    assert text == "M-Pesa never confirmed this prompt, so it cannot be queried."
    assert checks(db, order) == []

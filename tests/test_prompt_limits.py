"""Prompt limits: one payment link cannot keep strangers' phones busy. At most
PAYMENT_PROMPTS_PER_ORDER prompts that reached a phone per order in the window (then
429 too_many_prompts with Retry-After), and PAYMENT_ADDRESS_RATE_LIMIT prompts started
per client address; refused requests do not count."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from paymentapp.models import Payment
from tests.helpers import assert_error, pay

PHONES = ["0712000001", "0712000002", "0712000003", "0712000004"]


def fail_prompt(db, order) -> None:
    """The order's open prompt ends (the customer cancelled it on the phone)."""
    db.session.execute(
        update(Payment)
        .where(Payment.order_id == order["id"], Payment.status == "pending")
        .values(status="cancelled")
    )
    db.session.commit()


def test_an_order_prompts_three_phones_in_ten_minutes_then_waits(
    app, client, make_order, db, live_server
):
    order = make_order(100)
    for phone in PHONES[:3]:
        assert pay(client, order, phone).status_code == 202
        fail_prompt(db, order)
    refused = pay(client, order, PHONES[3])
    error = assert_error(refused, 429, "too_many_prompts")
    assert "Pay with Paybill" in error["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 600
    # another order is not held back by this one
    assert pay(client, make_order(100), "0712000009").status_code == 202
    # once the window has passed for the oldest prompt, one more may go
    db.session.expire_all()
    for payment in db.session.scalars(select(Payment).where(Payment.order_id == order["id"])):
        payment.created_at -= timedelta(minutes=11)
    db.session.commit()
    assert pay(client, order, PHONES[3]).status_code == 202


def test_one_address_starts_a_limited_number_of_prompts(app, client, make_order, db, live_server):
    app.config["PAYMENT_ADDRESS_RATE_LIMIT"] = "2 per 10 minutes"
    refused_first = pay(client, make_order(100), "07")  # refused (422): does not count
    assert refused_first.status_code == 422
    for phone in PHONES[:2]:
        assert pay(client, make_order(100), phone).status_code == 202
    limited = pay(client, make_order(100), PHONES[2])
    assert limited.status_code == 429
    assert limited.get_json()["error"]["code"] == "rate_limited"

"""Callbacks from outside MPESA_CALLBACK_ALLOWED_IPS: on by default in
production, stored as untrusted and never applied on their own, listed in the review
queue, where an admin applies one (after checking with M-Pesa) or dismisses it."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from paymentapp.config import SAFARICOM_CALLBACK_IPS, load_config, parse_allowed_ips
from paymentapp.models import CallbackRecord, Order, Payment
from tests.helpers import LIVE, TEST_CALLBACK_TOKEN, html_of, post_form, stk_callback

URL = f"/callbacks/stk/{TEST_CALLBACK_TOKEN}"


@pytest.fixture
def untrusted(app, client, make_order, make_payment, db):
    """A success callback for a pending prompt, from an address outside the allowlist."""
    app.config["MPESA_CALLBACK_ALLOWED_IPS"] = parse_allowed_ips("safaricom")
    payment = make_payment(make_order(100))
    answer = client.post(URL, json=stk_callback(payment.checkout_request_id, amount=100))
    assert answer.status_code == 200
    record = db.session.scalar(select(CallbackRecord))
    assert record.outcome == "untrusted"
    return record, payment


def test_it_waits_in_the_review_queue_and_an_admin_applies_it(admin_client, untrusted, db):
    record, payment = untrusted
    review = html_of(admin_client, "/admin/review")
    assert (
        f'id="untrusted-{record.id}"' in review and "Callbacks from untrusted addresses" in review
    )
    path = f"/admin/review/untrusted/{record.id}/apply"
    empty = post_form(admin_client, path, {"note": ""}, "/admin/review")
    assert empty.status_code == 422  # a note is required
    applied = post_form(
        admin_client, path, {"note": "receipt seen in the M-Pesa portal"}, "/admin/review"
    )
    assert applied.status_code == 302
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).status == "completed"
    assert db.session.get(Order, payment.order_id).status == "paid"
    stored = db.session.get(CallbackRecord, record.id)
    assert stored.outcome == "applied" and "applied by admin:alice" in stored.detail
    assert f'id="untrusted-{record.id}"' not in html_of(admin_client, "/admin/review")
    again = post_form(admin_client, path, {"note": "twice"}, "/admin/review")
    assert again.status_code == 404  # handled already: nothing applies twice


def test_an_admin_dismisses_it_and_nothing_moves(admin_client, untrusted, db):
    record, payment = untrusted
    path = f"/admin/review/untrusted/{record.id}/dismiss"
    answer = post_form(admin_client, path, {"note": "not from Safaricom"}, "/admin/review")
    assert answer.status_code == 302
    db.session.expire_all()
    assert db.session.get(CallbackRecord, record.id).outcome == "ignored"
    assert db.session.get(Payment, payment.id).status == "pending"
    bad = post_form(
        admin_client, f"/admin/review/untrusted/{record.id}/explode", {"note": "x"}, "/admin/review"
    )
    assert bad.status_code == 404


def test_production_trusts_only_safaricom_unless_told_any():
    networks = load_config(LIVE)["MPESA_CALLBACK_ALLOWED_IPS"]
    assert len(networks) == len(SAFARICOM_CALLBACK_IPS)
    assert (
        load_config({**LIVE, "MPESA_CALLBACK_ALLOWED_IPS": "any"})["MPESA_CALLBACK_ALLOWED_IPS"]
        == []
    )
    sandbox = load_config({**LIVE, "MPESA_ENV": "sandbox"})
    assert sandbox["MPESA_CALLBACK_ALLOWED_IPS"] == []  # off unless configured


def test_any_in_production_warns_at_start(caplog):
    from paymentapp import create_app

    with caplog.at_level("WARNING"):
        create_app(
            {"TESTING": True},
            env={
                **LIVE,
                "MPESA_CALLBACK_ALLOWED_IPS": "any",
                "DATABASE_URL": "sqlite://",
                "ALLOW_SQLITE_IN_PRODUCTION": "1",
            },
        )
    assert "MPESA_CALLBACK_ALLOWED_IPS=any" in caplog.text

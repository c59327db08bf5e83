"""Missed Paybill payments pulled back: a payment whose C2B confirmation never arrived is
found by Pull Transactions (the simulator's, over HTTP) and applied through the same C2B
kind as its callback would have been, its record marked `via = pull`; what is known is
left alone, twice pulled is once applied."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from paymentapp.callbacks.pull import pull_missed
from paymentapp.models import CallbackRecord, Order
from paymentapp.mpesa.client import get_client
from tests.helpers import lost_paybill_payment


def register(app):
    get_client().register_pull(
        shortcode=app.config["MPESA_C2B_SHORTCODE"],
        nominated_number="254708374149",
        callback_url="https://shop.example/callbacks/c2b/confirmation/x",
    )


def test_a_lost_confirmation_is_pulled_back_and_pays_the_order(app, live_server, make_order, db):
    register(app)
    order = make_order(700)
    receipt = lost_paybill_payment(live_server, order, 700)
    assert db.session.get(Order, order["id"]).status == "pending"  # nothing arrived

    report = pull_missed(timedelta(hours=6))
    assert (report.listed, report.applied) == (1, 1)
    db.session.expire_all()
    stored = db.session.get(Order, order["id"])
    assert stored.status == "paid" and stored.payments[0].receipt == receipt
    record = db.session.scalars(
        select(CallbackRecord).where(CallbackRecord.checkout_request_id == receipt)
    ).one()
    assert record.via == "pull" and record.kind == "c2b" and record.outcome == "applied"

    again = pull_missed(timedelta(hours=6))
    assert (again.listed, again.known, again.applied) == (1, 1, 0)


def test_a_confirmed_payment_is_known_and_left_alone(app, live_server, make_order, db):
    register(app)
    order = make_order(300)
    receipt = lost_paybill_payment(live_server, order, 300, copies=1)  # it did arrive
    report = pull_missed(timedelta(hours=1))
    assert (report.listed, report.known, report.applied) == (1, 1, 0)
    records = db.session.scalars(
        select(CallbackRecord).where(CallbackRecord.checkout_request_id == receipt)
    ).all()
    assert [r.via for r in records] == ["callback"]


def test_the_cli_pulls_and_refuses_a_window_beyond_48_hours(app, live_server, make_order, db):
    register(app)
    order = make_order(150)
    lost_paybill_payment(live_server, order, 150)
    runner = app.test_cli_runner()
    refused = runner.invoke(args=["mpesa", "pull", "--since", "3d"])
    assert refused.exit_code != 0 and "48 hours" in refused.output
    done = runner.invoke(args=["mpesa", "pull", "--since", "2h"])
    assert done.exit_code == 0, done.output
    assert "applied=1" in done.output
    db.session.expire_all()
    assert db.session.get(Order, order["id"]).status == "paid"


def test_the_reconciler_pulls_once_per_interval_when_configured(app, live_server, make_order, db):
    from paymentapp.payments.reconcile import reconcile_once

    register(app)
    order = make_order(260)
    lost_paybill_payment(live_server, order, 260)
    assert reconcile_once().pulled == 0  # off by default
    app.config["MPESA_PULL_INTERVAL_S"] = 600
    assert reconcile_once().pulled == 1
    db.session.expire_all()
    assert db.session.get(Order, order["id"]).status == "paid"
    other = make_order(90)
    lost_paybill_payment(live_server, other, 90)
    assert reconcile_once().pulled == 0  # not due again for 10 minutes

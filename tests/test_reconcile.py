"""Reconciliation: late or missing callbacks are settled with STK Query, or expire."""

import os
import subprocess
import sys
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from paymentapp.models import CallbackRecord, Order, OrderEvent, Payment, utcnow
from paymentapp.payments.reconcile import reconcile_once
from paymentapp.payments.services import apply_result
from tests.helpers import stk_callback
from tests.services import ROOT


def start(client, order, phone="0712345678"):
    response = client.post(
        f"/api/orders/{order['id']}/payments",
        json={"phone": phone},
        headers={"X-Order-Token": order["client_token"]},
    )
    assert response.status_code == 202, response.get_json()
    return response.get_json()["id"]


def make_due(db, payment_id, age_s=0):
    """Pretend the payment was created `age_s` ago and its query is due now."""
    db.session.execute(
        update(Payment)
        .where(Payment.id == payment_id)
        .values(
            next_query_at=utcnow() - timedelta(seconds=1),
            created_at=utcnow() - timedelta(seconds=age_s),
        )
    )
    db.session.commit()


def fresh(db, payment_id) -> Payment:
    db.session.expire_all()
    return db.session.get(Payment, payment_id)


def test_lost_callback_is_found_by_query(client, live_server, make_order, db):
    order = make_order(120)
    payment_id = start(client, order)
    live_server.press(
        live_server.prompt_for(order["number"])["checkout_request_id"], "lose_callback"
    )
    make_due(db, payment_id, age_s=40)
    report = reconcile_once()
    assert report.queried == 1 and report.resolved == 1
    payment = fresh(db, payment_id)
    assert payment.status == "completed" and payment.receipt is None
    assert payment.order.status == "paid"


def test_unanswered_prompt_stays_pending_and_is_rescheduled(client, live_server, make_order, db):
    payment_id = start(client, make_order())
    make_due(db, payment_id, age_s=40)
    report = reconcile_once()
    assert report.queried == 1 and report.still_pending == 1
    payment = fresh(db, payment_id)
    assert payment.status == "pending" and payment.query_count == 1
    assert payment.next_query_at > utcnow()


def test_expired_payment_becomes_timeout(client, live_server, make_order, db):
    order = make_order()
    payment_id = start(client, order)
    make_due(db, payment_id, age_s=181)
    report = reconcile_once()
    assert report.expired == 1
    payment = fresh(db, payment_id)
    assert payment.status == "timeout" and payment.order.status == "pending"
    assert "expired" in payment.result_desc


def test_expiry_still_asks_first_and_takes_a_late_answer(client, live_server, make_order, db):
    order = make_order()
    payment_id = start(client, order)
    live_server.press(
        live_server.prompt_for(order["number"])["checkout_request_id"], "lose_callback"
    )
    make_due(db, payment_id, age_s=500)
    reconcile_once()
    assert fresh(db, payment_id).status == "completed"


def test_spike_arrest_on_query_backs_off(client, live_server, make_order, db):
    payment_id = start(client, make_order())
    live_server.fault("query", 500, {"errorCode": "500.003.02", "errorMessage": "Spike arrest"})
    make_due(db, payment_id, age_s=40)
    report = reconcile_once()
    assert report.errors == 1
    payment = fresh(db, payment_id)
    assert payment.status == "pending"
    assert payment.next_query_at > utcnow() + timedelta(seconds=45)


def test_query_never_downgrades_a_success(client, live_server, make_order, make_payment, db):
    payment = make_payment(make_order())
    client.post(
        f"/callbacks/stk/{client.application.config['MPESA_CALLBACK_TOKEN']}",
        json=stk_callback(payment.checkout_request_id),
    )
    payment = fresh(db, payment.id)
    outcome = apply_result(
        payment, result_code=1032, result_desc="cancelled", source="query", amount_from="query"
    )
    db.session.commit()
    assert outcome == "ignored"
    assert fresh(db, payment.id).status == "completed"


def test_query_success_overrides_timeout(client, live_server, make_order, make_payment, db):
    order = make_order()
    payment = make_payment(order)
    payment.status = "timeout"
    db.session.commit()
    outcome = apply_result(
        fresh(db, payment.id), result_code=0, result_desc="ok", source="query", amount_from="query"
    )
    db.session.commit()
    assert outcome == "applied"
    assert db.session.get(Order, order["id"]).status == "paid"


def test_two_reconcilers_at_once_transition_once(app, client, live_server, make_order, db):
    orders = [make_order(50 + i) for i in range(4)]
    ids = []
    for i, order in enumerate(orders):
        ids.append(start(client, order, f"07123456{i:02d}"))
        live_server.press(
            live_server.prompt_for(order["number"])["checkout_request_id"], "lose_callback"
        )
        make_due(db, ids[-1], age_s=40)
    reports, barrier = [], threading.Barrier(2)

    def run():
        with app.app_context():
            barrier.wait()
            reports.append(reconcile_once())
            db.session.remove()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(r.resolved for r in reports) == 4
    db.session.expire_all()
    paid_events = db.session.scalar(
        select(func.count()).select_from(OrderEvent).where(OrderEvent.kind == "order_paid")
    )
    assert paid_events == 4
    assert all(fresh(db, i).status == "completed" for i in ids)


def test_stored_but_unapplied_callback_is_retried(make_order, make_payment, db):
    order = make_order()
    payment = make_payment(order)
    import json

    db.session.add(
        CallbackRecord(
            body=json.dumps(stk_callback(payment.checkout_request_id)),
            outcome="received",
            received_at=utcnow() - timedelta(minutes=2),
        )
    )
    db.session.commit()
    report = reconcile_once()
    assert report.callbacks_retried == 1
    assert fresh(db, payment.id).status == "completed"


def stored(body, minutes_ago: int = 2) -> CallbackRecord:
    """A callback on record that nobody applied (a worker died between store and apply)."""
    import json

    return CallbackRecord(
        body=body if isinstance(body, str) else json.dumps(body),
        outcome="received",
        received_at=utcnow() - timedelta(minutes=minutes_ago),
    )


@pytest.mark.parametrize("app_config", [{"FAULTS": {"callback.apply": "raise:ws_CO_bad"}}])
def test_one_bad_stored_callback_never_blocks_the_rest(
    make_order, make_payment, db, app_config, log_output
):
    """A record that crashed on every retry once made each pass fail, forever."""
    good = [make_payment(make_order(10 + i)) for i in range(2)]
    make_payment(make_order(30), checkout_id="ws_CO_bad")
    db.session.add(stored(stk_callback("ws_CO_bad", amount=30), minutes_ago=3))
    for n, payment in enumerate(good):
        body = stk_callback(
            payment.checkout_request_id, amount=payment.amount, receipt=f"RGOOD{n}XYZ"
        )
        db.session.add(stored(body))
    db.session.commit()
    report = reconcile_once()
    assert report.callbacks_retried == 3 and report.callback_errors == 1
    assert all(fresh(db, p.id).status == "completed" for p in good)
    for _attempt in range(2, 6):
        report = reconcile_once()
        assert report.callbacks_retried == 1 and report.callback_errors == 1
    bad = db.session.scalar(select(CallbackRecord).where(CallbackRecord.body.contains("ws_CO_bad")))
    assert bad.outcome == "failed" and bad.attempts == 5 and "gave up" in bad.detail
    assert reconcile_once().callbacks_retried == 0  # given up: not retried forever
    assert "event=callback.apply_failed" in log_output.getvalue()


@pytest.mark.e2e
def test_reconcile_cli_one_pass(client, live_server, make_order, db, app_env, tmp_path):
    order = make_order()
    payment_id = start(client, order)
    live_server.press(
        live_server.prompt_for(order["number"])["checkout_request_id"], "lose_callback"
    )
    make_due(db, payment_id, age_s=40)
    env = {**os.environ, **app_env, "PAYMENTAPP_INSTANCE_PATH": str(tmp_path)}
    env.pop("REDIS_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "mpesa", "reconcile"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "resolved=1" in result.stdout
    assert fresh(db, payment_id).status == "completed"
    assert f"order {order['number']} marked paid" in result.stderr

"""Paybill (C2B): confirmations matched by order number, every bad input handled, and the
money invariant (a paid order's counting payments cover it; it was paid once)."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from paymentapp.models import CallbackRecord, Order, Payment, utcnow
from paymentapp.mpesa.formats import luhn_digit, order_digits
from tests.helpers import (
    TEST_CALLBACK_TOKEN,
    assert_error,
    assert_paid_once,
    c2b_confirmation,
    stk_callback,
)

CONFIRM = f"/callbacks/c2b/confirmation/{TEST_CALLBACK_TOKEN}"
VALIDATE = f"/callbacks/c2b/validation/{TEST_CALLBACK_TOKEN}"


def post(client, body, url=CONFIRM):
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(url, data=data, content_type="application/json")


def fresh(db, order_id) -> Order:
    db.session.expire_all()
    return db.session.get(Order, order_id)


@pytest.mark.parametrize("typed", ["{n}", "{n_lower}", "ord {digits}", "ORD{digits}", " {digits} "])
def test_exact_amount_with_a_loosely_typed_account_pays_the_order(
    client, make_order, db, socket_client, typed
):
    order = make_order(1450)
    digits = order_digits(order["number"])
    account = typed.format(n=order["number"], n_lower=order["number"].lower(), digits=digits)
    sock = socket_client()
    sock.emit("subscribe", {"order_id": order["id"], "token": order["client_token"]}, callback=True)
    response = post(client, c2b_confirmation(account, "1450.00"))
    assert response.status_code == 200 and response.get_json()["ResultCode"] == 0
    stored = fresh(db, order["id"])
    [payment] = stored.payments
    assert stored.status == "paid" and payment.method == "paybill" and payment.paid_amount == 1450
    assert payment.account_reference == account.strip() or payment.account_reference == account
    update = [e["args"][0] for e in sock.get_received() if e["name"] == "payment_update"][-1]
    assert update["order_status"] == "paid" and update["amount_due"] == 0
    assert update["payments"][0]["method"] == "paybill"
    shortcode = client.application.config["MPESA_C2B_SHORTCODE"]
    assert update["paybill"] == {
        "business_number": shortcode,
        "account": order["number"],
        "qr": True,
    }
    assert_paid_once(db)


def test_a_partial_payment_is_flagged_and_a_second_completes_the_order(client, make_order, db):
    order = make_order(1000)
    post(client, c2b_confirmation(order["number"], "600"))
    stored = fresh(db, order["id"])
    assert stored.status == "pending" and stored.amount_paid == 600 and stored.amount_due == 400
    assert "KES 600 received, KES 400 still due" in stored.payments[0].review_reason
    post(client, c2b_confirmation(order["number"], "400"))
    stored = fresh(db, order["id"])
    assert stored.status == "paid" and stored.amount_paid == 1000
    assert not any(p.needs_review for p in stored.payments)  # the partial flag is answered
    assert_paid_once(db)


def test_an_overpayment_pays_and_is_flagged(client, make_order, db):
    order = make_order(500)
    post(client, c2b_confirmation(order["number"], "700"))
    stored = fresh(db, order["id"])
    assert stored.status == "paid" and "overpaid by 200 KES" in stored.payments[0].review_reason


def test_money_for_a_paid_order_is_recorded_and_flagged_not_paid_twice(
    client, make_order, make_payment, db
):
    order = make_order(300)
    payment = make_payment(order)
    client.post(
        f"/callbacks/stk/{TEST_CALLBACK_TOKEN}",
        json=stk_callback(payment.checkout_request_id, amount=300, receipt="STKRCPT001"),
    )
    post(client, c2b_confirmation(order["number"], "300"))
    stored = fresh(db, order["id"])
    assert stored.status == "paid" and len(stored.payments) == 2
    assert "order already paid" in stored.payments[1].review_reason
    assert_paid_once(db)


def test_a_confirmation_with_an_applied_stk_receipt_is_the_same_money(
    client, make_order, make_payment, db
):
    order = make_order(300)
    payment = make_payment(order)
    client.post(
        f"/callbacks/stk/{TEST_CALLBACK_TOKEN}",
        json=stk_callback(payment.checkout_request_id, amount=300, receipt="SAMEMONEY1"),
    )
    response = post(client, c2b_confirmation(order["number"], "300", trans_id="SAMEMONEY1"))
    assert response.status_code == 200
    stored = fresh(db, order["id"])
    assert len(stored.payments) == 1 and stored.status == "paid"
    assert db.session.scalar(
        select(CallbackRecord.outcome).where(CallbackRecord.kind == "c2b")
    ) == ("duplicate")


def test_a_confirmation_before_its_stk_callback_completes_the_prompt_once(
    client, make_order, make_payment, db
):
    order = make_order(450)
    payment = make_payment(order)
    post(client, c2b_confirmation(order["number"], "450", trans_id="TWIN000001"))
    stored = fresh(db, order["id"])
    assert stored.status == "paid" and len(stored.payments) == 1
    assert stored.payments[0].id == payment.id and stored.payments[0].receipt == "TWIN000001"
    late = client.post(
        f"/callbacks/stk/{TEST_CALLBACK_TOKEN}",
        json=stk_callback(payment.checkout_request_id, amount=450, receipt="TWIN000001"),
    )
    assert late.status_code == 200
    stored = fresh(db, order["id"])
    assert len(stored.payments) == 1 and stored.amount_paid == 450
    assert_paid_once(db)


@pytest.mark.parametrize(
    ("account", "why"),
    [
        ("ORD-" + "9999" + luhn_digit("9999"), "no order"),
        ("ORD-99999", "check digit"),
        ("", "no account"),
        ("invoice 7", "no order number"),
    ],
)
def test_unmatched_payments_go_to_review(client, make_order, db, account, why):
    make_order(100)
    assert post(client, c2b_confirmation(account, "100")).status_code == 200
    record = db.session.scalar(select(CallbackRecord).where(CallbackRecord.kind == "c2b"))
    assert record.outcome == "unknown" and why in record.detail
    assert db.session.scalar(select(func.count()).select_from(Payment)) == 0


def test_a_typo_in_the_check_digit_never_pays_another_order(client, make_order, db):
    first, second = make_order(100), make_order(100)
    digits = order_digits(second["number"])
    typo = digits[:-1] + str((int(digits[-1]) + 1) % 10)
    post(client, c2b_confirmation("ORD-" + typo, "100"))
    assert fresh(db, first["id"]).status == "pending" and fresh(db, second["id"]).status == (
        "pending"
    )
    record = db.session.scalar(select(CallbackRecord).where(CallbackRecord.kind == "c2b"))
    assert record.outcome == "unknown"


@pytest.mark.parametrize("amount", ["1e3", "-5", "0", "999999999999", "", None, "abc"])
def test_an_unusable_amount_is_recorded_for_review(client, make_order, db, amount):
    order = make_order(1000)
    assert post(client, c2b_confirmation(order["number"], amount)).status_code == 200
    assert fresh(db, order["id"]).payments == []
    record = db.session.scalar(select(CallbackRecord).where(CallbackRecord.kind == "c2b"))
    assert record.outcome == "unknown" and "amount" in record.detail


@pytest.mark.parametrize("amount", ["1450", "1450.00", 1450, 1450.0])
def test_amount_spellings(client, make_order, db, amount):
    order = make_order(1450)
    post(client, c2b_confirmation(order["number"], amount))
    assert fresh(db, order["id"]).status == "paid"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({**c2b_confirmation("ORD-1"), "TransID": ""}, 400),
        ({**c2b_confirmation("ORD-1"), "TransID": None}, 400),
        ("not json", 400),
        ("[1, 2]", 400),
    ],
)
def test_malformed_confirmations_are_stored_and_refused(client, db, body, status):
    response = post(client, body)
    assert_error(response, status, "malformed_callback")
    assert db.session.scalar(select(CallbackRecord.outcome)) == "malformed"


def test_oversized_wrong_token_and_wrong_ip(client, db, app):
    assert post(client, "x" * (17 * 1024)).status_code == 413
    wrong = client.post("/callbacks/c2b/confirmation/not-the-token-123456", json={})
    assert_error(wrong, 404)
    app.config["MPESA_CALLBACK_ALLOWED_IPS"] = __import__(
        "paymentapp.config", fromlist=["x"]
    ).parse_allowed_ips("10.9.9.9")
    untrusted = post(client, c2b_confirmation("ORD-1"))
    assert untrusted.status_code == 200  # stored as untrusted, not applied
    record = db.session.scalar(select(CallbackRecord))
    assert record.outcome == "untrusted" and record.payment_id is None


def test_ten_copies_of_one_confirmation_at_once_pay_once(app, client, make_order, db):
    order = make_order(800)
    body = json.dumps(c2b_confirmation(order["number"], "800", trans_id="DUPX000001"))
    barrier = threading.Barrier(10)
    answers = []

    def send():
        with app.test_client() as own:
            barrier.wait()
            answers.append(post(own, body).status_code)

    threads = [threading.Thread(target=send) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert answers.count(200) == 10
    stored = fresh(db, order["id"])
    assert len(stored.payments) == 1 and stored.status == "paid"
    assert_paid_once(db)


def test_money_for_an_expired_order_is_flagged_for_refund(client, make_order, db):
    order = make_order(200)
    stored = db.session.get(Order, order["id"])
    stored.expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    post(client, c2b_confirmation(order["number"], "200"))
    stored = fresh(db, order["id"])
    assert stored.status == "pending" and "refund due" in stored.payments[0].review_reason
    held = stored.payments[0]
    assert held.held and not held.counts and stored.amount_paid == 0


def test_lateness_is_judged_by_when_mpesa_took_the_money(client, make_order, db):
    """A confirmation that arrives after the expiry for money M-Pesa took before it is on
    time: it pays the order."""
    order = make_order(200)
    stored = db.session.get(Order, order["id"])
    stored.expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    before_expiry = (utcnow() - timedelta(minutes=2) + timedelta(hours=3)).strftime("%Y%m%d%H%M%S")
    post(client, c2b_confirmation(order["number"], "200", TransTime=before_expiry))
    stored = fresh(db, order["id"])
    assert stored.status == "paid" and not stored.payments[0].held
    assert_paid_once(db)


def test_accepting_held_money_counts_it(client, make_order, db):
    from paymentapp.payments.services import resolve_review

    order = make_order(200)
    stored = db.session.get(Order, order["id"])
    stored.expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    post(client, c2b_confirmation(order["number"], "200"))
    payment_id = fresh(db, order["id"]).payments[0].id
    resolve_review(payment_id, "customer still wants it", "admin:a")
    stored = fresh(db, order["id"])
    assert stored.status == "paid" and stored.amount_paid == 200
    assert_paid_once(db)


def test_cancelled_order_payment_is_unmatched_and_can_be_assigned(client, auth, make_order, db):
    from paymentapp.callbacks.services import assign_c2b_payment

    cancelled, other = make_order(150), make_order(150)
    assert client.post(f"/api/orders/{cancelled['id']}/cancel", headers=auth).status_code == 200
    post(client, c2b_confirmation(cancelled["number"], "150"))
    record = db.session.scalar(select(CallbackRecord).where(CallbackRecord.kind == "c2b"))
    assert record.outcome == "unknown" and "cancelled" in record.detail
    assign_c2b_payment(record.id, other["number"].lower(), "customer called", "admin:alice")
    assert fresh(db, other["id"]).status == "paid"
    db.session.expire_all()
    assert db.session.get(CallbackRecord, record.id).outcome == "applied"
    assert_paid_once(db)


def test_cancel_api(client, auth, make_order, make_payment):
    order = make_order(100)
    make_payment(order)
    busy = client.post(f"/api/orders/{order['id']}/cancel", headers=auth)
    assert_error(busy, 409, "payment_pending")
    other = make_order(100)
    done = client.post(f"/api/orders/{other['id']}/cancel", headers=auth)
    assert done.status_code == 200 and done.get_json()["status"] == "cancelled"
    assert client.post(f"/api/orders/{other['id']}/cancel").status_code == 401


@pytest.mark.parametrize(
    ("enabled", "account", "amount", "code"),
    [
        (False, "ORD-99999", "10", "0"),
        (True, "ORD-99999", "10", "C2B00012"),
        (True, "{number}", "0", "C2B00013"),
        (True, "{number}", "100", "0"),
    ],
)
def test_validation(client, make_order, app, db, enabled, account, amount, code):
    app.config["MPESA_C2B_VALIDATION"] = enabled
    order = make_order(100)
    response = post(
        client, c2b_confirmation(account.format(number=order["number"]), amount), VALIDATE
    )
    assert response.status_code == 200 and response.get_json()["ResultCode"] == code
    assert db.session.scalar(select(CallbackRecord.kind)) == "c2b_validation"
    assert fresh(db, order["id"]).payments == []


def test_hand_entry(make_order, db):
    from paymentapp.payments.services import record_payment_by_hand

    order = make_order(900)
    payment = record_payment_by_hand(order["id"], "hand123456", 900, "bank statement", "admin:a")
    stored = fresh(db, order["id"])
    assert stored.status == "paid" and payment.entered_by == "admin:a"
    assert payment.amount_source == "hand" and payment.needs_review


def test_separate_stk_money_after_its_paybill_twin_is_its_own_payment(
    client, make_order, make_payment, db
):
    """The merge of a confirmation into a pending prompt must never swallow a second,
    genuinely separate movement of money: the STK callback brings another receipt."""
    order = make_order(450)
    payment = make_payment(order)
    post(client, c2b_confirmation(order["number"], "450", trans_id="PAYBILL001"))
    client.post(
        f"/callbacks/stk/{TEST_CALLBACK_TOKEN}",
        json=stk_callback(payment.checkout_request_id, amount=450, receipt="STKOTHER01"),
    )
    stored = fresh(db, order["id"])
    receipts = sorted(p.receipt for p in stored.payments)
    assert receipts == ["PAYBILL001", "STKOTHER01"] and stored.status == "paid"
    second = next(p for p in stored.payments if p.receipt == "STKOTHER01")
    assert second.needs_review and "already paid" in second.review_reason
    assert_paid_once(db)

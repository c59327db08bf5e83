"""The money rules (docs/payments.md), one path at a time: the same money counts once, refunds
have amounts and count net, the version is the database's, expiry, retries in place.
(The same cases at once, across workers: tests/test_concurrency_e2e.py.)"""

from __future__ import annotations

import json
from datetime import timedelta

import psycopg.errors
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError

from paymentapp import metrics
from paymentapp.errors import ApiError
from paymentapp.locking import retry_conflicts
from paymentapp.models import Order, OrderEvent, Refund, utcnow
from paymentapp.mpesa.client import QueryResult
from paymentapp.payments.refunds import record_refund
from paymentapp.payments.services import (
    record_payment_by_hand,
    resolve_review,
    settle_from_query,
)
from tests.helpers import (
    TEST_CALLBACK_TOKEN,
    assert_error,
    assert_paid_once,
    c2b_confirmation,
    pay,
    stk_callback,
    updates,
)

STK = f"/callbacks/stk/{TEST_CALLBACK_TOKEN}"
CONFIRM = f"/callbacks/c2b/confirmation/{TEST_CALLBACK_TOKEN}"
PAID = QueryResult(pending=False, result_code=0, result_desc="processed successfully")


def fresh(db, order_id) -> Order:
    db.session.expire_all()
    return db.session.get(Order, order_id)


def confirm(client, body):
    response = client.post(CONFIRM, data=json.dumps(body), content_type="application/json")
    assert response.status_code == 200
    return response


def paid_events(db, order_id) -> int:
    return db.session.scalar(
        select(func.count())
        .select_from(OrderEvent)
        .where(OrderEvent.order_id == order_id, OrderEvent.kind == "order_paid")
    )


# -- the same money counts once -------------------------------------------------------------


def test_a_query_settled_prompt_takes_its_paybill_echo_as_its_receipt(
    client, make_order, make_payment, db
):
    order = make_order(1000)
    payment = make_payment(order)
    settle_from_query(payment.id, PAID, source="query")
    confirm(client, c2b_confirmation(order["number"], "1000.00", trans_id="ECHO000001"))
    stored = fresh(db, order["id"])
    [only] = stored.payments
    assert only.receipt == "ECHO000001" and only.amount_source == "query"
    assert stored.status == "paid" and stored.amount_paid == 1000
    # ... and the STK callback with that receipt is a true duplicate
    client.post(
        STK, json=stk_callback(payment.checkout_request_id, 0, amount=1000, receipt="ECHO000001")
    )
    stored = fresh(db, order["id"])
    assert len(stored.payments) == 1 and stored.amount_paid == 1000
    assert paid_events(db, order["id"]) == 1
    assert_paid_once(db)


def test_a_receipt_recorded_by_hand_goes_on_the_pending_prompt(
    client, make_order, make_payment, db
):
    order = make_order(700)
    payment = make_payment(order)
    entered = record_payment_by_hand(order["id"], "HANDRCPT01", 700, "customer's SMS", "admin:a")
    assert entered.id == payment.id and entered.entered_by == "admin:a"
    client.post(
        STK, json=stk_callback(payment.checkout_request_id, 0, amount=700, receipt="HANDRCPT01")
    )
    settle_from_query(payment.id, PAID, source="query")
    stored = fresh(db, order["id"])
    assert len(stored.payments) == 1 and stored.amount_paid == 700 and stored.status == "paid"
    assert_paid_once(db)


def test_a_paybill_payment_matching_several_prompts_is_its_own_and_flagged(
    client, make_order, make_payment, db
):
    order = make_order(500)
    first, second = make_payment(order), make_payment(order, phone="254712000111")
    confirm(client, c2b_confirmation(order["number"], "500"))
    stored = fresh(db, order["id"])
    own = next(p for p in stored.payments if p.method == "paybill")
    assert {first.id, second.id} <= {p.id for p in stored.payments}
    assert own.needs_review and "several prompts" in own.review_reason


def test_another_receipt_for_a_completed_prompt_is_a_second_payment(
    client, make_order, make_payment, db
):
    order = make_order(300)
    payment = make_payment(order)
    client.post(
        STK, json=stk_callback(payment.checkout_request_id, 0, amount=300, receipt="FIRST00001")
    )
    client.post(
        STK, json=stk_callback(payment.checkout_request_id, 0, amount=300, receipt="OTHER00002")
    )
    stored = fresh(db, order["id"])
    assert sorted(p.receipt for p in stored.payments) == ["FIRST00001", "OTHER00002"]
    second = next(p for p in stored.payments if p.receipt == "OTHER00002")
    assert second.needs_review and "already paid" in second.review_reason
    assert stored.amount_paid == 600 and paid_events(db, order["id"]) == 1
    assert_paid_once(db)


# -- the version is the database's ----------------------------------------------------------


def test_a_late_success_after_a_cancel_carries_a_higher_version(
    client, make_order, make_payment, db, socket_client
):
    order = make_order(100)
    payment = make_payment(order)
    sock = socket_client()
    sock.emit("subscribe", {"order_id": order["id"], "token": order["client_token"]}, callback=True)
    client.post(STK, json=stk_callback(payment.checkout_request_id, 1032))
    client.post(STK, json=stk_callback(payment.checkout_request_id, 0, amount=100))
    sent = [u for u in updates(sock) if u["order_id"] == order["id"]]
    assert [u["payment"]["status"] for u in sent[-2:]] == ["cancelled", "completed"]
    assert sent[-1]["version"] == sent[-2]["version"] + 1
    assert sent[-1]["version"] == fresh(db, order["id"]).version
    assert sent[-1]["order_status"] == "paid"


def test_a_duplicate_resends_the_committed_snapshot_unchanged(
    client, make_order, make_payment, db, socket_client
):
    order = make_order(100)
    payment = make_payment(order)
    sock = socket_client()
    sock.emit("subscribe", {"order_id": order["id"], "token": order["client_token"]}, callback=True)
    body = stk_callback(payment.checkout_request_id, 0, amount=100)
    client.post(STK, json=body)
    client.post(STK, json=body)
    first, again = [u for u in updates(sock) if u["order_id"] == order["id"]][-2:]
    assert first == again and first["order_status"] == "paid"


# -- refunds have amounts ---------------------------------------------------------------------


def test_an_overpayment_refunds_its_overpaid_part_by_default(client, make_order, db):
    order = make_order(1000)
    confirm(client, c2b_confirmation(order["number"], "1500"))
    payment = fresh(db, order["id"]).payments[0]
    assert payment.needs_review and "overpaid" in payment.review_reason
    refund = record_refund(payment.id, None, "overpayment", "sent back 500", "admin:a")
    assert refund.amount == 500 and refund.method == "manual" and refund.status == "succeeded"
    stored = fresh(db, order["id"])
    assert stored.status == "paid" and stored.amount_paid == 1000
    assert stored.amount_refunded == 500 and stored.payments[0].reviewed_at is None
    assert not stored.payments[0].needs_review  # nothing more to give back: answered
    assert stored.refund_status == "partially_refunded"
    with pytest.raises(ApiError) as refused:
        record_refund(payment.id, 1, "other", "again", "admin:a")
    assert refused.value.status == 409 and refused.value.code == "not_refundable"
    assert_paid_once(db)


def test_a_refund_above_what_may_go_back_changes_nothing(client, make_order, db):
    order = make_order(1000)
    confirm(client, c2b_confirmation(order["number"], "1000"))
    payment = fresh(db, order["id"]).payments[0]
    version = fresh(db, order["id"]).version
    with pytest.raises(ApiError) as refused:
        record_refund(payment.id, 1000, "requested_by_customer", "wants it back", "admin:a")
    assert refused.value.code == "not_refundable" and refused.value.extra == {"refundable": 0}
    stored = fresh(db, order["id"])
    assert stored.version == version and stored.amount_paid == 1000
    assert db.session.scalar(select(func.count()).select_from(Refund)) == 0


@pytest.mark.parametrize(
    ("amount", "reason", "field"),
    [(0, "other", "amount"), (True, "other", "amount"), (5, "x", "reason")],
)
def test_a_refund_with_a_bad_amount_or_reason_is_a_422(
    client, make_order, db, amount, reason, field
):
    order = make_order(100)
    confirm(client, c2b_confirmation(order["number"], "60"))
    payment = fresh(db, order["id"]).payments[0]
    with pytest.raises(ApiError) as refused:
        record_refund(payment.id, amount, reason, "note", "admin:a")
    assert refused.value.status == 422 and field in refused.value.fields


def test_refunded_partial_money_no_longer_counts(client, make_order, db):
    """Paybill 600 → refund → Paybill 400: the order holds 400, it is not paid."""
    order = make_order(1000)
    confirm(client, c2b_confirmation(order["number"], "600"))
    first = fresh(db, order["id"]).payments[0]
    record_refund(first.id, None, "requested_by_customer", "gave up", "admin:a")
    confirm(client, c2b_confirmation(order["number"], "400"))
    stored = fresh(db, order["id"])
    assert stored.status == "pending" and stored.amount_paid == 400
    assert stored.amount_refunded == 600 and stored.amount_due == 600
    assert_paid_once(db)


def test_refunding_a_short_payment_does_not_make_it_count(client, make_order, make_payment, db):
    order = make_order(1000)
    payment = make_payment(order)
    client.post(STK, json=stk_callback(payment.checkout_request_id, 0, amount=1600))
    assert fresh(db, order["id"]).amount_paid == 0  # a wrong amount waits for review
    record_refund(payment.id, 600, "other", "part back", "admin:a")
    stored = fresh(db, order["id"])
    assert stored.payments[0].reviewed_at is None and stored.amount_paid == 0
    assert stored.status == "pending"


def test_held_money_may_be_refunded_whole(client, make_order, auth, db):
    order = make_order(200)
    assert client.post(f"/api/orders/{order['id']}/cancel", headers=auth).status_code == 200
    stored = db.session.get(Order, order["id"])
    # assigned by an admin (a cancelled order's money is unmatched first)
    from paymentapp.callbacks.services import assign_c2b_payment
    from paymentapp.models import CallbackRecord

    confirm(client, c2b_confirmation(order["number"], "200"))
    record = db.session.scalar(select(CallbackRecord).where(CallbackRecord.kind == "c2b"))
    assign_c2b_payment(record.id, stored.number, "it was theirs", "admin:a")
    stored = fresh(db, order["id"])
    [held] = stored.payments
    assert stored.status == "cancelled" and held.held and stored.amount_paid == 0
    refund = record_refund(held.id, None, "late", "returned", "admin:a")
    assert refund.amount == 200 and fresh(db, order["id"]).amount_refunded == 200


def test_the_snapshot_and_api_carry_amount_refunded(client, make_order, auth, db):
    order = make_order(1000)
    confirm(client, c2b_confirmation(order["number"], "1200"))
    payment = fresh(db, order["id"]).payments[0]
    record_refund(payment.id, 150, "overpayment", "part", "admin:a")
    body = client.get(f"/api/orders/{order['id']}", headers=auth).get_json()
    assert body["amount_paid"] == 1050 and body["amount_refunded"] == 150
    status = client.get(
        f"/api/orders/{order['id']}/status", headers={"X-Order-Token": order["client_token"]}
    ).get_json()
    assert status["amount_refunded"] == 150 and status["payments"][0]["amount_refunded"] == 150


def test_resolving_a_review_never_reopens_a_refund_question(client, make_order, db):
    order = make_order(1000)
    confirm(client, c2b_confirmation(order["number"], "400"))
    payment = fresh(db, order["id"]).payments[0]
    record_refund(payment.id, 400, "requested_by_customer", "all back", "admin:a")
    stored = fresh(db, order["id"])
    assert not stored.payments[0].needs_review and stored.amount_paid == 0
    with pytest.raises(ApiError):
        resolve_review(payment.id, "ok", "admin:a")


# -- expiry -------------------------------------------------------------------------------------


def test_starting_a_payment_on_an_expired_order_is_refused(client, make_order, db):
    order = make_order(100)
    stored = db.session.get(Order, order["id"])
    stored.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    response = pay(client, order)
    assert_error(response, 409, "order_expired")
    assert fresh(db, order["id"]).payments == []


# -- retries in place -----------------------------------------------------------------------------


def _aborted(orig) -> OperationalError:
    return OperationalError("UPDATE orders ...", {}, orig)


def test_a_deadlock_is_retried_in_place_and_counted(app):
    tries = []

    def work():
        tries.append(1)
        if len(tries) < 3:
            raise _aborted(psycopg.errors.DeadlockDetected("deadlock detected"))
        return "done"

    before = metrics.DB_RETRIES.labels("test", "deadlock", "retried")._value.get()
    assert retry_conflicts("test", work) == "done" and len(tries) == 3
    assert metrics.DB_RETRIES.labels("test", "deadlock", "retried")._value.get() == before + 2


def test_retries_give_up_after_three_attempts(app):
    tries = []

    def work():
        tries.append(1)
        raise _aborted(psycopg.errors.SerializationFailure("could not serialize"))

    with pytest.raises(OperationalError):
        retry_conflicts("test", work)
    assert len(tries) == 3


def test_other_database_errors_are_not_retried(app):
    tries = []

    def work():
        tries.append(1)
        raise IntegrityError("INSERT ...", {}, psycopg.errors.UniqueViolation("duplicate key"))

    with pytest.raises(IntegrityError):
        retry_conflicts("test", work)
    assert len(tries) == 1


def test_payment_rows_never_lock_alone():
    """The lock rule, checked in the code: no path locks payments by themselves."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "paymentapp"
    offenders = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if "of=Payment" in path.read_text() or "for_update(select(Payment" in path.read_text()
    ]
    assert offenders == []


def test_a_refund_sends_a_payment_refunded_event_with_its_amount(client, make_order, db, app):
    from paymentapp.models import WebhookEndpoint, WebhookEvent

    db.session.add(
        WebhookEndpoint(url="https://shop.example/hooks", events="*", secret="whsec_test")
    )
    db.session.commit()
    order = make_order(1000)
    confirm(client, c2b_confirmation(order["number"], "1300"))
    payment = fresh(db, order["id"]).payments[0]
    refund = record_refund(payment.id, 200, "overpayment", "part", "admin:a")
    event = db.session.scalar(select(WebhookEvent).where(WebhookEvent.type == "payment.refunded"))
    data = json.loads(event.payload)["data"]
    assert data["refund_id"] == refund.id and data["amount"] == 200
    assert data["reason"] == "overpayment" and data["amount_refunded"] == 200
    assert data["order"]["amount_paid"] == 1100 and data["order"]["amount_refunded"] == 200
    assert event.version == fresh(db, order["id"]).version


def test_a_second_receipt_for_another_amount_does_not_count_until_reviewed(
    client, make_order, make_payment, db
):
    order = make_order(100)
    payment = make_payment(order)
    settle_from_query(payment.id, PAID, source="query")
    client.post(
        STK, json=stk_callback(payment.checkout_request_id, 0, amount=100, receipt="FIRST00003")
    )
    client.post(
        STK, json=stk_callback(payment.checkout_request_id, 0, amount=120, receipt="OTHER00004")
    )
    stored = fresh(db, order["id"])
    second = next(p for p in stored.payments if p.receipt == "OTHER00004")
    assert second.amount == 100 and second.paid_amount == 120 and not second.counts
    assert second.needs_review and stored.amount_paid == 100


# -- the decision is values; one writer applies them ------------------------------------


def test_a_decision_returns_its_changes_as_values_and_touches_no_row(make_order, make_payment, db):
    from paymentapp.locking import lock_payment
    from paymentapp.payments.money import Money, decide_result
    from paymentapp.payments.states import Change, Draft, Kind, NewPayment, write

    order = make_order(1000)
    payment = lock_payment(make_payment(order).id)
    draft = Draft(payment.order)
    outcome = decide_result(
        draft,
        draft.payment(payment),
        result_code=0,
        result_desc="ok",
        source="callback",
        amount_from="callback",
        money=Money("VAL0000001", 1000, "254712345678"),
    )
    changes = draft.changes
    assert outcome == "applied"
    # the draft sees its own changes; the rows are as they were read
    assert draft.order.status == "paid" and draft.order.amount_paid == 1000
    assert payment.status == "pending" and payment.receipt is None
    assert payment.order.status == "pending" and payment.order.amount_paid == 0
    assert not db.session.dirty and not db.session.new
    assert [c.kind for c in changes] == [Kind.PAYMENT_COMPLETED, Kind.ORDER_PAID]
    assert all(isinstance(c, Change) and not isinstance(c, NewPayment) for c in changes)
    completed = changes[0].writes[payment.id]
    assert completed["receipt"] == "VAL0000001" and completed["paid_amount"] == 1000
    assert changes[1].writes[order["id"]]["paid_at"] == completed["paid_at"]

    write(payment.order, changes)
    db.session.commit()
    stored = fresh(db, order["id"])
    assert stored.status == "paid" and stored.amount_paid == 1000
    assert stored.payments[0].receipt == "VAL0000001" and stored.payments[0].paid_amount == 1000
    assert paid_events(db, order["id"]) == 1


def test_a_draft_refuses_columns_set_without_a_change(make_order, make_payment, db):
    from paymentapp.locking import lock_payment
    from paymentapp.payments.states import Draft

    payment = lock_payment(make_payment(make_order(1000)).id)
    draft = Draft(payment.order)
    draft.set(draft.payment(payment), needs_review=True)
    with pytest.raises(RuntimeError, match="without a change"):
        _ = draft.changes
    db.session.rollback()

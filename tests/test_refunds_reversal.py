"""Refunds through M-Pesa's Reversal, end to end against the HTTP simulator: the merchant
API asks, the refund is `requested`, then `pending` on Daraja's acknowledgement, then
`succeeded` when the result callback comes (only then does the money stop counting);
failures, duplicates, idempotency and bad input are clear, never a 5xx."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from paymentapp.models import CallbackRecord, Order, OrderEvent, Refund
from tests.helpers import TEST_CALLBACK_TOKEN, Merchant, assert_error, paid_order
from tests.services import wait_for

RESULT = f"/callbacks/reversal/result/{TEST_CALLBACK_TOKEN}"
TIMEOUT = f"/callbacks/reversal/timeout/{TEST_CALLBACK_TOKEN}"


@pytest.fixture
def api(client, auth):
    return Merchant(client, auth)


def test_a_reversal_refunds_the_whole_payment_once_the_result_says_so(
    api, live_server, make_order, db
):
    order = paid_order(api, live_server, make_order, 300)
    answer = api.refund(order, reason="requested_by_customer", note="returned the goods")
    assert answer.status_code == 202, answer.get_data(as_text=True)
    refund = answer.get_json()
    assert refund["method"] == "reversal" and refund["amount"] == 300
    assert refund["status"] in ("pending", "succeeded")  # the result may already be in

    done = api.settled(order)
    assert done["id"] == refund["id"] and done["status"] == "succeeded"
    assert done["result_code"] == "0"
    shown = api.order(order)
    assert shown["status"] == "paid"  # paid once; a refunded order stays paid
    assert shown["amount_refunded"] == 300 and shown["amount_paid"] == 0
    assert shown["refund_status"] == "refunded"
    snapshot = api.client.get(
        f"/api/orders/{order['id']}/status", headers={"X-Order-Token": order["client_token"]}
    ).get_json()
    assert snapshot["refund_status"] == "refunded" and snapshot["amount_refunded"] == 300
    kinds = db.session.scalars(
        select(OrderEvent.kind).where(OrderEvent.order_id == order["id"]).order_by(OrderEvent.id)
    ).all()
    assert kinds[-3:] == ["refund_requested", "refund_pending", "refund_succeeded"]

    again = api.refund(order, reason="requested_by_customer")
    assert_error(again, 409, "not_refundable")


def test_one_refund_in_flight_and_an_idempotent_retry(api, live_server, make_order, db):
    order = paid_order(api, live_server, make_order, 200)
    first = api.refund(order, reason="duplicate", idempotency_key="refund-1")
    assert first.status_code == 202
    replay = api.refund(order, reason="duplicate", idempotency_key="refund-1")
    assert replay.status_code == 202 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_json()["id"] == first.get_json()["id"]
    assert api.settled(order)["status"] == "succeeded"
    assert len(api.refunds(order)) == 1
    assert db.session.scalar(select(func.count()).select_from(Refund)) == 1


def test_partial_and_bad_requests_are_clear_errors(app, api, live_server, make_order):
    order = paid_order(api, live_server, make_order, 250)
    app.config["MPESA_B2C_SHORTCODE"] = ""  # no B2C: only the whole payment can go back
    answer = api.refund(order, reason="other", amount=100)
    assert_error(answer, 409, "partial_refund_unavailable")
    assert "B2C" in answer.get_json()["error"]["message"]
    assert_error(api.refund(order, reason="other", amount=251), 409, "amount_over_refundable")
    assert_error(api.refund(order, reason="because"), 422, "validation_error")
    assert_error(api.refund(order, reason="other", amount="ten"), 422, "validation_error")
    assert_error(api.refund(order, reason="other", colour="red"), 422, "validation_error")
    assert_error(api.refund(order, reason="other", payment_id="pay_nope"), 404, "payment_not_found")
    unpaid = make_order(100)
    assert_error(api.refund(unpaid, reason="other"), 409, "not_refundable")
    assert api.refunds(order) == []


def test_a_failed_reversal_leaves_the_money_counting(api, live_server, make_order, db):
    order = paid_order(api, live_server, make_order, 150)
    live_server.fault("reversal", 400, {"errorCode": "400.002.02", "errorMessage": "Bad Request"})
    answer = api.refund(order, reason="other")
    assert answer.status_code == 202 and answer.get_json()["status"] == "failed"
    assert "Bad Request" in answer.get_json()["result_desc"]
    stored = db.session.get(Order, order["id"])
    assert stored.amount_paid == 150 and stored.amount_refunded == 0
    assert stored.refund_status == "none"  # nothing in flight, nothing went back
    # a failed refund is no refund in flight: a new one may be asked for
    assert api.refund(order, reason="other").status_code == 202


def test_results_that_match_nothing_or_say_nothing_never_fail_the_callback(
    api, live_server, make_order, db
):
    order = paid_order(api, live_server, make_order, 120)
    assert api.refund(order, reason="other").status_code == 202
    refund = api.settled(order)
    stored = db.session.get(Refund, refund["id"])
    duplicate = {
        "Result": {
            "ResultType": 0,
            "ResultCode": 0,
            "ResultDesc": "again",
            "ConversationID": stored.conversation_id,
            "OriginatorConversationID": stored.originator_conversation_id,
            "TransactionID": "SREVERSAL1",
        }
    }
    assert api.client.post(RESULT, json=duplicate).status_code == 200
    assert db.session.get(Order, order["id"]).amount_refunded == 120  # counted once
    for body in ({"Result": "x"}, {"Result": {"ResultCode": 0}}, [], {"nope": 1}):
        answer = api.client.post(RESULT, data=json.dumps(body), content_type="application/json")
        assert 400 <= answer.status_code < 500
    unknown = {"Result": {"ResultCode": "R000002", "ConversationID": "AG_unknown"}}
    assert api.client.post(TIMEOUT, json=unknown).status_code == 200
    record = db.session.scalars(
        select(CallbackRecord).order_by(CallbackRecord.id.desc()).limit(1)
    ).one()
    assert record.kind == "reversal_timeout" and record.outcome == "received"  # retried later


def test_no_answer_leaves_the_refund_requested_until_the_reconciler_sends_it_again(
    api, live_server, make_order, db
):
    from paymentapp.payments.reversals import resend_requested

    order = paid_order(api, live_server, make_order, 180)
    down = {"errorCode": "500.003.1001", "errorMessage": "Internal Server Error"}
    live_server.fault("reversal", 500, down)
    answer = api.refund(order, reason="other")
    assert answer.status_code == 202
    refund = answer.get_json()
    assert refund["status"] == "requested" and "did not answer" in refund["result_desc"]
    assert db.session.get(Order, order["id"]).amount_refunded == 0
    # visible, and one in flight: no second refund of the payment meanwhile
    assert api.order(order)["refund_status"] == "refund_pending"
    assert_error(api.refund(order, reason="other"), 409, "refund_in_progress")

    assert resend_requested(older_than_s=0) == 1
    assert api.settled(order)["status"] == "succeeded"
    assert resend_requested(older_than_s=0) == 0
    db.session.expire_all()
    assert db.session.get(Order, order["id"]).amount_refunded == 180


def test_a_queue_timeout_leaves_the_refund_pending_and_says_so(api, live_server, make_order, db):
    order = paid_order(api, live_server, make_order, 140)
    settings = f"{live_server.url}/_simulator/api/c2b/settings"
    assert live_server.http.post(settings, json={"initiator_results": "timeout"}).ok
    try:
        assert api.refund(order, reason="other").status_code == 202
        refund = wait_for(
            lambda: (r := api.refunds(order)[0])["result_desc"] and r, "the queue timeout"
        )
    finally:
        live_server.http.post(settings, json={"initiator_results": "result"})
    assert refund["status"] == "pending" and "queue timed out" in refund["result_desc"]
    shown = api.order(order)
    assert shown["refund_status"] == "refund_pending" and shown["amount_paid"] == 140

    # Transaction Status settles it: M-Pesa says the reversal completed
    from paymentapp.payments.refund_outcomes import check_pending

    assert check_pending(older_than_s=0) == 1
    done = api.settled(order)
    assert done["status"] == "succeeded" and done["result_desc"] == "completed (Transaction Status)"
    shown = api.order(order)
    assert shown["refund_status"] == "refunded" and shown["amount_paid"] == 0
    assert check_pending(older_than_s=0) == 0  # nothing pending any more


def test_a_reversal_mpesa_has_no_record_of_fails_and_the_money_still_counts(
    api, live_server, make_order, db
):
    from sqlalchemy import delete

    from paymentapp.payments.refund_outcomes import check_pending
    from paymentapp.simulator.models import sim_reversals

    order = paid_order(api, live_server, make_order, 110)
    settings = f"{live_server.url}/_simulator/api/c2b/settings"
    assert live_server.http.post(settings, json={"initiator_results": "timeout"}).ok
    try:
        assert api.refund(order, reason="other").status_code == 202
        wait_for(lambda: api.refunds(order)[0]["result_desc"], "the queue timeout")
    finally:
        live_server.http.post(settings, json={"initiator_results": "result"})
    db.session.execute(delete(sim_reversals))  # M-Pesa never made the reversal
    db.session.commit()
    assert check_pending(older_than_s=0) == 1
    done = api.settled(order)
    assert done["status"] == "failed" and "no such reversal" in done["result_desc"]
    shown = api.order(order)
    assert shown["amount_paid"] == 110 and shown["refund_status"] == "none"


@pytest.mark.parametrize(("state", "code"), [("no_role", "21"), ("locked", "8006")])
def test_an_initiator_without_the_role_or_locked_fails_the_reversal(
    api, live_server, make_order, db, state, code
):
    order = paid_order(api, live_server, make_order, 120)
    settings = f"{live_server.url}/_simulator/api/c2b/settings"
    assert live_server.http.post(settings, json={"initiator_state": state}).ok
    try:
        assert api.refund(order, reason="other").status_code == 202
        done = api.settled(order)
    finally:
        live_server.http.post(settings, json={"initiator_state": "ok"})
    assert done["status"] == "failed" and done["result_code"] == code and done["result_desc"]
    shown = api.order(order)
    assert shown["amount_paid"] == 120 and shown["refund_status"] == "none"

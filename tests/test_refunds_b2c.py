"""Partial refunds through B2C, end to end against the HTTP simulator: part of a payment
(or what is left after one) is paid to the customer's phone, the prompted one for an STK
payment, one typed for a Paybill payment. A B2C request whose answer never came is never
sent again: its result or Transaction Status (by our OriginatorConversationID) settles
it. Only a succeeded refund stops its money counting."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from paymentapp.models import Order, Refund
from paymentapp.mpesa.initiator import encrypt_credential
from paymentapp.payments.b2c_refunds import settle_unsent
from paymentapp.payments.refund_outcomes import check_pending
from paymentapp.simulator.models import sim_b2c_payments
from tests.helpers import TEST_CALLBACK_TOKEN, Merchant, assert_error, key_pair, paid_order
from tests.services import wait_for

RESULT = f"/callbacks/b2c/result/{TEST_CALLBACK_TOKEN}"
SETTINGS = "/_simulator/api/c2b/settings"


@pytest.fixture
def api(client, auth):
    return Merchant(client, auth)


def phone_refunds(live_server) -> list[dict]:
    """What the simulated phone lists as money it got back."""
    answer = live_server.http.get(f"{live_server.url}/_simulator/api/prompts", timeout=10)
    return answer.json()["refunds"]


def sent_b2c(db) -> list:
    """The B2C requests the simulator took (each one is money paid)."""
    db.session.commit()  # a fresh snapshot
    return db.session.execute(select(sim_b2c_payments)).all()


def success_result(originator: str, conversation_id: str, amount: int) -> dict:
    """A B2C success result in Daraja's shape, as M-Pesa would post it."""
    return {
        "Result": {
            "ResultType": 0,
            "ResultCode": 0,
            "ResultDesc": "The service request is processed successfully.",
            "OriginatorConversationID": originator,
            "ConversationID": conversation_id,
            "TransactionID": "SLATE00001",
            "ResultParameters": {
                "ResultParameter": [
                    {"Key": "TransactionAmount", "Value": amount},
                    {"Key": "TransactionReceipt", "Value": "SLATE00001"},
                ]
            },
        }
    }


def settled(api, order, refund_id, db=None) -> dict:
    """The refund once settled; `db`: the test's session, which read the refund itself
    (its reads are forgotten before each look)."""

    def done():
        if db is not None:
            db.session.commit()
        mine = [r for r in api.refunds(order) if r["id"] == refund_id]
        return mine[0] if mine and mine[0]["status"] in ("succeeded", "failed") else None

    return wait_for(done, "the refund settled")


def test_part_of_an_stk_payment_goes_back_by_b2c_and_then_the_rest(
    api, live_server, make_order, db
):
    order = paid_order(api, live_server, make_order, 250)
    first = api.refund(order, reason="requested_by_customer", amount=100, note="one item back")
    assert first.status_code == 202, first.get_data(as_text=True)
    refund = first.get_json()
    assert refund["method"] == "b2c" and refund["amount"] == 100
    assert refund["phone"] == "2547•••••678"  # the prompted phone, masked
    done = settled(api, order, refund["id"])
    assert done["status"] == "succeeded" and done["result_code"] == "0"
    shown = api.order(order)
    assert shown["status"] == "paid"  # paid once
    assert (shown["amount_paid"], shown["amount_refunded"]) == (150, 100)
    assert shown["refund_status"] == "partially_refunded"
    stored = db.session.get(Refund, refund["id"])
    assert stored.phone == db.session.get(Order, order["id"]).payments[0].phone
    assert stored.transaction_id  # the B2C's own receipt

    # the rest (no amount: what is left) can only go by B2C now: Reversal is for the whole
    rest = api.refund(order, reason="requested_by_customer")
    assert rest.status_code == 202 and rest.get_json()["amount"] == 150
    assert rest.get_json()["method"] == "b2c"
    assert settled(api, order, rest.get_json()["id"])["status"] == "succeeded"
    shown = api.order(order)
    assert (shown["amount_paid"], shown["amount_refunded"]) == (0, 250)
    assert shown["refund_status"] == "refunded"
    assert_error(api.refund(order, reason="other"), 409, "not_refundable")
    got = [(r["via"], r["amount"]) for r in phone_refunds(live_server)]
    assert sorted(got) == [("b2c", 100), ("b2c", 150)]


def test_a_b2c_refund_goes_to_the_phone_that_paid_and_only_within_what_is_left(
    api, live_server, make_order
):
    order = paid_order(api, live_server, make_order, 200)
    other = api.refund(order, reason="other", amount=50, phone="0799000111")
    assert_error(other, 422, "invalid_phone")
    assert_error(api.refund(order, reason="other", amount=201), 409, "amount_over_refundable")
    assert_error(api.refund(order, reason="other", amount=50, phone=7), 422, "validation_error")
    assert api.refunds(order) == []


def paybill_order(api, live_server, make_order, amount: int) -> dict:
    """An order paid by Pay Bill (its MSISDN masked by Daraja)."""
    order = make_order(amount)
    answer = live_server.http.post(
        f"{live_server.url}/_simulator/api/c2b/pay",
        json={"account": order["number"], "amount": amount},
        timeout=10,
    )
    assert answer.status_code == 202, answer.text
    wait_for(lambda: api.order(order)["status"] == "paid", "the Paybill payment")
    return order


def test_a_paybill_payment_is_refunded_by_b2c_to_the_phone_typed(api, live_server, make_order, db):
    order = paybill_order(api, live_server, make_order, 300)
    answer = api.refund(order, reason="other", amount=120)
    error = assert_error(answer, 422, "phone_required")
    assert "phone" in error["fields"]
    answer = api.refund(order, reason="other", amount=120, phone="0712 345 678")
    assert answer.status_code == 202, answer.get_data(as_text=True)
    done = settled(api, order, answer.get_json()["id"])
    assert done["status"] == "succeeded"
    assert db.session.get(Refund, done["id"]).phone == "254712345678"
    assert [(r["phone"], r["amount"]) for r in phone_refunds(live_server)] == [
        ("254712345678", 120)
    ]
    assert api.order(order)["amount_paid"] == 180


@pytest.mark.parametrize(
    ("setup", "code"),
    [("funds", "1"), ("credential", "2001"), ("no_role", "21"), ("locked", "8006")],
)
def test_a_failed_b2c_leaves_the_money_counting(app, api, live_server, make_order, setup, code):
    order = paid_order(api, live_server, make_order, 160)
    settings = live_server.url + SETTINGS
    if setup == "funds":
        assert live_server.http.post(settings, json={"b2c_funds": "insufficient"}).ok
    elif setup == "credential":
        _, other_certificate = key_pair()  # encrypted for another key: cannot be read
        credential = encrypt_credential("Simulator#2026", other_certificate)
        app.config["MPESA_SECURITY_CREDENTIAL"] = credential
    else:  # the initiator lacks the B2C role, or its credential is locked
        assert live_server.http.post(settings, json={"initiator_state": setup}).ok
    try:
        answer = api.refund(order, reason="other", amount=60)
        assert answer.status_code == 202
        done = settled(api, order, answer.get_json()["id"])
    finally:
        live_server.http.post(settings, json={"b2c_funds": "enough", "initiator_state": "ok"})
    assert done["status"] == "failed" and done["result_code"] == code
    assert done["result_desc"]  # M-Pesa's words
    shown = api.order(order)
    assert (shown["amount_paid"], shown["amount_refunded"]) == (160, 0)
    assert shown["refund_status"] == "none"


def test_no_answer_is_never_sent_again_and_transaction_status_settles_it(
    api, live_server, make_order, db
):
    order = paid_order(api, live_server, make_order, 240)
    # an unreadable 200: M-Pesa may have acted on it (here it did not: the fault ate it)
    live_server.fault("b2c", 200, "<html>gateway</html>")
    answer = api.refund(order, reason="other", amount=40)
    assert answer.status_code == 202
    refund = answer.get_json()
    assert refund["status"] == "pending" and "never sent again" in refund["result_desc"]
    assert api.order(order)["refund_status"] == "refund_pending"
    assert_error(api.refund(order, reason="other", amount=10), 409, "refund_in_progress")
    assert sent_b2c(db) == []
    # the reconciler asks; nothing resends it
    assert check_pending(older_than_s=0) == 1
    done = settled(api, order, refund["id"])
    assert done["status"] == "failed" and "no such B2C payment" in done["result_desc"]
    assert sent_b2c(db) == []  # never sent again
    assert api.order(order)["amount_paid"] == 240

    # M-Pesa was still at work after all: its success, late, is not lost but reviewed
    stored = db.session.get(Refund, refund["id"])
    late = success_result(stored.originator_conversation_id, "AG_20261202_late2", 40)
    assert api.client.post(RESULT, json=late).status_code == 200
    db.session.expire_all()
    payment = db.session.get(Refund, refund["id"]).payment
    assert payment.needs_review and "went through after it was marked failed" in (
        payment.review_reason
    )
    assert db.session.get(Refund, refund["id"]).status == "failed"  # final; no second move
    assert api.client.post(RESULT, json=late).status_code == 200  # a duplicate: harmless


def test_a_result_for_an_unanswered_b2c_is_matched_by_our_originator_id(
    api, live_server, make_order, db
):
    order = paid_order(api, live_server, make_order, 210)
    live_server.fault("b2c", 200, "not json")
    refund = api.refund(order, reason="other", amount=10).get_json()
    stored = db.session.get(Refund, refund["id"])
    assert stored.status == "pending" and stored.conversation_id is None
    result = success_result(stored.originator_conversation_id, "AG_20261202_late", 10)
    assert api.client.post(RESULT, json=result).status_code == 200
    done = settled(api, order, refund["id"])
    assert done["status"] == "succeeded"
    assert api.client.post(RESULT, json=result).status_code == 200  # a duplicate: harmless
    assert api.order(order)["amount_refunded"] == 10


def test_a_timed_out_b2c_is_found_completed_by_transaction_status(api, live_server, make_order, db):
    order = paid_order(api, live_server, make_order, 230)
    live_server.http.post(live_server.url + SETTINGS, json={"initiator_results": "timeout"})
    try:
        refund = api.refund(order, reason="other", amount=30).get_json()
        wait_for(
            lambda: "queue timed out" in (api.refunds(order)[0]["result_desc"] or ""),
            "the queue timeout",
        )
    finally:
        live_server.http.post(live_server.url + SETTINGS, json={"initiator_results": "result"})
    assert check_pending(older_than_s=0) == 1
    done = settled(api, order, refund["id"])
    assert done["status"] == "succeeded" and done["result_desc"] == "completed (Transaction Status)"
    assert len(sent_b2c(db)) == 1
    assert api.order(order)["amount_paid"] == 200


def test_a_b2c_left_requested_by_a_dead_worker_is_asked_about_not_resent(
    app, api, live_server, make_order, db
):
    from paymentapp.payments import reversals

    order = paid_order(api, live_server, make_order, 190)
    # recorded, then the worker died before sending it
    asked = reversals.Asked(None, 90, "other", None, "admin:a", None, None, None)
    refund, _ = reversals._record(order["id"], asked, False)
    assert refund.status == "requested" and refund.method == "b2c"
    assert settle_unsent(older_than_s=0) == 1
    assert db.session.get(Refund, refund.id).status == "pending"
    assert check_pending(older_than_s=0) == 1
    assert settled(api, order, refund.id, db)["status"] == "failed"
    assert sent_b2c(db) == []
    assert db.session.scalar(select(func.count()).select_from(Refund)) == 1


def test_m_pesa_unreachable_fails_the_b2c_at_once_nothing_was_sent(
    app, api, live_server, make_order, db
):
    order = paid_order(api, live_server, make_order, 170)
    app.config["MPESA_BASE_URL"] = "http://127.0.0.1:9"  # connection refused: never sent
    answer = api.refund(order, reason="other", amount=70)
    assert answer.status_code == 202
    refund = answer.get_json()
    assert refund["status"] == "failed" and "Nothing was sent" in refund["result_desc"]
    assert api.order(order)["refund_status"] == "none"

"""Receipts entered by hand, checked with M-Pesa's Transaction Status against the HTTP
simulator: awaiting M-Pesa (not paid), then counted once M-Pesa confirms the receipt, the
amount and our shortcode; a mismatch or an unknown receipt counts nothing and says what
M-Pesa answered. Without an initiator a hand entry counts at once, as before."""

from __future__ import annotations

from sqlalchemy import func, select

from paymentapp.models import CallbackRecord, Order, Payment, ReceiptCheck
from paymentapp.payments.receipt_checks import ask_awaiting
from tests.helpers import TEST_CALLBACK_TOKEN, html_of, lost_paybill_payment, post_form
from tests.services import wait_for

RESULT = f"/callbacks/status/receipt/result/{TEST_CALLBACK_TOKEN}"


def enter(admin_client, order: dict, receipt: str, amount, note="seen in the statement"):
    page = f"/admin/orders/{order['id']}"
    data = {"receipt": receipt, "amount": str(amount), "note": note}
    return post_form(admin_client, f"{page}/payments", data, page)


def check_of(db, receipt: str) -> ReceiptCheck:
    db.session.expire_all()
    return db.session.scalar(  # the latest entry of this receipt
        select(ReceiptCheck)
        .where(ReceiptCheck.receipt == receipt)
        .order_by(ReceiptCheck.created_at.desc())
        .limit(1)
    )


def answered(db, receipt: str) -> ReceiptCheck:
    return wait_for(
        lambda: (c := check_of(db, receipt)) is not None and c.status != "awaiting" and c,
        "M-Pesa's answer",
    )


def status_of(db, order: dict) -> str:
    db.session.expire_all()
    return db.session.get(Order, order["id"]).status


def test_a_receipt_counts_once_m_pesa_confirms_it(admin_client, live_server, make_order, db):
    order = make_order(900)
    receipt = lost_paybill_payment(live_server, order, 900)  # its confirmation was lost
    response = enter(admin_client, order, receipt.lower(), "900")
    assert response.status_code == 302
    html = html_of(admin_client, f"/admin/orders/{order['id']}")
    assert "awaiting M-Pesa" in html or "confirmed by M-Pesa" in html

    check = answered(db, receipt)
    assert check.status == "confirmed" and check.result_code == "0"
    stored = db.session.get(Order, order["id"])
    [payment] = stored.payments
    assert stored.status == "paid" and check.payment_id == payment.id
    assert payment.receipt == receipt and payment.entered_by == "admin:alice"
    assert payment.amount_source == "hand" and not payment.needs_review  # M-Pesa's word
    html = html_of(admin_client, f"/admin/orders/{order['id']}")
    assert "confirmed by M-Pesa" in html and "awaiting M-Pesa" in html  # the timeline too
    # the same receipt again: already recorded
    again = enter(admin_client, order, receipt, "900")
    assert again.status_code == 422 and "already recorded" in again.get_data(as_text=True)


def test_an_amount_m_pesa_does_not_confirm_counts_nothing(
    admin_client, live_server, make_order, db
):
    order = make_order(1000)
    receipt = lost_paybill_payment(live_server, order, 1000)
    assert enter(admin_client, order, receipt, "1,200").status_code == 302
    check = answered(db, receipt)
    assert check.status == "mismatch"
    assert "KES 1000" in check.result_desc  # what M-Pesa said
    stored = db.session.get(Order, order["id"])
    assert stored.status == "pending" and stored.payments == []
    html = html_of(admin_client, f"/admin/orders/{order['id']}")
    assert "does not match M-Pesa" in html and "KES 1000 paid, KES 1,200 entered" in html
    # it waits in the review queue, with M-Pesa's answer, until someone closes it
    review = html_of(admin_client, "/admin/review")
    assert f'id="receipt-check-{check.id}"' in review and "M-Pesa: Completed, KES 1000" in review
    path = f"/admin/review/receipt-checks/{check.id}"
    empty = post_form(admin_client, path, {"note": " "}, "/admin/review")
    assert empty.status_code == 422  # a note is required
    closed = post_form(admin_client, path, {"note": "typo: it was 1,000"}, "/admin/review")
    assert closed.status_code == 302
    assert f'id="receipt-check-{check.id}"' not in html_of(admin_client, "/admin/review")
    assert check_of(db, receipt).review_note == "typo: it was 1,000"
    again = post_form(admin_client, path, {"note": "twice"}, "/admin/review")
    assert again.status_code == 302 and "not waiting for a review" in html_of(
        admin_client, "/admin/review"
    )
    # entered again as M-Pesa said: a new check, confirmed
    assert enter(admin_client, order, receipt, "1000").status_code == 302
    wait_for(lambda: status_of(db, order) == "paid", "the order paid")
    statuses = db.session.scalars(select(ReceiptCheck.status).order_by(ReceiptCheck.created_at))
    assert list(statuses) == ["mismatch", "confirmed"]


def test_a_receipt_m_pesa_does_not_know_counts_nothing(admin_client, live_server, make_order, db):
    order = make_order(400)
    assert enter(admin_client, order, "SXX0000001", "400").status_code == 302
    check = answered(db, "SXX0000001")
    assert check.status == "not_found" and check.result_code == "R000002"
    assert db.session.get(Order, order["id"]).payments == []
    assert "M-Pesa has no such transaction" in html_of(admin_client, f"/admin/orders/{order['id']}")


def test_no_answer_keeps_it_awaiting_and_asked_again(admin_client, live_server, make_order, db):
    order = make_order(700)
    receipt = lost_paybill_payment(live_server, order, 700)
    live_server.fault("status", 500, {"errorCode": "500.003.1001", "errorMessage": "down"})
    assert enter(admin_client, order, receipt, "700").status_code == 302
    check = check_of(db, receipt)
    assert check.status == "awaiting" and "not asked yet" in check.result_desc
    assert db.session.get(Order, order["id"]).status == "pending"  # not on one person's word
    # a second entry of the same receipt meanwhile is refused
    again = enter(admin_client, order, receipt, "700")
    assert again.status_code == 422 and "awaiting M-Pesa" in again.get_data(as_text=True)
    # a new STK push is not blocked by it
    assert (
        live_server.app.test_client()
        .post(
            f"/api/orders/{order['id']}/payments",
            json={"phone": "0712345678"},
            headers={"X-Order-Token": order["client_token"]},
        )
        .status_code
        == 202
    )
    assert ask_awaiting(older_than_s=0) == 1
    assert answered(db, receipt).status == "confirmed"


def test_a_receipt_paid_to_another_shortcode_or_a_forged_answer_counts_nothing(
    admin_client, live_server, make_order, db
):
    order = make_order(500)
    ack = {
        "OriginatorConversationID": "1234-5678-1",
        "ConversationID": "AG_20261202_receiptcheck1",
        "ResponseCode": "0",
        "ResponseDescription": "Accept the service request successfully.",
    }
    live_server.fault("status", 200, ack)  # the real answer never comes: ours below
    assert enter(admin_client, order, "SOTHER0001", "500").status_code == 302
    assert check_of(db, "SOTHER0001").conversation_id == ack["ConversationID"]
    client = live_server.app.test_client()
    for bad in (b"not json", b'{"Result": {}}', b'{"Result": {"ResultCode": 0}}'):
        answer = client.post(RESULT, data=bad, content_type="application/json")
        assert 200 <= answer.status_code < 500
    elsewhere = {
        "Result": {
            "ResultType": 0,
            "ResultCode": 0,
            "ResultDesc": "The service request is processed successfully.",
            "OriginatorConversationID": ack["OriginatorConversationID"],
            "ConversationID": ack["ConversationID"],
            "TransactionID": "SQUERY0001",
            "ResultParameters": {
                "ResultParameter": [
                    {"Key": "ReceiptNo", "Value": "SOTHER0001"},
                    {"Key": "TransactionStatus", "Value": "Completed"},
                    {"Key": "Amount", "Value": 500},
                    {"Key": "CreditPartyName", "Value": "999999 - Another Shop"},
                ]
            },
        }
    }
    assert client.post(RESULT, json=elsewhere).status_code == 200
    check = check_of(db, "SOTHER0001")
    assert check.status == "mismatch" and "not to our shortcode" in html_of(
        admin_client, f"/admin/orders/{order['id']}"
    )
    assert client.post(RESULT, json=elsewhere).status_code == 200  # a duplicate: harmless
    assert db.session.scalar(select(func.count()).select_from(Payment)) == 0
    records = db.session.scalars(
        select(CallbackRecord.outcome).where(CallbackRecord.kind == "receipt_status")
    ).all()
    assert "applied" in records and "duplicate" in records


def test_an_awaiting_receipt_can_be_withdrawn(admin_client, live_server, make_order, db):
    order = make_order(300)
    live_server.fault("status", 500, {"errorCode": "500.003.1001", "errorMessage": "down"})
    assert enter(admin_client, order, "SWDRAWN001", "300").status_code == 302
    check = check_of(db, "SWDRAWN001")
    page = f"/admin/orders/{order['id']}"
    answer = post_form(admin_client, f"/admin/receipt-checks/{check.id}/withdraw", {}, page)
    assert answer.status_code == 302
    assert check_of(db, "SWDRAWN001").status == "withdrawn"
    assert ask_awaiting(older_than_s=0) == 0  # never asked about again
    again = post_form(admin_client, f"/admin/receipt-checks/{check.id}/withdraw", {}, page)
    assert again.status_code == 302  # refused, flashed on the order page
    assert "already answered" in html_of(admin_client, page)


def test_without_an_initiator_a_hand_entry_counts_at_once(app, admin_client, make_order, db):
    app.config["MPESA_INITIATOR_NAME"] = ""
    order = make_order(250)
    assert enter(admin_client, order, "SNOINIT001", "250").status_code == 302
    stored = db.session.get(Order, order["id"])
    assert stored.status == "paid" and stored.payments[0].needs_review  # one person's word
    assert db.session.scalar(select(func.count()).select_from(ReceiptCheck)) == 0


def test_an_initiator_that_may_not_ask_leaves_the_receipt_awaiting(
    admin_client, live_server, make_order, db
):
    order = make_order(650)
    receipt = lost_paybill_payment(live_server, order, 650)
    settings = f"{live_server.url}/_simulator/api/c2b/settings"
    assert live_server.http.post(settings, json={"initiator_state": "no_role"}).ok
    try:
        assert enter(admin_client, order, receipt, "650").status_code == 302
        check = wait_for(
            lambda: (c := check_of(db, receipt)).result_code == "21" and c, "M-Pesa's refusal"
        )
    finally:
        live_server.http.post(settings, json={"initiator_state": "ok"})
    assert check.status == "awaiting" and "could not be asked" in check.result_desc
    assert status_of(db, order) == "pending"
    assert ask_awaiting(older_than_s=0) == 1  # the role given: asked again, confirmed
    assert answered(db, receipt).status == "confirmed"

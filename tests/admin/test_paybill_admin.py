"""The dashboard and Paybill: the payment method everywhere payments show, unmatched Paybill
payments assigned to an order (or closed), "Record refund" (amounts, reasons, net amounts),
"Record a payment by receipt", and totals that count Paybill money. Real rows: confirmations
are posted to the real C2B callback URL, STK payments get real STK callbacks."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from paymentapp.admin import presenters, queries
from paymentapp.models import CallbackRecord, Order, OrderEvent, Payment, Refund, utcnow
from tests.helpers import (
    TEST_CALLBACK_TOKEN,
    html_of,
    pay_by_paybill,
    post_form,
    stk_callback,
    unmatched_record,
)


@pytest.fixture
def app_config():
    """Receipts entered by hand count on the admin's word here (M-Pesa's Transaction
    Status checks them first when on: tests/test_receipt_checks.py)."""
    return {"MPESA_RECEIPT_CHECKS": False}


CONFIRM = f"/callbacks/c2b/confirmation/{TEST_CALLBACK_TOKEN}"


def pay_by_stk(client, make_payment, order: dict, receipt: str, amount=None) -> None:
    payment = make_payment(order)
    response = client.post(
        f"/callbacks/stk/{TEST_CALLBACK_TOKEN}",
        json=stk_callback(
            payment.checkout_request_id, amount=amount or order["amount"], receipt=receipt
        ),
    )
    assert response.status_code == 200


def fresh(db, order_id: str) -> Order:
    db.session.expire_all()
    return db.session.get(Order, order_id)


def field_errors(html: str) -> list[str]:
    return re.findall(r'<p class="field-error" id="([^"]+)-error">', html)


# -- the payment method, everywhere ----------------------------------------------------------


@pytest.fixture
def paid_both_ways(client, make_order, make_payment, db):
    """One order paid by STK Push, one by Paybill (account typed loosely), one pending with a
    partial Paybill payment."""
    stk = make_order(300, description="paid on the prompt")
    pay_by_stk(client, make_payment, stk, "STKPAID001")
    paybill = make_order(1450, description="paid at the Paybill")
    typed = "ord " + paybill["number"][4:]
    pay_by_paybill(client, typed, 1450, "PBPAID0001")
    partial = make_order(1000, description="half paid")
    pay_by_paybill(client, partial["number"], 600, "PBPART0001")
    return {"stk": stk, "paybill": paybill, "partial": partial, "typed": typed}


def test_orders_page_shows_each_orders_payment_method_and_account(admin_client, paid_both_ways):
    html = html_of(admin_client, "/admin")
    assert "<th>Method</th>" in html

    def row(order):
        start = html.index(f'data-order-id="{order["id"]}"')
        return html[start : html.index("</tr>", start)]

    assert 'data-label="Method"><div class="method-line"><span class="method">STK Push' in row(
        paid_both_ways["stk"]
    )
    paybill = row(paid_both_ways["paybill"])
    assert '<span class="method">Paybill</span>' in paybill
    assert f"“{paid_both_ways['typed']}”" in paybill  # the account exactly as typed
    partial = row(paid_both_ways["partial"])
    assert "Paybill" in partial and "KES 600 received" in partial


def test_order_page_shows_method_account_and_amount_paid_and_due(admin_client, paid_both_ways, db):
    partial = paid_both_ways["partial"]
    html = html_of(admin_client, f"/admin/orders/{partial['id']}")
    assert '<dd id="amount-paid">KES 600' in html and '<dd id="amount-due">KES 400' in html
    assert '<td data-label="Method"><span class="method">Paybill</span>' in html
    assert f"“{partial['number']}”" in html and "2547•••••126" in html
    assert "KES 600 received, KES 400 still due" in html
    # the confirmation is on the order's timeline, named as what it is
    assert "Paybill confirmation: applied" in html and "PBPART0001" in html
    paid = html_of(admin_client, f"/admin/orders/{paid_both_ways['stk']['id']}")
    assert '<dd id="amount-paid">KES 300' in paid and '<dd id="amount-due">KES 0' in paid
    assert '<span class="method">STK Push</span>' in paid


def test_review_queue_shows_the_method_of_flagged_payments(admin_client, paid_both_ways):
    html = html_of(admin_client, "/admin/review")
    start = html.index("<h2>Flagged payments</h2>")
    flagged = html[start : html.index('<h2 id="unmatched-paybill">')]
    assert paid_both_ways["partial"]["number"] in flagged
    assert '<td data-label="Method"><span class="method">Paybill</span>' in flagged
    assert f"“{paid_both_ways['partial']['number']}”" in flagged


def test_csv_has_the_payment_method_account_and_amount_paid(admin_client, paid_both_ways):
    body = admin_client.get("/admin/orders.csv").get_data(as_text=True)
    rows = {row["number"]: row for row in csv.DictReader(io.StringIO(body))}
    stk = rows[paid_both_ways["stk"]["number"]]
    paybill = rows[paid_both_ways["paybill"]["number"]]
    partial = rows[paid_both_ways["partial"]["number"]]
    assert stk["payment_method"] == "stk" and stk["paybill_account"] == ""
    assert paybill["payment_method"] == "paybill"
    assert paybill["paybill_account"] == paid_both_ways["typed"]
    assert paybill["amount_paid_kes"] == "1450" and paybill["receipt"] == "PBPAID0001"
    assert partial["amount_paid_kes"] == "600" and partial["status"] == "pending"
    assert list(presenters.CSV_HEADER)[-6:] == [
        "payment_method",
        "amount_paid_kes",
        "paybill_account",
        "entered_by",
        "refunded",
        "refunded_kes",
    ]
    assert paybill["refunded"] == "" and paybill["refunded_kes"] == "0"


def test_totals_include_paybill_money(admin_client, paid_both_ways, db):
    totals = queries.order_totals(queries.parse_filters({}))
    # STK 300 + Paybill 1450 + a partial Paybill 600 on a pending order
    assert totals["paid_amount"] == 300 + 1450 + 600
    assert totals["paid"] == 2 and totals["attempted"] == 3  # paid by either method
    breakdown = queries.paid_breakdown(queries.parse_filters({}))
    assert breakdown["stk"] == 300 and breakdown["paybill"] == 2050
    # a Paybill payment has no prompt: the median is over the STK payment alone
    stk_payment = fresh(db, paid_both_ways["stk"]["id"]).payments[0]
    expected = (stk_payment.paid_at - stk_payment.created_at).total_seconds()
    assert totals["median_s"] == pytest.approx(max(0.0, expected), abs=1)
    html = html_of(admin_client, "/admin")
    assert "KES 2,350" in html and "Paybill KES 2,050" in html and "STK KES 300" in html
    paybill_only = queries.order_totals(queries.parse_filters({"q": "PBPAID0001"}))
    assert paybill_only["paid_amount"] == 1450 and paybill_only["median_s"] is None


def test_money_that_does_not_count_is_not_in_the_total(
    admin_client, client, make_order, make_payment, db
):
    order = make_order(500)
    pay_by_stk(client, make_payment, order, "SHORTPAY01", amount=450)  # flagged, not counted
    assert fresh(db, order["id"]).status == "pending"
    assert queries.order_totals(queries.parse_filters({}))["paid_amount"] == 0


# -- unmatched Paybill payments ---------------------------------------------------------------


@pytest.fixture
def unmatched(client, make_order, db):
    """A Paybill payment whose account names no order, and an STK callback for an unknown
    checkout id: two different things in the queue."""
    order = make_order(700)
    pay_by_paybill(client, "invoice 7", 700, "UNMATCH001")
    client.post(f"/callbacks/stk/{TEST_CALLBACK_TOKEN}", json=stk_callback("ws_CO_nobody"))
    return {"order": order, "record": unmatched_record(db)}


def test_unmatched_paybill_payments_are_listed_apart(admin_client, unmatched):
    html = html_of(admin_client, "/admin/review")
    start = html.index('<h2 id="unmatched-paybill">Unmatched Paybill payments</h2>')
    end = html.index("<h2>Callbacks for unknown checkout ids</h2>")
    paybill, stk = html[start:end], html[end:]
    card = paybill[paybill.index(f'id="paybill-{unmatched["record"].id}"') :]
    assert "KES 700" in card and "“invoice 7”" in card and "UNMATCH001" in card
    assert "2547•••••126" in card and "no order number in the account" in card
    assert "Assign to order" in card and "Resolve" in card
    assert "ws_CO_nobody" in stk and "UNMATCH001" not in stk
    assert "ws_CO_nobody" not in paybill
    assert '<span class="count">2</span>' in html


def test_assign_an_unmatched_payment_to_its_order(admin_client, unmatched, db):
    record, order = unmatched["record"], unmatched["order"]
    response = post_form(
        admin_client,
        f"/admin/review/paybill/{record.id}/assign",
        {"order": order["number"].lower().replace("-", " "), "note": "customer called"},
        "/admin/review",
    )
    assert response.status_code == 302 and response.location == "/admin/review"
    html = html_of(admin_client, "/admin/review")
    assert f"Paybill payment UNMATCH001 (KES 700) assigned to {order['number']}" in html
    assert "the order is paid" in html and "No unmatched Paybill payments." in html
    stored = fresh(db, order["id"])
    assert stored.status == "paid" and stored.payments[0].method == "paybill"
    assert stored.payments[0].account_reference == "invoice 7"
    assert db.session.get(CallbackRecord, record.id).outcome == "applied"
    # the order's page shows the confirmation that was assigned to it
    page = html_of(admin_client, f"/admin/orders/{order['id']}")
    assert "Paybill confirmation: applied" in page and "assigned to" in page
    # assigning it again says so (the form was stale), never a second payment
    again = post_form(
        admin_client,
        f"/admin/review/paybill/{record.id}/assign",
        {"order": order["number"], "note": "twice"},
        "/admin/review",
        follow_redirects=True,
    )
    assert "already handled" in again.get_data(as_text=True)
    assert len(fresh(db, order["id"]).payments) == 1


def test_assigning_a_partial_amount_says_what_is_still_due(client, admin_client, make_order, db):
    order = make_order(1000)
    pay_by_paybill(client, "wrong 1", 250, "PARTIAL001")
    record = unmatched_record(db)
    response = post_form(
        admin_client,
        f"/admin/review/paybill/{record.id}/assign",
        {"order": order["number"], "note": "first instalment"},
        "/admin/review",
        follow_redirects=True,
    )
    html = response.get_data(as_text=True)
    assert "flagged for review: partial payment: KES 250 received, KES 750 still due" in html
    assert fresh(db, order["id"]).amount_due == 750


@pytest.mark.parametrize(
    ("data", "fields", "message"),
    [
        ({"order": "", "note": ""}, ["order", "note"], "Not assigned: correct the marked fields."),
        ({"order": "ORD-1", "note": "  "}, ["note"], "Not assigned: correct the marked fields."),
        ({"order": "", "note": "ok"}, ["order"], "Not assigned: correct the marked fields."),
        ({"order": "ORD-999999", "note": "ok"}, ["order"], "No order with this number."),
        ({"order": "not an order", "note": "ok"}, ["order"], "No order with this number."),
        ({"order": "ORD-1", "note": "x" * 1001}, ["note"], "characters"),
    ],
)
def test_bad_assignments_are_form_errors_and_change_nothing(
    admin_client, unmatched, db, data, fields, message
):
    record = unmatched["record"]
    response = post_form(
        admin_client, f"/admin/review/paybill/{record.id}/assign", data, "/admin/review"
    )
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert message in html and 'role="alert"' in html
    errors = field_errors(html)
    assert errors == [f"assign-{name}-{record.id}" for name in fields]
    assert f'aria-describedby="assign-{fields[0]}-{record.id}-error"' in html
    if data["order"]:
        assert f'value="{data["order"]}"' in html  # what was typed is kept
    assert unmatched_record(db).outcome == "unknown"
    assert db.session.scalar(select(func.count()).select_from(Payment)) == 0


def test_a_payment_entered_by_hand_meanwhile_is_not_assigned_twice(
    admin_client, client, make_order, db
):
    order = make_order(500)
    pay_by_paybill(client, "no idea", 500, "SAMEMONEY9")
    record = unmatched_record(db)
    page = f"/admin/orders/{order['id']}"
    entered = post_form(
        admin_client,
        f"{page}/payments",
        {"receipt": "SAMEMONEY9", "amount": "500", "note": "statement"},
        page,
    )
    assert entered.status_code == 302
    response = post_form(
        admin_client,
        f"/admin/review/paybill/{record.id}/assign",
        {"order": order["number"], "note": "same money"},
        "/admin/review",
    )
    assert response.status_code == 409
    assert f"Receipt SAMEMONEY9 is already recorded on {order['number']}" in (
        response.get_data(as_text=True)
    )
    assert len(fresh(db, order["id"]).payments) == 1
    assert unmatched_record(db).outcome == "unknown"  # closed with a note, by a person


def test_an_unusable_amount_cannot_be_assigned_only_closed(client, admin_client, make_order, db):
    order = make_order(100)
    pay_by_paybill(client, order["number"], "1e3", "BADAMT0001")
    record = unmatched_record(db)
    html = html_of(admin_client, "/admin/review")
    card = html[html.index(f'id="paybill-{record.id}"') :]
    assert "not usable" in card and "Record a payment by receipt" in card
    assert f"/admin/review/paybill/{record.id}/assign" not in html
    response = post_form(
        admin_client,
        f"/admin/review/paybill/{record.id}/assign",
        {"order": order["number"], "note": "try anyway"},
        "/admin/review",
    )
    assert response.status_code == 409
    assert "no usable amount" in response.get_data(as_text=True)
    assert fresh(db, order["id"]).payments == []


def test_close_an_unmatched_payment_without_assigning(admin_client, unmatched, db):
    record = unmatched["record"]
    empty = post_form(
        admin_client, f"/admin/review/callbacks/{record.id}", {"note": ""}, "/admin/review"
    )
    assert empty.status_code == 422
    assert field_errors(empty.get_data(as_text=True)) == [f"note-close-{record.id}"]
    done = post_form(
        admin_client,
        f"/admin/review/callbacks/{record.id}",
        {"note": "refunded by M-Pesa reversal"},
        "/admin/review",
        follow_redirects=True,
    )
    assert "Marked as resolved." in done.get_data(as_text=True)
    stored = unmatched_record(db)
    assert stored.outcome == "unknown_resolved" and "refunded by M-Pesa reversal" in stored.detail
    assert db.session.scalar(select(func.count()).select_from(Payment)) == 0


def test_assign_a_stk_callback_or_an_unknown_record_is_404(admin_client, unmatched, db):
    stk = db.session.scalar(select(CallbackRecord).where(CallbackRecord.kind == "stk"))
    for record_id in (stk.id, 999_999, 2**40):
        response = post_form(
            admin_client,
            f"/admin/review/paybill/{record_id}/assign",
            {"order": unmatched["order"]["number"], "note": "x"},
            "/admin/review",
        )
        assert response.status_code == 404


# -- record refund -------------------------------------------------------------------------------


def overpaid(client, make_order, db):
    order = make_order(500)
    pay_by_paybill(client, order["number"], 700, "OVERPAY001")
    return order, "overpaid by 200 KES"


def expired(client, make_order, db):
    order = make_order(200)
    stored = db.session.get(Order, order["id"])
    stored.expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    pay_by_paybill(client, order["number"], 200, "EXPIRED001")
    return order, "paid after the order expired"


def paid_twice(client, make_order, db):
    order = make_order(300)
    pay_by_paybill(client, order["number"], 300, "TWICE00001")
    pay_by_paybill(client, order["number"], 300, "TWICE00002")
    return order, "order already paid"


def refund_url(payment) -> str:
    return f"/admin/payments/{payment.id}/refund"


def prefilled(html: str, payment) -> tuple[str, str]:
    """The Record refund form's amount and selected reason, as the page offers them."""
    amount = re.search(rf'id="refund-amount-{payment.id}"[^>]* value="([^"]*)"', html)
    select = html[html.index(f'id="refund-reason-{payment.id}"') :]
    reason = re.search(r'<option value="([^"]+)" selected>', select[: select.index("</select>")])
    return amount.group(1), reason.group(1)


def refund_rows(db) -> list[Refund]:
    db.session.expire_all()
    return list(db.session.scalars(select(Refund)))


def refunded_events(db) -> int:
    return db.session.scalar(
        select(func.count()).select_from(OrderEvent).where(OrderEvent.kind == "payment_refunded")
    )


@pytest.mark.parametrize(
    ("flagged", "default", "reason", "status", "paid"),
    [
        # only the overpaid part of a paid order may go back; the order stays paid
        (overpaid, 200, "overpayment", "paid", 500),
        # money held on an expired order never counted: all of it may go back
        (expired, 200, "late", "pending", 0),
        # a second payment on a paid order: the order keeps the first
        (paid_twice, 300, "duplicate", "paid", 300),
    ],
)
def test_record_refund_from_the_order_page(
    admin_client, client, make_order, db, flagged, default, reason, status, paid
):
    order, why = flagged(client, make_order, db)
    payment = next(p for p in fresh(db, order["id"]).payments if why in (p.review_reason or ""))
    page = f"/admin/orders/{order['id']}"
    html = html_of(admin_client, page)
    assert f'action="/admin/payments/{payment.id}/refund"' in html
    # every payment with money that may go back has the form; of a paid-twice order either
    # payment may be refunded (but only one of them)
    assert html.count('class="refund-form"') == (2 if flagged is paid_twice else 1)
    assert prefilled(html, payment) == (str(default), reason)

    empty = post_form(
        admin_client, refund_url(payment), {"amount": str(default), "reason": reason}, page
    )
    assert empty.status_code == 422
    assert field_errors(empty.get_data(as_text=True)) == [f"refund-note-{payment.id}"]
    assert refund_rows(db) == [] and db.session.get(Payment, payment.id).refunded_amount == 0

    done = post_form(
        admin_client,
        refund_url(payment),
        {"amount": str(default), "reason": reason, "note": "sent back with M-Pesa reversal RKR123"},
        page,
    )
    assert done.status_code == 302 and done.location == f"{page}#{payment.id}"
    html = html_of(admin_client, page)
    assert (
        f"KES {default:,} of payment {payment.receipt} on {order['number']} recorded as "
        "refunded (outside the app)."
    ) in html
    assert f'badge-refunded">refunded KES {default:,}' in html
    assert "sent back with M-Pesa reversal RKR123" in html and "payment refunded" in html
    assert presenters.REFUND_REASON_LABELS[reason] in html and "admin:alice" in html
    assert f"Refunded <strong>KES {default:,}</strong>" in html
    assert f'<dd id="amount-refunded">KES {default:,}' in html
    assert f'<dd id="amount-paid">KES {paid:,}' in html
    assert 'class="refund-form"' not in html  # nothing more may go back
    stored = fresh(db, order["id"])
    assert stored.status == status and stored.amount_paid == paid
    refunded = db.session.get(Payment, payment.id)
    assert refunded.refunded_amount == default and not refunded.needs_review
    assert refunded.reviewed_at is None  # refunded, not accepted
    [refund] = refund_rows(db)
    assert (refund.amount, refund.reason, refund.method) == (default, reason, "manual")
    assert refund.actor == "admin:alice" and refund.payment_id == payment.id

    again = post_form(
        admin_client,
        refund_url(payment),
        {"amount": "1", "reason": reason, "note": "again"},
        page,
    )
    assert again.status_code == 409
    assert "Nothing of this payment may be refunded." in again.get_data(as_text=True)
    assert len(refund_rows(db)) == 1
    csv_body = admin_client.get("/admin/orders.csv").get_data(as_text=True)
    row = next(r for r in csv.DictReader(io.StringIO(csv_body)) if r["order_id"] == order["id"])
    assert row["refunded"] == payment.receipt and row["refunded_kes"] == str(default)
    assert row["amount_paid_kes"] == str(paid)


def test_a_partial_refund_of_an_overpayment_keeps_the_order_paid(
    admin_client, client, make_order, db
):
    order, _ = overpaid(client, make_order, db)
    payment = fresh(db, order["id"]).payments[0]
    page = f"/admin/orders/{order['id']}"
    done = post_form(
        admin_client,
        refund_url(payment),
        {"amount": "KES 150", "reason": "overpayment", "note": "150 back by reversal"},
        page,
        follow_redirects=True,
    )
    html = done.get_data(as_text=True)
    assert f"KES 150 of payment OVERPAY001 on {order['number']} recorded as refunded" in html
    # net: 700 paid, 150 back; the order keeps its 500 and 50 is still over
    assert '<dd id="amount-paid">KES 550 <span class="warn">(KES 50 over)</span>' in html
    assert '<dd id="amount-refunded">KES 150' in html and '<dd id="amount-due">KES 0' in html
    assert 'badge-refunded">refunded KES 150' in html and "kept KES 550" in html
    # what is left may still go back: the form stays, offering it; the review stays open
    assert prefilled(html, payment) == ("50", "overpayment")
    stored = fresh(db, order["id"])
    assert stored.status == "paid" and stored.amount_paid == 550
    assert stored.payments[0].needs_review and stored.payments[0].net_amount == 550
    totals = queries.order_totals(queries.parse_filters({}))
    breakdown = queries.paid_breakdown(queries.parse_filters({}))
    assert totals["paid_amount"] == 550 and breakdown["paybill"] == 550
    assert breakdown["refunded"] == 150 and breakdown["refunded_count"] == 1
    assert "after KES 150 refunded on 1 payment" in html_of(admin_client, "/admin")
    review = html_of(admin_client, "/admin/review")
    row = review[review.index(f'id="flagged-{payment.id}"') :]
    assert 'badge-refunded">refunded KES 150' in row[: row.index("</tr>")]


def test_a_refund_above_what_may_go_back_is_409_and_changes_nothing(
    admin_client, client, make_order, db
):
    order, _ = overpaid(client, make_order, db)
    payment = fresh(db, order["id"]).payments[0]
    version = fresh(db, order["id"]).version
    page = f"/admin/orders/{order['id']}"
    typed = {"amount": "201", "reason": "requested_by_customer", "note": "the customer asked"}
    response = post_form(admin_client, refund_url(payment), typed, page)
    assert response.status_code == 409
    html = response.get_data(as_text=True)
    assert "At most KES 200 of this payment may be refunded." in html  # the flash
    assert field_errors(html) == [f"refund-amount-{payment.id}"]
    assert "At most KES 200." in html
    assert prefilled(html, payment) == ("201", "requested_by_customer")  # what was typed is kept
    assert 'value="the customer asked"' in html
    stored = fresh(db, order["id"])
    assert stored.version == version and stored.amount_paid == 700
    assert stored.payments[0].refunded_amount == 0 and stored.payments[0].needs_review
    assert refund_rows(db) == [] and refunded_events(db) == 0


@pytest.mark.parametrize(
    ("data", "fields"),
    [
        ({"amount": "", "reason": "", "note": ""}, ["amount", "reason", "note"]),
        ({"amount": "12.50", "reason": "overpayment", "note": "ok"}, ["amount"]),
        ({"amount": "0", "reason": "overpayment", "note": "ok"}, ["amount"]),
        ({"amount": "-5", "reason": "overpayment", "note": "ok"}, ["amount"]),
        ({"amount": "99999999999", "reason": "overpayment", "note": "ok"}, ["amount"]),
        ({"amount": "200", "reason": "because", "note": "ok"}, ["reason"]),
        ({"amount": "200", "reason": "overpayment", "note": "x" * 1001}, ["note"]),
    ],
)
def test_bad_refunds_are_form_errors_and_write_nothing(
    admin_client, client, make_order, db, data, fields
):
    order, _ = overpaid(client, make_order, db)
    payment = fresh(db, order["id"]).payments[0]
    page = f"/admin/orders/{order['id']}"
    response = post_form(admin_client, refund_url(payment), data, page)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert field_errors(html) == [f"refund-{name}-{payment.id}" for name in fields]
    assert 'role="alert"' in html
    assert f'aria-describedby="refund-{fields[0]}-{payment.id}-error"' in html
    if data["amount"]:
        assert f'value="{data["amount"]}"' in html  # what was typed is kept
    assert refund_rows(db) == [] and refunded_events(db) == 0


def test_record_refund_from_the_review_queue(admin_client, client, make_order, db):
    order, _ = overpaid(client, make_order, db)
    payment = fresh(db, order["id"]).payments[0]
    html = html_of(admin_client, "/admin/review")
    row = html[html.index(f'id="flagged-{payment.id}"') :]
    row = row[: row.index("</tr>")]
    assert f'action="/admin/payments/{payment.id}/refund"' in row
    assert '<input type="hidden" name="from" value="review">' in row
    assert prefilled(row, payment) == ("200", "overpayment")
    assert f'id="refund-details-{payment.id}">' in row  # closed until needed
    empty = post_form(
        admin_client,
        refund_url(payment),
        {"amount": "200", "reason": "overpayment", "note": "", "from": "review"},
        "/admin/review",
    )
    html = empty.get_data(as_text=True)
    assert empty.status_code == 422 and "Flagged payments" in html
    assert field_errors(html) == [f"refund-note-{payment.id}"]
    assert f'id="refund-details-{payment.id}" open>' in html  # the refused form is shown
    too_much = post_form(
        admin_client,
        refund_url(payment),
        {"amount": "700", "reason": "overpayment", "note": "all of it", "from": "review"},
        "/admin/review",
    )
    assert too_much.status_code == 409 and "Flagged payments" in too_much.get_data(as_text=True)
    assert "At most KES 200 of this payment may be refunded." in too_much.get_data(as_text=True)
    done = post_form(
        admin_client,
        refund_url(payment),
        {"amount": "200", "reason": "overpayment", "note": "200 back", "from": "review"},
        "/admin/review",
    )
    assert done.status_code == 302 and done.location == "/admin/review"
    html = html_of(admin_client, "/admin/review")
    assert f"KES 200 of payment OVERPAY001 on {order['number']} recorded as refunded" in html
    assert "No flagged payments." in html
    resolved = html[html.index("<h2>Recently resolved</h2>") :]
    assert 'badge-refunded">refunded KES 200' in resolved  # closed by the refund
    assert "refunded KES 200 by admin:alice: 200 back" in resolved


def test_refund_offered_only_for_money_that_may_go_back(admin_client, client, make_order, db):
    order = make_order(100)
    pay_by_paybill(client, order["number"], 100)  # exactly paid: nothing may go back
    assert 'class="refund-form"' not in html_of(admin_client, f"/admin/orders/{order['id']}")
    short = make_order(1000)
    pay_by_paybill(client, short["number"], 400)  # a partial payment may be given back
    html = html_of(admin_client, f"/admin/orders/{short['id']}")
    payment = fresh(db, short["id"]).payments[0]
    assert html.count('class="refund-form"') == 1
    assert prefilled(html, payment) == ("400", "other")
    review = html_of(admin_client, "/admin/review")
    assert review.count('class="refund-form"') == 1 and f"refund-details-{payment.id}" in review


def test_a_refund_recorded_before_refunds_had_amounts_is_shown(
    admin_client, client, make_order, db
):
    """Migration 0007 turns a payment once "marked refunded" into one manual refund of all
    its money, by "marked refunded before refunds had amounts"; it shows like any other."""
    order, _ = expired(client, make_order, db)
    payment = fresh(db, order["id"]).payments[0]
    marked = utcnow() - timedelta(days=3)
    db.session.add(
        Refund(
            payment_id=payment.id,
            order_id=order["id"],
            amount=200,
            method="manual",
            status="succeeded",
            reason="other",
            note="returned by M-Pesa reversal",
            actor="marked refunded before refunds had amounts",
            created_at=marked,
            completed_at=marked,
        )
    )
    payment.refunded_amount = 200
    payment.held = False  # the migration holds only payments whose review is still open
    payment.needs_review = False
    payment.review_note = "refunded by admin:bob: returned by M-Pesa reversal"
    payment.reviewed_at = marked
    db.session.commit()
    html = html_of(admin_client, f"/admin/orders/{order['id']}")
    assert 'badge-refunded">refunded KES 200' in html and "kept KES 0" in html
    assert "Refunded <strong>KES 200</strong> · Other" in html
    assert "marked refunded before refunds had amounts: returned by M-Pesa reversal" in html
    assert '<dd id="amount-paid">KES 0' in html and '<dd id="amount-refunded">KES 200' in html
    assert 'class="refund-form"' not in html
    review = html_of(admin_client, "/admin/review")
    resolved = review[review.index("<h2>Recently resolved</h2>") :]
    assert 'badge-refunded">refunded KES 200' in resolved
    assert presenters.local_time(marked) in resolved
    body = admin_client.get("/admin/orders.csv").get_data(as_text=True)
    row = next(r for r in csv.DictReader(io.StringIO(body)) if r["order_id"] == order["id"])
    assert row["refunded"] == "EXPIRED001" and row["refunded_kes"] == "200"


# -- record a payment by receipt ------------------------------------------------------------------


def test_record_a_payment_by_receipt(admin_client, make_order, db):
    order = make_order(1450)
    page = f"/admin/orders/{order['id']}"
    assert 'action="' + page + '/payments"' in html_of(admin_client, page)
    response = post_form(
        admin_client,
        f"{page}/payments",
        {"receipt": " nlj7rt61sv ", "amount": "1,450", "note": "seen in the M-Pesa statement"},
        page,
    )
    assert response.status_code == 302
    html = html_of(admin_client, page)
    assert f"Payment NLJ7RT61SV of KES 1,450 recorded on {order['number']}" in html
    assert "the order is paid" in html and "entered by hand by admin:alice" in html
    stored = fresh(db, order["id"])
    [payment] = stored.payments
    assert stored.status == "paid" and payment.entered_by == "admin:alice"
    assert payment.amount_source == "hand" and payment.method == "paybill"
    assert payment.needs_review  # stays flagged as entered by hand
    review = html_of(admin_client, "/admin/review")
    assert "entered by hand by admin:alice" in review
    body = admin_client.get("/admin/orders.csv").get_data(as_text=True)
    row = next(r for r in csv.DictReader(io.StringIO(body)) if r["order_id"] == order["id"])
    assert row["entered_by"] == "admin:alice" and row["amount_paid_kes"] == "1450"
    assert queries.order_totals(queries.parse_filters({}))["paid_amount"] == 1450


@pytest.mark.parametrize(
    ("data", "fields"),
    [
        ({"receipt": "", "amount": "", "note": ""}, ["amount", "note"]),
        ({"receipt": "NLJ7RT61SV", "amount": "12.50", "note": "ok"}, ["amount"]),
        ({"receipt": "NLJ7RT61SV", "amount": "-5", "note": "ok"}, ["amount"]),
        ({"receipt": "NLJ7RT61SV", "amount": "0", "note": "ok"}, ["amount"]),
        ({"receipt": "NLJ7RT61SV", "amount": "99999999999", "note": "ok"}, ["amount"]),
        ({"receipt": "bad receipt!", "amount": "100", "note": "ok"}, ["receipt"]),
        ({"receipt": "", "amount": "100", "note": "ok"}, ["receipt"]),
        ({"receipt": "NLJ7RT61SV", "amount": "100", "note": " "}, ["note"]),
        ({"receipt": "NLJ7RT61SV\x00", "amount": "1\x00", "note": "ok\x00"}, []),
    ],
)
def test_bad_hand_entries_are_form_errors_and_write_nothing(
    admin_client, make_order, db, data, fields
):
    order = make_order(100)
    page = f"/admin/orders/{order['id']}"
    response = post_form(admin_client, f"{page}/payments", data, page)
    if not fields:  # NUL characters are dropped, then it is a valid entry
        assert response.status_code == 302
        assert fresh(db, order["id"]).payments[0].receipt == "NLJ7RT61SV"
        return
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert field_errors(html) == [f"hand-{name}" for name in fields]
    assert 'role="alert"' in html
    if data["receipt"]:
        assert f'value="{data["receipt"]}"' in html  # what was typed is kept
    assert fresh(db, order["id"]).payments == []


def test_a_receipt_already_recorded_is_refused_naming_its_order(
    admin_client, client, make_order, db
):
    first = make_order(300)
    pay_by_paybill(client, first["number"], 300, "KNOWNRCPT1")
    other = make_order(300)
    page = f"/admin/orders/{other['id']}"
    response = post_form(
        admin_client,
        f"{page}/payments",
        {"receipt": "knownrcpt1", "amount": "300", "note": "customer's SMS"},
        page,
    )
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert f"Already recorded, on {first['number']}." in html
    assert field_errors(html) == ["hand-receipt"]
    assert fresh(db, other["id"]).payments == []


# -- CSRF and sign-in ------------------------------------------------------------------------------


def test_every_new_form_needs_its_csrf_token(admin_client, client, make_order, unmatched, db):
    order, _ = overpaid(client, make_order, db)
    payment = fresh(db, order["id"]).payments[0]
    record = unmatched["record"]
    posts = [
        (f"/admin/review/paybill/{record.id}/assign", {"order": order["number"], "note": "x"}),
        (
            f"/admin/payments/{payment.id}/refund",
            {"amount": "200", "reason": "overpayment", "note": "x"},
        ),
        (f"/admin/orders/{order['id']}/payments", {"receipt": "ABCDEF1234", "amount": "5"}),
    ]
    for path, data in posts:
        for token in (None, "forged"):
            sent = {**data, **({"csrf_token": token} if token else {})}
            response = admin_client.post(path, data=sent)
            assert response.status_code == 400, path
            assert "did not come from the dashboard" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).refunded_amount == 0
    assert unmatched_record(db).outcome == "unknown"
    assert len(fresh(db, order["id"]).payments) == 1


def test_anonymous_users_are_sent_to_the_login(client, make_order, unmatched, db):
    order = unmatched["order"]
    paths = [
        f"/admin/review/paybill/{unmatched['record'].id}/assign",
        "/admin/payments/pay_x/refund",
        f"/admin/orders/{order['id']}/payments",
    ]
    for path in paths:
        response = client.post(path, data={"order": order["number"], "note": "x"})
        assert response.status_code == 302 and response.location.startswith("/admin/login")
    assert unmatched_record(db).outcome == "unknown"
    assert (
        db.session.scalar(
            select(func.count())
            .select_from(OrderEvent)
            .where(OrderEvent.kind == "payment_refunded")
        )
        == 0
    )


def test_presenters(app):
    assert presenters.parse_shillings("1,450") == 1450
    assert presenters.parse_shillings("KES 1 450") == 1450
    assert presenters.parse_shillings("1450.00") == 1450
    for bad in ("", "12.5", "-1", "1e3", "abc", "１２"):
        assert presenters.parse_shillings(bad) is None, bad

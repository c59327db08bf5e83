"""Dashboard pages: filters, search, pagination, totals, CSV, detail, actions, review."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from paymentapp.admin import presenters, queries
from paymentapp.models import CallbackRecord, Order, OrderEvent, Payment
from tests.helpers import csrf_from, stk_callback


def order_numbers(html: str) -> list[str]:
    return re.findall(
        r'<tr data-order-id="[^"]+" data-version="\d+">\s*<td><a [^>]+>(ORD-\d+)', html
    )


def page(client, query: str = "") -> str:
    response = client.get(f"/admin{query}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


@pytest.fixture
def shop(make_order, add_payment, db):
    """Five orders: two paid, one cancelled, one pending with a failed attempt, one untouched."""
    paid_a = make_order(100, customer_phone="0712345678", reference="cart-1")
    paid_b = make_order(300, description="2 kg sugar")
    cancelled = make_order(50)
    failed = make_order(70)
    untouched = make_order(999)
    add_payment(paid_a["id"], "completed", seconds_to_pay=10, receipt="SIMRCPT001")
    add_payment(paid_b["id"], "failed", phone="254722000111")
    add_payment(paid_b["id"], "completed", seconds_to_pay=30, phone="254722000111")
    add_payment(failed["id"], "failed", phone="254733000222")
    order = db.session.get(Order, cancelled["id"])
    order.status = "cancelled"
    db.session.commit()
    return {
        "paid_a": paid_a,
        "paid_b": paid_b,
        "cancelled": cancelled,
        "failed": failed,
        "untouched": untouched,
    }


def test_orders_page_lists_newest_first_with_masked_phones(admin_client, shop):
    html = page(admin_client)
    names = ("untouched", "failed", "cancelled", "paid_b", "paid_a")
    assert order_numbers(html) == [shop[name]["number"] for name in names]
    assert "2547•••••678" in html and "254712345678" not in html
    assert "2547•••••111" in html and "254722000111" not in html
    assert 'src="/static/js/admin.js"' in html


def test_totals_count_paid_amount_success_rate_and_median(admin_client, shop):
    totals = queries.order_totals(queries.parse_filters({}))
    # 3 orders had an attempt (paid_a, paid_b, failed); 2 of them are paid
    assert totals == {
        "count": 5,
        "paid_amount": 400,
        "attempted": 3,
        "paid": 2,
        "success_rate": pytest.approx(2 / 3),
        "median_s": pytest.approx(20, abs=0.01),  # median of 10 s and 30 s
    }
    html = page(admin_client)
    assert "KES 400" in html and "66.7%" in html and "2 paid of 3 attempted" in html
    assert "20 s" in html
    assert "with at least one payment attempt" in html


def test_median_of_an_odd_number_of_payments(admin_client, shop, make_order, add_payment):
    third = make_order(10)
    add_payment(third["id"], "completed", seconds_to_pay=100)
    assert queries.order_totals(queries.parse_filters({}))["median_s"] == pytest.approx(
        30, abs=0.01
    )


def test_filter_by_status(admin_client, shop):
    paid = order_numbers(page(admin_client, "?status=paid"))
    assert paid == [shop["paid_b"]["number"], shop["paid_a"]["number"]]
    cancelled = order_numbers(page(admin_client, "?status=cancelled"))
    assert cancelled == [shop["cancelled"]["number"]]
    pending = queries.order_totals(queries.parse_filters({"status": "pending"}))
    assert pending["count"] == 2 and pending["success_rate"] == 0.0
    assert "Unknown status" in page(admin_client, "?status=evil")


def test_filter_by_date_range_in_the_dashboard_time_zone(admin_client, db, shop):
    # 22:30 UTC on 1 March is 01:30 on 2 March in Nairobi (UTC+3)
    order = db.session.get(Order, shop["paid_a"]["id"])
    order.created_at = datetime(2026, 3, 1, 22, 30, tzinfo=UTC)
    db.session.commit()
    number = shop["paid_a"]["number"]
    assert order_numbers(page(admin_client, "?from=2026-03-02&to=2026-03-02")) == [number]
    assert order_numbers(page(admin_client, "?from=2026-03-01&to=2026-03-01")) == []
    assert number not in order_numbers(page(admin_client, "?from=2026-03-03"))
    assert order_numbers(page(admin_client, "?to=2026-03-02")) == [number]
    assert "Use a date like" in page(admin_client, "?from=yesterday")
    assert "Use a date like" in page(admin_client, "?to=9999-12-31&from=0001-01-01")


def test_hostile_query_strings_never_break_the_page(admin_client, shop):
    for query in ("?q=" + "x" * 5000, "?page=-3", "?page=1e9", "?status[]=x"):
        assert admin_client.get(f"/admin{query}").status_code == 200, query
        assert admin_client.get(f"/admin/orders.csv{query}").status_code == 200, query
    # NUL is refused app-wide (PostgreSQL can't compare it) with a clear 400, not a 500
    assert admin_client.get("/admin?q=%00ORD").status_code == 400
    assert admin_client.get("/admin/orders.csv?q=%00ORD").status_code == 400


@pytest.mark.parametrize(
    "q, expected",
    [
        ("{paid_b}", ["paid_b"]),
        ("{paid_b_lower}", ["paid_b"]),
        ("{failed_digits}", ["failed"]),
        ("0712 345 678", ["paid_a"]),  # the order's customer phone
        ("+254 733 000 222", ["failed"]),  # a payer's phone
        ("SIMRCPT001", ["paid_a"]),  # receipt
        ("simrcpt001", ["paid_a"]),
        ("cart-1", ["paid_a"]),  # merchant reference
        ("2 KG SUG", ["paid_b"]),  # description
        ("nothing-like-this", []),
        ("%", []),
    ],
)
def test_search_by_number_phone_receipt_or_reference(admin_client, shop, q, expected):
    from urllib.parse import quote

    q = q.format(
        paid_b=shop["paid_b"]["number"],
        paid_b_lower=shop["paid_b"]["number"].lower(),
        failed_digits=shop["failed"]["number"].removeprefix("ORD-"),
    )
    found = order_numbers(page(admin_client, f"?q={quote(q)}"))
    assert found == [shop[name]["number"] for name in expected]


def test_pagination_keeps_filters(admin_client, make_order, monkeypatch):
    monkeypatch.setattr(queries, "PAGE_SIZE", 2)
    numbers = [make_order(amount)["number"] for amount in range(1, 6)][::-1]
    first = page(admin_client, "?status=pending")
    assert order_numbers(first) == numbers[:2]
    assert "Page 1 of 3" in first and "/admin?status=pending&amp;page=2" in first
    assert 'data-accepts-new="1"' in first
    second = page(admin_client, "?status=pending&page=2")
    assert order_numbers(second) == numbers[2:4] and "Page 2 of 3" in second
    third = page(admin_client, "?status=pending&page=3")
    assert order_numbers(third) == numbers[4:] and 'data-accepts-new="0"' in third
    assert order_numbers(page(admin_client, "?page=99")) == numbers[4:]  # clamped
    assert order_numbers(page(admin_client, "?page=abc")) == numbers[:2]


def test_csv_export_uses_the_filters_and_masks_phones(admin_client, shop):
    response = admin_client.get("/admin/orders.csv?status=paid")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [row["number"] for row in rows] == [shop["paid_b"]["number"], shop["paid_a"]["number"]]
    first = rows[1]
    assert first["amount_kes"] == "100" and first["status"] == "paid"
    assert first["latest_payment_status"] == "completed" and first["receipt"] == "SIMRCPT001"
    assert first["phone"] == "2547•••••678"
    assert "254712345678" not in response.get_data(as_text=True)


def test_csv_export_defuses_formulas(admin_client, make_order):
    make_order(10, description='=HYPERLINK("http://evil.example")', reference="+cmd|calc")
    make_order(20, description="@SUM(A1)", reference="-2+3")
    make_order(30, description="plain text", reference="a=b")
    body = admin_client.get("/admin/orders.csv").get_data(as_text=True)
    rows = {row["amount_kes"]: row for row in csv.DictReader(io.StringIO(body))}
    assert rows["10"]["description"] == '\'=HYPERLINK("http://evil.example")'
    assert rows["10"]["reference"] == "'+cmd|calc"
    assert rows["20"]["description"] == "'@SUM(A1)" and rows["20"]["reference"] == "'-2+3"
    assert rows["30"]["description"] == "plain text" and rows["30"]["reference"] == "a=b"
    assert presenters.csv_cell("\t=1+1") == "'\t=1+1" and presenters.csv_cell("\r=1") == "'\r=1"
    assert presenters.csv_cell(None) == "" and presenters.csv_cell(1500) == "1500"


def test_order_detail_shows_payments_events_and_callbacks(
    admin_client, make_order, add_payment, make_callback, db
):
    order = make_order(100, description="2 kg sugar")
    payment = add_payment(order["id"], "completed", checkout_request_id="ws_CO_191220191020363925")
    db.session.add(
        OrderEvent(order_id=order["id"], payment_id=payment.id, kind="order_paid", detail="ok")
    )
    db.session.commit()
    make_callback(stk_callback("ws_CO_191220191020363925"), payment=payment)
    make_callback("not json at all 254712345678", payment=payment, outcome="malformed")
    html = admin_client.get(f"/admin/orders/{order['id']}").get_data(as_text=True)
    assert "2 kg sugar" in html and "ws_CO_191220191020363925" in html
    assert "order created" in html and "order paid" in html
    assert "callback: applied" in html and "callback: malformed" in html
    assert "&#34;MpesaReceiptNumber&#34;" in html  # pretty-printed raw body, escaped
    assert "\n  &#34;Body&#34;: {" in html
    assert "254712345678" not in html and "2547•••••678" in html
    # events and callbacks interleave in time order
    assert html.index("order created") < html.index("callback: applied")


def test_order_detail_of_unknown_order_is_404(admin_client):
    for order_id in ("ord_nope", "x" * 40):
        assert admin_client.get(f"/admin/orders/{order_id}").status_code == 404
    assert admin_client.get("/admin/orders/ord%00x").status_code == 400  # NUL refused app-wide


def test_cancel_order_from_the_detail_page(admin_client, make_order, db):
    order = make_order(100)
    token = csrf_from(admin_client, f"/admin/orders/{order['id']}")
    response = admin_client.post(f"/admin/orders/{order['id']}/cancel", data={"csrf_token": token})
    assert response.status_code == 302
    assert response.location == f"/admin/orders/{order['id']}"
    html = admin_client.get(response.location).get_data(as_text=True)
    assert f"Order {order['number']} is cancelled." in html
    assert "cancelled by admin:alice" in html
    stored = db.session.get(Order, order["id"])
    assert stored.status == "cancelled" and stored.version == 2


def test_cancel_refuses_a_paid_order_with_a_message(admin_client, make_order, add_payment, db):
    order = make_order(100)
    add_payment(order["id"], "completed")
    token = csrf_from(admin_client, f"/admin/orders/{order['id']}")
    response = admin_client.post(
        f"/admin/orders/{order['id']}/cancel", data={"csrf_token": token}, follow_redirects=True
    )
    assert "A paid order cannot be cancelled." in response.get_data(as_text=True)
    assert db.session.get(Order, order["id"]).status == "paid"


def test_check_status_now_reports_what_it_found(admin_client, make_order, add_payment):
    order = make_order(100)
    pending = add_payment(order["id"], "pending")  # the push never got a checkout id
    html = admin_client.get(f"/admin/orders/{order['id']}").get_data(as_text=True)
    assert "Check status now" in html
    token = csrf_from(admin_client, f"/admin/orders/{order['id']}")
    response = admin_client.post(
        f"/admin/payments/{pending.id}/check", data={"csrf_token": token}, follow_redirects=True
    )
    assert "M-Pesa never confirmed this prompt, so it cannot be queried." in response.get_data(
        as_text=True
    )
    assert (
        admin_client.post("/admin/payments/pay_nope/check", data={"csrf_token": token}).status_code
        == 404
    )


def test_check_status_now_asks_mpesa_and_applies_its_answer(
    admin_client, client, live_server, make_order, db
):
    order = make_order(100)
    started = client.post(
        f"/api/orders/{order['id']}/payments",
        json={"phone": "0712345678"},
        headers={"X-Order-Token": order["client_token"]},
    )
    assert started.status_code == 202, started.get_json()
    check_url = f"/admin/payments/{started.get_json()['id']}/check"
    token = csrf_from(admin_client, f"/admin/orders/{order['id']}")
    waiting = admin_client.post(check_url, data={"csrf_token": token}, follow_redirects=True)
    assert "M-Pesa says the customer has not answered yet." in waiting.get_data(as_text=True)
    # the customer pays, but the callback never reaches us: the query finds the money
    live_server.press(
        live_server.prompt_for(order["number"])["checkout_request_id"], "lose_callback"
    )
    paid = admin_client.post(check_url, data={"csrf_token": token}, follow_redirects=True)
    html = paid.get_data(as_text=True)
    assert "payment completed" in html and "query by admin:alice" in html
    db.session.expire_all()
    assert db.session.get(Order, order["id"]).status == "paid"


def test_review_queue_lists_and_resolves_flagged_payments(
    admin_client, make_order, add_payment, make_callback, db
):
    order = make_order(100)
    flagged = add_payment(
        order["id"],
        "completed",
        paid_amount=90,
        needs_review=True,
        review_reason="amount mismatch: paid 90 KES, expected 100 KES",
    )
    unknown = make_callback(
        stk_callback("ws_CO_unknown"), outcome="unknown", checkout_request_id="ws_CO_unknown"
    )
    html = admin_client.get("/admin/review").get_data(as_text=True)
    assert "amount mismatch: paid 90 KES, expected 100 KES" in html
    assert "ws_CO_unknown" in html and '<span class="count">2</span>' in html

    token = csrf_from(admin_client, "/admin/review")
    empty = admin_client.post(
        f"/admin/review/payments/{flagged.id}",
        data={"csrf_token": token, "note": "  "},
        follow_redirects=True,
    )
    assert "Write a note" in empty.get_data(as_text=True)
    done = admin_client.post(
        f"/admin/review/payments/{flagged.id}",
        data={"csrf_token": token, "note": "Customer topped up 10 KES by cash."},
        follow_redirects=True,
    )
    assert "Marked as resolved." in done.get_data(as_text=True)
    payment = db.session.get(Payment, flagged.id)
    db.session.refresh(payment)
    assert payment.reviewed_at is not None
    assert payment.review_note == "Customer topped up 10 KES by cash."
    event = db.session.scalar(select(OrderEvent).where(OrderEvent.kind == "review_resolved"))
    assert event.order_id == order["id"] and "admin:alice" in (event.actor or "")

    closed = admin_client.post(
        f"/admin/review/callbacks/{unknown.id}",
        data={"csrf_token": token, "note": "Sandbox test from another till."},
        follow_redirects=True,
    )
    html = closed.get_data(as_text=True)
    assert "Marked as resolved." in html and "No unknown callbacks." in html
    assert "No flagged payments." in html and "Recently resolved" in html
    record = db.session.get(CallbackRecord, unknown.id)
    assert record.outcome == "unknown_resolved" and "Sandbox test" in record.detail


def test_orders_page_marks_payments_waiting_for_review(admin_client, make_order, add_payment):
    order = make_order(100)
    add_payment(order["id"], "completed", paid_amount=1, needs_review=True)
    assert 'badge-review">review' in page(admin_client)


def test_local_times_use_the_dashboard_time_zone(app):
    assert presenters.local_time(datetime(2026, 1, 1, 21, 0, tzinfo=UTC)) == "2026-01-02 00:00:00"
    assert presenters.local_time(None) == ""
    assert presenters.duration_text(None) == "—" and presenters.duration_text(-0.4) == "0 s"
    assert presenters.duration_text(59.6) == "1 min 0 s"
    assert presenters.duration_text(185) == "3 min 5 s"
    assert presenters.pretty_body('{"PhoneNumber": 254712345678}') == (
        '{\n  "PhoneNumber": 2547•••••678\n}'
    )


def test_median_never_goes_negative(app, make_order, add_payment):
    # TransactionDate has whole seconds, so a quick payment can predate its prompt a little
    order = make_order(10)
    add_payment(order["id"], "completed", seconds_to_pay=-0.6)
    assert queries.order_totals(queries.parse_filters({}))["median_s"] == 0.0


def test_review_note_with_nul_characters_is_stored_without_them(
    admin_client, make_order, add_payment, db
):
    order = make_order(100)
    flagged = add_payment(order["id"], "completed", paid_amount=90, needs_review=True)
    token = csrf_from(admin_client, "/admin/review")
    admin_client.post(
        f"/admin/review/payments/{flagged.id}", data={"csrf_token": token, "note": "ok\x00 done"}
    )
    db.session.expire_all()
    assert db.session.get(Payment, flagged.id).review_note == "ok done"

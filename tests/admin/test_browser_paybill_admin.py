"""The dashboard's Paybill parts in real Chromium against real gunicorn, PostgreSQL and
Redis, at 1280 and 375 px: the review queue (unmatched Paybill payments apart from unknown
STK callbacks; assign one to its order, a refused assignment shown at its field), an order
paid by Paybill (method, account as typed, amount paid and due), "Record refund" on an
overpayment (too much refused at its field, then part of it: the net amount paid) and
"Record a payment by receipt" (a refused entry, then a good one). No page
scrolls sideways and axe finds no serious or critical violation.
Screenshots: `test-artifacts/admin-{1280,375}-paybill-*.png`."""

from __future__ import annotations

import itertools
import uuid

import pytest

from tests.a11y import on_screen, page_is_sound
from tests.admin.stack import (
    create_order,
    dashboard_stack,
    sign_in,
    start_payment,
    wait_payment,
)
from tests.e2e import post_callback
from tests.helpers import c2b_confirmation

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

_trans = itertools.count(1)


def paybill(stack, account: str, amount, trans_id: str | None = None) -> str:
    """Post a Daraja C2B confirmation to the stack; returns its TransID."""
    trans_id = trans_id or f"RKB{uuid.uuid4().hex[:7].upper()}"
    body = c2b_confirmation(account, str(amount), trans_id, BusinessShortCode="600638")
    token = stack.env["MPESA_CALLBACK_TOKEN"]
    response = stack.http.post(
        f"{stack.url}/callbacks/c2b/confirmation/{token}", json=body, timeout=10
    )
    assert response.status_code == 200 and response.json()["ResultCode"] == 0, response.text
    return trans_id


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Orders paid on the prompt and at the Paybill, a partial payment, an overpayment,
    unmatched Paybill payments (a long account, an unusable amount) and an unknown STK
    callback."""
    # hand entries on the admin's word (checked with M-Pesa: tests/test_receipt_checks.py)
    stack_dir = tmp_path_factory.mktemp("paybill")
    with dashboard_stack(stack_dir, MPESA_RECEIPT_CHECKS="off") as stack:
        stk = create_order(stack, 1500, "2 kg sugar")
        start_payment(stack, stk)
        stack.simulator.answer(stk["number"], "accept")
        wait_payment(stack, stk, "completed")

        loose = create_order(stack, 1450, "Cooking gas refill, 13 kg, delivered to Westlands")
        paybill(stack, "ord " + loose["number"][4:], 1450)
        partial = create_order(stack, 3200, "School shoes, two pairs")
        paybill(stack, partial["number"].lower(), 1200)
        paybill(stack, "INVOICE-2026-11-26/NAIROBI-WESTLANDS-BRANCH-00042-CUSTOMER-REF", 990)
        paybill(stack, partial["number"], "1e3")
        post_callback(stack, f"ws_CO_{uuid.uuid4().hex[:20]}", 0, amount=100)
        stack.seeded = {"stk": stk, "loose": loose, "partial": partial}
        yield stack


def check(page, name: str) -> None:
    """No sideways scroll and no serious/critical axe violation; saves a screenshot."""
    page_is_sound(page, name, f"admin-{page.width}-paybill-{name}")


def test_orders_page_shows_methods_and_paybill_totals(stack, sized_page):
    page = sized_page
    from playwright.sync_api import expect

    sign_in(page, stack.url)
    loose = stack.seeded["loose"]
    row = page.locator(f'tr[data-order-id="{loose["id"]}"]')
    method = row.locator('td[data-label="Method"]')
    expect(method).to_contain_text("Paybill")
    expect(method).to_contain_text(f"“ord {loose['number'][4:]}”")
    on_screen(page, method, "the Method cell")
    expect(page.locator(".totals")).to_contain_text("Paybill KES")
    check(page, "orders")


def test_review_queue_assign_an_unmatched_payment(stack, sized_page):
    page = sized_page
    from playwright.sync_api import expect

    order = create_order(stack, 640, f"assigned at {page.width} px")
    trans_id = paybill(stack, f"ORDER {next(_trans)} PLEASE", 640)
    sign_in(page, stack.url)
    page.goto(f"{stack.url}/admin/review")
    unmatched = page.locator(".unmatched-payment")
    expect(unmatched.first).to_be_visible()
    expect(page.locator("#unmatched-paybill")).to_have_text("Unmatched Paybill payments")
    long_one = page.locator(".unmatched-payment", has_text="NAIROBI-WESTLANDS")
    expect(long_one).to_contain_text("KES 990")
    expect(page.locator(".unmatched-payment", has_text="not usable")).to_contain_text(
        "Record a payment by receipt"
    )
    card = page.locator(".unmatched-payment", has_text=trans_id)
    expect(card).to_contain_text("2547•••••126")
    card.locator("details summary").click()
    on_screen(page, card.locator("pre"), "the raw confirmation")
    on_screen(page, card.get_by_role("button", name="Assign to order"), "Assign to order")
    on_screen(page, card.get_by_role("button", name="Resolve"), "Resolve")
    check(page, "review")

    # a number that names no order: the error is at the field, what was typed is kept
    card.get_by_label("Order number").fill("ORD-99999")
    card.get_by_label("Note", exact=True).fill("customer called from another phone")
    card.get_by_role("button", name="Assign to order").click()
    card = page.locator(".unmatched-payment", has_text=trans_id)
    order_field = card.get_by_label("Order number")
    expect(order_field).to_have_attribute("aria-invalid", "true")
    expect(card.locator(".field-error")).to_contain_text("Give an order number")
    expect(card.get_by_label("Note", exact=True)).to_have_value(
        "customer called from another phone"
    )
    on_screen(page, card.locator(".form-message"), "the refusal")
    check(page, "review-assign-error")

    order_field.fill(order["number"].lower())
    card.get_by_role("button", name="Assign to order").click()
    expect(page.locator(".flash-ok")).to_contain_text(
        f"{trans_id} (KES 640) assigned to {order['number']}: the order is paid."
    )
    expect(page.locator(".unmatched-payment", has_text=trans_id)).to_have_count(0)
    check(page, "review-assigned")


def test_order_page_refund_and_record_by_receipt(stack, sized_page):
    page = sized_page
    from playwright.sync_api import expect

    sign_in(page, stack.url)
    partial = stack.seeded["partial"]
    page.goto(f"{stack.url}/admin/orders/{partial['id']}")
    expect(page.locator("#amount-paid")).to_have_text("KES 1,200")
    expect(page.locator("#amount-due")).to_have_text("KES 2,000")
    payments = page.locator("table.payments")
    expect(payments.locator('td[data-label="Method"]').first).to_contain_text("Paybill")
    expect(payments).to_contain_text("KES 1,200 received, KES 2,000 still due")
    check(page, "order-partial")

    # an overpayment: more than the overpaid part is refused, then part of it is refunded
    over = create_order(stack, 500, f"overpaid at {page.width} px")
    receipt = paybill(stack, over["number"], 700)
    page.goto(f"{stack.url}/admin/orders/{over['id']}")
    refund = page.locator(".refund-form")
    expect(refund).to_contain_text("overpaid by 200 KES")
    expect(refund.get_by_label("Amount (KES)")).to_have_value("200")
    expect(refund.get_by_label("Reason")).to_have_value("overpayment")
    on_screen(page, refund.get_by_role("button", name="Record refund"), "Record refund")
    check(page, "order-overpaid")
    refund.get_by_label("Amount (KES)").fill("700")
    refund.get_by_label("Note", exact=True).fill("150 KES sent back by reversal")
    refund.get_by_role("button", name="Record refund").click()
    expect(page.locator(".flash-error")).to_contain_text("At most KES 200")
    refund = page.locator(".refund-form")
    expect(refund.get_by_label("Amount (KES)")).to_have_attribute("aria-invalid", "true")
    expect(refund.get_by_label("Note", exact=True)).to_have_value("150 KES sent back by reversal")
    on_screen(page, refund.locator(".field-error"), "the amount's error")
    check(page, "order-refund-refused")
    refund.get_by_label("Amount (KES)").fill("150")
    refund.get_by_role("button", name="Record refund").click()
    expect(page.locator(".flash-ok")).to_contain_text(
        f"KES 150 of payment {receipt} on {over['number']} recorded as refunded"
    )
    expect(page.locator("table.payments .badge-refunded")).to_have_text("refunded KES 150")
    expect(page.locator("#amount-paid")).to_have_text("KES 550 (KES 50 over)")
    expect(page.locator("#amount-refunded")).to_contain_text("KES 150")
    expect(page.locator(".refunded-note")).to_contain_text("150 KES sent back by reversal")
    expect(page.locator(".refund-form").get_by_label("Amount (KES)")).to_have_value("50")
    check(page, "order-refunded")

    # a confirmation that never arrived: a refused entry, then a good one
    pending = create_order(stack, 2300, f"recorded by hand at {page.width} px")
    page.goto(f"{stack.url}/admin/orders/{pending['id']}")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    form = page.locator("form.hand-entry")
    form.get_by_label("M-Pesa receipt").fill("NLJ7RT61SV")
    # money lands while the admin types: the page updates live and keeps what was typed
    paybill(stack, pending["number"], 300)
    expect(page.locator("#amount-paid")).to_have_text("KES 300")
    expect(form.get_by_label("M-Pesa receipt")).to_have_value("NLJ7RT61SV")
    form.get_by_label("Amount (KES)").fill("12.50")
    form.get_by_label("Note", exact=True).fill("the customer's SMS")
    form.get_by_role("button", name="Record payment").click()
    form = page.locator("form.hand-entry")
    expect(form.get_by_label("Amount (KES)")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#hand-amount-error")).to_contain_text("Whole shillings")
    expect(form.get_by_label("M-Pesa receipt")).to_have_value("NLJ7RT61SV")
    on_screen(page, page.locator("#hand-amount-error"), "the amount's error")
    check(page, "order-hand-error")

    receipt = f"HAND{uuid.uuid4().hex[:6].upper()}"
    form.get_by_label("M-Pesa receipt").fill(receipt)
    form.get_by_label("Amount (KES)").fill("2,000")
    form.get_by_role("button", name="Record payment").click()
    expect(page.locator(".flash-ok")).to_contain_text(f"Payment {receipt} of KES 2,000 recorded")
    expect(page.locator("h1 .badge")).to_have_text("paid")
    expect(page.locator("table.payments")).to_contain_text("entered by hand by admin:alice")
    expect(page.locator("#amount-due")).to_have_text("KES 0")
    check(page, "order-hand-recorded")

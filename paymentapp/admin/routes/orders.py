"""The orders screens: the list (filters, totals, a table that updates live, the CSV
export), one order's page, and what an admin does there: record a payment by hand, record
a refund (also offered on the review queue), check a pending prompt now, cancel."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from ...errors import ApiError, get_or_404
from ...models import ReceiptCheck, RefundReason, Role
from ...orders.services import cancel_order, get_order
from ...payments import approvals, receipt_checks
from ...payments import services as payments
from .. import (
    bp,
    chart_presenters,
    charts,
    lookups,
    presenters,
    queries,
    webhook_presenters,
    webhook_queries,
)
from ..auth import requires
from .actions import (
    actor,
    attempt,
    csv_download,
    flash_refusal,
    form_state,
    form_text,
    note_errors,
)
from .review import review_page

# What "Check status now" found → the flash message's style.
CHECK_STYLE = {
    "paid": "ok",
    "review": "warn",
    "waiting": "info",
    "failed": "warn",
    "no_answer": "error",
    "not_checked": "info",
}


@bp.get("/")
@bp.get("")
def index():
    """Orders: the charts (first page), filters, totals, and a table that updates live."""
    filters = queries.parse_filters(request.args)
    totals = queries.order_totals(filters)
    orders, page, page_count = queries.orders_page(filters, totals["count"])
    return render_template(
        "admin/orders.html",
        glance=chart_presenters.glance(charts.read()) if page == 1 else None,
        filters=filters,
        totals=totals,
        breakdown=queries.paid_breakdown(filters),
        orders=orders,
        page=page,
        page_count=page_count,
        order_phone=presenters.order_phone,
        approvals=approvals.pending(),
    )


@bp.get("/orders.csv")
def orders_csv():
    """The filtered orders as CSV (phones masked, formula-safe cells), streamed."""
    filters = queries.parse_filters(request.args)
    rows = (presenters.csv_row(order) for order in queries.iter_orders(filters))
    return csv_download("orders", presenters.CSV_HEADER, rows)


def order_page(order, status: int = 200, forms: dict | None = None):
    """One order: its payments and the timeline of callbacks and status changes; `forms`
    refills a refused form with its errors."""
    return render_template(
        "admin/order.html",
        order=order,
        timeline=presenters.order_timeline(*queries.order_history(order)),
        order_phone=presenters.order_phone(order),
        webhook_events=webhook_presenters.webhook_events(webhook_queries.order_webhooks(order)),
        approvals=approvals.pending(order.id),
        forms=forms or {},
    ), status


@bp.get("/orders/<order_id>")
def order_detail(order_id: str):
    """One order: its payments and the timeline of callbacks and status changes."""
    return order_page(get_order(order_id))


@bp.post("/orders/<order_id>/payments")
@requires(Role.OWNER)
def record_payment(order_id: str):
    """Record a payment whose confirmation never arrived, from its M-Pesa receipt."""
    order = get_order(order_id)
    values = {
        "receipt": form_text("receipt").strip()[:40],
        "amount": form_text("amount").strip()[:40],
        "note": form_text("note"),
    }
    amount = presenters.parse_shillings(values["amount"])
    errors = {} if amount is not None else {"amount": "Whole shillings, e.g. 1450."}
    errors.update(note_errors(values["note"]))
    if errors:
        message = "Not recorded: correct the marked fields."
        return order_page(order, 422, {"hand": form_state(values, errors, message)})
    entered = attempt(
        lambda: receipt_checks.enter_receipt(
            order.id, values["receipt"], amount, values["note"], actor()
        ),
        refused=lambda exc: _hand_entry_refused(order_id, values, exc),
        # the same receipt, entered at the same moment by someone else
        duplicate="This receipt is already recorded.",
    )
    flash(presenters.hand_entry_message(entered), "ok")
    return redirect(url_for("admin.order_detail", order_id=order.id, _anchor=entered.id))


@bp.post("/receipt-checks/<check_id>/withdraw")
@requires(Role.OWNER)
def withdraw_receipt(check_id: str):
    """Take back a receipt entered by hand that is still awaiting M-Pesa."""
    check = get_or_404(ReceiptCheck, check_id, "No such receipt check.", "check_not_found")
    back = url_for("admin.order_detail", order_id=check.order_id)
    check = attempt(lambda: receipt_checks.withdraw(check_id, actor()), back)
    flash(f"Receipt {check.receipt} withdrawn.", "ok")
    return redirect(back)


def _hand_entry_refused(order_id: str, values: dict, exc: ApiError):
    """A refused Record payment form, refilled on the order's page; a receipt that is
    already recorded says on which order."""
    errors, message = exc.fields, exc.message
    known = lookups.payment_with_receipt(values["receipt"])
    if known is not None:
        errors = {"receipt": f"Already recorded, on {known.order.number}."}
        message = f"Receipt {known.receipt} is already recorded on {known.order.number}."
    return order_page(get_order(order_id), 422, {"hand": form_state(values, errors, message)})


@bp.post("/payments/<payment_id>/refund")
@requires(Role.OWNER)
def refund_payment(payment_id: str):
    """Record money given back from a payment outside the app: how much, why, and a note.
    A refused form comes back on the page it was sent from (the order's, or the review
    queue with `from=review`)."""
    payment = lookups.get_payment(payment_id)
    order_id = payment.order_id
    from_review = request.form.get("from") == "review"
    if from_review:
        back = url_for("admin.review")
    else:
        back = url_for("admin.order_detail", order_id=order_id, _anchor=payment_id)
    key = f"refund-{payment.id}"
    values = {
        "amount": form_text("amount").strip()[:40],
        "reason": form_text("reason").strip()[:40],
        "note": form_text("note"),
    }
    amount = presenters.parse_shillings(values["amount"])
    errors = {} if amount else {"amount": "Whole shillings, e.g. 500."}
    if values["reason"] not in RefundReason.ALL:
        errors["reason"] = "Choose why the money went back."
    errors.update(note_errors(values["note"]))
    if errors:
        message = "Not recorded: correct the marked fields."
        return _refund_page(order_id, from_review, 422, {key: form_state(values, errors, message)})
    refund = attempt(
        lambda: approvals.manual_refund(
            payment.id, amount, values["reason"], values["note"], actor()
        ),
        back,
        refused=lambda exc: _refund_refused(order_id, from_review, key, values, exc),
    )
    flash(presenters.refund_message(refund, payment), "ok")
    return redirect(back)


@bp.post("/payments/<payment_id>/reverse")
@requires(Role.OPERATOR)
def reverse_payment(payment_id: str):
    """Refund a payment through M-Pesa: the whole of it by Daraja's Reversal, an amount
    (or what is left) by B2C to the customer's phone. The answer is the order page; the
    result comes later and shows there."""
    payment = lookups.get_payment(payment_id)
    order_id = payment.order_id
    back = url_for("admin.order_detail", order_id=order_id, _anchor=payment_id)
    key = f"reverse-{payment.id}"
    values = {
        "reason": form_text("reason").strip()[:40],
        "note": form_text("note"),
        "amount": form_text("amount").strip()[:40],
        "phone": form_text("phone").strip()[:40],
    }
    errors = {} if values["reason"] in RefundReason.ALL else {"reason": "Choose why."}
    amount = presenters.parse_shillings(values["amount"]) if values["amount"] else None
    if values["amount"] and amount is None:
        errors["amount"] = "Whole shillings, e.g. 500."
    if values["note"].strip():
        errors.update(note_errors(values["note"]))
    if errors:
        message = "Not sent: correct the marked fields."
        return order_page(get_order(order_id), 422, {key: form_state(values, errors, message)})

    def refused(exc: ApiError):
        if not exc.fields:
            return None  # flashed
        forms = {key: form_state(values, exc.fields, exc.message)}
        return order_page(get_order(order_id), exc.status, forms)

    refund = attempt(
        lambda: approvals.mpesa_refund(
            order_id,
            payment_id=payment.id,
            amount=amount,
            reason=values["reason"],
            note=values["note"].strip() or None,
            phone=values["phone"] or None,
            actor=actor(),
        ),
        back,
        refused=refused,
    )
    flash(presenters.reversal_message(refund), "error" if refund.status == "failed" else "ok")
    return redirect(back)


def _refund_refused(order_id: str, from_review: bool, key: str, values: dict, exc: ApiError):
    """A refused Record refund: more than may go back (or nothing left) is flashed and
    marks the amount; field errors refill the form; anything else is only flashed (None)."""
    if exc.code == "not_refundable":
        flash_refusal(exc)
        most = exc.extra.get("refundable", 0)
        errors = {"amount": f"At most KES {most:,}."} if most else {}
        return _refund_page(order_id, from_review, 409, {key: form_state(values, errors)})
    if exc.fields:
        forms = {key: form_state(values, exc.fields, exc.message)}
        return _refund_page(order_id, from_review, exc.status, forms)
    return None


def _refund_page(order_id: str, from_review: bool, status: int, forms: dict):
    """The page a Record refund form was sent from, with `forms` refilled."""
    if from_review:
        return review_page(status, forms)
    return order_page(get_order(order_id), status, forms)


@bp.post("/payments/<payment_id>/check")
@requires(Role.OPERATOR)
def check_payment(payment_id: str):
    """Run an STK Query now for a pending payment and show what M-Pesa said."""
    payment = lookups.get_payment(payment_id)
    back = url_for("admin.order_detail", order_id=payment.order_id)
    # A refusal (M-Pesa gave no answer) is flashed as an error, the style of `no_answer`.
    found, sentence = attempt(lambda: payments.check_payment_now(payment.id, actor()), back)
    # The style says what the query found (only money received is green); admin.js
    # removes the message once the order changes after it was shown.
    flash(sentence, CHECK_STYLE.get(found, "info"))
    return redirect(back)


@bp.post("/orders/<order_id>/cancel")
@requires(Role.OPERATOR)
def cancel(order_id: str):
    """Cancel an unpaid order with no prompt in flight."""
    order = get_order(order_id)
    back = url_for("admin.order_detail", order_id=order.id)
    attempt(lambda: cancel_order(order.id, actor()), back)
    flash(f"Order {order.number} is cancelled.", "ok")
    return redirect(back)

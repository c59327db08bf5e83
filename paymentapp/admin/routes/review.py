"""The review queue: payments flagged for a person, callbacks for unknown checkout ids and
Paybill payments that matched no order, receipts entered by hand that M-Pesa did not
confirm; closing one with a note, and assigning a Paybill
payment to an order. (Record refund, also offered here, is `orders.refund_payment`.)"""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for

from ...callbacks.services import (
    apply_untrusted,
    assign_c2b_payment,
    dismiss_untrusted,
    resolve_unknown_callback,
)
from ...errors import ApiError, NotFound
from ...models import CallbackOutcome, Role
from ...payments import approvals, receipt_checks
from .. import bp, lookups, presenters, review_presenters, review_queries
from ..auth import requires
from .actions import actor, attempt, form_state, form_text, note_errors


def review_page(status: int = 200, forms: dict | None = None):
    """The review queue; `forms` refills a refused form with its errors."""
    flagged, unknown, unmatched = review_queries.open_reviews()
    return render_template(
        "admin/review.html",
        payments=flagged,
        unknown=unknown,
        unmatched=[review_presenters.unmatched_view(record) for record in unmatched],
        receipts=review_queries.unconfirmed_receipts(),
        untrusted=review_queries.untrusted_callbacks(),
        resolved=review_queries.recently_resolved(),
        forms=forms or {},
    ), status


def _note_refused(key: str, values: dict, exc: ApiError):
    """A refused note, refilled on the queue with its errors (None: nothing to mark)."""
    if not exc.fields:
        return None
    return review_page(422, {key: form_state(values, exc.fields, exc.message)})


@bp.get("/review")
def review():
    """Payments and callbacks a person has to look at."""
    return review_page()


@bp.post("/review/payments/<payment_id>")
@requires(Role.OPERATOR)
def resolve_payment(payment_id: str):
    """Close a flagged payment with a note (an OrderEvent records who and why)."""
    payment = lookups.get_payment(payment_id)
    key = f"resolve-{payment.id}"
    values = {"note": form_text("note")}
    done = attempt(
        lambda: approvals.accept_review(payment.id, values["note"], actor()),
        url_for("admin.review"),
        refused=lambda exc: _note_refused(key, values, exc),
    )
    flash(presenters.proposed_message(done) or "Marked as resolved.", "ok")
    return redirect(url_for("admin.review"))


@bp.post("/review/callbacks/<int:record_id>")
@requires(Role.OPERATOR)
def resolve_callback(record_id: int):
    """Close a callback for an unknown checkout id, or an unmatched Paybill payment without
    assigning it, with a note."""
    values = {"note": form_text("note")}
    attempt(
        lambda: resolve_unknown_callback(record_id, values["note"], actor()),
        url_for("admin.review"),
        refused=lambda exc: _note_refused(f"close-{record_id}", values, exc),
    )
    flash("Marked as resolved.", "ok")
    return redirect(url_for("admin.review"))


@bp.post("/review/untrusted/<int:record_id>/<action>")
@requires(Role.OWNER)
def handle_untrusted(record_id: int, action: str):
    """Apply (after checking with M-Pesa) or dismiss a callback from an untrusted address."""
    service = {"apply": apply_untrusted, "dismiss": dismiss_untrusted}.get(action)
    if service is None:
        raise NotFound("Nothing lives at this address.", code="not_found")
    values = {"note": form_text("note")}
    record = attempt(
        lambda: service(record_id, values["note"], actor()),
        url_for("admin.review"),
        refused=lambda exc: _note_refused(f"untrusted-{action}-{record_id}", values, exc),
    )
    done = f"Applied: {record.detail}" if action == "apply" else "Dismissed."
    flash(done, "ok")
    return redirect(url_for("admin.review"))


@bp.post("/review/paybill/<int:record_id>/assign")
@requires(Role.OPERATOR)
def assign_paybill(record_id: int):
    """Assign an unmatched Paybill payment to the order an admin names: the same rules
    apply as if the customer had typed that account number."""
    record = lookups.get_callback(record_id)
    if record.kind != review_queries.PAYBILL_KIND:
        raise NotFound("No unmatched Paybill payment with this id.", code="review_not_found")
    if record.outcome != CallbackOutcome.UNKNOWN:
        flash(
            f"This Paybill payment was already handled: {record.detail or record.outcome}", "info"
        )
        return redirect(url_for("admin.review"))
    key = f"assign-{record.id}"
    values = {"order": form_text("order").strip()[:64], "note": form_text("note")}
    errors = {} if values["order"] else {"order": "Give an order number, e.g. ORD-10017."}
    errors.update(note_errors(values["note"]))
    if errors:
        return review_page(
            422, {key: form_state(values, errors, "Not assigned: correct the marked fields.")}
        )
    trans_id = review_presenters.unmatched_view(record).trans_id
    known = lookups.payment_with_receipt(trans_id)
    if known is not None:  # e.g. entered by hand meanwhile: the same money, never twice
        message = (
            f"Receipt {trans_id} is already recorded on {known.order.number}: "
            "close this one with a note instead."
        )
        return review_page(409, {key: form_state(values, {}, message)})
    order = attempt(
        lambda: assign_c2b_payment(record.id, values["order"], values["note"], actor()),
        refused=lambda exc: review_page(
            exc.status, {key: form_state(values, exc.fields, exc.message)}
        ),
        # its receipt was recorded meanwhile (e.g. entered by hand)
        duplicate=f"Receipt {trans_id} was recorded meanwhile; close this one with a note.",
    )
    flash(review_presenters.assignment_message(order, trans_id), "ok")
    return redirect(url_for("admin.review"))


@bp.post("/review/receipt-checks/<check_id>")
@requires(Role.OPERATOR)
def resolve_receipt_check(check_id: str):
    """Close a receipt M-Pesa did not confirm, with a note (what the admin found)."""
    key = f"resolve-{check_id}"
    values = {"note": form_text("note")}
    attempt(
        lambda: receipt_checks.resolve(check_id, values["note"], actor()),
        url_for("admin.review"),
        refused=lambda exc: _note_refused(key, values, exc),
    )
    flash("Marked as resolved.", "ok")
    return redirect(url_for("admin.review"))

"""Dashboard pages. Every route but the login page needs a live admin session; every
state-changing request needs the CSRF token (checked here, for this blueprint only)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from flask import (
    Response,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    stream_with_context,
    url_for,
)
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import IntegrityError

from ..callbacks.services import assign_c2b_payment, resolve_unknown_callback
from ..errors import ApiError, NotFound, error_body, error_response
from ..extensions import csrf, db, limiter
from ..models import CallbackOutcome, RefundReason
from ..orders.schemas import iso
from ..orders.services import cancel_order, get_order
from ..payments import services as payments
from ..phones import mask_phone
from ..security import create_api_key, list_api_keys, revoke_api_keys
from ..security_headers import add_security_headers
from ..webhooks import delivery as webhook_delivery
from ..webhooks import endpoints as webhook_endpoints
from ..webhooks.events import send_test_event
from . import bp, presenters, queries
from .auth import (
    GENERIC_LOGIN_ERROR,
    authenticate,
    current_admin,
    had_session,
    is_background_request,
    login_user,
    logout_user,
    safe_next,
    session_expires_at,
    touch_session,
)

PUBLIC_ENDPOINTS = {"admin.login"}
API_KEY_NAME_MAX = 80  # the column's size
# Requests that never count as the admin being active (so never extend the session).
PASSIVE_ENDPOINTS = {"admin.session_info"}
# Never framed. Referrer same-origin, not none: Flask-WTF checks it on HTTPS form posts.
add_security_headers(
    bp, frame_ancestors="'none'", referrer_policy="same-origin", extra={"X-Frame-Options": "DENY"}
)


def form_text(name: str) -> str:
    """A form field as text PostgreSQL will store (it refuses NUL characters)."""
    return request.form.get(name, "").replace("\x00", "")


def wants_json() -> bool:
    """JSON endpoints and admin.js's background fetches get JSON errors, not redirects."""
    return request.path.startswith("/admin/api/") or is_background_request()


@bp.before_request
def guard():
    """Refuse anonymous and expired sessions, then check CSRF on state changes."""
    if request.endpoint not in PUBLIC_ENDPOINTS:
        admin = current_admin()
        if admin is None:
            if wants_json():
                return jsonify(error_body("unauthorized", "Log in to the dashboard.")), 401
            if had_session():
                session.clear()
                flash("Your session has ended. Log in again.", "info")
            return redirect(url_for("admin.login", next=request.full_path.rstrip("?")))
        if not is_background_request() and request.endpoint not in PASSIVE_ENDPOINTS:
            touch_session()
    if current_app.config.get("WTF_CSRF_ENABLED", True):
        csrf.protect()


@bp.context_processor
def template_helpers() -> dict:
    admin = current_admin()
    return {
        "admin": admin,
        "review_count": queries.open_review_count() if admin else 0,
        "pretty_body": presenters.pretty_body,
        "local_time": presenters.local_time,
        "duration_text": presenters.duration_text,
        "mask_phone": mask_phone,
        "kes": lambda amount: f"KES {amount:,}",
        "method_label": presenters.method_label,
        "refundable": presenters.refundable,
        "default_refund_reason": presenters.default_refund_reason,
        "refund_reasons": presenters.refund_reason_choices(),
        "refund_reason_label": presenters.refund_reason_label,
        "described_payments": presenters.described_payments,
        "idle_timeout_s": current_app.config["ADMIN_IDLE_TIMEOUT_S"],
    }


@bp.errorhandler(CSRFError)
def csrf_failed(exc: CSRFError):
    message = "This form has expired or did not come from the dashboard. Reload and try again."
    if request.endpoint == "admin.login":
        return render_template("admin/login.html", error=message, next=None), 400
    if wants_json():
        return jsonify(error_body("csrf_failed", message)), 400
    return error_response(400, "csrf_failed", message)


@bp.errorhandler(429)
def rate_limited(exc):
    message = "Too many sign-in attempts from your address. Wait a minute and try again."
    return render_template("admin/login.html", error=message, next=None), 429


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["ADMIN_LOGIN_RATE_LIMIT"], methods=["POST"])
def login():
    """Sign in; the session is started afresh and a generic message hides why it failed."""
    next_url = safe_next(request.values.get("next"))
    if request.method == "GET":
        if current_admin() is not None:
            return redirect(next_url or url_for("admin.index"))
        return render_template("admin/login.html", next=next_url)
    username = form_text("username").strip()[:64]
    password = request.form.get("password", "")[:1024]
    user = authenticate(username, password) if username and password else None
    if user is None:
        return render_template(
            "admin/login.html", error=GENERIC_LOGIN_ERROR, username=username, next=next_url
        ), 401
    login_user(user)
    return redirect(next_url or url_for("admin.index"))


@bp.post("/logout")
def logout():
    """Sign out everywhere: the session version moves on, so old cookies die too."""
    logout_user(current_admin())
    flash("You are signed out.", "info")
    return redirect(url_for("admin.login"))


@bp.get("/")
@bp.get("")
def index():
    """Orders: filters, totals, and a table that updates live."""
    filters = queries.parse_filters(request.args)
    totals = queries.order_totals(filters)
    orders, page, page_count = queries.orders_page(filters, totals["count"])
    return render_template(
        "admin/orders.html",
        filters=filters,
        totals=totals,
        breakdown=queries.paid_breakdown(filters),
        orders=orders,
        page=page,
        page_count=page_count,
        order_phone=presenters.order_phone,
    )


@bp.get("/orders.csv")
def orders_csv():
    """The filtered orders as CSV (phones masked, formula-safe cells), streamed."""
    filters = queries.parse_filters(request.args)

    def rows():
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(presenters.CSV_HEADER)
        for order in queries.iter_orders(filters):
            writer.writerow(presenters.csv_row(order))
            if buffer.tell() > 16_384:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    name = f"orders-{presenters.local_time(datetime.now(UTC))[:10]}.csv"
    return Response(
        stream_with_context(rows()),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _form(values: dict, errors: dict | None = None, message: str = "") -> dict:
    """A form's state for a page re-rendered after a refusal: what was typed (kept), the
    refusal's field errors (shown next to each field) and its message."""
    return {"typed": values, "errors": errors or {}, "message": message}


def _refused(exc: ApiError) -> None:
    """A service refused: a 404 stays a 404; anything half-done is rolled back."""
    if exc.status == 404:
        raise exc
    db.session.rollback()


def _order_page(order, status: int = 200, forms: dict | None = None):
    """One order: its payments and the timeline of callbacks and status changes; `forms`
    refills a refused form with its errors."""
    return render_template(
        "admin/order.html",
        order=order,
        timeline=presenters.order_timeline(*queries.order_history(order)),
        order_phone=presenters.order_phone(order),
        webhook_events=presenters.webhook_events(queries.order_webhooks(order)),
        forms=forms or {},
    ), status


@bp.get("/orders/<order_id>")
def order_detail(order_id: str):
    """One order: its payments and the timeline of callbacks and status changes."""
    return _order_page(get_order(order_id))


@bp.post("/orders/<order_id>/payments")
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
    try:
        payments.review_note(values["note"])
    except ApiError as exc:
        errors.update(exc.fields)
    if errors:
        return _order_page(
            order, 422, {"hand": _form(values, errors, "Not recorded: correct the marked fields.")}
        )
    try:
        payment = payments.record_payment_by_hand(
            order.id, values["receipt"], amount, values["note"], _actor()
        )
    except (ApiError, IntegrityError) as exc:
        if isinstance(exc, ApiError):
            _refused(exc)
            errors, message = exc.fields, exc.message
        else:  # the same receipt, entered at the same moment by someone else
            db.session.rollback()
            errors, message = {}, "This receipt is already recorded."
        known = queries.payment_with_receipt(values["receipt"])
        if known is not None:
            errors = {"receipt": f"Already recorded, on {known.order.number}."}
            message = f"Receipt {known.receipt} is already recorded on {known.order.number}."
        order = get_order(order_id)
        return _order_page(order, 422, {"hand": _form(values, errors, message)})
    flash(presenters.hand_entry_message(payment), "ok")
    return redirect(url_for("admin.order_detail", order_id=order.id, _anchor=payment.id))


@bp.post("/payments/<payment_id>/refund")
def refund_payment(payment_id: str):
    """Record money given back from a payment outside the app: how much, why, and a note.
    A refused form comes back on the page it was sent from (the order's, or the review
    queue with `from=review`)."""
    payment = queries.get_payment(payment_id)
    order_id = payment.order_id
    from_review = request.form.get("from") == "review"
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
    try:
        payments.review_note(values["note"])
    except ApiError as exc:
        errors.update(exc.fields)
    if errors:
        message = "Not recorded: correct the marked fields."
        return _refund_refused(order_id, from_review, 422, key, values, errors, message)
    try:
        refund = payments.record_refund(
            payment.id, amount, values["reason"], values["note"], _actor()
        )
    except ApiError as exc:
        _refused(exc)
        if exc.code == "not_refundable":  # more than may go back, or nothing left
            flash(exc.message, "error")
            most = exc.extra.get("refundable", 0)
            errors = {"amount": f"At most KES {most:,}."} if most else {}
            return _refund_refused(order_id, from_review, 409, key, values, errors)
        if exc.fields:
            return _refund_refused(
                order_id, from_review, exc.status, key, values, exc.fields, exc.message
            )
        flash(exc.message, "error")
    else:
        flash(presenters.refund_message(refund, payment), "ok")
    if from_review:
        return redirect(url_for("admin.review"))
    return redirect(url_for("admin.order_detail", order_id=order_id, _anchor=payment_id))


def _refund_refused(order_id, from_review, status, key, values, errors, message=""):
    """A refused Record refund form, refilled on the page it came from."""
    forms = {key: _form(values, errors, message)}
    if from_review:
        return _review_page(status, forms)
    return _order_page(get_order(order_id), status, forms)


def _review_page(status: int = 200, forms: dict | None = None):
    """The review queue; `forms` refills a refused form with its errors."""
    flagged, unknown, unmatched = queries.open_reviews()
    return render_template(
        "admin/review.html",
        payments=flagged,
        unknown=unknown,
        unmatched=[presenters.unmatched_view(record) for record in unmatched],
        resolved=queries.recently_resolved(),
        forms=forms or {},
    ), status


@bp.get("/review")
def review():
    """Payments and callbacks a person has to look at."""
    return _review_page()


@bp.post("/review/payments/<payment_id>")
def resolve_payment(payment_id: str):
    """Close a flagged payment with a note (an OrderEvent records who and why)."""
    payment = queries.get_payment(payment_id)
    values = {"note": form_text("note")}
    try:
        payments.resolve_review(payment.id, values["note"], _actor())
    except ApiError as exc:
        _refused(exc)
        if exc.fields:
            return _review_page(
                422, {f"resolve-{payment.id}": _form(values, exc.fields, exc.message)}
            )
        flash(exc.message, "error")
    else:
        flash("Marked as resolved.", "ok")
    return redirect(url_for("admin.review"))


@bp.post("/review/callbacks/<int:record_id>")
def resolve_callback(record_id: int):
    """Close a callback for an unknown checkout id, or an unmatched Paybill payment without
    assigning it, with a note."""
    values = {"note": form_text("note")}
    try:
        resolve_unknown_callback(record_id, values["note"], _actor())
    except ApiError as exc:
        _refused(exc)
        if exc.fields:
            return _review_page(422, {f"close-{record_id}": _form(values, exc.fields, exc.message)})
        flash(exc.message, "error")
    else:
        flash("Marked as resolved.", "ok")
    return redirect(url_for("admin.review"))


@bp.post("/review/paybill/<int:record_id>/assign")
def assign_paybill(record_id: int):
    """Assign an unmatched Paybill payment to the order an admin names: the same rules
    apply as if the customer had typed that account number."""
    record = queries.get_callback(record_id)
    if record.kind != queries.PAYBILL_KIND:
        raise NotFound("No unmatched Paybill payment with this id.", code="review_not_found")
    if record.outcome != CallbackOutcome.UNKNOWN:
        flash(
            f"This Paybill payment was already handled: {record.detail or record.outcome}", "info"
        )
        return redirect(url_for("admin.review"))
    key = f"assign-{record.id}"
    values = {"order": form_text("order").strip()[:64], "note": form_text("note")}
    errors = {} if values["order"] else {"order": "Give an order number, e.g. ORD-10017."}
    try:
        payments.review_note(values["note"])
    except ApiError as exc:
        errors.update(exc.fields)
    if errors:
        return _review_page(
            422, {key: _form(values, errors, "Not assigned: correct the marked fields.")}
        )
    trans_id = presenters.unmatched_view(record).trans_id
    known = queries.payment_with_receipt(trans_id)
    if known is not None:  # e.g. entered by hand meanwhile: the same money, never twice
        message = (
            f"Receipt {trans_id} is already recorded on {known.order.number}: "
            "close this one with a note instead."
        )
        return _review_page(409, {key: _form(values, {}, message)})
    try:
        order = assign_c2b_payment(record.id, values["order"], values["note"], _actor())
    except ApiError as exc:
        _refused(exc)
        return _review_page(exc.status, {key: _form(values, exc.fields, exc.message)})
    except IntegrityError:  # its receipt was recorded meanwhile (e.g. entered by hand)
        db.session.rollback()
        message = f"Receipt {trans_id} was recorded meanwhile; close this one with a note."
        return _review_page(409, {key: _form(values, {}, message)})
    flash(presenters.assignment_message(order, trans_id), "ok")
    return redirect(url_for("admin.review"))


# What "Check status now" found → the flash message's style.
CHECK_STYLE = {
    "paid": "ok",
    "review": "warn",
    "waiting": "info",
    "failed": "warn",
    "no_answer": "error",
    "not_checked": "info",
}


@bp.post("/payments/<payment_id>/check")
def check_payment(payment_id: str):
    """Run an STK Query now for a pending payment and show what M-Pesa said."""
    payment = queries.get_payment(payment_id)
    back = url_for("admin.order_detail", order_id=payment.order_id)
    try:
        found, sentence = payments.check_payment_now(payment.id, _actor())
    except ApiError as exc:
        if exc.status == 404:
            raise
        found, sentence = "no_answer", exc.message
    # The style says what the query found (only money received is green); admin.js
    # removes the message once the order changes after it was shown.
    flash(sentence, CHECK_STYLE.get(found, "info"))
    return redirect(back)


@bp.post("/orders/<order_id>/cancel")
def cancel(order_id: str):
    """Cancel an unpaid order with no prompt in flight."""
    order = get_order(order_id)
    return _act(
        lambda: cancel_order(order.id, _actor()),
        f"Order {order.number} is cancelled.",
        url_for("admin.order_detail", order_id=order.id),
    )


@bp.route("/api-keys", methods=["GET", "POST"])
def api_keys():
    """Merchant API keys: the list, and a form that creates one (shown once, here)."""
    created = error = None
    name = ""
    status = 200
    if request.method == "POST":
        name = form_text("name").strip()
        if not name or len(name) > API_KEY_NAME_MAX:
            error, status = f"Name the key (1 to {API_KEY_NAME_MAX} characters).", 422
        else:
            record, plain = create_api_key(name)
            created, name, status = {"name": record.name, "key": plain}, "", 201
    return render_template(
        "admin/api_keys.html", keys=list_api_keys(), created=created, error=error, name=name
    ), status


@bp.route("/api-keys/<int:key_id>/revoke", methods=["GET", "POST"])
def revoke_api_key(key_id: int):
    """Revoke one key, after a confirm step (GET shows it, POST does it)."""
    key = queries.get_api_key(key_id)
    if request.method == "GET":
        return render_template("admin/api_key_revoke.html", key=key)
    if key.revoked_at is not None:
        flash(f"API key {key.name!r} ({key.prefix}…) was already revoked.", "info")
    else:
        revoke_api_keys(_actor(), key_id=key.id)
        flash(
            f"API key {key.name!r} ({key.prefix}…) is revoked: requests with it now get 401.",
            "ok",
        )
    return redirect(url_for("admin.api_keys"))


# -- webhooks --------------------------------------------------------------------------------


def _webhooks_page(status: int = 200, *, form: dict | None = None, revealed=None):
    """The endpoints page; `form` refills the add form (with its errors), `revealed` is a
    secret shown this once (a new endpoint's or a rotated one's)."""
    endpoints = [presenters.endpoint_view(e) for e in webhook_endpoints.live_endpoints()]
    return render_template(
        "admin/webhooks.html",
        endpoints=endpoints,
        flagged=[e for e in endpoints if e.auto_disabled],
        choices=presenters.event_choices(),
        form=form or {"url": "", "description": "", "events": ["*"], "errors": {}},
        revealed=revealed,
        test_events=presenters.webhook_events(queries.recent_test_events()),
    ), status


def _cancelled(pending: int) -> str:
    if not pending:
        return "."
    return f"; {pending} pending deliver{'y' if pending == 1 else 'ies'} cancelled."


@bp.get("/webhooks")
def webhooks():
    """Webhook endpoints: the list, the add form and the last test events."""
    return _webhooks_page()


@bp.post("/webhooks")
def add_webhook():
    """Register an endpoint; its signing secret is shown on the answer, this once."""
    url = form_text("url").strip()
    description = form_text("description").strip()
    events = [e.replace("\x00", "") for e in request.form.getlist("events")]
    form = {"url": url, "description": description, "events": events, "errors": {}}
    try:
        endpoint = webhook_endpoints.create_endpoint(
            url, "*" if "*" in events else events, description or None
        )
    except ApiError as exc:
        if exc.status == 404:
            raise
        form["errors"] = exc.fields or {"url": exc.message}
        form["message"] = exc.message
        return _webhooks_page(422, form=form)
    return _webhooks_page(201, revealed={"kind": "added", "endpoint": endpoint})


@bp.post("/webhooks/<endpoint_id>/rotate")
def rotate_webhook_secret(endpoint_id: str):
    """A new signing secret, shown this once; the old one keeps working for 24 hours."""
    endpoint = webhook_endpoints.rotate_secret(endpoint_id)
    return _webhooks_page(revealed={"kind": "rotated", "endpoint": endpoint})


@bp.post("/webhooks/<endpoint_id>/disable")
def disable_webhook(endpoint_id: str):
    """Stop sending to an endpoint; its pending deliveries are cancelled."""
    endpoint = webhook_endpoints.get_endpoint(endpoint_id)
    pending = queries.pending_deliveries(endpoint.id)
    webhook_endpoints.set_enabled(endpoint.id, False, f"disabled by {_actor()}")
    flash(f"{endpoint.url} is disabled: no events are sent to it{_cancelled(pending)}", "ok")
    return redirect(url_for("admin.webhooks"))


@bp.post("/webhooks/<endpoint_id>/enable")
def enable_webhook(endpoint_id: str):
    """Send new events to an endpoint again (deliveries cancelled meanwhile stay cancelled)."""
    endpoint = webhook_endpoints.set_enabled(endpoint_id, True)
    flash(
        f"{endpoint.url} is enabled: new events are sent to it. Events from while it was "
        "disabled are not; resend them from their order's page.",
        "ok",
    )
    return redirect(url_for("admin.webhooks"))


@bp.route("/webhooks/<endpoint_id>/delete", methods=["GET", "POST"])
def delete_webhook(endpoint_id: str):
    """Delete an endpoint, after a confirm step (GET shows it, POST does it)."""
    endpoint = webhook_endpoints.get_endpoint(endpoint_id)
    pending = queries.pending_deliveries(endpoint.id)
    if request.method == "GET":
        return render_template(
            "admin/webhook_delete.html",
            endpoint=presenters.endpoint_view(endpoint),
            pending=pending,
        )
    webhook_endpoints.delete_endpoint(endpoint.id)
    flash(f"{endpoint.url} is deleted: no more events are sent to it{_cancelled(pending)}", "ok")
    return redirect(url_for("admin.webhooks"))


@bp.post("/webhooks/<endpoint_id>/test")
def test_webhook(endpoint_id: str):
    """Queue an `endpoint.test` event for this one endpoint."""
    endpoint = webhook_endpoints.get_endpoint(endpoint_id)
    if not endpoint.enabled:
        flash(f"{endpoint.url} is disabled: enable it before sending a test event.", "error")
        return redirect(url_for("admin.webhooks"))
    event = send_test_event(endpoint, db.session)
    flash(
        f"Test event {event.id} queued for {endpoint.url}: it is sent within seconds; "
        "the answer is under Recent test events.",
        "ok",
    )
    return redirect(url_for("admin.webhooks"))


@bp.post("/webhooks/events/<event_id>/resend")
def resend_webhook_event(event_id: str):
    """Deliver an event again to every endpoint that had it (a new delivery each)."""
    event = queries.get_webhook_event(event_id)
    count = webhook_delivery.resend(event.id)
    if count:
        flash(
            f"Queued for {count} endpoint{'' if count == 1 else 's'}: {event.type} {event.id}.",
            "ok",
        )
    else:
        flash(
            f"{event.type} {event.id} has no live endpoint to go to (disabled or deleted): "
            "nothing was queued.",
            "info",
        )
    # back to the top of the page, where the message is (not scrolled past it to the event)
    if event.order_id:
        return redirect(url_for("admin.order_detail", order_id=event.order_id))
    return redirect(url_for("admin.webhooks"))


def _actor() -> str:
    return f"admin:{current_admin().username}"


def _act(action, success: str | None, back: str):
    """Run a service call; its answer (or its refusal) becomes a message on `back`."""
    try:
        result = action()
    except ApiError as exc:
        if exc.status == 404:
            raise
        flash(exc.message, "error")
    else:
        flash(success or str(result), "ok")
    return redirect(back)


@bp.post("/api/ping")
def ping():
    """admin.js calls this when the admin is active on a page: restarts the idle clock."""
    return jsonify(ok=True, expires_at=iso(_expiry()))


@bp.get("/api/session")
def session_info():
    """Whether the session is alive, without counting as activity (admin.js asks)."""
    return jsonify(username=current_admin().username, expires_at=iso(_expiry()))


def _expiry() -> datetime:
    return datetime.fromtimestamp(session_expires_at(), UTC)

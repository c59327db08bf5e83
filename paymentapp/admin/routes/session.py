"""What every dashboard request goes through, and the pages of a session: the guard (a
live admin session on every page but the login page, then the CSRF token on every state
change, checked here for this blueprint only), the security headers, what every template
gets, the CSRF and rate-limit error pages, login, logout, and the session API admin.js
asks."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from flask import (
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_wtf.csrf import CSRFError

from ...errors import error_body, error_response
from ...extensions import csrf, limiter
from ...models import Role
from ...orders.schemas import iso
from ...payments import receipt_checks
from ...phones import mask_phone
from ...security_headers import add_security_headers
from .. import bp, presenters, review_queries
from ..auth import (
    GENERIC_LOGIN_ERROR,
    authenticate,
    current_admin,
    had_session,
    is_background_request,
    login_user,
    logout_user,
    required_role,
    requires,
    safe_next,
    session_expires_at,
    touch_session,
)
from .actions import form_text

log = logging.getLogger(__name__)

PUBLIC_ENDPOINTS = {"admin.login"}
# Requests that never count as the admin being active (so never extend the session).
PASSIVE_ENDPOINTS = {"admin.session_info"}
# Never framed. Referrer same-origin, not none: Flask-WTF checks it on HTTPS form posts.
add_security_headers(
    bp, frame_ancestors="'none'", referrer_policy="same-origin", extra={"X-Frame-Options": "DENY"}
)


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
        needed = required_role(current_app.view_functions.get(request.endpoint), request.method)
        if not admin.rank.at_least(needed):
            return _forbidden(admin, needed)
        if not is_background_request() and request.endpoint not in PASSIVE_ENDPOINTS:
            touch_session()
    if current_app.config.get("WTF_CSRF_ENABLED", True):
        csrf.protect()


def _forbidden(admin, needed: Role):
    """Below the role a view needs: a 403 that says which role it takes; nothing ran."""
    message = f"This needs the {needed} role; you are signed in as {admin.role}."
    log.info(
        f"admin {admin.username} ({admin.role}) refused {request.method} {request.path}",
        extra={"event": "admin.forbidden", "admin": admin.username, "needed": str(needed)},
    )
    if wants_json():
        return jsonify(error_body("forbidden", message)), 403
    return error_response(403, "forbidden", message)


@bp.context_processor
def template_helpers() -> dict:
    """What every dashboard template may use: who is signed in, the review count, and the
    display helpers."""
    admin = current_admin()
    return {
        "admin": admin,
        "can": lambda role: admin is not None and admin.rank.at_least(Role(role)),
        "review_count": review_queries.open_review_count() if admin else 0,
        "pretty_body": presenters.pretty_body,
        "local_time": presenters.local_time,
        "duration_text": presenters.duration_text,
        "mask_phone": mask_phone,
        "kes": lambda amount: f"KES {amount:,}",
        "method_label": presenters.method_label,
        "refundable": presenters.refundable,
        "can_reverse": presenters.can_reverse,
        "mpesa_refund": presenters.mpesa_refund,
        "receipt_checks_of": presenters.receipt_checks_of,
        "receipt_checks_on": receipt_checks.checks_on,
        "check_said": presenters.check_said,
        "refund_said": presenters.refund_said,
        "default_refund_reason": presenters.default_refund_reason,
        "refund_reasons": presenters.refund_reason_choices(),
        "refund_reason_label": presenters.refund_reason_label,
        "described_payments": presenters.described_payments,
        "idle_timeout_s": current_app.config["ADMIN_IDLE_TIMEOUT_S"],
    }


@bp.errorhandler(CSRFError)
def csrf_failed(exc: CSRFError):
    """A missing or stale CSRF token: the login page again, JSON, or the error page."""
    message = "This form has expired or did not come from the dashboard. Reload and try again."
    if request.endpoint == "admin.login":
        return render_template("admin/login.html", error=message, next=None), 400
    if wants_json():
        return jsonify(error_body("csrf_failed", message)), 400
    return error_response(400, "csrf_failed", message)


@bp.errorhandler(429)
def rate_limited(exc):
    """Too many sign-in attempts (the only limited route): the login page says so."""
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
@requires(Role.VIEWER)
def logout():
    """Sign out everywhere: the session version moves on, so old cookies die too."""
    logout_user(current_admin())
    flash("You are signed out.", "info")
    return redirect(url_for("admin.login"))


@bp.post("/api/ping")
@requires(Role.VIEWER)
def ping():
    """admin.js calls this when the admin is active on a page: restarts the idle clock."""
    return jsonify(ok=True, expires_at=iso(_expiry()))


@bp.get("/api/session")
def session_info():
    """Whether the session is alive, without counting as activity (admin.js asks)."""
    return jsonify(username=current_admin().username, expires_at=iso(_expiry()))


def _expiry() -> datetime:
    return datetime.fromtimestamp(session_expires_at(), UTC)

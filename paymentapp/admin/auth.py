"""Who is logged in to the dashboard, and the rules for logging in and out.

Flask's session is a signed cookie that the server cannot delete, so a dashboard session
carries three facts that are checked on every request and on Socket.IO connect:
`admin_sv` (the user's `session_version`, bumped by logout and password resets, so an
old cookie stops working), `admin_login_at` (absolute lifetime) and `admin_seen` (idle
timeout, refreshed by requests the admin makes, not by the page's background fetches).
"""

from __future__ import annotations

import functools
import logging
import time
from datetime import timedelta
from urllib.parse import urlsplit

from flask import current_app, g, request, session
from sqlalchemy import select, update
from werkzeug.security import check_password_hash, generate_password_hash

from .. import audit
from ..extensions import db
from ..models import AdminUser, Role, utcnow

log = logging.getLogger(__name__)

SESSION_KEY = "admin_user_id"
VERSION_KEY = "admin_sv"
LOGIN_AT_KEY = "admin_login_at"
SEEN_KEY = "admin_seen"
# Sent by admin.js on its own fetches: they must not count as the admin being active.
BACKGROUND_HEADER = "X-Admin-Background"
GENERIC_LOGIN_ERROR = "Invalid username or password."


@functools.cache
def _dummy_hash() -> str:
    """A real hash to check unknown usernames against, so timing does not reveal them."""
    return generate_password_hash("no such user, no such password")


def _session_times() -> tuple[float, float] | None:
    try:
        return float(session[LOGIN_AT_KEY]), float(session[SEEN_KEY])
    except (KeyError, TypeError, ValueError):
        return None


def session_expires_at() -> float:
    """When this session ends (epoch seconds) unless the admin does something first."""
    times = _session_times()
    if times is None:
        return 0.0
    login_at, seen = times
    config = current_app.config
    return min(seen + config["ADMIN_IDLE_TIMEOUT_S"], login_at + config["ADMIN_SESSION_MAX_AGE_S"])


def current_admin() -> AdminUser | None:
    """The logged-in admin for this request (HTTP or Socket.IO connect), or None.

    None too when the session is idle, too old, or was revoked (logout, new password).
    """
    user_id = session.get(SESSION_KEY)
    if user_id is None or time.time() >= session_expires_at():
        return None
    user = db.session.get(AdminUser, user_id)
    if user is None or session.get(VERSION_KEY) != user.session_version:
        return None
    if user.disabled_at is not None:
        return None
    return user


@audit.people_found_by
def _audit_actor() -> tuple[str, str] | None:
    """Whom the audit log names for what this request does: the signed-in admin."""
    admin = current_admin()
    return (admin.username, str(admin.role)) if admin is not None else None


def requires(role: Role):
    """Marks a dashboard view as needing at least `role`; the guard (routes/session.py)
    refuses anyone below it with a 403. Unmarked views: any role may read (GET), only an
    owner may change anything (so a new view is closed until someone opens it)."""

    def mark(view):
        view.required_role = role
        return view

    return mark


def required_role(view, method: str) -> Role:
    marked = getattr(view, "required_role", None)
    if marked is not None:
        return marked
    return Role.VIEWER if method in ("GET", "HEAD") else Role.OWNER


def had_session() -> bool:
    """Whether the request carried a dashboard session (now expired or revoked)."""
    return session.get(SESSION_KEY) is not None


def is_background_request() -> bool:
    return request.headers.get(BACKGROUND_HEADER) == "1"


def touch_session() -> None:
    """Restart the idle clock: the admin just did something."""
    session[SEEN_KEY] = time.time()


def login_user(user: AdminUser) -> None:
    """Start a fresh session: nothing from the pre-login cookie survives (no fixation)."""
    _clear_session()
    session.permanent = True
    now = time.time()
    session[SESSION_KEY] = user.id
    session[VERSION_KEY] = user.session_version
    session[LOGIN_AT_KEY] = now
    session[SEEN_KEY] = now


def logout_user(user: AdminUser | None) -> None:
    """End this session and every other cookie issued to the user so far."""
    if user is not None:
        db.session.execute(
            update(AdminUser)
            .where(AdminUser.id == user.id)
            .values(session_version=AdminUser.session_version + 1)
        )
        audit.record(
            "admin.logout", f"{user.username} signed out", actor=user.username, role=user.role
        )
        db.session.commit()
        log.info(
            f"admin {user.username} logged out",
            extra={"event": "admin.logout", "admin": user.username},
        )
    _clear_session()


def _clear_session() -> None:
    session.clear()
    g.pop("csrf_token", None)  # a token rendered later in this request needs the new session


def authenticate(username: str, password: str) -> AdminUser | None:
    """The user if the password is right and the account is not locked; counts failures.

    After `ADMIN_LOCKOUT_AFTER` failures in a row the account is locked for
    `ADMIN_LOCKOUT_S`; while locked even the right password is refused, with the same
    generic message, so the lock reveals nothing about the password or the username.
    """
    config = current_app.config
    user = db.session.scalar(select(AdminUser).where(AdminUser.username == username))
    if user is None:
        check_password_hash(_dummy_hash(), password)
        log.info(
            "login for unknown admin refused",
            extra={"event": "admin.login_failed", "admin": username},
        )
        # a name no user has may be a password typed in the wrong field: kept masked
        _refused(f"unknown:{username[:2]}{'•' * min(len(username) - 2, 20)}", None, "no such user")
        return None
    now = utcnow()
    password_ok = check_password_hash(user.password_hash, password)
    if user.disabled_at is not None:
        log.info(
            f"admin {username} is disabled",
            extra={"event": "admin.login_disabled", "admin": username},
        )
        _refused(username, user.role, "the user is disabled")
        return None
    if user.locked_until is not None and user.locked_until > now:
        log.info(
            f"admin {username} is locked", extra={"event": "admin.login_locked", "admin": username}
        )
        _refused(username, user.role, "the account is locked")
        return None
    if not password_ok:
        # Atomic increment: parallel guesses cannot slip past the lockout threshold.
        failures = db.session.execute(
            update(AdminUser)
            .where(AdminUser.id == user.id)
            .values(failed_logins=AdminUser.failed_logins + 1)
            .returning(AdminUser.failed_logins)
        ).scalar_one()
        if failures >= config["ADMIN_LOCKOUT_AFTER"]:
            db.session.execute(
                update(AdminUser)
                .where(AdminUser.id == user.id)
                .values(
                    failed_logins=0,
                    locked_until=now + timedelta(seconds=config["ADMIN_LOCKOUT_S"]),
                )
            )
        locked = failures >= config["ADMIN_LOCKOUT_AFTER"]
        _refused(username, user.role, "wrong password" + ("; locked" if locked else ""))
        log.info(
            f"wrong password for admin {username}",
            extra={
                "event": "admin.login_failed",
                "admin": username,
                "failures": failures,
                "locked": failures >= config["ADMIN_LOCKOUT_AFTER"],
            },
        )
        return None
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    audit.record("admin.login", f"{username} signed in", actor=username, role=user.role)
    db.session.commit()
    log.info(f"admin {username} logged in", extra={"event": "admin.login", "admin": username})
    return user


def _refused(username: str, role: str | None, why: str) -> None:
    """A refused sign-in, in the audit log under the name typed (committed here)."""
    audit.record(
        "admin.login_failed",
        f"sign-in as {username} refused: {why}",
        actor=username,
        role=role,
        changes={"reason": why},
    )
    db.session.commit()


def safe_next(target: str | None) -> str | None:
    """`target` if it is a dashboard path on this site (no open redirect), else None."""
    if not target or "\\" in target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/admin"):
        return None
    if parts.path.startswith("/admin/login") or parts.path.startswith("/admin/api"):
        return None
    return target

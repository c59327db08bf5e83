"""Dashboard users and their roles: adding one, changing a role, disabling, signing out
everywhere. The Users page (routes/users.py) and `flask admin` (commands.py) both come
here, so both keep the same rules and both are audited:

- there is always at least one enabled owner (the last one can be neither demoted nor
  disabled: nobody could manage users again without the CLI);
- a change of role or a disable takes effect on the user's next request (the role is read
  from the database each time), and a disable or a forced sign-out also ends the user's
  open sessions and dashboard sockets (`session_version` moves on).
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from werkzeug.security import generate_password_hash

from .. import audit
from ..errors import Conflict, NotFound, ValidationError
from ..extensions import db
from ..models import AdminUser, Role, utcnow
from ..models.accounts import count_enabled_owners

log = logging.getLogger(__name__)

USERNAME_MAX = 64  # the column's size
PASSWORD_MIN = 8
ROLES = tuple(role.value for role in Role)


def parse_role(raw: str | None) -> Role:
    try:
        return Role((raw or "").strip().lower())
    except ValueError:
        raise ValidationError(
            f"Unknown role {raw!r}: use {', '.join(ROLES)}.",
            code="validation_error",
            fields={"role": f"One of {', '.join(ROLES)}."},
        ) from None


def check_username(username: str) -> str:
    username = (username or "").strip()
    if not username or len(username) > USERNAME_MAX:
        raise ValidationError(
            f"A username is 1 to {USERNAME_MAX} characters.",
            code="validation_error",
            fields={"username": f"1 to {USERNAME_MAX} characters."},
        )
    return username


def check_password(password: str) -> str:
    if len(password or "") < PASSWORD_MIN:
        raise ValidationError(
            f"A password is at least {PASSWORD_MIN} characters.",
            code="validation_error",
            fields={"password": f"At least {PASSWORD_MIN} characters."},
        )
    return password


def find_user(username: str) -> AdminUser | None:
    return db.session.scalar(select(AdminUser).where(AdminUser.username == username))


def locked_user(user_id: int) -> AdminUser:
    """The user, its row locked (two owners changing one user: one after the other)."""
    user = db.session.scalar(select(AdminUser).where(AdminUser.id == user_id).with_for_update())
    if user is None:
        raise NotFound("No such dashboard user.", code="user_not_found")
    return user


def list_users() -> list[AdminUser]:
    return list(db.session.scalars(select(AdminUser).order_by(AdminUser.username)))


def owners_enabled() -> int:
    return db.session.scalar(count_enabled_owners())


def set_password(username: str, password: str, role: Role | None = None) -> tuple[AdminUser, bool]:
    """Create a user (default role: owner), or give an existing one a new password (and,
    when given, a new role); every open session of theirs ends. Returns (user, created)."""
    username, password = check_username(username), check_password(password)
    user = find_user(username)
    created = user is None
    if created:
        user = AdminUser(username=username, password_hash="", session_version=0)
        user.role = role or Role.OWNER
        db.session.add(user)
    user.password_hash = generate_password_hash(password)
    user.failed_logins = 0
    user.locked_until = None
    user.session_version += 1  # a new password ends every open dashboard session
    if created:
        audit.record(
            "user.created",
            f"dashboard user {username} created as {user.role}",
            target=username,
            changes={"role": [None, str(user.role)]},
        )
        db.session.commit()
    else:
        audit.record("user.password_set", f"new password for {username}", target=username)
        db.session.commit()
        if role is not None:
            change_role(user.id, role)
    return user, created


def _leaves_an_owner(user: AdminUser, role: Role, disabled: bool) -> None:
    """Refuse a change that would leave no enabled owner."""
    was_owner = user.role == Role.OWNER and user.disabled_at is None
    stays_owner = role == Role.OWNER and not disabled
    if was_owner and not stays_owner and owners_enabled() <= 1:
        raise Conflict(
            f"{user.username} is the last enabled owner: make another owner first.",
            code="last_owner",
        )


def _lock_owners() -> None:
    """Two owners demoting each other at once must not both succeed: the owners' rows are
    locked (in id order) before either counts them."""
    db.session.execute(
        select(AdminUser.id)
        .where(AdminUser.role == Role.OWNER)
        .order_by(AdminUser.id)
        .with_for_update()
    ).all()


def change_role(user_id: int, role: Role) -> AdminUser:
    _lock_owners()
    user = locked_user(user_id)
    if user.role == role:
        db.session.rollback()
        return user
    _leaves_an_owner(user, role, user.disabled_at is not None)
    old = user.role
    user.role = role
    audit.record(
        "user.role_changed",
        f"{user.username}: {old} → {role}",
        target=user.username,
        changes={"role": [str(old), str(role)]},
    )
    db.session.commit()
    return user


def set_disabled(user_id: int, disabled: bool) -> AdminUser:
    """Disable (every session and socket of theirs ends; they cannot sign in) or enable."""
    _lock_owners()
    user = locked_user(user_id)
    if (user.disabled_at is not None) == disabled:
        db.session.rollback()
        return user
    if disabled:
        _leaves_an_owner(user, Role(user.role), True)
        user.disabled_at = utcnow()
        user.session_version += 1
    else:
        user.disabled_at = None
    audit.record(
        "user.disabled" if disabled else "user.enabled",
        f"{user.username} {'disabled' if disabled else 'enabled'}",
        target=user.username,
        changes={"disabled": [not disabled, disabled]},
    )
    db.session.commit()
    return user


def sign_out_everywhere(user_id: int) -> AdminUser:
    """End every open session (and, within a minute, every dashboard socket) of a user."""
    user = locked_user(user_id)
    user.session_version += 1
    audit.record("user.signed_out", f"{user.username} signed out everywhere", target=user.username)
    db.session.commit()
    return user

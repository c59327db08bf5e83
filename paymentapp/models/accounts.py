"""Who may call the API (merchant API keys) and who may use the dashboard (admins)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    Boolean,
    Integer,
    String,
    false,
    func,
    select,
)
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .base import UTCDateTime, one_of, utcnow


class Role(StrEnum):
    """What a dashboard user may do (docs/admin.md, "Roles"); each includes the one before."""

    VIEWER = "viewer"  # reads everything, changes nothing
    OPERATOR = "operator"  # checks, cancels, assigns, resolves, asks for refunds
    OWNER = "owner"  # everything: money by hand, users, API keys, webhooks, approvals

    def at_least(self, other: Role) -> bool:
        return RANKS[self] >= RANKS[other]


RANKS = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.OWNER: 2}


class ApiKey(db.Model):
    """A merchant API key; only a SHA-256 of the key is stored."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(80), nullable=False)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # what it may do, space-separated (`security.SCOPES`); NULL: everything (keys made
    # before scopes, or without --scopes)
    scopes: Mapped[str | None] = mapped_column(String(200))
    # True: it sees and changes only the orders it created
    own_orders: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )

    def may(self, scope: str) -> bool:
        return self.scopes is None or scope in self.scopes.split()


class AdminUser(db.Model):
    """A dashboard user; the password is a werkzeug hash."""

    __tablename__ = "admin_users"
    __table_args__ = (one_of("role", Role, "role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    password_hash: Mapped[str] = mapped_column(String(256), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Every dashboard session carries the version it was issued under; bumping it
    # (logout, password reset) makes every earlier session cookie worthless.
    session_version: Mapped[int] = mapped_column(
        Integer, nullable=False, default=0, server_default="0"
    )
    role: Mapped[str] = mapped_column(
        String(16), nullable=False, default=Role.OWNER, server_default=Role.OWNER.value
    )
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # may not sign in

    @property
    def rank(self) -> Role:
        return Role(self.role)


def count_enabled_owners(but: str | None = None):
    """The query counting the owners who may sign in (but the one named `but`)."""
    query = select(func.count()).where(
        AdminUser.role == Role.OWNER, AdminUser.disabled_at.is_(None)
    )
    return query if but is None else query.where(AdminUser.username != but)

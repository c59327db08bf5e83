"""Who is logged in to the dashboard. The session holds `admin_user_id`."""

from __future__ import annotations

from flask import session

from ..extensions import db
from ..models import AdminUser

SESSION_KEY = "admin_user_id"


def current_admin() -> AdminUser | None:
    """The logged-in admin for this request (HTTP or Socket.IO connect), or None."""
    user_id = session.get(SESSION_KEY)
    if user_id is None:
        return None
    return db.session.get(AdminUser, user_id)

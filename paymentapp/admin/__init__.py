"""Admin dashboard: login, live orders, order detail, review queue."""

from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")

from . import events, routes  # noqa: E402,F401

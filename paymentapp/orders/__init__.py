"""Orders: the merchant API and the customer's status snapshot."""

from flask import Blueprint

bp = Blueprint("orders", __name__, url_prefix="/api/orders")

from . import routes  # noqa: E402,F401

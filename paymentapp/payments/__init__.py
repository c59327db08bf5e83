"""Payments: the customer starts an STK Push for an order."""

from flask import Blueprint

bp = Blueprint("payments", __name__, url_prefix="/api/orders")

from . import routes  # noqa: E402,F401

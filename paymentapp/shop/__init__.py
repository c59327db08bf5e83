"""Demo shop and the hosted payment dialog page (`/pay/<order_id>?token=…`)."""

from flask import Blueprint

bp = Blueprint("shop", __name__)

from . import routes  # noqa: E402,F401

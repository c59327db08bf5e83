"""Callbacks: Daraja posts STK results here; stored first, then applied."""

from flask import Blueprint

bp = Blueprint("callbacks", __name__, url_prefix="/callbacks")

from . import routes  # noqa: E402,F401

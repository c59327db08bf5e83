"""Built-in Daraja simulator (filled in by the money-path work)."""

from flask import Blueprint

bp = Blueprint("simulator", __name__, url_prefix="/_simulator")

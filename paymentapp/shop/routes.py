from flask import render_template

from . import bp


@bp.get("/")
def index():
    """The demo shop."""
    return render_template("shop/index.html")

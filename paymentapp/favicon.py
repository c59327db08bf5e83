"""`/favicon.ico`: browsers ask for it on every page (even pages that link an icon), so
answer it rather than log a 404. Pages link `static/favicon.svg` and this ICO."""

from flask import Blueprint, current_app, send_from_directory

bp = Blueprint("favicon", __name__)


@bp.get("/favicon.ico")
def favicon():
    """The site icon (16, 32 and 48 px), cached for a day."""
    return send_from_directory(
        current_app.static_folder, "favicon.ico", mimetype="image/x-icon", max_age=86400
    )

"""`GET /realtime/origin`: may this page's origin open the live connection?

A browser cannot read why a WebSocket handshake failed, so when the socket cannot connect
the JS client (clients/js/packages/client/src/connection.ts) asks here once, and on a
refusal writes to the console which origin was refused and which setting to change.
Public and readable from any origin (cors.py): it says nothing but the page's own origin.
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from ..cors import origin_allowed, page_origin

bp = Blueprint("realtime", __name__)


@bp.get("/realtime/origin")
def origin():
    """`{origin, allowed, setting}` for the page that asks (never logged: a probe)."""
    seen = page_origin()
    response = jsonify(
        {
            "origin": seen,
            "allowed": origin_allowed(seen, current_app.config),
            "setting": "CORS_ALLOWED_ORIGINS",
        }
    )
    response.headers["Cache-Control"] = "no-store"
    return response

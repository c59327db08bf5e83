"""Cross-origin access for the embeddable dialog on a merchant's own pages.

A merchant page on another origin loads our ES modules (module scripts are always fetched
with CORS) and calls the customer API with the order's token (no cookies). The dialog's
files are public, so any origin may load them; the customer API answers only the
origins in `CORS_ALLOWED_ORIGINS`, and the Socket.IO handshake (gunicorn.conf.py,
realtime/server.py) uses the same list and the same rule, `socket_origin_allowed`, which
says in the log what to change. `GET /realtime/origin` tells a browser whether its page's
origin may open the socket, so the client can say so in the console (realtime/routes.py).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from flask import Flask, current_app, request

log = logging.getLogger("paymentapp.realtime")

# public to every origin: the dialog's files, the socket's origin check, and the OpenAPI
# document (browser-based API tools fetch it from their own origin)
PUBLIC_PREFIXES = (
    "/static/js/",
    "/static/css/",
    "/vendor/",
    "/realtime/origin",
    "/api/openapi.json",
)
CUSTOMER_API = re.compile(r"^/api/orders/[^/]+/(status|payments)$")


def origin_allowed(origin: str, config: Mapping | None = None) -> bool:
    allowed = (config or current_app.config)["CORS_ALLOWED_ORIGINS"]
    return "*" in allowed or origin in allowed


def socket_origin_allowed(config: Mapping, origin: str) -> bool:
    """May a page at `origin` open a Socket.IO connection? A refusal is logged with what
    to change: the one clue a missing origin leaves on the server side."""
    if origin_allowed(origin, config):
        return True
    allowed = ", ".join(config["CORS_ALLOWED_ORIGINS"]) or "none"
    log.warning(
        f"websocket refused for origin {origin} (allowed: {allowed}): add it to "
        "CORS_ALLOWED_ORIGINS, or open the page at an allowed address",
        extra={"event": "socket.origin_refused", "origin": origin},
    )
    return False


def page_origin() -> str:
    """The origin of the page that sent this request: its `Origin` header, or for a
    same-origin GET (which browsers send without one) the scheme and host it asked for."""
    return request.headers.get("Origin") or request.host_url.rstrip("/")


def add_cors_headers(response):
    """Allow the embeddable dialog's files anywhere and its API calls from allowed origins."""
    origin = request.headers.get("Origin")
    if not origin:
        return response
    if request.path.startswith(PUBLIC_PREFIXES):
        response.headers["Access-Control-Allow-Origin"] = "*"
    elif CUSTOMER_API.match(request.path) and origin_allowed(origin):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Methods"] = "GET, POST"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type, X-Order-Token"
        response.headers["Access-Control-Expose-Headers"] = "Retry-After"
        response.headers["Access-Control-Max-Age"] = "600"
        response.vary.add("Origin")
    return response


def register_cors(app: Flask) -> None:
    """App-wide, not a feature's: the customer API and the static files both need it."""
    app.after_request(add_cors_headers)

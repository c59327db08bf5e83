"""Cross-origin access for the embeddable dialog on a merchant's own pages.

A merchant page on another origin loads our ES modules (module scripts are always fetched
with CORS) and calls the customer API with the order's token (no cookies). The dialog's
files are public, so any origin may load them; the customer API answers only the
origins in `CORS_ALLOWED_ORIGINS` (the Socket.IO server uses the same list).
"""

from __future__ import annotations

import re

from flask import Flask, current_app, request

PUBLIC_PREFIXES = ("/static/js/", "/static/css/", "/vendor/")
CUSTOMER_API = re.compile(r"^/api/orders/[^/]+/(status|payments)$")


def origin_allowed(origin: str) -> bool:
    allowed = current_app.config["CORS_ALLOWED_ORIGINS"]
    return "*" in allowed or origin in allowed


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

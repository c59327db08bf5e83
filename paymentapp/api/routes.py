"""`GET /api/openapi.json`: the OpenAPI document, public and cacheable (it changes only
with a deploy), so a merchant can generate a client in any language."""

from __future__ import annotations

import hashlib
from functools import cache
from importlib.resources import files

from flask import Blueprint, current_app, request

bp = Blueprint("api", __name__, url_prefix="/api")

DOCUMENT = files(__package__) / "openapi.json"


@cache
def document() -> tuple[bytes, str]:
    """The document's bytes and their ETag, read once per process."""
    raw = DOCUMENT.read_bytes()
    return raw, hashlib.sha256(raw).hexdigest()[:32]


@bp.get("/openapi.json")
def openapi():
    """The document as stored; `If-None-Match` with its ETag answers 304."""
    raw, etag = document()
    response = current_app.response_class(raw, mimetype="application/json")
    response.set_etag(etag)
    response.cache_control.public = True
    response.cache_control.max_age = 3600
    return response.make_conditional(request)

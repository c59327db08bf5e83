"""Errors in one place: domain exceptions and HTTP errors become the contract's JSON
error shape for API, callback and simulator clients, and a small page for browsers."""

from __future__ import annotations

import logging
import re

from flask import jsonify, make_response, render_template_string, request
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from .extensions import db
from .logs import redact

log = logging.getLogger(__name__)

HTML_PREFIXES = ("/pay/", "/admin")
HTML_PATHS = ("/", "/_simulator/phone")

ERROR_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ status }} · paymentapp</title>
<style>
body{font:16px system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}
h1{font-size:1.4rem}
</style></head>
<body><h1>{{ status }}: {{ title }}</h1><p>{{ message }}</p>
<p><a href="/">Back to the shop</a></p></body></html>"""


class IllegalTransition(RuntimeError):
    """A move a state table does not allow (`payments/states.py`):
    a bug in the caller, never a client's fault."""


class ApiError(Exception):
    """A client error with a stable `code`, a human `message` and optional `fields`."""

    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        fields: dict | None = None,
        extra: dict | None = None,
        headers: dict | None = None,
    ):
        super().__init__(message)
        self.headers = headers or {}
        self.message = message
        self.code = code or self.code
        self.status = status or self.status
        self.fields = fields or {}
        self.extra = extra or {}


class ValidationError(ApiError):
    status = 422
    code = "validation_error"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class TooManyRequests(ApiError):
    status = 429
    code = "rate_limited"


class UpstreamError(ApiError):
    """Daraja refused or failed; the message is Daraja's own, safe to show."""

    status = 502
    code = "mpesa_error"


def found(row, message: str, code: str):
    """`row`, or a 404 with this message and error code when there is none."""
    if row is None:
        raise NotFound(message, code=code)
    return row


def get_or_404(model, row_id: str | int, message: str, code: str):
    """The `model` row with this primary key, or a 404; an id no key column could hold
    (ids are short strings or 32-bit integers) is not looked up."""
    fits = 0 < row_id < 2**31 if isinstance(row_id, int) else len(row_id) <= 32
    return found(db.session.get(model, row_id) if fits else None, message, code)


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def wants_html() -> bool:
    path = request.path
    html_route = path in HTML_PATHS or path.startswith(HTML_PREFIXES)
    return html_route and request.accept_mimetypes.accept_html


def error_response(
    status: int, code: str, message: str, fields: dict | None = None, extra: dict | None = None
):
    if wants_html():
        page = render_template_string(
            ERROR_PAGE, status=status, title=code.replace("_", " "), message=message
        )
        return page, status
    body = error_body(code, message, fields)
    body.update(extra or {})
    return jsonify(body), status


HTTP_CODES = {
    400: ("bad_request", "The request could not be understood."),
    401: ("unauthorized", "Authentication is required."),
    403: ("forbidden", "You are not allowed to do this."),
    404: ("not_found", "Nothing lives at this address."),
    405: ("method_not_allowed", "This method is not allowed here."),
    413: ("payload_too_large", "The request body is too large."),
    415: ("unsupported_media_type", "Send a JSON body with Content-Type: application/json."),
    429: ("rate_limited", "Too many requests; slow down."),
}


MAX_JSON_DEPTH = 32
# PostgreSQL cannot hold NUL, and a lone surrogate (`"\\ud800"` in JSON) is not UTF-8.
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


def bad_text(value) -> bool:
    """True for text a database cannot store: NUL or a lone surrogate."""
    return isinstance(value, str) and _BAD_TEXT.search(value) is not None


def check_json(data) -> None:
    """Refuse JSON nested deeper than MAX_JSON_DEPTH or holding unstorable characters.

    Iterative on purpose: a recursive walk is what a deeply nested body would break.
    """
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if bad_text(value):
            raise ValidationError(
                "Text fields must not contain NUL or unpaired surrogate characters.",
                code="invalid_characters",
            )
        if isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise ApiError(
                    f"The JSON body is nested more than {MAX_JSON_DEPTH} levels deep.",
                    code="invalid_json",
                )
            if isinstance(value, dict):
                stack.extend((key, depth) for key in value)
                stack.extend((child, depth + 1) for child in value.values())
            else:
                stack.extend((child, depth + 1) for child in value)


def register_errorhandlers(app) -> None:
    """Install the handlers that give every error the contract's shape."""

    @app.before_request
    def refuse_unstorable_input():
        """NUL, lone surrogates and absurd nesting are refused at the door, not with a 500.

        Callbacks are exempt: their raw body is stored (escaped) and judged there.
        """
        if bad_text(request.path) or any(
            bad_text(k) or bad_text(v) for k, v in request.args.items(multi=True)
        ):
            raise ApiError(
                "The address contains a NUL or unpaired surrogate character.",
                code="invalid_characters",
            )
        if request.is_json and not request.path.startswith("/callbacks/"):
            try:
                data = request.get_json(silent=True)
            except RecursionError:
                raise ApiError("The JSON body is nested too deeply.", code="invalid_json") from None
            check_json(data)

    @app.errorhandler(ApiError)
    def handle_api_error(exc: ApiError):
        response = make_response(
            error_response(exc.status, exc.code, exc.message, exc.fields, exc.extra)
        )
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(HTTPException)
    def handle_http_error(exc: HTTPException):
        status = exc.code or 500
        if status >= 500:
            return handle_unexpected(exc)
        code, message = HTTP_CODES.get(status, ("http_error", exc.description or exc.name))
        response = make_response(error_response(status, code, message))
        if status == 405 and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(PoolTimeout)
    def handle_pool_timeout(exc):
        # every pooled connection busy for DB_POOL_TIMEOUT_S (database.py): a 503 to retry
        db.session.rollback()
        log.warning(
            "no free database connection for %s %s (raise DB_POOL_SIZE?)",
            request.method,
            redact(request.path),
            extra={"event": "db.pool_timeout"},
        )
        response = make_response(
            error_response(503, "unavailable", "The server is busy; try again shortly.")
        )
        response.headers["Retry-After"] = "1"
        return response

    @app.errorhandler(Exception)
    def handle_unexpected(exc):
        db.session.rollback()
        if not isinstance(exc, HTTPException):
            log.exception("unhandled error on %s %s", request.method, redact(request.path))
        return error_response(500, "internal_error", "Something went wrong on our side.")

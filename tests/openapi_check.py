"""The OpenAPI document (`paymentapp/api/openapi.json`) held against the suite's own traffic
(docs/development.md, "The OpenAPI document").

`CheckedClient` is the test client of every app the fixtures build: each `/api/` answer a
test receives is validated with openapi-core (its status, headers and body), and a
request answered with a 2xx must be one the document allows, so the document is neither
wider nor narrower than the code. `check_events` does the same for the webhook events a
test's changes wrote. A mismatch fails the test that caused it, naming the route.
"""

from __future__ import annotations

import json
from functools import cache
from urllib.parse import urlencode

from flask.testing import FlaskClient
from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from openapi_core.exceptions import OpenAPIError
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from openapi_schema_validator import OAS31Validator
from werkzeug.wrappers import Request

from paymentapp.api.routes import DOCUMENT

# HEAD and OPTIONS are Flask's own answers, not the API's
UNCHECKED_METHODS = frozenset({"HEAD", "OPTIONS"})


@cache
def document() -> dict:
    return json.loads(DOCUMENT.read_bytes())


@cache
def openapi() -> OpenAPI:
    """The document, checked against the OpenAPI 3.1 schema once per test process."""
    return OpenAPI.from_dict(document())


@cache
def schema_validator(name: str) -> OAS31Validator:
    """A validator of one of the document's component schemas (its `$ref`s resolved)."""
    return OAS31Validator(
        {"$ref": f"#/components/schemas/{name}", "components": document()["components"]}
    )


def schema_problems(name: str, value) -> list[str]:
    """What is wrong with `value` as a `name` (empty: nothing)."""
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}"
        for error in schema_validator(name).iter_errors(value)
    ]


def _describe(exc: BaseException) -> str:
    """openapi-core's error and the schema errors under it, on one line each."""
    lines = []
    while exc is not None:
        lines.append(f"{type(exc).__name__}: {exc}")
        for error in getattr(exc, "schema_errors", None) or ():
            where = "/".join(map(str, error.absolute_path)) or "(top)"
            lines.append(f"  {where}: {error.message}")
        exc = exc.__cause__
    return "\n".join(lines)


def _replayable(request: Request, environ: dict | None = None) -> Request:
    """The request as the app received it (or with `environ`): the app read the body, so
    rewind it."""
    environ = environ or request.environ
    stream = environ.get("wsgi.input")
    if hasattr(stream, "seek"):
        stream.seek(0)
    return Request(environ)


def _as_understood(request: Request) -> Request:
    """The request as the API reads it: a query parameter with an empty value is absent
    (`?status=&cursor=`, as the document says), which OpenAPI 3.1 cannot say but with
    the deprecated `allowEmptyValue`."""
    kept = [(k, v) for k, v in request.args.items(multi=True) if v != ""]
    return _replayable(request, {**request.environ, "QUERY_STRING": urlencode(kept)})


def check_response(response) -> None:
    """Fail (AssertionError) unless an `/api/` answer is what the document says of it."""
    sent = response.request
    if not sent.path.startswith("/api/") or sent.method in UNCHECKED_METHODS:
        return
    request = _replayable(sent)
    where = f"{request.method} {request.full_path.rstrip('?')} → {response.status_code}"
    body = response.get_data(as_text=True)[:1000] if response.is_json else ""
    asked = WerkzeugOpenAPIRequest(request)
    try:
        openapi().validate_response(asked, WerkzeugOpenAPIResponse(response))
    except (PathNotFound, OperationNotFound) as exc:
        # no such route or method: routing answered, and still in the error shape (as does
        # a route for an id of `.` or `..`: openapi-core resolves those segments away)
        dots = {".", ".."} & set(request.path.split("/"))
        assert response.status_code in (404, 405) or (dots and response.status_code >= 400), (
            f"{where}: the route answered but openapi.json lacks it ({exc})"
        )
        problems = schema_problems("Error", response.get_json(silent=True))
        assert not problems, f"{where}: not the error shape: {problems}\n{body}"
        return
    except OpenAPIError as exc:
        raise AssertionError(
            f"{where}: the answer does not match openapi.json\n{_describe(exc)}\n{body}"
        ) from None
    if 200 <= response.status_code < 300:
        try:
            openapi().validate_request(WerkzeugOpenAPIRequest(_as_understood(request)))
        except OpenAPIError as exc:
            raise AssertionError(
                f"{where}: the API accepted a request openapi.json does not allow\n"
                f"{_describe(exc)}\nrequest body: {request.get_data(as_text=True)[:1000]}"
            ) from None


class CheckedClient(FlaskClient):
    """A test client whose every `/api/` answer is checked against the document."""

    def open(self, *args, **kwargs):
        response = super().open(*args, **kwargs)
        check_response(response)
        return response


def check_events(payloads) -> None:
    """Fail unless each webhook event body (JSON text) is one of the document's events."""
    mapping = document()["components"]["schemas"]["WebhookEvent"]["discriminator"]["mapping"]
    for payload in payloads:
        event = json.loads(payload)
        # the event's own schema by its type: its errors say more than oneOf's
        name = mapping.get(event.get("type"), "#/WebhookEvent").rsplit("/", 1)[-1]
        problems = schema_problems(name, event)
        assert not problems, (
            f"webhook event {event.get('type')} does not match openapi.json: {problems}\n"
            f"{payload[:2000]}"
        )

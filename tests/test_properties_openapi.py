"""The live app fuzzed from its own OpenAPI document (Schemathesis): whatever a client
sends, valid by the document or not, the answer is never a 5xx and is always what the
document says of it (status, content type, headers, body), and what the document forbids
is refused with a 4xx.

One test per API operation, against the app served on a real port with the simulator as
Daraja (`live_server`). The cases are derandomized (the same on every run, so a red run
replays) and few: at most MAX_EXAMPLES per operation and generation mode (valid, invalid).
The ids a case makes up name nothing (404s), so a case that names an order or a webhook
endpoint, or registers one, is sent a second time about real objects: an unpaid order
(its client token on the customer routes), a paid one (refunds), a real endpoint, and a
loopback URL the simulator mode accepts.
"""

from __future__ import annotations

import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.helpers import Merchant, paid_order, register_endpoint
from tests.openapi_check import document

MAX_EXAMPLES = 20
CONFORMS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
HOOK = "http://127.0.0.1:9/hook"  # registered, never delivered to (no delivery loop runs)
# the routes a case's second call sends about the unpaid order; the others get the paid one
UNPAID = ("/status", "/payments", "/qr.png", "/cancel")

schema = schemathesis.openapi.from_dict(
    document(),
    config=schemathesis.Config.from_dict(
        {
            "seed": 23,
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
                # the test sends the real key and token itself
                "with-security-parameters": False,
            },
            # the examples and fuzzing phases only: a fixed budget per operation
            "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
        }
    ),
)


@pytest.fixture
def real(client, auth, make_order, live_server):
    """An unpaid order, a paid one and a webhook endpoint, made through the API."""
    return {
        "unpaid": make_order(100),
        "paid": paid_order(Merchant(client, auth), live_server, make_order, 300),
        "endpoint": register_endpoint(client, auth, HOOK)["id"],
    }


def about_real_objects(case, real, headers: dict) -> bool:
    """Point `case` at the real objects instead of what it made up; False: it names none."""
    path = case.path_parameters or {}
    body = case.body if isinstance(case.body, dict) else {}
    if "order_id" in path:
        order = real["unpaid"] if case.path.endswith(UNPAID) else real["paid"]
        path["order_id"] = order["id"]
        headers["X-Order-Token"] = order["client_token"]
    if "endpoint_id" in path:
        path["endpoint_id"] = real["endpoint"]
    if "url" in body:
        body["url"] = HOOK
    return bool({"order_id", "endpoint_id"} & set(path)) or "url" in body


@schema.parametrize()
def test_the_live_api_answers_as_its_document_says(case, live_server, auth, real):
    response = case.call(base_url=live_server.url, headers=auth)
    case.validate_response(response, checks=[*CONFORMS, negative_data_rejection], headers=auth)
    headers = dict(auth)
    if about_real_objects(case, real, headers):
        # the same case about real objects: what made it invalid may be gone, so only
        # conformance is asked of the answer
        response = case.call(base_url=live_server.url, headers=headers)
        case.validate_response(response, checks=CONFORMS, headers=headers)

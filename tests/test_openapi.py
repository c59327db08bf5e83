"""The OpenAPI document: valid OpenAPI 3.1, served at `/api/openapi.json`, naming every
API route and webhook event the code has, and a checker that catches a mismatch.

The document is held against real answers everywhere else: every `/api/` answer of the
suite goes through `tests/openapi_check.py` (the `app` fixture's test client), and
`tests/test_properties_openapi.py` fuzzes a live app from it.
"""

from __future__ import annotations

import json
import re

import pytest
from openapi_spec_validator import validate
from sqlalchemy import select
from werkzeug.test import EnvironBuilder, TestResponse

from paymentapp.api.routes import DOCUMENT
from paymentapp.models import (
    OrderStatus,
    PaymentMethod,
    PaymentStatus,
    RefundReason,
    RefundStatus,
    WebhookEvent,
)
from paymentapp.payments.refunds import REASON_ALIASES
from paymentapp.payments.states import AMOUNT_FROM_CALLBACK, AMOUNT_FROM_HAND, AMOUNT_FROM_QUERY
from paymentapp.webhooks.events import CATALOGUE, TEST_EVENT
from tests.helpers import (
    Merchant,
    assert_error,
    paid_order,
    pay,
    register_endpoint,
    wait_for,
)
from tests.openapi_check import check_events, check_response, document

URL = "/api/openapi.json"
UNDOCUMENTED = {"HEAD", "OPTIONS"}


def test_the_document_is_valid_openapi_3_1():
    validate(document())
    assert document()["openapi"].startswith("3.1.")


def test_it_is_served_without_a_key_cacheable_and_to_any_origin(client):
    response = client.get(URL, headers={"Origin": "https://tools.example"})
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_data() == DOCUMENT.read_bytes()
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.cache_control.public and response.cache_control.max_age == 3600
    etag = response.headers["ETag"]
    again = client.get(URL, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.get_data() == b""


def test_a_doubled_slash_is_a_404_in_the_error_shape_not_a_redirect(client, auth):
    # Werkzeug would answer 308 (an HTML body) to /api/orders/status, another route
    for path in ("/api/orders//status", "/api/orders//cancel", "/api//orders"):
        assert_error(client.get(path, headers=auth), 404, "not_found")


def _documented(doc: dict) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in doc["paths"].items() for method in item}


def test_every_api_route_is_in_the_document_and_nothing_else(app):
    routes = {
        (method, re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule))
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/")
        for method in rule.methods - UNDOCUMENTED
    }
    assert routes == _documented(document())


def test_every_webhook_event_type_is_in_the_document():
    doc = document()
    types = {*CATALOGUE, TEST_EVENT}
    assert set(doc["webhooks"]) == types
    mapping = doc["components"]["schemas"]["WebhookEvent"]["discriminator"]["mapping"]
    assert set(mapping) == types
    listed = doc["components"]["schemas"]["EventType"]["enum"]
    assert listed == list(CATALOGUE)


def test_the_documents_lists_of_values_are_the_codes():
    schemas = document()["components"]["schemas"]

    def allowed(node: dict) -> set:
        if "$ref" in node:
            return allowed(schemas[node["$ref"].rsplit("/", 1)[-1]])
        if "anyOf" in node:
            return set().union(*map(allowed, node["anyOf"]))
        return {None} if node.get("type") == "null" else set(node["enum"])

    def values(schema: str, field: str) -> set:
        return allowed(schemas[schema]["properties"][field])

    assert values("Order", "status") == set(OrderStatus.ALL)
    assert values("StatusSnapshot", "order_status") == set(OrderStatus.ALL)
    assert values("MerchantPayment", "status") == set(PaymentStatus.ALL)
    assert values("MerchantPayment", "method") == {m.value for m in PaymentMethod}
    assert values("MerchantPayment", "amount_source") == {
        AMOUNT_FROM_CALLBACK, AMOUNT_FROM_QUERY, AMOUNT_FROM_HAND, None,
    }  # fmt: skip
    assert values("Refund", "status") == set(RefundStatus.ALL)
    assert values("Refund", "reason") == set(RefundReason.ALL)
    assert values("RefundCreate", "reason") == set(RefundReason.ALL) | set(REASON_ALIASES)


def test_the_events_of_an_orders_life_are_as_the_document_says(
    client, auth, make_order, live_server, db
):
    """Every test's events are checked when its app is torn down; this one makes sure the
    common ones happen, and checks them itself."""
    api = Merchant(client, auth)
    failed = make_order(100)
    # another phone than paid_order's: one prompt per phone every few seconds
    assert pay(client, failed, phone="0722 000 111").status_code == 202
    live_server.answer(failed["number"], "cancel")  # payment.failed
    wait_for(lambda: api.order(failed)["payments"][0]["status"] == "cancelled", "the failure")
    paid = paid_order(api, live_server, make_order, 300)  # order.paid
    assert api.refund(paid, reason="other").status_code == 202  # refund.pending
    assert api.settled(paid)["status"] == "succeeded"  # refund.succeeded
    cancelled = make_order(100)
    assert client.post(f"/api/orders/{cancelled['id']}/cancel", headers=auth).status_code == 200
    endpoint = register_endpoint(client, auth, "http://127.0.0.1:9/hook")
    assert (
        client.post(f"/api/webhook-endpoints/{endpoint['id']}/test", headers=auth).status_code
        == 202
    )

    events = db.session.scalars(select(WebhookEvent)).all()
    assert {event.type for event in events} >= {
        "order.created", "payment.failed", "order.paid", "refund.pending", "refund.succeeded",
        "order.cancelled", "endpoint.test",
    }  # fmt: skip
    check_events(event.payload for event in events)


# -- the checker itself -------------------------------------------------------------------


def answer(method: str, path: str, status: int, body, **request) -> TestResponse:
    """A response as the test client would return it, for `method path` with `request`."""
    asked = EnvironBuilder(path=path, method=method, **request).get_request()
    return TestResponse(
        json.dumps(body), status, {"Content-Type": "application/json"}, request=asked
    )


def an_order(**changes) -> dict:
    order = {
        "id": "ord_x", "number": "ORD-10017", "amount": 100, "currency": "KES",
        "description": "", "reference": None, "customer_phone": None, "status": "pending",
        "amount_paid": 0, "amount_refunded": 0, "refund_status": "none", "amount_due": 100,
        "version": 1, "created_at": "2026-12-02T10:00:00Z", "updated_at": "2026-12-02T10:00:00Z",
        "paid_at": None, "expires_at": None,
    }  # fmt: skip
    return {**order, **changes}


AUTH = {"Authorization": "Bearer pk_x"}


def test_the_checker_passes_an_answer_as_documented():
    listed = {"orders": [an_order()], "next_cursor": None}
    check_response(answer("GET", "/api/orders", 200, listed, headers=AUTH))
    error = {"error": {"code": "order_not_found", "message": "No order.", "fields": {}}}
    check_response(answer("GET", "/api/orders/ord_x", 404, error, headers=AUTH))
    check_response(answer("GET", "/api/nothing-here", 404, error))


@pytest.mark.parametrize(
    ("response", "says"),
    [
        (answer("GET", "/api/orders", 200, {"orders": []}), "does not match"),
        (
            answer("GET", "/api/orders", 200, {"orders": [an_order(extra=1)], "next_cursor": None}),
            "does not match",
        ),
        (answer("GET", "/api/orders", 200, {"orders": [an_order(status="gone")]}), "does not"),
        (answer("GET", "/api/orders", 418, {"error": {}}), "does not match"),
        (answer("GET", "/api/orders", 404, {"detail": "Not Found"}), "does not match"),
        (answer("GET", "/api/not-documented", 200, {}), "lacks it"),
        (answer("GET", "/api/nothing-here", 404, {"detail": "Not Found"}), "error shape"),
        (
            answer(
                "POST", "/api/orders", 201, {**an_order(), "client_token": "t", "payment_url": "u"},
                json={"amount": "100"}, headers=AUTH,
            ),
            "accepted a request",
        ),
    ],
    ids=[
        "field-missing", "field-unknown", "bad-enum", "status-undocumented", "not-error-shape",
        "route-undocumented", "routing-error-shape", "request-too-wide",
    ],
)  # fmt: skip
def test_the_checker_fails_an_answer_unlike_the_document(response, says):
    with pytest.raises(AssertionError, match=says):
        check_response(response)


def test_the_checker_fails_an_event_unlike_the_document():
    event = {
        "id": "evt_x",
        "type": "payment.failed",
        "created_at": "2026-12-02T10:00:00Z",
        "data": {"order": {**an_order(), "payments": []}, "payment_id": "pay_x"},
    }
    with pytest.raises(AssertionError, match="reason"):  # `reason` and `result_code` missing
        check_events([json.dumps(event)])
    event["data"].update(reason="Request cancelled by user", result_code=1032)
    check_events([json.dumps(event)])

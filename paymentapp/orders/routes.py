"""Merchant order API and the customer's status endpoint."""

from flask import Blueprint, current_app, jsonify, request

from ..errors import found
from ..security import (
    ORDERS_READ,
    ORDERS_WRITE,
    authenticate_api_key,
    check_client_token,
    check_order_access,
    make_client_token,
    request_client_token,
)
from .schemas import json_body, order_json, validate_order_create
from .services import cancel_order, create_order, get_order, list_orders
from .snapshots import read_snapshot

bp = Blueprint("orders", __name__, url_prefix="/api/orders")


def _created_json(order) -> dict:
    token = make_client_token(order.id)
    base = current_app.config["PUBLIC_BASE_URL"]
    return {
        **order_json(order),
        "client_token": token,
        "payment_url": f"{base}/pay/{order.id}?token={token}",
    }


@bp.post("")
def create():
    """Create an order (merchant)."""
    api_key = authenticate_api_key(ORDERS_WRITE)
    data = validate_order_create(json_body())
    order, created = create_order(api_key, data, request.headers.get("Idempotency-Key"))
    response = jsonify(_created_json(order))
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return response, 201


@bp.get("")
def index():
    """List orders, newest first (merchant)."""
    api_key = authenticate_api_key(ORDERS_READ)
    orders, next_cursor = list_orders(
        api_key_id=api_key.id if api_key.own_orders else None,
        status=request.args.get("status"),
        q=request.args.get("q"),
        limit=request.args.get("limit"),
        cursor=request.args.get("cursor"),
    )
    return jsonify(orders=[order_json(o) for o in orders], next_cursor=next_cursor)


@bp.get("/<order_id>")
def show(order_id: str):
    """One order with its payments (merchant)."""
    api_key = authenticate_api_key(ORDERS_READ)
    order = get_order(order_id)
    check_order_access(api_key, order)
    return jsonify(order_json(order, with_payments=True))


@bp.get("/<order_id>/status")
def status(order_id: str):
    """The customer's status snapshot, authorised by the order's client token."""
    check_client_token(order_id, request_client_token())
    snapshot = read_snapshot(order_id)  # one Core statement, as a dialog's subscribe
    return jsonify(found(snapshot, "No order with this id.", "order_not_found"))


@bp.post("/<order_id>/cancel")
def cancel(order_id: str):
    """Cancel an unpaid order (merchant); money that arrives later is flagged for a refund."""
    api_key = authenticate_api_key(ORDERS_WRITE)
    check_order_access(api_key, get_order(order_id))
    return jsonify(order_json(cancel_order(order_id, f"api:{api_key.name}"), with_payments=True))

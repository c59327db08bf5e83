"""The customer's payment endpoints (`POST /api/orders/<id>/payments {phone}`, the Pay by
QR image `GET /api/orders/<id>/qr.png`) and the merchant's refunds (`POST`/`GET
/api/orders/<id>/refunds`, docs/refunds.md)."""

from flask import Blueprint, current_app, jsonify, request

from ..errors import ValidationError
from ..extensions import limiter
from ..orders.schemas import json_body, payment_json, refund_json
from ..orders.services import check_idempotency_key, get_order
from ..phones import InvalidPhone, normalize_phone
from ..security import (
    ORDERS_READ,
    REFUNDS_WRITE,
    authenticate_api_key,
    check_client_token,
    check_order_access,
    request_client_token,
)
from .qr import qr_png
from .reversals import request_refund
from .services import start_payment

bp = Blueprint("payments", __name__, url_prefix="/api/orders")


@bp.post("/<order_id>/payments")
@limiter.limit(
    lambda: current_app.config["PAYMENT_ADDRESS_RATE_LIMIT"],
    deduct_when=lambda response: response.status_code == 202,  # prompts started only
)
def create(order_id: str):
    """Start an STK Push for the order (customer, authorised by the client token)."""
    check_client_token(order_id, request_client_token())
    data = json_body()
    unknown = sorted(set(data) - {"phone"})
    if unknown:
        raise ValidationError("Unknown fields.", fields={k: "Unknown field." for k in unknown})
    try:
        phone = normalize_phone(data.get("phone"))
    except InvalidPhone as exc:
        raise ValidationError(str(exc), code="invalid_phone", fields={"phone": str(exc)}) from None
    payment = start_payment(order_id, phone)
    return jsonify(payment_json(payment)), 202


@bp.get("/<order_id>/qr.png")
@limiter.limit(lambda: current_app.config.get("QR_RATE_LIMIT", "30 per minute"))
def qr(order_id: str):
    """The Dynamic QR that pays the order's amount due (customer, by its client token,
    as a header or `?token=`: an <img> sends no header)."""
    check_client_token(order_id, request_client_token())
    response = current_app.response_class(qr_png(get_order(order_id)), mimetype="image/png")
    response.headers["Cache-Control"] = "private, max-age=60"
    return response


REFUND_FIELDS = {"payment_id", "amount", "reason", "note", "phone"}


@bp.post("/<order_id>/refunds")
def refund(order_id: str):
    """Refund a payment of the order through M-Pesa (merchant): the whole of it by
    Reversal, part of it by B2C. 202 with the refund, whose result follows (`refund.*`
    webhooks, `GET …/refunds`)."""
    api_key = authenticate_api_key(REFUNDS_WRITE)
    key = check_idempotency_key(request.headers.get("Idempotency-Key"))
    data = json_body()
    unknown = sorted(set(data) - REFUND_FIELDS)
    if unknown:
        raise ValidationError("Unknown fields.", fields={k: "Unknown field." for k in unknown})
    fields = {}
    payment_id, amount, note = data.get("payment_id"), data.get("amount"), data.get("note")
    if payment_id is not None and (not isinstance(payment_id, str) or len(payment_id) > 32):
        fields["payment_id"] = "A payment id of this order."
    if amount is not None and (
        isinstance(amount, bool) or not isinstance(amount, int) or amount < 1
    ):
        fields["amount"] = "Whole shillings, e.g. 500."
    if note is not None and not isinstance(note, str):
        fields["note"] = "Text."
    if data.get("phone") is not None and not isinstance(data["phone"], str):
        fields["phone"] = "The customer's phone, e.g. 0712345678."
    if not isinstance(data.get("reason"), str):
        fields["reason"] = "Why the money goes back, e.g. requested_by_customer."
    if fields:
        raise ValidationError("The refund is not valid.", fields=fields)
    check_order_access(api_key, get_order(order_id))
    made, new = request_refund(
        order_id,
        payment_id=payment_id,
        amount=amount,
        reason=data["reason"],
        note=note,
        phone=data.get("phone"),
        actor=f"api:{api_key.name}",
        api_key_id=api_key.id,
        idempotency_key=key,
    )
    response = jsonify(refund_json(made))
    if not new:
        response.headers["Idempotent-Replayed"] = "true"
    return response, 202


@bp.get("/<order_id>/refunds")
def refunds(order_id: str):
    """The order's refunds, oldest first (merchant)."""
    api_key = authenticate_api_key(ORDERS_READ)
    order = get_order(order_id)
    check_order_access(api_key, order)
    made = sorted(
        (r for p in order.payments for r in p.refunds), key=lambda r: (r.created_at, r.id)
    )
    return jsonify(refunds=[refund_json(r) for r in made])

"""Customer payment endpoint: `POST /api/orders/<id>/payments {phone}`."""

from flask import Blueprint, jsonify

from ..errors import ValidationError
from ..orders.schemas import json_body, payment_json
from ..phones import InvalidPhone, normalize_phone
from ..security import check_client_token, request_client_token
from .services import start_payment

bp = Blueprint("payments", __name__, url_prefix="/api/orders")


@bp.post("/<order_id>/payments")
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

"""Input validation and JSON shapes for orders, payments and status snapshots."""

from __future__ import annotations

from datetime import timedelta

from flask import current_app, has_app_context, request

from ..errors import ApiError, ValidationError
from ..models import Order, Payment
from ..mpesa.qr import qr_offered
from ..phones import InvalidPhone, mask_phone, normalize_phone

MIN_AMOUNT = 1
MAX_AMOUNT = 250_000  # Daraja's STK Push ceiling, whole shillings
MAX_DESCRIPTION = 200
MAX_REFERENCE = 64
ORDER_FIELDS = {"amount", "description", "customer_phone", "reference"}


def json_body() -> dict:
    """The request's JSON object, or a 415/400 error in the contract's shape."""
    if not request.is_json:
        raise ApiError(
            "Send a JSON body with Content-Type: application/json.",
            code="unsupported_media_type",
            status=415,
        )
    data = request.get_json(silent=True)
    if data is None:
        raise ApiError("The body is not valid JSON.", code="invalid_json")
    if not isinstance(data, dict):
        raise ApiError("The JSON body must be an object.", code="invalid_json")
    return data


def parse_amount(value) -> int:
    """Whole shillings 1..250000 as a JSON integer; '100', 1.5 and true are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("Amount must be a whole number of shillings, e.g. 1500.")
    if not MIN_AMOUNT <= value <= MAX_AMOUNT:
        raise ValueError(f"Amount must be between {MIN_AMOUNT} and {MAX_AMOUNT:,} shillings.")
    return value


def _text(value, limit: int, *, non_empty: bool) -> str | None:
    """Optional text, stripped; None when absent. Raises ValueError saying what is wrong."""
    if value is None:
        return None
    if not isinstance(value, str) or (non_empty and not value.strip()):
        raise ValueError("must be non-empty text." if non_empty else "must be text.")
    if len(value.strip()) > limit:
        raise ValueError(f"must be at most {limit} characters.")
    return value.strip()


def validate_order_create(data: dict) -> dict:
    """Check a `POST /api/orders` body; every problem is reported in `fields`."""
    fields: dict[str, str] = {}
    clean: dict = {}
    for name in sorted(set(data) - ORDER_FIELDS):
        fields[name] = "Unknown field."
    if "amount" not in data:
        fields["amount"] = "Amount is required."
    else:
        try:
            clean["amount"] = parse_amount(data["amount"])
        except ValueError as exc:
            fields["amount"] = str(exc)
    for name, limit, required in (
        ("description", MAX_DESCRIPTION, False),
        ("reference", MAX_REFERENCE, True),
    ):
        try:
            value = _text(data.get(name), limit, non_empty=required)
        except ValueError as exc:
            fields[name] = f"{name.capitalize()} {exc}"
            continue
        if value is not None:
            clean[name] = value
    clean.setdefault("description", "")
    phone = data.get("customer_phone")
    if phone is not None:
        try:
            clean["customer_phone"] = normalize_phone(phone)
        except InvalidPhone as exc:
            fields["customer_phone"] = str(exc)
    if fields:
        raise ValidationError("The order is not valid.", fields=fields)
    return clean


def iso(dt) -> str | None:
    return dt.isoformat().replace("+00:00", "Z") if dt else None


def retry_at(payment: Payment):
    """When this payment's phone may get another prompt (the per-phone cooldown after a
    prompt reached it, PAYMENT_PHONE_COOLDOWN_S), or None when no wait applies. The
    dialog disables *Try again* until then instead of running into the 429."""
    cooldown = current_app.config.get("PAYMENT_PHONE_COOLDOWN_S", 10) if has_app_context() else 0
    if not cooldown or not payment.checkout_request_id or payment.created_at is None:
        return None
    return payment.created_at + timedelta(seconds=cooldown)


def payment_json(payment: Payment, *, full: bool = False) -> dict:
    """A payment as the customer may see it (phone masked); `full` adds merchant fields."""
    data = {
        "id": payment.id,
        "method": payment.method,
        "status": payment.status,
        "result_code": payment.result_code,
        "result_desc": payment.result_desc,
        "receipt": payment.receipt,
        "amount": payment.amount,
        "phone_masked": mask_phone(payment.phone),
        "needs_review": payment.needs_review,
        "created_at": iso(payment.created_at),
        "paid_at": iso(payment.paid_at),
        "retry_at": iso(retry_at(payment)),
    }
    if full:
        data.update(
            phone=payment.phone,
            checkout_request_id=payment.checkout_request_id,
            merchant_request_id=payment.merchant_request_id,
            paid_amount=payment.paid_amount,
            amount_refunded=payment.refunded_amount or 0,
            amount_source=payment.amount_source,
            account_reference=payment.account_reference,
            review_reason=payment.review_reason,
            updated_at=iso(payment.updated_at),
        )
    return data


def status_snapshot(order: Order) -> dict:
    """The `payment_update` payload: the order's state and its latest payment."""
    payment = order.latest_payment
    return {
        "order_id": order.id,
        "order_number": order.number,
        "order_status": order.status,
        "amount": order.amount,
        "amount_paid": order.amount_paid,
        "amount_refunded": order.amount_refunded,
        "refund_status": order.refund_status,
        "amount_due": order.amount_due,
        "version": order.version,
        "updated_at": iso(order.updated_at),
        "expires_at": iso(order.expires_at),
        "payment": payment_json(payment) if payment else None,
        # every attempt, compactly: a Paybill payment never hides a pending STK prompt
        "payments": [
            {
                "id": p.id,
                "method": p.method,
                "status": p.status,
                "amount": p.amount,
                "paid_amount": p.paid_amount,
                "amount_refunded": p.refunded_amount or 0,
            }
            for p in order.payments
        ],
        # where to pay by hand when the prompt can't reach the phone (docs/paybill.md)
        "paybill": {
            "business_number": current_app.config["MPESA_C2B_SHORTCODE"],
            "account": order.number,
            # a Dynamic QR of the amount due is served (docs/dialog.md, "Pay by QR")
            "qr": qr_offered(current_app.config),
        },
    }


def order_json(order: Order, *, with_payments: bool = False) -> dict:
    """An order as the merchant API returns it."""
    data = {
        "id": order.id,
        "number": order.number,
        "amount": order.amount,
        "currency": "KES",
        "description": order.description,
        "reference": order.reference,
        "customer_phone": order.customer_phone,
        "status": order.status,
        "amount_paid": order.amount_paid,
        "amount_refunded": order.amount_refunded,
        "refund_status": order.refund_status,
        "amount_due": order.amount_due,
        "version": order.version,
        "created_at": iso(order.created_at),
        "updated_at": iso(order.updated_at),
        "paid_at": iso(order.paid_at),
        "expires_at": iso(order.expires_at),
    }
    if with_payments:
        data["payments"] = [payment_json(p, full=True) for p in order.payments]
    return data


def refund_json(refund) -> dict:
    """A refund as the merchant API shows it (docs/refunds.md)."""
    return {
        "id": refund.id,
        "order_id": refund.order_id,
        "payment_id": refund.payment_id,
        "amount": refund.amount,
        "method": refund.method,
        # a B2C refund's phone, masked like every phone the API shows
        "phone": mask_phone(refund.phone),
        "status": refund.status,
        "reason": refund.reason,
        "note": refund.note,
        "result_code": refund.result_code,
        "result_desc": refund.result_desc,
        "created_at": iso(refund.created_at),
        "completed_at": iso(refund.completed_at),
    }

"""Demo shop pages, the buy endpoint, and the hosted payment dialog page."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, redirect, render_template, request
from flask_wtf.csrf import CSRFError, generate_csrf, validate_csrf
from wtforms import ValidationError as CsrfInvalid

from ..errors import ApiError, Forbidden, NotFound
from ..extensions import limiter
from ..orders.schemas import iso, status_snapshot
from ..orders.services import get_order
from ..security import check_client_token, make_client_token
from ..security_headers import add_security_headers
from ..webhooks import signing
from .services import PRODUCTS, buy, from_demo_shop, fulfilment, receive_webhook

bp = Blueprint("shop", __name__)

# The payment page's URL holds the order's token: never send it on as a referrer.
add_security_headers(bp, frame_ancestors="'self'", referrer_policy="no-referrer")


def demo_shop_enabled() -> bool:
    return current_app.config["DEMO_SHOP"]


@bp.get("/")
def index():
    """The demo shop, where it is enabled; elsewhere a neutral page (or `HOME_URL`)."""
    if not demo_shop_enabled():
        if current_app.config.get("HOME_URL"):
            return redirect(current_app.config["HOME_URL"], code=302)
        return render_template("shop/home.html")
    return render_template(
        "shop/index.html",
        products=PRODUCTS.values(),
        csrf_token=generate_csrf(),
        simulator=current_app.config["MPESA_ENV"] == "simulator",
    )


@bp.post("/shop/buy")
@limiter.limit("30 per minute")
def buy_product():
    """Create an order for a product: JSON for the shop's script, a redirect without it.

    Guarded by a CSRF token tied to the session (SameSite=Lax cookie), so another site
    cannot make a visitor's browser create orders; rate-limited per address besides.
    """
    if not demo_shop_enabled():
        raise NotFound("Nothing lives at this address.", code="not_found")
    try:
        validate_csrf(request.form.get("csrf_token") or request.headers.get("X-CSRFToken"))
    except (CsrfInvalid, CSRFError):
        raise Forbidden(
            "The page has expired; reload the shop and try again.", code="csrf_failed"
        ) from None
    order = buy(request.form.get("product", ""))
    token = make_client_token(order.id)
    payment_path = f"/pay/{order.id}?token={token}"
    if request.accept_mimetypes.best == "application/json":
        return jsonify(
            order_id=order.id,
            order_number=order.number,
            amount=order.amount,
            description=order.description,
            token=token,
            payment_url=payment_path,
        ), 201
    return redirect(payment_path, code=303)


@bp.post("/shop/webhooks")
def webhook():
    """The shop's own webhook receiver: fulfils an order on a verified `order.paid`."""
    if not demo_shop_enabled():
        raise NotFound("Nothing lives at this address.", code="not_found")
    outcome = receive_webhook(request.get_data(), request.headers.get(signing.HEADER))
    return jsonify(received=outcome)


@bp.get("/shop/orders/<order_id>/fulfilment")
def order_fulfilment(order_id: str):
    """Has the shop fulfilled this order yet (the pay page asks until it has)?"""
    check_client_token(order_id, request.args.get("token") or request.headers.get("X-Order-Token"))
    done = fulfilment(get_order(order_id).id)
    return jsonify(
        fulfilled=done is not None, fulfilled_at=iso(done.fulfilled_at) if done else None
    )


ERROR_TEXT = {
    "token_expired": (
        "This payment link has expired",
        "Payment links stay valid for a limited time. Ask the shop for a new link; "
        "nothing was charged.",
    ),
    "order_not_found": (
        "We can't find this order",
        "The order in this link does not exist. Check that you opened the whole link.",
    ),
}
INVALID_LINK = (
    "This payment link is not valid",
    "The link is incomplete or was changed. Open the link the shop gave you again.",
)


@bp.get("/pay/<order_id>")
def pay(order_id: str):
    """The hosted payment dialog for one order, authorised by its client token."""
    token = request.args.get("token", "")
    try:
        check_client_token(order_id, token)
        order = get_order(order_id)
    except ApiError as exc:
        title, text = ERROR_TEXT.get(exc.code, INVALID_LINK)
        return render_template("shop/pay_error.html", title=title, text=text), exc.status
    return render_template(
        "shop/pay.html",
        order=order,
        shop_order=demo_shop_enabled() and from_demo_shop(order),
        token=token,
        dialog={
            "orderId": order.id,
            "token": token,
            "description": order.description,
            "initialStatus": status_snapshot(order),
        },
    )
